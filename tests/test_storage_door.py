"""One rule for `--storage` in every command: a URL, or the path of a SQLite file; an error shows what was typed
(password masked); a storage that is refused is left exactly as it was, with nothing created beside it."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from run_helpers import cli_output, load, run_cli, write_grid

from gcsearch.errors import InputError
from gcsearch.storage.artifacts import default_location
from gcsearch.storage.urls import mask_url, resolve_storage

pytestmark = pytest.mark.usefixtures("one_thread")
COMPAT = Path(__file__).resolve().parent / "fixtures" / "compat"


def test_a_plain_path_is_the_sqlite_file_it_names_for_writer_reader_and_artifacts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = write_grid(tmp_path / "p.toml", "p")
    assert run_cli("--study", str(study), "--storage", "my.db", "--trials", "2", "--quiet") == 0
    assert len(load("sqlite:///my.db", "p").trials) >= 2
    assert (tmp_path / "my.artifacts").is_dir() and default_location("my.db") == Path("my.artifacts")
    for command in (["report", "-s", "p"], ["studies"], ["show", "0", "-s", "p"]):
        code, out, err = cli_output(*command, "--storage", "my.db")
        assert code == 0, err
        assert ("sqlite:///my.db" if command[0] != "show" else "trial 0 of study p") in out


@pytest.mark.parametrize("command", [["run", "--study", "placement"], ["check", "--study", "placement"],
                                     ["report"], ["studies"], ["show", "0"], ["export", "0", "-o", "m.pt"],
                                     ["analyze", "0"]])
def test_every_command_names_the_url_that_was_typed_with_its_password_masked(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli_output(*command, "--storage", "postgresql+psycopg://me:s3cret@db:port/gc")
    assert code == 2
    assert err.strip() == ("error: --storage: 'postgresql+psycopg://me:***@db:port/gc' is not a database URL "
                           "(e.g. gcsearch.db, sqlite:///gcsearch.db or postgresql+psycopg://user:password@host/dbname)")
    assert "s3cret" not in out + err and list(tmp_path.iterdir()) == []


def test_the_rule_itself() -> None:
    assert resolve_storage("runs/a.db").text == "sqlite:///runs/a.db"
    assert resolve_storage("/abs/a.db").sqlite_path == Path("/abs/a.db")
    assert resolve_storage("sqlite:///a.db").sqlite_path == Path("a.db")
    assert resolve_storage("postgresql+psycopg://u:pw@h/db").shown == "postgresql+psycopg://u:***@h/db"
    assert resolve_storage("postgresql+psycopg://u:pw@h/db").sqlite_path is None
    assert mask_url("gc.db") == "sqlite:///gc.db"
    assert mask_url("postgresql+psycopg://u:p@ss@h:x/db") == "postgresql+psycopg://u:***@h:x/db"
    for typo in ("sqlite:/a.db", "", "  "):
        with pytest.raises(InputError, match="is not a database URL"):
            resolve_storage(typo)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_database_is_bad_input_for_every_command_and_left_as_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(COMPAT / "compat.db", tmp_path / "c.db")
    with (tmp_path / "c.db").open("r+b") as fh:  # pages of the trial tables, not the schema
        fh.seek(4096 * 3)
        fh.write(b"\xff" * 4096 * 2)
    digest = _digest(tmp_path / "c.db")
    for command in (["run", "--study", str(COMPAT / "compat.toml")], ["report"], ["show", "0"]):
        code, _, err = cli_output(*command, "--storage", "c.db")
        assert code == 2, err
        assert err.strip() == "error: --storage: sqlite:///c.db is damaged (database disk image is malformed)" + (
            "; it is left as it is" if command[0] == "run" else "")
        assert _digest(tmp_path / "c.db") == digest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "c.db-shm" and p.name != "c.db-wal") == ["c.db"]


def test_a_refused_database_gets_no_side_files_and_no_artifacts_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect(tmp_path / "theirs.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    study = write_grid(tmp_path / "s.toml", "s")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli_output("run", "--study", str(study), "--storage", "theirs.db", "--quiet")
    assert code == 2 and "not an Optuna one (its tables: invoices)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no theirs.db-wal, -shm, theirs.artifacts/

    # A study refused for its changed proxy: the database stays, and no empty weights folder appears beside it.
    shutil.copy(COMPAT / "compat.db", tmp_path / "c.db")
    changed = tmp_path / "changed.toml"
    changed.write_text((COMPAT / "compat.toml").read_text().replace("epochs = 1", "epochs = 2"))
    code, _, err = cli_output("run", "--study", str(changed), "--storage", "c.db", "--quiet")
    assert code == 2 and "was run with other proxy settings (epochs: 1 stored, 2 now)" in err
    assert not (tmp_path / "c.artifacts").exists()
