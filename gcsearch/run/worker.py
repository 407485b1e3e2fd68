"""The worker loop: claim a trial, run it, repeat until the study holds its target of finished trials.

One worker is one process. It claims a trial (a queued one first: grid points, repeats, retries; else the
sampler proposes one), runs it (trial.py), and goes on. `--trials N` counts finished trials, COMPLETE or
PRUNED: a pruned trial is a decision about a candidate just as a complete one is. Reused trials (a candidate
and repeat that already had a finished trial, told again to the sampler without training) do not count, so
N is the number of distinct results.

Several workers (processes here, or machines on one PostgreSQL) share the work through the database only:
claiming a queued trial is an atomic WAITING -> RUNNING update, and a worker whose target is covered by
running trials waits for them (taking over any whose heartbeat stops) instead of starting more.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from gcsearch.contract import (
    FINISHED_STATES,
    Attr,
    Counts,
    count_trials,
    failure_kind,
    is_reused,
    point_of,
    taken_points,
)
from gcsearch.errors import RuntimeFailure
from gcsearch.run.optuna_access import claim_waiting, record_heartbeat
from gcsearch.run.progress import Reporter, Summary, best_candidates
from gcsearch.run.racing import next_round
from gcsearch.run.setup import Run, quiet_optuna, storage_errors
from gcsearch.run.signals import signals_held, sigterm_interrupts
from gcsearch.run.trial import run_trial
from gcsearch.study.lifecycle import point_attrs

MAX_FAILURES_IN_A_ROW = 5  # a tpe/nsga2/random worker stops (exit 1) after this many failed trials in a row
MAX_REUSES_IN_A_ROW = 20  # after this many proposals of measured candidates, queue an unmeasured one


def work(run: Run, reporter: Reporter) -> int:
    """Run trials until the study has `run.target` finished ones (or its grid is done). Returns trials trained.

    Raises KeyboardInterrupt (Ctrl-C, or SIGTERM as `Interrupted`) after recording the running trial,
    RuntimeFailure when trials keep failing.
    """
    trained, failures, reuses = 0, 0, 0
    with sigterm_interrupts(), quiet_optuna(), storage_errors(run.options.storage):
        while True:
            optuna.storages.fail_stale_trials(run.study)
            trials = run.study.get_trials(deepcopy=False)
            counts = count_trials(trials)
            if run.spec.race and _exhausted(run, trials, counts) and \
                    next_round(run, queue=counts.finished < run.target):
                continue  # a race: the next round (or the rest of this one) is queued
            if counts.finished >= run.target or _exhausted(run, trials, counts):
                return trained
            queued = counts.waiting > 0
            if counts.finished + counts.running >= run.target or (run.spec.is_grid and not queued):
                # The rest is being run by other workers: wait for them, and take over their trial
                # should their heartbeat stop.
                reporter.waiting(counts, [t for t in trials if t.state == TrialState.RUNNING],
                                 best_candidates(trials, run.spec))
                time.sleep(run.options.poll_s)
                continue
            if not run.spec.is_grid and reuses >= MAX_REUSES_IN_A_ROW:
                _queue_unmeasured(run, trials)
                reuses = 0
            trial = claim(run)
            if trial is None:
                continue
            outcome = run_trial(run, trial, reporter)
            if outcome.state == "COMPLETE" and run.chance.at_chance(outcome.accuracy):
                outcome.chance = run.chance.level
            if outcome.state == "REUSED":
                reuses += 1
            else:
                reuses = 0
                trained += 1
            failures = failures + 1 if outcome.state == "FAIL" else 0
            trials = run.study.get_trials(deepcopy=False)
            reporter.trial_finished(outcome, count_trials(trials), best_candidates(trials, run.spec))
            if failures >= MAX_FAILURES_IN_A_ROW and not run.spec.is_grid:
                raise RuntimeFailure(f"{failures} trials in a row failed (the last one: {outcome.reason}); "
                                     "check the study's proxy settings")


def summarize(run: Run, seconds: float, trained: int) -> Summary:
    """The study's state at the end of a run: counts, the front so far, and the failures by kind."""
    trials = run.study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    reasons: dict[str, int] = {}
    for t in trials:
        if t.state == TrialState.FAIL and Attr.FAIL_REASON in t.user_attrs:
            reason = failure_kind(str(t.user_attrs[Attr.FAIL_REASON]))
            reasons[reason] = reasons.get(reason, 0) + 1
    scored = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and not is_reused(t) and t.values]
    return Summary(study=run.spec.name, storage=run.where, target=run.target, counts=counts, seconds=seconds,
                   trained=trained, best=best_candidates(trials, run.spec, limit=10),
                   exhausted=counts.finished < run.target and _exhausted(run, trials, counts),
                   failures=[f"{n} {r}" for r, n in sorted(reasons.items())], chance=run.chance,
                   at_chance=sum(map(run.chance.at_chance, scored)), scored=len(scored))


def _exhausted(run: Run, trials: list[FrozenTrial], counts: Counts) -> bool:
    """A grid with nothing queued or running, or a space whose every point has a finished trial."""
    if run.spec.is_grid:
        return counts.waiting == 0 and counts.running == 0
    done = {p for t in trials if t.state in FINISHED_STATES and (p := point_of(t)) is not None}
    return len(done) >= run.spec.size


def _queue_unmeasured(run: Run, trials: list[FrozenTrial]) -> None:
    """The sampler keeps proposing measured candidates: queue the first one in the space that has none."""
    seen = taken_points(trials)
    for cand in run.spec.candidates():
        if (cand.key, 0) not in seen:
            run.study.enqueue_trial(dict(cand.params), user_attrs=point_attrs(cand, 0))
            return


def claim(run: Run) -> optuna.Trial | None:
    """The next trial for this worker: a queued one (atomically WAITING -> RUNNING), else a new proposal.

    A grid study only ever runs queued trials; None when another worker took the last one first. Ctrl-C
    and SIGTERM wait until the claimed trial has its first heartbeat, so no RUNNING trial is left behind
    that the next run could not tell from a live one.
    """
    with signals_held():
        trial = _claim(run)
        if trial is not None:
            record_heartbeat(run.study, trial)
        return trial


def _claim(run: Run) -> optuna.Trial | None:
    trial = claim_waiting(run.study)
    if trial is not None or run.spec.is_grid:
        return trial
    return run.study.ask()
