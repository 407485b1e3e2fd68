"""The "front" pruning rule: can a running trial still reach the front, judging by how far trials that stood
where it stands have climbed?

After epoch e > `warmup_epochs`, once the study holds `min_trials` COMPLETE trials, the running trial is
pruned when it cannot reach the current front even if it gains as much from here as any comparable finished
trial did:

    best     = the running trial's best accuracy in epochs 1..e
    headroom = the largest gain after epoch e, final(F) - best_e(F), of the finished trials F whose best in
               epochs 1..e was at most best + `margin` (the trials that once stood where this one stands)
    pruned when a finished, feasible trial D of another candidate has final(D) >= best + headroom + margin
    and each of its cost objectives (FLOPs, params, latency: trial values) <= ours.

Costs are exact before training (`costs`, keyed by objective name), so accuracy is the only uncertain
coordinate, and the rule asks: "is some finished candidate at least as cheap as this one already more
accurate than this one could end, judging by how far trials at its level have climbed?" No finished
trial stood that low at epoch e: no evidence, no pruning. Best-so-far rather than the last epoch's
accuracy, because accuracy measured while the learning rate is high dips and recovers: a dip is not a
reason to stop. `margin` (points, default 2) is the floor for seed noise. On a single-objective study
(accuracy only) there are no costs, so D is any finished trial.

Assumptions of "front", and where it can be wrong:

1. Accuracies at the same epoch are comparable. Every trial of a study trains with the same proxy settings
   (data, epochs, batch size, learning-rate schedule: the study's proxy fingerprint), so epoch e is the same
   point of the same schedule for everyone.
2. A running trial climbs after epoch e no more than the finished trials that stood at its level did. This
   is evidence, not a bound: a candidate that learns later than any seen so far (a block that starts as
   identity, a task that "clicks" in the last epochs) can still be pruned wrongly. The headroom is measured
   on the study's own curves, so where they jump late it is large and the rule waits, and where they climb
   steadily it prunes the hopeless early. Replays over random draws of trials (BENCHMARKS.md) show that it
   can lose a front member where, as on the generated set, candidates look alike until the last epochs:
   there, raise `warmup_epochs` and `margin`.
3. Only feasible finished trials dominate (an infeasible trial can never be on the front, so losing to it
   says nothing), only COMPLETE ones (a pruned trial's curve stops early), and never a trial of the same
   candidate (user attr `key`): a repeat measures that candidate's seed noise, and pruning it would bias
   the candidate's mean. Repeats do count towards the headroom: they are curves like any other.
4. Pruning at the last epoch saves nothing and throws away a finished result, so no rule prunes there
   (the number of epochs comes from the study's proxy settings, or else the finished trials' curves).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from gcsearch.contract import Attr, feasible
from gcsearch.pareto import dominates
from gcsearch.units import si


@dataclass(frozen=True)
class Finished:
    """What the "front" rule needs of one finished trial, seen from epoch e of a running one."""

    number: int
    best: float  # percent: its best accuracy in epochs 1..e
    final: float  # percent: its accuracy objective (the value the front is made of)
    costs: tuple[float, ...]  # in the order of the study's cost objectives
    key: str | None = None  # the candidate's ArchSpec key


def headroom(finished: Iterable[Finished], best: float, margin: float) -> float | None:
    """The largest gain after epoch e, final - best, of the finished trials that stood at most `best` +
    `margin` by then; never below 0. None when no finished trial stood that low (no evidence)."""
    gains = [f.final - f.best for f in finished if f.best <= best + margin]
    return max(0.0, *gains) if gains else None


def find_dominator(
    accuracy: float,
    costs: Sequence[float],
    finished: Iterable[Finished],
    key: str | None = None,
) -> Finished | None:
    """The finished trial with the highest final accuracy among those that dominate (`accuracy`, `costs`):
    every objective at least as good (accuracy up, costs down) and one strictly better.

    Trials of the same candidate (`key`) never count: they are repeats, not competitors.
    """
    ours = (-accuracy, *costs)  # as losses: lower is better in every coordinate
    best: Finished | None = None
    for other in finished:
        if key is not None and other.key == key:
            continue
        if dominates((-other.final, *other.costs), ours) and (best is None or other.final > best.final):
            best = other
    return best


def front_verdict(
    best: float,
    costs: Sequence[float],
    finished: Sequence[Finished],
    margin: float,
    key: str | None = None,
) -> tuple[Finished, float] | None:
    """The "front" rule for one running trial at one epoch: (dominator, headroom) when it is hopeless.

    `best` is the running trial's best accuracy so far, `finished` the finished feasible trials seen at the
    same epoch. Pruned when a finished trial of another candidate, at least as cheap, ended at or above
    best + headroom + margin.
    """
    room = headroom(finished, best, margin)
    if room is None:
        return None
    dominator = find_dominator(best + room + margin, costs, finished, key)
    return (dominator, room) if dominator is not None else None


def finished_at(trials: Iterable[FrozenTrial], epoch: int, n_costs: int) -> Iterable[Finished]:
    """Feasible finished trials whose curve reaches past `epoch`, with finite accuracies and costs."""
    for t in trials:
        accuracies = t.user_attrs.get(Attr.ACCURACIES)
        values = t.values
        if not accuracies or len(accuracies) <= epoch or values is None or len(values) != n_costs + 1:
            continue
        if not feasible(t.constraints):
            continue
        seen = [float(a) for a in accuracies[:epoch] if a is not None and math.isfinite(float(a))]
        final = float(values[0])
        costs = tuple(float(v) for v in values[1:])
        if not seen or not math.isfinite(final) or not all(math.isfinite(c) for c in costs):
            continue
        yield Finished(t.number, max(seen), final, costs, t.user_attrs.get(Attr.KEY))


def fmt_pair(theirs: float, mine: float) -> str:
    """`theirs <= mine` with as many digits as it takes to show that they differ (costs are often close)."""
    digits = 3
    while digits < 12 and theirs != mine and _fmt(theirs, digits) == _fmt(mine, digits):
        digits += 1
    return f"{_fmt(theirs, digits)} <= {_fmt(mine, digits)}"


def _fmt(value: float, digits: int) -> str:
    return si(value, f".{digits}g", small=f".{digits}g")
