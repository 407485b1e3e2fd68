"""`gcsearch check`: the candidates it chooses, the studies it derives, and its figures end to end on a tiny proxy."""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console
from run_helpers import cli_output, load

from gcsearch.commands.check import print_check
from gcsearch.report import noise
from gcsearch.report.check_figures import CheckRow, figures
from gcsearch.study.check_plan import plan_check, spanning_candidates, spec_distance, study_repeats
from gcsearch.study.parse import parse_study

# Two dimensions, four candidates; the baseline is the grid's fifth point. A trial takes well under a second.
TINY = """
name = "tiny"
backbone = "proxy"
width = 4
sampler = "grid"
seed = 0

[space]
stages = ["c4", "c5"]
position = ["after_1x1", "after_add"]

[fixed]
block = "gc"
ratio = 4

[proxy]
dataset = "synthetic"
image_size = 8
train_size = 128
val_size = 64
epochs = 1
batch_size = 32
"""

# gc, se and snl at c4 and c5. From the baseline (every field None but the backbone's): gc and se differ in
# 10 fields, snl in 7 (it has no ratio, norm or act). gc c4 comes first of the farthest; then snl c5 (6 fields
# from gc c4, 7 from the baseline), then se c5 (5 from gc c4), then a four-way tie at 1 field that the first in
# the space's order, gc c5, wins.
BLOCKS = """
name = "blocks"
backbone = "proxy"
width = 4
sampler = "{sampler}"

[space]
block = ["gc", "se", "snl"]
stages = ["c4", "c5"]

[fixed]
ratio = 4

[constraints]
max_flops = 1

[pruning]
rule = "none"
"""


def blocks(sampler: str = "grid"):
    return parse_study(BLOCKS.format(sampler=sampler))


def labels(candidates) -> list[str]:
    return [c.label for c in candidates]


def test_the_first_candidate_is_the_farthest_from_the_baseline_and_each_next_the_farthest_from_those_chosen():
    study = blocks()
    assert [spec_distance(study.baseline, c.spec) for c in study.candidates()[1:]] == [10, 10, 10, 10, 7, 7]
    assert labels(spanning_candidates(study, 4)) == [
        "gc r4 @ c4 after_1x1 all", "snl @ c5 after_1x1 all", "se r4 @ c5 after_1x1 all", "gc r4 @ c5 after_1x1 all"]


def test_fewer_candidates_are_the_first_of_more_and_a_small_space_gives_all_it_has():
    study = blocks()
    assert labels(spanning_candidates(study, 2)) == labels(spanning_candidates(study, 4))[:2]
    everything = spanning_candidates(study, 100)
    assert len(everything) == 6 and study.baseline.key not in {c.key for c in everything}


def test_the_check_is_a_grid_of_the_baseline_and_the_chosen_candidates_with_every_seed():
    plan = plan_check(blocks("tpe"), candidates=3, seeds=4, longer=2.5)
    check = plan.proxy
    assert check.name == "blocks-check" and check.sampler == "grid" and check.repeats == 4
    assert labels(check.candidates()) == ["none (baseline)", *labels(spanning_candidates(blocks("tpe"), 3))]
    assert check.size == 4 * 4 and [r for c, r in check.grid() if not c.spec.has_blocks] == [0, 1, 2, 3]
    # Every candidate trains to the end: no constraint prunes it, no rule stops it early.
    assert (check.max_flops, check.max_params, check.pruning, check.trials) == (None, None, None, None)
    longer = plan.longer
    assert longer.name == "blocks-check-longer" and longer.size == 4 and longer.proxy.epochs == 8  # ceil(3 x 2.5)
    assert check.proxy.epochs == 3 and longer.seed == check.seed == 0


def test_the_study_design_is_its_repeats_against_its_baseline_repeats():
    assert study_repeats(blocks()) == (1, 3)  # a grid repeats its baseline 3 times by default
    assert study_repeats(blocks("tpe")) == (1, 1)  # a sampled study trains no separate baseline


@pytest.mark.parametrize("option, value, message", [
    ("candidates", 0, "--candidates: expected a positive number"),
    ("seeds", 1, "--seeds: the noise between seeds needs at least 2 seeds"),
    ("longer", 1.0, "--longer: expected a factor above 1"),
])
def test_options_out_of_range_are_refused_by_name(option: str, value: float, message: str) -> None:
    with pytest.raises(Exception, match=message):
        plan_check(blocks(), **{option: value})


def rows_of(groups: list[list[float]]) -> list[CheckRow]:
    return [CheckRow(key=str(i), label=str(i), candidate=str(i), baseline=i == 0, accuracies=g)
            for i, g in enumerate(groups)]


