"""Bad storage: a read-only folder, a full disk, a corrupt or non-Optuna file, a URL with a typo.

Each gets one clear line and exit code 1 (the work could not be done) or 2 (the user named something
wrong), and an existing file is never overwritten or truncated: its bytes are compared before and after.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState
from reliability_helpers import FIGURES, by_state, finished, grid_size, lost, start, trials_of, write_grid
from run_helpers import on_cpu, run_cli

from gcsearch.cli import main

PASSWORD = "s3cret"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and PASSWORD not in err
    return lines[0]


def _cli(*args: str) -> int:
    try:
        main(on_cpu(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return write_grid(tmp_path / "s.toml", "faults", stage_sets=2, positions=2)


@pytest.fixture
def optuna_db(tmp_path: Path, study: Path) -> Path:
    """A study database with two finished trials, made by `gcsearch run`, in its own folder."""
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "g.db"
    assert run_cli("--study", str(study), "--storage", f"sqlite:///{path}", "--quiet", "--trials", "2") == 0
    return path


@pytest.mark.parametrize("kind", ["corrupt", "not optuna"])
def test_a_file_that_is_not_an_optuna_database_is_refused_and_left_as_it_is(
        kind: str, tmp_path: Path, study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.db"
    if kind == "corrupt":
        path.write_bytes(os.urandom(64 * 1024))
    else:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
            conn.commit()
    digest, files = _digest(path), sorted(os.listdir(tmp_path))
    for command in (["run", "--study", str(study)], ["report"], ["studies"]):
        code = _cli(*command, "--storage", f"sqlite:///{path}")
        line = _one_error_line(capsys.readouterr().err)
        assert code == 2, line
        assert ("not a SQLite database" if kind == "corrupt" else "not an Optuna" if command[0] != "run"
                else "not an Optuna one (its tables: invoices)") in line
        assert _digest(path) == digest and sorted(os.listdir(tmp_path)) == files  # not even a -wal file
        FIGURES["storage_faults"] += 1


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite:/gcsearch.db", "is not a database URL"),
    ("sqlite:gcsearch.db", "is not a database URL"),
    ("", "is not a database URL"),
    ("sqllite:///gcsearch.db", "unknown database kind 'sqllite'"),
    (f"postgres://me:{PASSWORD}@db.example/gc", "unknown database kind 'postgres'"),
    (f"postgresql+psycopg2://me:{PASSWORD}@db.example/gc", "driver for 'postgresql+psycopg2' is not installed"),
    (f"mysql://me:{PASSWORD}@db.example/gc", "driver for 'mysql' is not installed"),
    ("sqlite:///no/such/folder/gcsearch.db", "no/such/folder' for sqlite:///no/such/folder/gcsearch.db does not exist"),
])
def test_a_storage_url_with_a_typo_is_one_line_and_creates_nothing(
        url: str, message: str, tmp_path: Path, study: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert _cli("run", "--study", str(study), "--storage", url, "--quiet") == 2
    assert message in _one_error_line(capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == files
    FIGURES["storage_faults"] += 1


@pytest.mark.parametrize("url", [f"postgresql+psycopg://me:{PASSWORD}@127.0.0.1:1/gc", f"postgresql://me:{PASSWORD}@127.0.0.1:1/gc"])
def test_an_unreachable_server_is_exit_1_without_the_password(url: str, study: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["run", "--study", str(study)], ["report"], ["studies"]):
        code = _cli(*command, "--storage", url)
        line = _one_error_line(capsys.readouterr().err)
        assert code in (1, 2) and ("me:***@127.0.0.1:1" in line or "not installed" in line), line
    FIGURES["storage_faults"] += 1


# -- read-only folders and full disks: real mounts where this process may make them ---------------------------


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make `folder` read-only: a read-only bind mount for root (permissions do not stop root), else chmod."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root without the right to mount, so no read-only folder here: {done.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True, capture_output=True)  # open handles: detach now


@contextlib.contextmanager
def _small_disk(folder: Path, size_kb: int) -> Iterator[None]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True, capture_output=True)  # open handles: detach now


def _fill(folder: Path, leave_kb: int) -> Path:
    st = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_kb * 1024))
    return filler


def test_a_read_only_folder_is_one_line_and_the_database_is_untouched(
        optuna_db: Path, study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest, files = _digest(optuna_db), sorted(os.listdir(optuna_db.parent))
    with _read_only(optuna_db.parent):
        for name in ("g.db", "new.db"):  # the study's database, and a new one
            code = _cli("run", "--study", str(study), "--storage", f"sqlite:///{optuna_db.parent / name}", "--quiet")
            line = _one_error_line(capsys.readouterr().err)
            assert code == 1 and "read-only" in line, line
        # The report still reads it (a read-only folder is a normal place for a copy of a database).
        assert _cli("report", "--storage", str(optuna_db), "--all", "-f", "csv") == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 2
    assert _digest(optuna_db) == digest and sorted(os.listdir(optuna_db.parent)) == files
    FIGURES["storage_faults"] += 2


def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = write_grid(tmp_path / "big.toml", "faults")  # 43 points: more than the disk will take
    made = tmp_path / "made.db"
    assert run_cli("--study", str(study), "--storage", f"sqlite:///{made}", "--quiet", "--trials", "2") == 0
    with contextlib.closing(sqlite3.connect(made)) as conn:  # the WAL into the file, so a copy holds it all
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    disk = tmp_path / "disk"
    with _small_disk(disk, 2048):
        db = disk / "g.db"
        db.write_bytes(made.read_bytes())
        url = f"sqlite:///{db}"
        before = finished(f"sqlite:///{made}", "faults")  # the same trials; no reader left open on the disk
        # 1. Full before the run starts: refused at once, the file untouched.
        filler = _fill(disk, 0)
        digest = _digest(db)
        #    Each run in a process of its own, as in real life: its exit closes what the failed writes left open.
        proc = start("run", "--study", str(study), "--storage", url, "--quiet", cwd=tmp_path)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "no space left on the device" in errors[0], output
        assert _digest(db) == digest
        # 2. Room for a few trials: the disk fills in the middle of the study.
        filler.unlink()
        filler = _fill(disk, 480)
        proc = start("run", "--study", str(study), "--storage", url, "--quiet", "--heartbeat", "1", cwd=tmp_path)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 1, output
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert "Traceback" not in output and len(errors) == 1 and "database or disk is full" in errors[0], output
        assert re.search(r"trial \d+ .* \[\d+ finished\]", output), output  # it ran trials before the disk filled
        # 3. Space again (even reading a WAL database needs a little): nothing finished is lost, and the same
        #    command completes the study.
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True, capture_output=True)
        assert lost(before, finished(url, "faults")) == []
        code = _cli("run", "--study", str(study), "--storage", url, "--quiet", "--heartbeat", "1")
        assert code == 0, capsys.readouterr().err
        capsys.readouterr()
        trials = trials_of(url, "faults")
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == grid_size() == len({t.user_attrs["key"] for t in complete}), by_state(trials)
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        missing = lost(before, finished(url, "faults"))
        FIGURES["lost"] += len(missing)
        assert missing == []
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    FIGURES["storage_faults"] += 2
