"""The options several commands share are declared once (commands/options.py) and mean the same everywhere:
a reading command's --study takes the study file a run was given, and uses the name in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import cli_output, run_cli, write_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reading_commands_accept_the_study_file_that_run_was_given(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = write_grid(tmp_path / "mine.toml", "named-inside")  # the file's name is not the study's
    assert run_cli("--study", "mine.toml", "--storage", "s.db", "--trials", "1", "--quiet") == 0
    other = write_grid(tmp_path / "other.toml", "other")
    assert run_cli("--study", str(other), "--storage", "s.db", "--trials", "1", "--quiet") == 0
    code, out, err = cli_output("report", "--study", "mine.toml", "--storage", "s.db", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["study"]["study"] == "named-inside"
    code, out, err = cli_output("show", "0", "--study", str(study), "--storage", "s.db", "--json")
    assert code == 0 and json.loads(out)["study"] == "named-inside", err
    code, _, err = cli_output("report", "--study", "missing.toml", "--storage", "s.db")
    assert code == 2 and err.strip() == "error: --study: no such file 'missing.toml'"
