"""What the commands that train show: on a terminal the live view (forced here, so it runs in the suite), else
log lines that are never wrapped, whatever the terminal's width."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from run_helpers import write_grid

from gcsearch.commands import view as view_module
from gcsearch.commands.view import LiveView, choose_view
from gcsearch.run.progress import LogLines
from gcsearch.run.setup import RunOptions, prepare
from gcsearch.run.worker import work

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path: Path) -> object:
    study = write_grid(tmp_path / "v.toml", "a-study-name-long-enough-to-wrap-an-eighty-column-line-" + "x" * 30)
    run, _ = prepare(RunOptions(study=str(study), storage=f"sqlite:///{tmp_path / 'v.db'}", trials=2, device="cpu"))
    return run


def test_the_live_view_runs_on_a_terminal(tmp_path: Path) -> None:
    run = _run(tmp_path)
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=True, width=80, color_system=None)
    view = choose_view(out, run, quiet=False)
    assert isinstance(view, LiveView)
    view.opened(run, 0)
    with view_module.showing(view):
        assert view.live.is_started
        trained = work(run, view)
    assert not view.live.is_started and trained == 2
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert "trial 0 " in text and "trial 1 " in text and "sampler grid" in text
    assert view.best and view.best[0].trials >= 1  # the front so far, drawn under the bars


def test_quiet_log_lines_are_never_wrapped(tmp_path: Path) -> None:
    run = _run(tmp_path)
    buffer = io.StringIO()
    out = Console(file=buffer, width=80, color_system=None)
    view = choose_view(out, run, quiet=True)
    assert isinstance(view, LogLines)
    view.opened(run, 0)
    work(run, view)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3 and all(re.match(r"\d\d:\d\d:\d\d (study|trial) ", line) for line in lines)
    assert max(len(line) for line in lines) > 80
