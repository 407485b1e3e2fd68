"""`gcsearch report`, `studies` and `show` from the command line: outputs, bad input, a live writer, speed."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from report_study import STUDY, build_hand_study

from gcsearch.cli import main
from gcsearch.report.build import read_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "hand.db"
    build_hand_study(path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_table_states_header_and_front(capsys, db):
    code, out, err = run(capsys, "report", "--storage", str(db), "--all")
    assert code == 0, err
    assert "dataset synthetic" in out and "epochs 4" in out and "device cpu" in out
    assert "trials: 9 complete, 1 pruned, 1 failed, 1 running" in out
    assert "hypervolume 10.52 %·GFLOPs; reference point (accuracy 68.4 %, flops 3.2 GFLOPs)" in out
    assert "75.00 ± 1.00 (3)" in out and "gc r16 c3 1x1 all" in out
    assert "+5.00" in out and "+100.0%" in out and "+20.0%" in out  # A against the baseline


def test_report_ablation_is_automatic(capsys, db):
    code, out, _ = run(capsys, "report", "--storage", f"sqlite:///{db}", "--study", STUDY)
    assert code == 0
    assert "Ablation by stages" in out and "baseline" in out


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown", "latex", "table"])
def test_output_file_in_every_format(capsys, db, tmp_path, fmt):
    target = tmp_path / f"report.{fmt}"
    code, out, err = run(capsys, "report", "--storage", str(db), "--all", "-f", fmt, "-o", str(target))
    assert code == 0, err
    assert f"wrote {target}" in err
    text = target.read_text()
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 6 and float(rows[2]["accuracy"]) == 75.0
    elif fmt == "json":
        assert json.loads(text)["study"]["hypervolume"] == pytest.approx(10.52)
    elif fmt == "table":
        assert "\x1b[" not in text and "Pareto" not in text and "All finished candidates" in text


def test_plot_from_the_command_line(capsys, db, tmp_path):
    code, _, err = run(capsys, "report", "--storage", str(db), "--plot", str(tmp_path / "p.png"))
    assert code == 0, err
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["report", "--format", "xml"], "error: format: unknown format 'xml'"),
    (["report", "--sort", "speed"], "error: sort: unknown column 'speed'"),
    (["report", "--by", "colour"], "error: by: unknown dimension 'colour'"),
    (["report", "--objectives", "accuracy,size"], "error: objectives: unknown objective 'size'"),
    (["report", "--top", "0"], "error: top: expected a positive number of rows"),
    (["report", "--study", "nope"], "error: study: no study named 'nope' in sqlite:///"),
    (["report", "--plot", "front.jpg"], "error: plot: front.jpg: the file name must end in .png or .svg"),
    (["show", "99"], "error: trial: study 'hand' has no trial 99 (trials 0..11)"),
])
def test_bad_input_exits_2_with_one_line(capsys, db, args, message):
    code, out, err = run(capsys, *args, "--storage", str(db))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err
    if "nope" in args:
        assert "(studies: hand)" in lines[0]


def test_ctrl_c_while_reporting_exits_130(capsys, db, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gcsearch.commands.report.read_report", interrupted)
    code, _, err = run(capsys, "report", "--storage", str(db))
    assert code == 130
    assert err.strip().splitlines()[-1] == "error: interrupted"


def test_missing_storage_is_not_created(capsys, tmp_path):
    missing = tmp_path / "missing.db"
    for command in (["report"], ["studies"], ["show", "0"]):
        code, _, err = run(capsys, *command, "--storage", f"sqlite:///{missing}")
        assert code == 2 and err.strip() == f"error: --storage: {missing}: no such file"
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_storage_with_several_studies_needs_a_name(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    optuna.create_study(storage=url, study_name="first", directions=["maximize", "minimize"])
    optuna.create_study(storage=url, study_name="second", directions=["maximize", "minimize"])
    code, _, err = run(capsys, "report", "--storage", url)
    assert code == 2 and "holds 2 studies; pick one with --study (first, second)" in err
    code, out, _ = run(capsys, "report", "--storage", url, "--study", "second")
    assert code == 0 and "study 'second' has no finished trials yet (0 trials" in out
    code, out, _ = run(capsys, "report", "--storage", url, "--study", "first", "-f", "csv")
    assert code == 0 and len(out.strip().splitlines()) == 1  # just the header line
    code, out, _ = run(capsys, "studies", "--storage", url, "--json")
    assert [s["name"] for s in json.loads(out)] == ["first", "second"]


def test_studies_lists_counts(capsys, db):
    code, out, _ = run(capsys, "studies", "--storage", str(db))
    assert code == 0 and "hand" in out and "synthetic" in out
    code, out, _ = run(capsys, "studies", "--storage", str(db), "--json")
    (study,) = json.loads(out)
    assert study["counts"] == {"complete": 9, "pruned": 1, "fail": 1, "running": 1, "waiting": 0}
    assert study["objectives"] == ["accuracy", "flops"] and study["dataset"] == "synthetic"
    assert study["last_update"] is not None


def test_show_one_trial_in_full(capsys, db):
    code, out, _ = run(capsys, "show", "8", "--storage", str(db), "--json")
    assert code == 0
    trial = json.loads(out)
    assert trial["state"] == "complete" and trial["values"] == [76.0, 2e9]
    assert trial["constraints"] == {"max_flops": -2e9} and trial["feasible"] is True
    assert trial["user_attrs"]["accuracies"] == [73.0, 75.0, 76.0] and trial["user_attrs"]["seed"] == 2
    code, out, _ = run(capsys, "show", "8", "--study", STUDY, "--storage", str(db))
    assert code == 0 and "accuracy per epoch" in out and "76.00" in out and "seed" in out
    assert "feasible: flops 2G <= 4G" in out  # Optuna stores -2e9: the cost less the limit
    code, out, _ = run(capsys, "show", "3", "--storage", str(db))
    assert "infeasible: flops 4,000,000,001 > 4,000,000,000" in out  # one FLOP over: rounded alike, so exact
    code, out, _ = run(capsys, "show", "6", "--storage", str(db))
    assert code == 0 and "fail" in out and "diverged at epoch 2" in out
    code, out, _ = run(capsys, "show", "7", "--storage", str(db))
    assert "pruned at epoch" in out and "dominated" in out


def test_help_teaches_with_examples(capsys):
    code, out, _ = run(capsys, "report", "--help")
    assert code == 0 and "Examples" in out and "--objectives" in out and "read-only" in out


WRITER = textwrap.dedent("""
    import sys, time, optuna
    sys.path.insert(0, sys.argv[3])
    from report_study import attrs, COSTS, MAX_FLOPS
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="live", storage=sys.argv[1])
    for i in range(int(sys.argv[2])):
        name = "ACDE"[i % 4]
        trial = study.ask()
        for key, value in attrs(name, 70.0 + i % 7, i).items():
            trial.set_user_attr(key, value)
        trial.set_constraint("max_flops", COSTS[name][0] - MAX_FLOPS)
        study.tell(trial, [70.0 + i % 7, COSTS[name][0]])
