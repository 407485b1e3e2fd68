"""Progress: what a trial ended as, the front so far, the summary at the end, and the `Reporter` callbacks
that the CLI draws (a live view, or plain log lines such as `LogLines` writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from gcsearch.contract import Attr, Counts, count_trials, feasible, is_reused
from gcsearch.pareto import dominates
from gcsearch.study.spec import StudySpec
from gcsearch.training.chance import Chance
from gcsearch.units import si

if TYPE_CHECKING:
    from gcsearch.run.setup import Run


@dataclass
class TrialOutcome:
    """What one trial ended as, for progress output."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, REUSED (repeats another trial's result), LOST (taken over by another worker)
    label: str = "?"
    repeat: int = 0
    accuracy: float | None = None
    flops: int | None = None
    params: int | None = None
    seconds: float = 0.0
    reason: str | None = None
    reused_from: int | None = None
    overhead_s: float = 0.0  # measure + storage + bookkeeping: the trial's time outside training
    chance: float | None = None  # the proxy's chance level in %, set when this trial's accuracy is at it


@dataclass
class Best:
    """A candidate on the front so far: accuracy averaged over its repeats."""

    label: str
    key: str
    accuracy: float
    flops: int | None
    params: int | None
    trials: int


@dataclass
class Summary:
    """The state of a study at the end of a run (also what `--json` prints)."""

    study: str
    storage: str
    target: int
    counts: Counts
    seconds: float
    trained: int  # trials this run trained (all workers)
    best: list[Best] = field(default_factory=list)
    exhausted: bool = False  # a grid with nothing left to run, or a space whose every point has a result
    failures: list[str] = field(default_factory=list)
    chance: Chance | None = None  # the proxy's chance level
    at_chance: int = 0  # complete trials (not reused) whose accuracy is at chance level
    scored: int = 0  # complete trials (not reused) with an accuracy

    def chance_line(self) -> str | None:
        """Said when trials are at chance level: their results cannot be told from guessing."""
        if not self.at_chance or self.chance is None:
            return None
        if self.at_chance == self.scored:
            return (f"every trial is at chance level ({self.chance.level:.4g}% for {self.chance.classes} classes, "
                    f"at most {self.chance.ceiling:.2f}% on {self.chance.val_size:,} images): the proxy learned "
                    "nothing, so this front means nothing; train longer, or on more or larger images")
        return (f"{self.at_chance} of {self.scored} trials at chance level ({self.chance.level:.4g}% for "
                f"{self.chance.classes} classes, at most {self.chance.ceiling:.2f}% on {self.chance.val_size:,} "
                "images): their results cannot be told from guessing")

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "study": self.study, "storage": self.storage, "target": self.target, "finished": c.finished,
            "complete": c.complete, "pruned": c.pruned, "failed": c.failed, "reused": c.reused,
            "running": c.running, "waiting": c.waiting, "trained_this_run": self.trained,
            "seconds": round(self.seconds, 2), "target_met": c.finished >= self.target,
            "exhausted": self.exhausted, "failures": self.failures,
            "best": [b.__dict__ for b in self.best],
            "chance": self.chance.to_dict() if self.chance else None, "at_chance": self.at_chance,
        }


class Reporter:
    """Progress callbacks; the CLI draws them. Every method may be called from the worker's main thread."""

    def opened(self, run: Run, queued: int) -> None: ...
    def trial_started(self, number: int, label: str, repeat: int, epochs: int) -> None: ...
    def step(self, step: int, total: int) -> None: ...
    def epoch(self, epoch: int, accuracy: float) -> None: ...
    def trial_finished(self, outcome: TrialOutcome, counts: Counts, best: list[Best]) -> None: ...
    def waiting(self, counts: Counts, running: list[FrozenTrial], best: list[Best]) -> None: ...
    def note(self, message: str) -> None: ...

    def start_training(self, seed: int, epochs: int) -> None:
        """The paired design: this worker trains the start of `seed` (block-less, from scratch) first."""
        self.note(f"seed {seed}: training its start (the block-less network, {epochs} epochs from scratch; every "
                  "candidate of this seed fine-tunes from it)")

    def start_ready(self, seed: int, accuracy: float, seconds: float) -> None:
        self.note(f"seed {seed}: start trained, {accuracy:.2f}% in {seconds:.1f} s")


