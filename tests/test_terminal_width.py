"""Every view on a terminal of 80 and of 120 columns: no line wider than the terminal, no value cut to
"synthet…", and at 80 columns the report still shows rank, candidate, accuracy with its interval and verdict,
and the cost. Each view runs as `python -m gcsearch` in a child process that believes it writes to a terminal
(rich's TTY_COMPATIBLE), as a user's shell would run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_study import build_hand_study

COMPAT = Path(__file__).resolve().parent / "fixtures" / "compat" / "compat.db"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("width")
    build_hand_study(folder / "hand.db")
    shutil.copy(COMPAT, folder / "compat.db")
    return folder


def on_terminal(folder: Path, columns: int, *args: str) -> list[str]:
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TTY_COMPATIBLE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("NO_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "gcsearch", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return ANSI.sub("", done.stdout).splitlines()


def table_titles(lines: list[str], first: str) -> list[str]:
    """The column titles of the table whose header line starts with `first`."""
    header = next(line for line in lines if line.split() and line.split()[0] == first)
    return re.split(r" {2,}", header.strip())


VIEWS = {
    "report front": ("report", "--storage", "compat.db"),
    "report all": ("report", "--storage", "hand.db", "--all"),
    "report ablation": ("report", "--storage", "hand.db"),
    "studies": ("studies", "--storage", "hand.db"),
    "inspect": ("inspect", "--backbone", "resnet50", "--block", "gc", "--stages", "c2-c5"),
    "show": ("show", "1", "--storage", "hand.db"),
}


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("view", list(VIEWS))
def test_no_line_is_wider_than_the_terminal_and_no_value_is_cut(dbs: Path, view: str, columns: int) -> None:
    lines = on_terminal(dbs, columns, *VIEWS[view])
    too_wide = [line for line in lines if len(line.rstrip()) > columns]
    assert not too_wide, "\n".join(too_wide)
    assert not any("…" in line for line in lines), "\n".join(lines)


def test_the_report_at_80_columns_keeps_what_decides(dbs: Path) -> None:
    lines = on_terminal(dbs, 80, "report", "--storage", "hand.db", "--all")
    assert table_titles(lines, "#") == ["#", "candidate", "accuracy % (n)", "GFLOPs", "Δacc ±95%", "verdict"]
    row = next(line for line in lines if "gc r16 c3 1x1 all" in line)
    assert row.split() == ["1", "gc", "r16", "c3", "1x1", "all", "75.00±1.00", "(3)", "2.000", "+5.00", "±4.97",
                           "within"]
    assert lines[-2:] == ["(narrowed for the terminal: hidden Δparams, params M, trials, ΔFLOPs, front; ",
                          "Δacc ±95%: the delta ± half its 95% interval; -f csv has every column)"]


def test_the_report_at_120_columns_shows_more(dbs: Path) -> None:
    lines = on_terminal(dbs, 120, "report", "--storage", "hand.db", "--all")
    assert table_titles(lines, "rank") == ["rank", "front", "candidate", "accuracy % (n)", "GFLOPs",
                                           "Δacc pts [95%]", "verdict", "ΔFLOPs"]
    row = next(line for line in lines if "gc r16 c3 1x1 all" in line)
    assert "75.00 ± 1.00 (3)" in row and "+5.00 [+0.03, +9.97]" in row and "within noise" in row


def test_studies_leaves_a_column_out_rather_than_cutting_values(dbs: Path) -> None:
    narrow = on_terminal(dbs, 80, "studies", "--storage", "compat.db")
    assert table_titles(narrow, "study") == ["study", "complete", "pruned", "failed", "running", "dataset",
                                             "last update"]
    assert narrow[-1] == "(narrowed for the terminal: hidden objectives; --json has every field)"
    wide = on_terminal(dbs, 120, "studies", "--storage", "compat.db")
    assert "objectives" in table_titles(wide, "study")
    assert re.search(r"compat +2 +0 +0 +0 +synthetic +accuracy,flops +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", wide[3])
