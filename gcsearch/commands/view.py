"""What the commands that train show while they work: the live view on a terminal, plain log lines otherwise
(`--quiet`, a pipe, a log file); `choose_view` picks one, for `run` and `check` alike. Log lines are never
wrapped: one event, one line, whatever the terminal's width."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from optuna.trial import FrozenTrial
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from gcsearch.contract import Attr, Counts, count_trials
from gcsearch.run.progress import Best, LogLines, Reporter, TrialOutcome, format_count, format_outcome
from gcsearch.run.setup import Run


@contextlib.contextmanager
def showing(view: Reporter) -> Iterator[None]:
    """The live view drawn while the body runs (and cleared however it ends); log lines need nothing."""
    if not isinstance(view, LiveView):
        yield
        return
    view.start()
    try:
        yield
    finally:
        view.stop()


def choose_view(out: Console, run: Run, quiet: bool) -> Reporter:
    """The live view on a terminal unless `quiet`; else one log line per event, never wrapped."""
    if quiet or not out.is_terminal:
        return LogLines(write=lambda line: out.print(line, highlight=False, markup=False, soft_wrap=True,
                                                     overflow="ignore", crop=False))
    return LiveView(out, run)


def best_table(best: list[Best], title: str = "best so far (the front: accuracy up, cost down)") -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False)
    table.add_column("candidate")
    table.add_column("accuracy", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("params", justify="right")
    table.add_column("trials", justify="right")
    for b in best:
        table.add_row(b.label, f"{b.accuracy:.2f}%", format_count(b.flops), format_count(b.params), str(b.trials))
    return table


class LiveView(Reporter):
    """A bar for the study's trials, one for the running trial's steps, and the best candidates so far."""

    def __init__(self, out: Console, run: Run) -> None:
        self.out = out
        self.run = run
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(), console=out)
        self.trials_task = self.progress.add_task("trials", total=run.target)
        self.trial_task = self.progress.add_task("", total=1, visible=False)
        self.lines: list[str] = []
        self.running: list[str] = []
        self.best: list[Best] = []
        self.live = Live(Group(self.progress), console=out, refresh_per_second=4, transient=True,
                         redirect_stdout=False, redirect_stderr=False, get_renderable=self._render)
        self._epoch_text = ""

    def _render(self) -> Group:
        parts: list = [self.progress]
        parts += [Text(line, style="dim") for line in self.running]
        if self.best:
            parts.append(best_table(self.best))
        return Group(*parts)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        if self.live.is_started:
            self.live.stop()

    def _counts(self, counts: Counts) -> None:
        self.progress.update(self.trials_task, completed=min(counts.finished, self.run.target),
                             description=f"trials ({counts.failed} failed)" if counts.failed else "trials")

    def opened(self, run: Run, queued: int) -> None:
        counts = count_trials(run.study.get_trials(deepcopy=False))
        self.out.print(f"[bold]{run.spec.name}[/] in {run.where}: sampler {run.spec.sampler}, {run.spec.size} "
                       f"points, target {run.target} finished trials ({counts.finished} already), device "
                       f"{run.device_name}", highlight=False)
        self._counts(counts)

    def trial_started(self, number: int, label: str, repeat: int, epochs: int) -> None:
        self._epoch_text = f"trial {number}: {label} (repeat {repeat})"
        self.progress.reset(self.trial_task, total=1, completed=0, visible=True, description=self._epoch_text)

    def step(self, step: int, total: int) -> None:
        self.progress.update(self.trial_task, total=total, completed=step)

    def epoch(self, epoch: int, accuracy: float) -> None:
        self.progress.update(self.trial_task, description=f"{self._epoch_text} epoch {epoch}: {accuracy:.1f}%")

    def trial_finished(self, outcome: TrialOutcome, counts: Counts, best: list[Best]) -> None:
        self.progress.update(self.trial_task, visible=False)
        self.progress.console.print(f"trial {outcome.number} {format_outcome(outcome)}", highlight=False,
                                    markup=False)
        self._counts(counts)
        self.best = best

    def waiting(self, counts: Counts, running: list[FrozenTrial], best: list[Best]) -> None:
        epochs = self.run.spec.proxy.epochs
        self.running = [f"  running: trial {t.number} {t.user_attrs.get(Attr.LABEL, '')} "
                        f"(epoch {len(t.user_attrs.get(Attr.ACCURACIES) or ())}/{epochs})" for t in running]
        self._counts(counts)
        self.best = best

    def note(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)


def local_time(stamp: dt.datetime | None) -> str:
    """A stored time in this machine's zone, to the second."""
    return stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"
