"""A race's rounds in the run: when nothing is queued or running, decide who gets the next seed and queue it.

The decision is `study.racing.replay` on the study's finished trials, so it needs no state of its own: any
worker on any machine, or the next run after a kill -9, replays the same race from the same results. It is
taken under the storage-wide lock, and the trials are read again inside it, so several workers that find the
queue empty at once queue one round between them. After each round the decisions (seeds and why each
candidate stopped) are written to the study user attribute `contract.RACE_ATTR`, which the report reads.
"""

from __future__ import annotations

from collections import Counter

from optuna.trial import FrozenTrial, TrialState

from gcsearch.contract import RACE_ATTR, is_final_failure, is_reused, point_of, taken_points
from gcsearch.run.setup import Run
from gcsearch.storage.writer import exclusive
from gcsearch.study.lifecycle import queue_points
from gcsearch.study.racing import Entry, RaceState, replay
from gcsearch.study.spec import Candidate, StudySpec

MAX_POINT_FAILURES = 3  # a point whose trial failed this often (errors, not divergence) is given up


def next_round(run: Run, queue: bool = True) -> int:
    """Queue the race's next points (the rest of a round whose trials failed, else the next round) when the
    study has nothing queued or running. Returns how many points were queued: 0 when the race is over (or
    `queue` is False: the run's --trials target is met, so the decisions are only recorded)."""
    with exclusive(run.storage, f"gcsearch: race {run.spec.name}"):
        trials = run.study.get_trials(deepcopy=False)
        if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
            return 1  # another worker queued the round while this one waited for the lock
        state = race_state(run.spec, trials)
        run.study.set_user_attr(RACE_ATTR, state.to_dict())
        if state.done or not queue:
            return 0
        taken = taken_points(trials) | given_up(trials)
        candidates = {c.key: c for c in run.spec.candidates()}
        points = [(candidates[key], repeat) for key, repeat in state.wanted
                  if (key, repeat) not in taken and key in candidates]
        return queue_points(run.study, run.spec, points)


def given_up(trials: list[FrozenTrial]) -> set[tuple[str, int]]:
    """The points whose trial failed MAX_POINT_FAILURES times: not queued again (the race counts them failed)."""
    failures = Counter(p for t in trials if t.state == TrialState.FAIL and (p := point_of(t)) is not None)
    return {p for p, n in failures.items() if n >= MAX_POINT_FAILURES}


def race_state(spec: StudySpec, trials: list[FrozenTrial]) -> RaceState:
    """The race replayed from a study's trials: each candidate's accuracy by repeat, its costs, its failures."""
    return replay(race_entries(spec.candidates(), spec.objectives, trials), spec.baseline.key, spec.max_repeats,
                  spec.race_margin)


def race_entries(candidates: list[Candidate], objectives: tuple[str, ...], trials: list[FrozenTrial]
                 ) -> list[Entry]:
    """One entry per candidate of the grid: accuracy by repeat from its COMPLETE trials, its costs (the study's
    cost objectives, from its trial values), and the first repeat at which it cannot go on (a divergence, a
    pruned trial, or MAX_POINT_FAILURES failures)."""
    by_seed: dict[str, dict[int, float]] = {c.key: {} for c in candidates}
    costs: dict[str, tuple[float, ...]] = {}
    failures: Counter[tuple[str, int]] = Counter()
    failed_at: dict[str, int] = {}
    for t in trials:
        point = point_of(t)
        if point is None or point[0] not in by_seed:
            continue
        key, repeat = point
        if t.state == TrialState.COMPLETE and t.values and not (is_reused(t) and repeat in by_seed[key]):
            by_seed[key][repeat] = float(t.values[0])
            costs.setdefault(key, tuple(float(v) for v in t.values[1:len(objectives)]))
        elif t.state == TrialState.PRUNED or is_final_failure(t):
            failed_at[key] = min(failed_at.get(key, repeat), repeat)
        elif t.state == TrialState.FAIL:
            failures[point] += 1
            if failures[point] >= MAX_POINT_FAILURES:
                failed_at[key] = min(failed_at.get(key, repeat), repeat)
    width = len(objectives) - 1
    return [Entry(c.key, by_seed[c.key], costs.get(c.key, (0.0,) * width), failed_at.get(c.key))
            for c in candidates]