def best_candidates(trials: list[FrozenTrial], spec: StudySpec, limit: int = 5) -> list[Best]:
    """The front so far (accuracy up, every cost down), over candidates averaged across their repeats.

    Feasible COMPLETE trials only; reused trials repeat another trial's result and are left out.
    """
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if (t.state == TrialState.COMPLETE and not is_reused(t) and t.values is not None
                and feasible(t.constraints) and isinstance(t.user_attrs.get(Attr.KEY), str)):
            groups.setdefault(t.user_attrs[Attr.KEY], []).append(t)
    rows = []
    for key, members in groups.items():
        first = members[0]
        accuracy = sum(m.values[0] for m in members) / len(members)
        costs = tuple(float(v) for v in first.values[1:])
        rows.append((accuracy, costs, Best(label=str(first.user_attrs.get(Attr.LABEL, key)), key=key,
                                          accuracy=accuracy, flops=first.user_attrs.get(Attr.FLOPS),
                                          params=first.user_attrs.get(Attr.PARAMS), trials=len(members))))

    losses = [(-accuracy, *costs) for accuracy, costs, _ in rows]
    front = [r for r, loss in zip(rows, losses, strict=True) if not any(dominates(o, loss) for o in losses)]
    front.sort(key=lambda r: -r[0])
    return [b for _, _, b in front[:limit]]


def outcome_of(trial: FrozenTrial) -> TrialOutcome:
    """A stored trial as an outcome line."""
    attrs = trial.user_attrs
    state = "REUSED" if is_reused(trial) else trial.state.name
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else 0.0
    return TrialOutcome(number=trial.number, state=state, label=str(attrs.get(Attr.LABEL, "?")),
                        repeat=int(attrs.get(Attr.REPEAT, 0)), accuracy=attrs.get(Attr.ACCURACY),
                        flops=attrs.get(Attr.FLOPS), params=attrs.get(Attr.PARAMS), seconds=seconds,
                        reused_from=attrs.get(Attr.REUSED_FROM),
                        reason=attrs.get(Attr.FAIL_REASON) or attrs.get(Attr.PRUNE_REASON))


class LogLines(Reporter):
    """One line per event, for logs and `--quiet`."""

    def __init__(self, prefix: str = "", write: Callable[[str], None] | None = None) -> None:
        self.prefix = prefix
        self._write = write or (lambda line: print(line, flush=True))

    def write(self, line: str) -> None:
        self._write(f"{time.strftime('%H:%M:%S')} {self.prefix}{line}")

    def opened(self, run: Run, queued: int) -> None:
        counts = count_trials(run.study.get_trials(deepcopy=False))
        self.write(f"study {run.spec.name} in {run.where}: {counts.finished}/{run.target} finished, "
                   f"sampler {run.spec.sampler}, {run.spec.size} points, device {run.device_name}"
                   + (f", {queued} queued now" if queued else ""))

    def trial_finished(self, outcome: TrialOutcome, counts: Counts, best: list[Best]) -> None:
        self.write(f"trial {outcome.number} {format_outcome(outcome)} [{counts.finished} finished]")

    def note(self, message: str) -> None:
        self.write(message)


def format_outcome(o: TrialOutcome) -> str:
    """`gc r16 @ c3+c4+c5 after_1x1 all (repeat 0): 41.25% 1.23M FLOPs in 9.8 s`."""
    what = f"{o.label} (repeat {o.repeat})"
    if o.state == "COMPLETE":
        chance = f" (at chance level, {o.chance:.4g}%)" if o.chance is not None else ""
        return f"{what}: {o.accuracy:.2f}%{chance}, {format_count(o.flops)} FLOPs, {o.seconds:.1f} s"
    if o.state == "REUSED":
        return f"{what}: reused trial {o.reused_from}'s result"
    if o.state == "PRUNED":
        return f"{what}: pruned, {o.reason}"
    if o.state == "LOST":
        return f"{what}: not stored, {o.reason}"
    return f"{what}: FAILED, {o.reason}"


def format_count(value: float | None) -> str:
    """2.26M, 177.28k, 950; "-" for no value."""
    return "-" if value is None else si(value)