def test_candidates_far_apart_get_the_verdict_that_the_proxy_ranks_above_its_noise() -> None:
    groups = [[50.0, 50.5, 49.5], [55.0, 55.4, 54.6], [60.0, 60.6, 59.4]]
    result = figures(rows_of(groups), plan_check(blocks(), candidates=2, seeds=3))
    assert result.icc == pytest.approx(noise.icc(groups)) and result.icc > 0.98
    assert result.spread == pytest.approx(5.0)
    assert result.verdict().startswith(f"the proxy ranks above its noise (ICC {result.icc:.2f} >= 0.7)")


def test_candidates_within_their_seeds_get_the_repeats_that_would_separate_them() -> None:
    groups = [[50.0, 52.0, 48.0], [50.5, 52.5, 48.5], [51.0, 49.0, 53.0]]
    result = figures(rows_of(groups), plan_check(blocks(), candidates=2, seeds=3))
    pooled = noise.pooled_noise(groups)
    assert result.noise == pooled and result.icc < 0.7
    # The grid compares its 6 candidates with 1 seed each against a baseline of 3.
    assert result.detectable == pytest.approx(noise.detectable_difference(pooled, 1, 3))
    needed = noise.repeats_needed(result.spread, pooled.std, candidates=6)
    assert result.repeats_needed == needed and needed > 1
    # Every candidate lies within 1 point of the baseline, less than the study's seeds find: the verdict says so
    # before what ranking them would take.
    assert result.largest_delta == pytest.approx(1.0) and result.detectable > 1.0
    assert result.verdict() == (f"seeds decide this ranking (ICC {result.icc:.2f} < 0.7); the candidates lie within "
                                f"1.00 pts of the baseline, under the {result.detectable:.2f} pts the study's seeds "
                                f"find at 80% power (expect within noise); to rank them, raise [budget] repeats to "
                                f"{needed}, or make the proxy more stable")


def test_the_printed_verdict_keeps_the_budget_table_name() -> None:
    groups = [[50.0, 52.0, 48.0], [50.5, 52.5, 48.5], [51.0, 49.0, 53.0]]
    plan = plan_check(blocks(), candidates=2, seeds=3)
    result = figures(rows_of(groups), plan)
    out = Console(file=io.StringIO(), width=400, color_system=None)  # the verdict on one line
    print_check(out, [result], plan)
    assert f"verdict: {result.verdict()}" in out.file.getvalue() and "[budget] repeats" in result.verdict()


