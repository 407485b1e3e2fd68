"""A study written by an earlier release must keep its identity: reported byte for byte as that release reported
it, and resumed where it stopped.

tests/fixtures/compat/compat.db was written by gcsearch 0.1.0 at commit 47873b4 (`gcsearch run --study
compat.toml --trials 2 --device cpu`: two of the grid's three points finished, the third still queued), then
VACUUMed. expected/ holds what that release printed for it (`report` as a table, with --all, as JSON, CSV and
Markdown; `show --json` for each trial; `studies --json`), and show-2-resumed.json what it stored for the third
point once a second run finished it. Every byte printed comes from the database, so nothing is masked.
The report files were written again by the release whose reports gained seed-noise intervals and verdicts
(new columns and a noise line; every number of the old ones unchanged), and again when reports began
to say which candidates are at chance level (two header lines, JSON's `chance`; every other byte unchanged: this
study's 1-epoch proxy is at chance), and when tables began to write FLOPs in the unit their size calls for
(MFLOPs here: 0.00226 GFLOPs became 2.257 MFLOPs, the hypervolume and reference point scaled alike) and JSON's
objectives to name the unit of the rows' numbers (FLOPs) beside that of the reference point (GFLOPs); no
number's value changed; and when rows gained `near_front` (JSON and CSV; empty here, as `tied` is: this
study has no seed noise to judge by). `show` and `studies` are 0.1.0's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_helpers import cli_output, load, states

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "compat"
STORAGE = "sqlite:///compat.db"  # relative, as it was given when expected/ was written
OUTPUTS = {
    "report.txt": ("report",),
    "report-all.txt": ("report", "--all"),
    "report.json": ("report", "-f", "json"),
    "report.csv": ("report", "-f", "csv"),
    "report.md": ("report", "-f", "markdown"),
    "show-0.json": ("show", "0", "--json"),
    "show-1.json": ("show", "1", "--json"),
    "show-2.json": ("show", "2", "--json"),
    "studies.json": ("studies", "--json"),
}
# What a trial stores that does not depend on the machine it trained on (accuracy and timings do).
STABLE_ATTRS = ("spec", "key", "label", "flops", "params", "block_flops", "block_params", "seed", "repeat",
                "device", "epochs")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture (never the committed file itself) in the current directory, a 200-column terminal."""
    for name in ("compat.db", "compat.toml"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def expected(name: str) -> str:
    return (FIXTURE / "expected" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_an_old_study_is_reported_byte_for_byte_as_before(workdir: Path, name: str) -> None:
    code, out, err = cli_output(*OUTPUTS[name], "--storage", STORAGE)
    assert code == 0, err
    assert out == expected(name)


def test_an_old_study_resumes_its_queued_point_and_reports_it(workdir: Path) -> None:
    before = json.loads(expected("report.json"))
    code, out, err = cli_output("run", "--study", "compat.toml", "--storage", STORAGE, "--quiet")
    assert code == 0, err
    lines = [line.split(" ", 1)[1] for line in out.splitlines() if line[:2].isdigit()]  # without the time of day
    assert lines[0] == "study compat in sqlite:///compat.db: 2/3 finished, sampler grid, 3 points, device cpu"
    assert lines[1].startswith("trial 2 gc r8 @ c4 after_1x1 all (repeat 0): ")
    assert "compat: done, 3/3 finished (3 complete, 0 pruned, 0 failed); 1 trained in" in out

    study = load(STORAGE, "compat")
    assert states(study) == {"COMPLETE": 3}  # the queued point was run, nothing was added
    trials = study.get_trials()
    old = json.loads(expected("show-2-resumed.json"))
    assert {k: trials[2].user_attrs[k] for k in STABLE_ATTRS} == {k: old["user_attrs"][k] for k in STABLE_ATTRS}
    assert trials[2].params == old["params"] and trials[2].values[1] == old["values"][1]
    for number in (0, 1):  # the finished trials are left as they were
        code, out, _ = cli_output("show", str(number), "--json", "--storage", STORAGE)
        assert code == 0 and out == expected(f"show-{number}.json")

    code, out, err = cli_output("report", "-f", "json", "--storage", STORAGE)
    assert code == 0, err
    after = json.loads(out)
    assert after["study"]["counts"] == {"complete": 3, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}
    assert after["study"]["view"] == "ablation" and after["study"]["by"] == "ratio"
    rows = {row["key"]: row for row in after["rows"]}
    assert set(rows) == {row["key"] for row in before["rows"]} | {old["user_attrs"]["key"]}
    for row in before["rows"]:  # the old rows keep their numbers; only the ranking context changed
        kept = {k: v for k, v in rows[row["key"]].items() if k not in ("rank", "pareto", "by_ratio")}
        assert kept == {k: v for k, v in row.items() if k not in ("rank", "pareto")}
