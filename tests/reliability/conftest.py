"""Reliability tests: faults survived and bad inputs tried.

Each test adds what it did to `reliability_helpers.FIGURES`; the totals are printed at the end of the session
(and written as JSON to $GCSEARCH_RELIABILITY_FIGURES when set), so the README's "Reliability" figures are
copied from a real run rather than written by hand.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: run_helpers

from reliability_helpers import FIGURE_NAMES, FIGURES  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread_everywhere(one_thread: None) -> None:
    """Every reliability test runs many short trials: each on one thread (tests/conftest.py says why)."""


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for key, label in FIGURE_NAMES.items():
        terminalreporter.write_line(f"{label}: {FIGURES.get(key, 0)}")
    path = os.environ.get("GCSEARCH_RELIABILITY_FIGURES")
    if path:
        Path(path).write_text(json.dumps({k: FIGURES.get(k, 0) for k in FIGURE_NAMES}, indent=2) + "\n")