""")


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_reporting_while_a_worker_writes(tmp_path, journal):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'live.db'}"
    optuna.create_study(storage=url, study_name="live", directions=["maximize", "minimize"])
    conn = sqlite3.connect(tmp_path / "live.db")  # workers run SQLite in WAL mode; Optuna alone uses a rollback journal
    assert conn.execute(f"PRAGMA journal_mode={journal}").fetchone() == (journal,)
    conn.close()
    n = 24
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(n), str(Path(__file__).parent)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads, seen = 0, []
    try:
        while writer.poll() is None:
            rep = read_report(url, "live", show_all=True)
            seen.append(sum(r.n for r in rep.candidates))
            reads += 1
            time.sleep(0.02)  # a report now and then, not a busy loop that starves the writer of CPU
    finally:
        _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert "locked" not in err
    assert reads >= 3
    assert seen == sorted(seen)  # trials only ever appear, never vanish or come back half-written
    final = read_report(url, "live", show_all=True)
    assert sum(r.n for r in final.candidates) == n and final.counts["COMPLETE"] == n


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("report_speed", ROOT / "benchmarks" / "report_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_on_1000_trials_is_fast(capsys, tmp_path):
    bench = _benchmark_module()
    path = tmp_path / "big.db"
    payloads = bench.build_study(path, 1000)
    bench.check_with_optuna(path, "bench", payloads, sample=20)
    t0 = time.perf_counter()
    rep = read_report(str(path), "bench", show_all=True)
    elapsed = time.perf_counter() - t0
    assert sum(r.n for r in rep.candidates) == 1000 and len(rep.candidates) == 333
    assert elapsed < 1.0, f"{elapsed:.2f} s for 1,000 trials (goal: 10,000 in 5 s)"
    t0 = time.perf_counter()
    code, out, _ = run(capsys, "report", "--storage", str(path), "--all", "-f", "csv")
    assert code == 0 and len(out.splitlines()) == 334
    assert time.perf_counter() - t0 < 1.5
