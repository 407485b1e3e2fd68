"""Study files: the built-in ones parse to the expected grids; every bad file exits 2 naming file and key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gcsearch.cli import main
from gcsearch.space import ArchSpec
from gcsearch.study.lifecycle import contains
from gcsearch.study.parse import builtin_studies, parse_study, read_study_file
from gcsearch.study.spec import StudyFileError

GOOD = """
name = "good"
width = 8
sampler = "grid"
[space]
stages = ["c4", "c5"]
position = ["after_1x1", "after_add"]
[fixed]
block = "gc"
ratio = 4
[proxy]
image_size = 16
train_size = 64
val_size = 32
epochs = 1
"""


def test_builtin_studies_parse_to_the_documented_grids() -> None:
    assert builtin_studies() == ["attention", "block", "fusion", "joint", "norm", "placement", "ratio"]
    sizes = {name: (len(read_study_file(name).candidates()), read_study_file(name).size) for name in builtin_studies()}
    # placement: 6 stage sets x 3 positions x 2 block sets + the baseline; block: 4 blocks x 2 x 2 + none;
    # ratio: 4 ratios + baseline, 2 repeats; fusion: 2 x 3 + baseline; norm: 4 bottlenecks + full + baseline.
    # The five grids are paired: every candidate, the baseline included, on the same 2 seeds (2 starts).
    assert sizes["placement"] == (37, 74)
    assert sizes["block"] == (17, 34)
    assert sizes["ratio"] == (5, 10)
    assert sizes["fusion"] == (7, 14)
    assert sizes["norm"] == (6, 12)
    for name in ("placement", "block", "ratio", "fusion", "norm"):
        proxy = read_study_file(name).proxy
        assert (proxy.start, proxy.finetune_epochs, proxy.finetune_lr) == ("baseline", 0.5, 0.02)
        assert proxy.start_proxy() == read_study_file("attention").proxy  # one set of starts for every grid
    assert read_study_file("joint").proxy.start == "scratch"
    assert sizes["attention"] == (3, 6)  # baseline, NL and GC at c4, 2 seeds each
    joint = read_study_file("joint")
    assert joint.sampler == "tpe" and joint.directions == ["maximize", "minimize"] and joint.target() == 40
    assert len(joint.candidates()) == 1561  # 8,640 combinations, merged where they build the same model


def test_every_grid_starts_with_the_baseline_and_holds_each_model_once() -> None:
    for name in builtin_studies():
        study = read_study_file(name)
        keys = [c.key for c in study.candidates()]
        assert len(keys) == len(set(keys))
        if study.is_grid:
            assert study.candidates()[0].spec == ArchSpec(backbone="proxy", width=16, block="none")
            # One parameter per dimension, over every value it can take, so an extended space records alike.
            assert set(study.distributions()) == set(study.space)
            for cand in study.candidates():
                for dim, value in study.point_params(cand.spec).items():
                    assert contains(study.distributions()[dim], value)


def test_placement_grid_is_the_paper_default_among_others() -> None:
    study = read_study_file("placement")
    paper = ArchSpec(backbone="proxy", width=16, block="gc", ratio=16, stages="c3,c4,c5", position="after_1x1",
                     blocks="all")
    assert paper.key in {c.key for c in study.candidates()}
    assert study.grid()[0][1] == 0 and len(study.grid()) == 74  # every candidate on the 2 paired seeds


def test_points_that_build_the_same_model_are_merged() -> None:
    # block none ignores ratio, so none x {4, 16} is one candidate; "c3,c4" and ["c4", "c3"] are one stage set.
    study = parse_study(textwrap.dedent("""
        sampler = "grid"
        width = 16
        [space]
        block = ["none", "gc"]
        ratio = [4, 16]
        stages = ["c3,c4", ["c4", "c3"], "c3-c4"]
    """), "merge.toml", "merge")
    assert study.space["stages"] == ("c3,c4",)
    assert [c.label for c in study.candidates()] == [
        "none (baseline)", "gc r4 @ c3+c4 after_1x1 all", "gc r16 @ c3+c4 after_1x1 all"]
    assert study.size == 5  # the baseline with 3 seeds


def test_a_non_grid_study_gets_one_parameter_per_dimension() -> None:
    study = parse_study(GOOD.replace('sampler = "grid"', 'sampler = "random"'), "good.toml")
    assert set(study.distributions()) == {"stages", "position"}
    spec = study.spec_from_params({"stages": "c5", "position": "after_add"})
    assert (spec.block, spec.ratio, spec.stages, spec.position, spec.width) == ("gc", 4, ("c5",), "after_add", 8)
    assert study.size == 4  # no baseline added outside a grid
    assert study.target() == 4  # the default budget (20) capped at the distinct points


def test_metadata_holds_what_the_contract_lists() -> None:
    study = parse_study(GOOD, "good.toml")
    meta = study.metadata((3, 16, 16))
    assert set(meta) >= {"version", "objectives", "study_file", "study", "proxy", "proxy_fingerprint", "sampler",
                         "repeats", "backbone", "constraints", "input_size"}
    assert meta["objectives"] == [{"name": "accuracy", "direction": "maximize"},
                                  {"name": "flops", "direction": "minimize"}]
    assert meta["study_file"] == GOOD and meta["input_size"] == [3, 16, 16]
    assert meta["constraints"] == {"max_flops": None, "max_params": None}
    assert meta["proxy"]["epochs"] == 1 and meta["proxy_fingerprint"] == study.proxy.fingerprint()


NO_SPACE = GOOD.replace('[space]\nstages = ["c4", "c5"]\nposition = ["after_1x1", "after_add"]\n', "")
C2 = GOOD.replace('["c4", "c5"]', '["c2", "c5"]')

BAD = [
    # (what, file text, the key the message must name)
    ("malformed TOML", "name = \n", "bad.toml: malformed TOML"),
    ("unknown top-level key", "colour = 1\n" + GOOD, "bad.toml:colour: unknown key"),
    ("unknown dimension", GOOD.replace("[space]", "[space]\npooling2 = ['att']"), "bad.toml:space.pooling2: unknown"),
    ("value out of the choices", GOOD.replace('"after_add"]', '"after_2x2"]'), "bad.toml:space.position: 'after_2x2'"),
    ("a ratio a stage cannot take", C2.replace("ratio = 4", "ratio = 16"),
     "bad.toml:fixed.ratio: ratio 16 leaves no channel in a block of 8 channels"),
    ("a ratio in the space a stage cannot take",
     C2.replace("ratio = 4", "").replace("[space]", "[space]\nratio = [4, 16]"),
     "bad.toml:space.ratio: ratio 16 leaves no channel in a block of 8 channels (with stages = 'c2', position = "),
    ("an empty space", NO_SPACE, "bad.toml:space: the search space is empty"),
    ("a dimension without choices", GOOD.replace('["c4", "c5"]', "[]"), "bad.toml:space.stages: no choices"),
    ("a stage the backbone lacks", GOOD.replace('["c4", "c5"]', '["c4", "c6"]'),
     "bad.toml:space.stages: the backbone has no stage 'c6'"),
    ("a dimension both fixed and searched", GOOD.replace("ratio = 4", "ratio = 4\nposition = 'after_add'"),
     "bad.toml:fixed.position: also in [space]"),
    ("an unknown block", GOOD.replace('block = "gc"', 'block = "gcx"'), "bad.toml:fixed.block: 'gcx' is not one of"),
    ("an unknown sampler", GOOD.replace('sampler = "grid"', 'sampler = "bayes"'), "bad.toml:sampler: 'bayes'"),
    ("objectives without accuracy first", 'objectives = ["flops", "accuracy"]\n' + GOOD,
     "bad.toml:objectives: the first objective must be 'accuracy'"),
    ("an unknown objective", 'objectives = ["accuracy", "energy"]\n' + GOOD, "bad.toml:objectives: 'energy'"),
    ("a zero budget", GOOD + "[budget]\ntrials = 0\n", "bad.toml:budget.trials: must be >= 1"),
    ("an unknown budget key", GOOD + "[budget]\ntrialz = 3\n", "bad.toml:budget.trialz: unknown key"),
    ("a constraint that is not a number", GOOD + '[constraints]\nmax_flops = "lots"\n',
     "bad.toml:constraints.max_flops: expected an integer"),
    ("a width of zero", "width = 0\n" + GOOD.replace("width = 8\n", ""), "bad.toml:width: expected a positive integer"),
    ("an unknown proxy key", GOOD.replace("epochs = 1", "epochs = 1\nepochz = 2"), "bad.toml:proxy.epochz"),
    ("a bad pruning rule", GOOD + '[pruning]\nrule = "sometimes"\n', "bad.toml:pruning.rule: 'sometimes'"),
    ("pruning settings without a rule", GOOD + "[pruning]\nmargin = 4\n",
     "bad.toml:pruning: the table sets margin but names no rule"),
    ("space not a table", "space = 3\n" + NO_SPACE, "bad.toml:space: expected a table"),
    ("a bad name", GOOD.replace('name = "good"', 'name = "no spaces please"'), "bad.toml:name: expected a name"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_study_file_exits_2_naming_file_and_key(what: str, text: str, message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(StudyFileError) as raised:
        read_study_file("bad.toml")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--study", "bad.toml", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert not (tmp_path / "db.sqlite").exists()  # refused before the storage was touched


# Run in a fresh interpreter (this one has torch loaded already): the error, then whether torch was imported.
NO_TORCH_CHECK = """
import sys
from gcsearch.cli import main
try:
    main(["run", "--study", sys.argv[1], "--storage", sys.argv[2]])