# --- end to end ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One check of the tiny study, both protocols: the baseline and 3 candidates, 2 seeds each, then the same
    again."""
    root = tmp_path_factory.mktemp("check")
    path = root / "tiny.toml"
    path.write_text(TINY)
    db = f"sqlite:///{root / 'check.db'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ("check", "--study", str(path), "--storage", db, "--device", "cpu", "--candidates", "3",
                "--seeds", "2", "--json")
        first = cli_output(*args)
        trials_after_first = load(db, "tiny-check").get_trials()
        again = cli_output(*args)
    finally:
        torch.set_num_threads(threads)
    return {"path": path, "db": db, "args": args, "first": first, "again": again, "trials": trials_after_first}


def accuracies_by_key(db: str, name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for t in load(db, name).get_trials():
        assert t.state == TrialState.COMPLETE
        out.setdefault(t.user_attrs["key"], []).append(t.values[0])
    return out


def test_the_check_stores_the_baseline_and_each_candidate_with_every_seed(checked: dict) -> None:
    code, out, err = checked["first"]
    assert code == 0, err
    result = json.loads(out)  # stdout is the JSON object alone; progress went to stderr
    assert "tiny-check " in err and "tiny-check-paired " in err
    assert result["trained_this_run"] == 16  # 8 from scratch, 8 fine-tunes (the 2 starts are not trials)
    for name in ("tiny-check", "tiny-check-paired"):
        stored = accuracies_by_key(checked["db"], name)
        assert [c["key"] for c in result["candidates"]] == list(stored)  # the baseline first, then as chosen
        assert [len(v) for v in stored.values()] == [2, 2, 2, 2]
    assert result["candidates"][0]["candidate"] == "baseline" and result["candidates"][0]["baseline"] is True
    seeds = sorted((t.user_attrs["key"], t.user_attrs["seed"]) for t in checked["trials"])
    assert {s for _, s in seeds} == {0, 1}  # the study's seed + the repeat index


def test_the_figures_are_those_of_the_stored_accuracies(checked: dict) -> None:
    result = json.loads(checked["first"][1])
    groups = list(accuracies_by_key(checked["db"], "tiny-check").values())
    pooled = noise.pooled_noise(groups)
    assert result["icc"] == pytest.approx(noise.icc(groups))
    assert (result["pooled_std"], result["pooled_df"]) == (pytest.approx(pooled.std), 4)
    for row, accuracies in zip(result["candidates"], groups, strict=True):
        assert row["accuracies"] == pytest.approx(accuracies)
        assert (row["mean"], row["std"]) == (pytest.approx(statistics.fmean(accuracies)),
                                             pytest.approx(statistics.stdev(accuracies)))
    assert result["spread"] == pytest.approx(statistics.stdev(statistics.fmean(g) for g in groups))
    assert (result["study_repeats"], result["study_baseline_repeats"]) == (1, 3)
    assert result["detectable_difference"] == pytest.approx(noise.detectable_difference(pooled, 1, 3))
    assert result["difference"] == result["spread"] and result["difference_from"] == "spread"
    assert result["spearman"] is result["kendall"] is result["longer_study"] is None
    assert result["verdict"].startswith(("seeds decide this ranking", "the proxy ranks above its noise"))


def by_seed(db: str, name: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for t in load(db, name).get_trials():
        out.setdefault(t.user_attrs["key"], {})[t.user_attrs["seed"]] = t.values[0]
    return out


def test_the_paired_protocol_fine_tunes_from_one_shared_start_per_seed(checked: dict) -> None:
    result = json.loads(checked["first"][1])
    assert list(result["protocols"]) == ["scratch", "paired"] and result["protocol"] == "both"
    assert result["protocols"]["scratch"]["pooled_std"] == result["pooled_std"]  # the top level is scratch's
    starts = load(checked["db"], "gcsearch-starts").get_trials()
    assert sorted(t.user_attrs["seed"] for t in starts) == [0, 1]  # one start per seed, shared by every candidate
    fine_tunes = load(checked["db"], "tiny-check-paired").get_trials()
    assert {t.user_attrs["start"]["trial"] for t in fine_tunes if t.user_attrs["seed"] == 0} == \
        {next(s.number for s in starts if s.user_attrs["seed"] == 0)}
    paired = result["protocols"]["paired"]
    table = by_seed(checked["db"], "tiny-check-paired")
    control, *others = table.values()
    pooled = noise.paired_noise(others, control)
    assert (paired["noise_std"], paired["noise_df"]) == (pytest.approx(pooled.std), pooled.df) and pooled.df == 3
    assert paired["paired_icc"] == pytest.approx(noise.paired_icc([[v[s] for s in (0, 1)] for v in table.values()]))
    assert paired["icc"] == pytest.approx(noise.icc([list(v.values()) for v in table.values()]))
    for row, values in zip(paired["candidates"], table.values(), strict=True):
        differences = noise.paired_differences(values, control)
        assert row["delta"] == pytest.approx(statistics.fmean(differences))
        assert row["by_seed"] == {str(s): pytest.approx(v) for s, v in values.items()}
    assert paired["candidates"][0]["delta_std"] is None  # the control against itself
    if pooled.std:
        assert paired["detectable_difference"] == pytest.approx(noise.paired_detectable(pooled.std, pooled.df, 1))
    assert paired["verdict"].startswith(("seeds decide this ranking (paired ICC", "the proxy ranks above its noise"))


@pytest.mark.parametrize("protocol", ["scratch", "paired"])
def test_one_protocol_reads_its_own_studies_and_trains_nothing_more(checked: dict, protocol: str) -> None:
    code, out, err = cli_output(*checked["args"], "--protocol", protocol)
    assert code == 0, err
    result = json.loads(out)
    assert result["trained_this_run"] == 0 and list(result["protocols"]) == [protocol]
    assert result["protocols"][protocol]["candidates"] == json.loads(checked["first"][1])["protocols"][protocol][
        "candidates"]
    assert ("pooled_std" in result) == (protocol == "scratch")


def test_a_finished_check_trains_nothing_when_run_again(checked: dict) -> None:
    code, out, err = checked["again"]
    assert code == 0, err
    assert json.loads(out)["trained_this_run"] == 0
    after = load(checked["db"], "tiny-check").get_trials()
    assert [(t.number, t.datetime_complete) for t in after] == \
        [(t.number, t.datetime_complete) for t in checked["trials"]]
    assert json.loads(out)["candidates"] == json.loads(checked["first"][1])["candidates"]


def test_a_difference_asked_for_gets_its_repeats(checked: dict) -> None:
    code, out, err = cli_output(*checked["args"], "--difference", "5")
    assert code == 0, err
    result = json.loads(out)
    needed = noise.repeats_needed(5.0, result["pooled_std"], candidates=4)
    assert (result["difference"], result["difference_from"], result["repeats_needed"]) == (5.0, "--difference", needed)


def test_a_longer_training_gives_each_protocol_its_rank_agreement(checked: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, out, err = cli_output(*checked["args"], "--longer", "2")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    result = json.loads(out)
    # The check itself was done: only the longer trainings ran, 4 from scratch (one seed each) and 8 fine-tunes
    # (the check's two seeds), from the starts the check trained: still one per seed.
    assert result["trained_this_run"] == 4 + 8
    assert sorted(t.user_attrs["seed"] for t in load(checked["db"], "gcsearch-starts").get_trials()) == [0, 1]
    longer = load(checked["db"], "tiny-check-longer").get_trials()
    assert [(t.user_attrs["repeat"], t.user_attrs["epochs"]) for t in longer] == [(0, 2)] * 4
    assert (result["longer_study"], result["longer_epochs"], result["longer_factor"]) == ("tiny-check-longer", 2, 2.0)
    by_key = {t.user_attrs["key"]: t.values[0] for t in longer}
    assert [c["longer_accuracy"] for c in result["candidates"]] == [by_key[c["key"]] for c in result["candidates"]]
    rho, tau = noise.rank_agreement([c["mean"] for c in result["candidates"]],
                                    [c["longer_accuracy"] for c in result["candidates"]])
    assert math.isfinite(rho) and math.isfinite(tau)
    assert (result["spearman"], result["kendall"]) == (pytest.approx(rho), pytest.approx(tau))
    paired = result["protocols"]["paired"]
    assert (paired["longer_study"], paired["longer_epochs"]) == ("tiny-check-paired-longer", 1.0)  # 2 x 0.5
    fine_tunes = load(checked["db"], "tiny-check-paired-longer").get_trials()
    assert sorted((t.user_attrs["key"], t.user_attrs["seed"]) for t in fine_tunes) == \
        sorted((c["key"], s) for c in result["candidates"] for s in (0, 1))
    values = {(t.user_attrs["key"], t.user_attrs["seed"]): t.values[0] for t in fine_tunes}
    control = {s: values[paired["candidates"][0]["key"], s] for s in (0, 1)}
    for row in paired["candidates"]:
        mine = {s: values[row["key"], s] for s in (0, 1)}
        assert row["longer_delta"] == pytest.approx(statistics.fmean(mine[s] - control[s] for s in (0, 1)))


def test_the_table_shows_each_candidate_each_figure_of_each_protocol_and_the_verdicts(checked: dict) -> None:
    args = [a for a in checked["args"] if a != "--json"]
    code, out, err = cli_output(*args)
    assert code == 0, err
    result = json.loads(checked["again"][1])
    for row in result["candidates"]:
        assert row["key"] in out and f"{row['mean']:.2f}" in out
    for figure in ("noise", "spread", "ICC", "paired ICC", "detectable", "repeats needed", "scratch", "paired"):
        assert figure in out
    paired = result["protocols"]["paired"]
    assert f"±{result['pooled_std']:.2f} pts" in out and f"{result['icc']:.2f}" in out
    assert f"±{paired['noise_std']:.2f} pts" in out and f"{paired['paired_icc']:.2f}" in out
    for row in paired["candidates"]:
        assert f"{row['delta']:+.2f}" in out
    words = " ".join(out.split())  # "[budget]" stays text, not markup
    assert f"verdict, scratch: {result['verdict']}" in words and f"verdict, paired: {paired['verdict']}" in words


@pytest.mark.parametrize("args", [
    ("--seeds", "1"), ("--candidates", "0"), ("--longer", "1"), ("--longer", "0.5"), ("--difference", "0"),
    ("--protocol", "both,paired"), ("--protocol", "Paired"),
])
def test_bad_options_exit_2_with_one_line_and_touch_no_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    code, out, err = cli_output("check", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {args[0]}")
    assert not (tmp_path / "x.db").exists()


def test_an_unknown_study_exits_2_with_one_line(tmp_path: Path) -> None:
    code, out, err = cli_output("check", "--study", "no-such-study", "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no built-in study 'no-such-study'" in err


def test_a_check_made_with_other_candidates_is_refused_before_it_trains(checked: dict) -> None:
    before = len(load(checked["db"], "tiny-check").get_trials())
    args = [a if a != "3" else "2" for a in checked["args"]]
    code, out, err = cli_output(*args)
    assert code == 2 and "--candidates: study 'tiny-check'" in err and "holds 3 candidates" in err
    assert len(load(checked["db"], "tiny-check").get_trials()) == before