except SystemExit as exc:
    print("exit", exc.code, "torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("ratio = 4", 'ratio = "four"'), "bad.toml:fixed.ratio: expected an integer, got 'four'"),
    ("[space\n", "bad.toml: malformed TOML"),
    (GOOD + "[proxy]\nepochs = 2\n", "bad.toml: malformed TOML"),  # [proxy] twice
])
def test_a_study_file_error_is_one_line_without_importing_torch(text: str, message: str, tmp_path: Path) -> None:
    """A typo in a study file must not cost a torch import (seconds) before its one-line error."""
    (tmp_path / "bad.toml").write_text(text)
    result = subprocess.run([sys.executable, "-c", NO_TORCH_CHECK, "bad.toml", f"sqlite:///{tmp_path / 'x.db'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stdout == "exit 2 torch imported: False\n", result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"error: {message}")


@pytest.mark.parametrize(("ref", "message"), [
    ("plcement", "no built-in study 'plcement'"),
    ("missing.toml", "no such file 'missing.toml'"),
])
def test_an_unknown_study_exits_2(ref: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                  monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--study", ref])
    assert exited.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err
    if ref == "plcement":
        assert "did you mean 'placement'" in err


def test_the_readme_example_study_file_is_valid() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Studies", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    study = parse_study(example, "README.md")
    assert (study.name, study.sampler, study.max_flops, study.trials) == ("mine", "grid", 50_000_000, 20)
    assert set(study.space) == {"block", "stages", "ratio"} and study.fixed == {"position": "after_1x1"}
    # none merges across ratios: gc and se at two stage sets and two ratios, plus the baseline
    assert len(study.candidates()) == 1 + 2 * 2 * 2


def test_a_grid_repeats_its_baseline_as_the_budget_says(tmp_path: Path) -> None:
    def grid(budget: str) -> list[tuple[str, int]]:
        path = tmp_path / "b.toml"
        path.write_text(f'sampler = "grid"\n[space]\nblock = ["none", "gc"]\n[budget]\n{budget}\n')
        return [(c.spec.block, r) for c, r in read_study_file(str(path)).grid()]

    assert grid("") == [("none", 0), ("none", 1), ("none", 2), ("gc", 0)]
    assert grid("baseline_repeats = 1") == [("none", 0), ("gc", 0)]
    assert grid("repeats = 4\nbaseline_repeats = 2") == [("none", r) for r in range(4)] + [("gc", r) for r in range(4)]
