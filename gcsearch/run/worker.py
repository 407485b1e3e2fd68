"""The worker loop: claim a trial -> build the candidate -> measure -> train -> tell; and local workers.

One worker is one process. It claims a trial (a queued one first: grid points, repeats, retries; else the
sampler proposes one), writes a heartbeat while it works, and tells Optuna the outcome:

- COMPLETE with the objective values (accuracy %, FLOPs, params, latency ms), or
- PRUNED (the epoch pruner stopped it, or it breaks a constraint and is not trained), or
- FAIL with a reason (`gcsearch.contract`): "diverged: ...", "error: ...", or "interrupted" (Ctrl-C, SIGTERM:
  the trial is queued again, the process exits 130).

`--trials N` counts finished trials, COMPLETE or PRUNED: a pruned trial is a decision about a candidate
just as a complete one is. Reused trials (a candidate and repeat that already had a finished trial, told
again to the sampler without training) do not count, so N is the number of distinct results.

Several workers (processes here, or machines on one PostgreSQL) share the work through the database only:
claiming a queued trial is an atomic WAITING -> RUNNING update, and a worker whose target is covered by
running trials waits for them (taking over any whose heartbeat stops) instead of starting more.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gcsearch.contract import (
    DIVERGED,
    ERROR,
    FINISHED_STATES,
    INTERRUPTED,
    POINT_ATTRS,
    Attr,
    Counts,
    Meta,
    count_trials,
    fail_reason,
    failure_kind,
    is_reused,
    point_of,
    taken_points,
)
from gcsearch.errors import InputError, RuntimeFailure
from gcsearch.pareto import dominates
from gcsearch.space import ArchSpec
from gcsearch.storage.urls import DEFAULT_STORAGE, mask_url
from gcsearch.storage.writer import DEFAULT_HEARTBEAT, STORAGE_ERRORS, describe_error, open_storage, storage_failure
from gcsearch.study.lifecycle import make_sampler, open_study, point_attrs
from gcsearch.study.parse import read_study_file
from gcsearch.study.spec import StudySpec

MAX_FAILURES_IN_A_ROW = 5  # a tpe/nsga2/random worker stops (exit 1) after this many failed trials in a row
MAX_REUSES_IN_A_ROW = 20  # after this many proposals of measured candidates, queue an unmeasured one


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


@dataclass(frozen=True)
class RunOptions:
    """What `gcsearch run` was asked to do (one process's share of it)."""

    study: str
    storage: str = DEFAULT_STORAGE
    trials: int | None = None
    workers: int = 1
    device: str | None = None
    data_dir: str | None = None
    download: bool = False
    seed: int | None = None
    heartbeat: int = DEFAULT_HEARTBEAT
    worker_index: int = 0
    poll_s: float = 1.0
    fill_grid: bool = True  # queue a resumed grid's missing points (the parent of local workers does it for them)


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

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "study": self.study, "storage": self.storage, "target": self.target, "finished": c.finished,
            "complete": c.complete, "pruned": c.pruned, "failed": c.failed, "reused": c.reused,
            "running": c.running, "waiting": c.waiting, "trained_this_run": self.trained,
            "seconds": round(self.seconds, 2), "target_met": c.finished >= self.target,
            "exhausted": self.exhausted, "failures": self.failures,
            "best": [b.__dict__ for b in self.best],
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


@dataclass
class Run:
    """One worker's view of a study: the study file, the storage, the data on the device, the target."""

    options: RunOptions
    spec: StudySpec
    storage: optuna.storages.RDBStorage
    study: optuna.Study
    meta: dict[str, Any]
    data: Any  # gcsearch.training.data.ProxyData
    device: Any  # torch.device
    target: int
    seed: int
    pruner: Any = None  # gcsearch.study.pruning.EpochPruner
    device_name: str = "cpu"
    warmed_up: bool = False  # whether this process has paid the device's start-up costs (see train.warm_up)

    @property
    def where(self) -> str:
        return mask_url(self.options.storage)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.data.in_chans, self.data.image_size, self.data.image_size)


# --- setting up ----------------------------------------------------------------------------------------


def prepare(options: RunOptions, *, train: bool = True) -> tuple[Run, int]:
    """Read the study file, open the storage, load the data, and create or resume the study.

    Returns the run and how many grid points this call queued. `train=False` (the parent of local
    workers) loads the data on the CPU only to check it and to know its shape.
    """
    import torch

    from gcsearch.study.pruning import make_pruner
    from gcsearch.training.data import load_data
    from gcsearch.training.device import resolve_device, use_device

    spec = read_study_file(options.study)
    if options.data_dir is not None:
        spec = replace(spec, proxy=replace(spec.proxy, data_dir=options.data_dir))
    if options.seed is not None:
        spec = replace(spec, seed=options.seed)
    if options.trials is not None and options.trials < 1:
        raise InputError(f"--trials: expected a positive number, got {options.trials}")
    device = resolve_device(options.device) if train else torch.device("cpu")
    if train:
        use_device(device)
    storage = open_storage(options.storage, heartbeat=options.heartbeat)
    where = mask_url(options.storage)
    data = load_data(spec.proxy, device, download=options.download)
    pruner = make_pruner(spec.pruning, spec.directions, spec.sampler)
    input_size = (data.in_chans, data.image_size, data.image_size)
    target = spec.target(options.trials)
    sampler_seed = spec.seed + 7919 * options.worker_index
    meta = spec.metadata(input_size, data.num_classes)
    with _quiet_optuna(), _storage_errors(options.storage):
        study, stored, queued = open_study(spec, storage, meta, sampler=make_sampler(spec, sampler_seed, target),
                                           pruner=pruner.optuna_pruner, where=where,
                                           check_seed=options.seed is not None, fill_grid=options.fill_grid)
        if options.seed is None and stored.get(Meta.SEED) is not None:
            spec = replace(spec, seed=int(stored[Meta.SEED]))
        # A resumed random or TPE sampler must not replay the proposals of the first run.
        existing = len(study.get_trials(deepcopy=False))
        if existing and not spec.is_grid:
            study.sampler = make_sampler(spec, sampler_seed + 104729 * existing, target)
    device_name = str(device)
    if device.type == "cuda":
        device_name = f"{device} {torch.cuda.get_device_name(device)}"
    run = Run(options=options, spec=spec, storage=storage, study=study, meta=stored, data=data, device=device,
              target=target, seed=spec.seed, pruner=pruner, device_name=device_name)
    return run, queued


def _passive_openmp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin, unless the user chose otherwise (OMP_WAIT_POLICY).

    Spinning threads are right on an idle machine and disastrous on a shared one: when another process (or
    another local worker) holds a core, each parallel op waits for a descheduled thread while its partner
    spins. On this project's 2-core machine under load, a proxy trial ran 2-10x faster with PASSIVE. It
    takes effect only before torch is first imported, which `gcsearch run` does here.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _quiet_optuna:
    """Optuna's INFO lines per trial and its experimental-feature warnings say nothing to our users."""

    def __enter__(self) -> None:
        self._level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
        warnings.filterwarnings("ignore", message=".*Fixed parameter .* is out of range.*")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        optuna.logging.set_verbosity(self._level)


# --- the worker loop -----------------------------------------------------------------------------------


def work(run: Run, reporter: Reporter) -> int:
    """Run trials until the study has `run.target` finished ones (or its grid is done). Returns trials trained.

    Raises KeyboardInterrupt (Ctrl-C, or SIGTERM as `Interrupted`) after recording the running trial,
    RuntimeFailure when trials keep failing.
    """
    previous = _install_sigterm()
    trained, failures, reuses = 0, 0, 0
    try:
        with _quiet_optuna(), _storage_errors(run.options.storage):
            while True:
                optuna.storages.fail_stale_trials(run.study)
                trials = run.study.get_trials(deepcopy=False)
                counts = count_trials(trials)
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
    finally:
        _restore_sigterm(previous)


class _storage_errors:
    """A database that fails under a worker (server gone, disk full, read-only file) ends the run with one
    line and exit code 1 instead of a traceback; its running trial is left to the heartbeat retry."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and isinstance(exc, STORAGE_ERRORS):
            raise storage_failure(exc, self.url) from None


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
    with _signals_held():
        trial = _claim(run)
        if trial is not None:
            run.storage.record_heartbeat(trial._trial_id)
        return trial


def _claim(run: Run) -> optuna.Trial | None:
    storage, study_id = run.study._storage, run.study._study_id
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            # The heartbeat first: a worker killed between the two writes must not leave a RUNNING trial
            # without one (Optuna never takes such a trial for stale, and the next run would wait for it).
            storage.record_heartbeat(waiting._trial_id)
            if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(run.study, waiting._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    if run.spec.is_grid:
        return None
    return run.study.ask()


class _signals_held:
    """Hold SIGINT and SIGTERM back for a few storage calls; they are delivered right after."""

    _SIGNALS = {signal.SIGINT, signal.SIGTERM}

    def __enter__(self) -> None:
        self._active = _main_thread() and hasattr(signal, "pthread_sigmask")
        if self._active:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)

    def __exit__(self, *exc: object) -> None:
        if self._active:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._SIGNALS)


class _Heartbeat:
    """Writes the running trial's heartbeat every `interval` seconds from a daemon thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True,
                                        name=f"heartbeat-{trial_id}")

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a missed beat is harmless; the next one may get through
                pass

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- one trial -----------------------------------------------------------------------------------------


class _Prune(optuna.TrialPruned):
    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.epoch = epoch
        self.reason = reason


def run_trial(run: Run, trial: optuna.Trial, reporter: Reporter) -> TrialOutcome:
    """Build, measure, train and tell one claimed trial; never raises except for an interruption."""
    started = time.perf_counter()
    outcome = TrialOutcome(number=trial.number, state="FAIL")
    timing = {"train_s": 0.0}
    with _Heartbeat(run.storage, trial._trial_id, run.options.heartbeat):
        try:
            _attempt(run, trial, reporter, outcome, timing)
        except KeyboardInterrupt:
            _record_interrupted(run, trial)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker took this trial for dead (its heartbeat looked stale to it), failed it and
            # queued a copy; the copy's result will count, this one cannot be stored.
            outcome.state, outcome.reason = "LOST", "taken over by another worker (its heartbeat looked stale)"
        finally:
            outcome.seconds = time.perf_counter() - started
            outcome.overhead_s = outcome.seconds - timing["train_s"]
    return outcome


def _attempt(run: Run, trial: optuna.Trial, reporter: Reporter, outcome: TrialOutcome,
             timing: dict[str, float]) -> None:
    """The trial's work and its recording as COMPLETE, PRUNED, REUSED or FAIL."""
    train_started = None
    failure: str | None = None
    try:
        spec, repeat, params, fresh = _candidate_of(run, trial)
        outcome.label, outcome.repeat = spec.label(), repeat
        source = _finished_trial_of(run, spec.key, repeat, trial.number)
        if source is not None:
            _reuse(run, trial, source, outcome)
            return
        seed = run.seed + repeat
        _set_attrs(trial, {**point_attrs(spec, repeat), Attr.SEED: seed, Attr.DEVICE: run.device_name,
                           Attr.VERSIONS: versions()})
        if fresh and run.spec.repeats > 1:
            _queue_repeats(run, spec, params)
        costs = _measure(run, trial, spec, outcome)
        violated = _constraints(run, trial, costs)
        if violated:
            raise _Prune(0, violated)
        _warm_up(run)
        reporter.trial_started(trial.number, outcome.label, repeat, run.spec.proxy.epochs)
        train_started = time.perf_counter()
        result = _train(run, trial, spec, seed, costs, reporter)
        timing["train_s"] = time.perf_counter() - train_started
        values = [float(result.accuracy), *(float(costs[name]) for name in run.spec.objectives[1:])]
        if not all(math.isfinite(v) for v in values):
            raise _Diverged(f"a non-finite objective value {values}")
        _set_attrs(trial, {Attr.ACCURACY: float(result.accuracy),
                           Attr.ACCURACIES: [float(a) for a in result.accuracies],
                           Attr.TRAIN_SECONDS: float(result.train_seconds), Attr.EPOCHS: int(result.epochs)})
        run.study.tell(trial, values)
        outcome.state, outcome.accuracy = "COMPLETE", float(result.accuracy)
    except _Prune as exc:
        if train_started is not None:
            timing["train_s"] = time.perf_counter() - train_started
        _set_attrs(trial, {Attr.PRUNED_EPOCH: exc.epoch, Attr.PRUNE_REASON: exc.reason})
        run.study.tell(trial, state=TrialState.PRUNED)
        outcome.state, outcome.reason = "PRUNED", exc.reason
    except (KeyboardInterrupt, optuna.exceptions.UpdateFinishedTrialError):
        raise
    except Exception as exc:  # noqa: BLE001 -- one bad candidate must not end the study
        if train_started is not None and not timing["train_s"]:
            timing["train_s"] = time.perf_counter() - train_started
        failure = outcome.reason = _fail_reason(exc)
        # The traceback's frames hold the trial's model, optimizer and activations: drop them, and free memory
        # only once the exception is gone too (after an out-of-memory error, that memory is what the other
        # workers on this GPU are waiting for).
        traceback.clear_frames(exc.__traceback__)
    if failure is not None:
        _free_memory()
        _record_failure(run, trial, failure)


class _Diverged(RuntimeError):
    pass


def _fail_reason(exc: BaseException) -> str:
    from gcsearch.training.loop import Diverged

    if isinstance(exc, Diverged):
        return str(exc)  # the loop words it as a fail reason
    if isinstance(exc, _Diverged):
        return fail_reason(DIVERGED, str(exc))
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if os.environ.get("GCSEARCH_DEBUG"):
        traceback.print_exc()
    return fail_reason(ERROR, message[:500])


def _candidate_of(run: Run, trial: optuna.Trial) -> tuple[ArchSpec, int, dict[str, Any], bool]:
    """The trial's candidate, repeat and sampler values; `fresh` when the sampler just proposed it."""
    attrs = trial.user_attrs
    distributions = run.spec.distributions()
    if Attr.SPEC in attrs:  # a queued trial: a grid point, a repeat, or a retry
        spec = ArchSpec.from_dict(attrs[Attr.SPEC])
        params: dict[str, Any] = {}
        frozen = run.study._storage.get_trial(trial._trial_id)
        fixed = {**(frozen.system_attrs.get("fixed_params") or {}), **frozen.params}
        for name, dist in distributions.items():
            value = fixed.get(name)
            if value is not None and value in dist.choices:
                params[name] = trial.suggest_categorical(name, dist.choices)
        return spec, int(attrs.get(Attr.REPEAT, 0)), params, False
    params = {name: trial.suggest_categorical(name, dist.choices) for name, dist in distributions.items()}
    return run.spec.spec_from_params(params), 0, params, True


def _finished_trial_of(run: Run, key: str, repeat: int, number: int) -> FrozenTrial | None:
    for t in run.study.get_trials(deepcopy=False, states=FINISHED_STATES):
        if t.number != number and point_of(t) == (key, repeat) and not is_reused(t):
            return t
    return None


def _reuse(run: Run, trial: optuna.Trial, source: FrozenTrial, outcome: TrialOutcome) -> None:
    """Tell the sampler the stored result of `source` instead of training the same candidate again."""
    attrs = {k: v for k, v in source.user_attrs.items() if k != Attr.FAIL_REASON}
    _set_attrs(trial, {**attrs, Attr.REUSED_FROM: source.number})
    for name, value in source.constraints.items():
        trial.set_constraint(name, value)
    if source.state == TrialState.COMPLETE:
        run.study.tell(trial, source.values)
    else:
        run.study.tell(trial, state=TrialState.PRUNED)
    outcome.state, outcome.reused_from = "REUSED", source.number
    outcome.accuracy = source.user_attrs.get(Attr.ACCURACY)
    outcome.flops, outcome.params = source.user_attrs.get(Attr.FLOPS), source.user_attrs.get(Attr.PARAMS)


def _queue_repeats(run: Run, spec: ArchSpec, params: dict[str, Any]) -> None:
    """A new candidate from the sampler: queue its other repeats, so its mean is over every seed."""
    have = {p for t in run.study.get_trials(deepcopy=False)
            if (p := point_of(t)) is not None and p[0] == spec.key and t.state != TrialState.FAIL}
    for repeat in range(1, run.spec.repeats):
        if (spec.key, repeat) not in have:
            run.study.enqueue_trial(dict(params), user_attrs=point_attrs(spec, repeat))


def _measure(run: Run, trial: optuna.Trial, spec: ArchSpec, outcome: TrialOutcome) -> dict[str, float]:
    from gcsearch.model.cost import measure

    latency = "latency" in run.spec.objectives
    m = measure(spec, input_size=run.input_size, num_classes=run.data.num_classes, latency=latency,
                device=str(run.device))
    attrs: dict[str, Any] = {Attr.FLOPS: int(m.flops), Attr.PARAMS: int(m.params),
                             Attr.BLOCK_FLOPS: int(m.block_flops), Attr.BLOCK_PARAMS: int(m.block_params)}
    costs: dict[str, float] = {"flops": float(m.flops), "params": float(m.params)}
    if latency and m.latency_ms is not None:
        attrs[Attr.LATENCY_MS] = m.latency_ms
        costs["latency"] = float(m.latency_ms["forward"])
    _set_attrs(trial, attrs)
    outcome.flops, outcome.params = int(m.flops), int(m.params)
    return costs


def _constraints(run: Run, trial: optuna.Trial, costs: dict[str, float]) -> str | None:
    """Record the constraints (Optuna: feasible when <= 0). A candidate that breaks one is not trained."""
    broken = []
    for name, limit, value in (("max_flops", run.spec.max_flops, costs["flops"]),
                               ("max_params", run.spec.max_params, costs["params"])):
        if limit is None:
            continue
        trial.set_constraint(name, value - limit)
        if value > limit:
            broken.append(f"{name}: {int(value):,} > {limit:,}")
    return f"infeasible ({'; '.join(broken)}), not trained" if broken else None


def _warm_up(run: Run) -> None:
    """Before this process's first training: CUDA's start-up belongs to no trial's train time."""
    if not run.warmed_up:
        from gcsearch.training.device import warm_up

        warm_up(run.device)
        run.warmed_up = True


def _train(run: Run, trial: optuna.Trial, spec: ArchSpec, seed: int, costs: dict[str, float],
           reporter: Reporter) -> Any:
    from gcsearch import build_model
    from gcsearch.training.loop import seed_everything, train_candidate

    seed_everything(seed)  # the initial weights repeat too
    model = build_model(spec, num_classes=run.data.num_classes, in_chans=run.data.in_chans)
    accuracies: list[float] = []
    cost_objectives = {name: costs[name] for name in run.spec.objectives[1:]}

    def on_epoch(epoch: int, accuracy: float) -> None:
        accuracies.append(float(accuracy))
        trial.set_user_attr(Attr.ACCURACIES, list(accuracies))
        reporter.epoch(epoch, accuracy)
        reason = (run.pruner.check(run.study, trial, epoch, float(accuracy), cost_objectives, curve=accuracies)
                  if run.pruner else None)
        if reason:
            raise _Prune(epoch, reason)

    return train_candidate(model, run.data, run.spec.proxy, seed=seed, device=run.device, on_epoch=on_epoch,
                           on_step=reporter.step)


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _record_failure(run: Run, trial: optuna.Trial, reason: str) -> None:
    try:
        trial.set_user_attr(Attr.FAIL_REASON, reason)
        run.study.tell(trial, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        raise
    except Exception as exc:
        raise RuntimeFailure(f"--storage: cannot record trial {trial.number} in {run.where}: "
                             f"{describe_error(exc, run.options.storage)}") from None


def _record_interrupted(run: Run, trial: optuna.Trial) -> None:
    """Mark the trial FAIL ("interrupted") and queue it again, so the next run picks it up first."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        frozen = run.storage.get_trial(trial._trial_id)
        trial.set_user_attr(Attr.FAIL_REASON, fail_reason(INTERRUPTED))
        run.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if Attr.SPEC in frozen.user_attrs:
            fixed = frozen.system_attrs.get("fixed_params") or frozen.params
            keep = {k: frozen.user_attrs[k] for k in POINT_ATTRS if k in frozen.user_attrs}
            run.study.enqueue_trial(dict(fixed), user_attrs=keep)
    except Exception:  # the storage may be what failed; the heartbeat will tell the next run
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _free_memory() -> None:
    """Collect the failed trial's objects and hand the GPU memory they held back to the driver, so that the
    other workers on that GPU can use it. Call it after the exception is gone (see `_attempt`)."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def versions() -> dict[str, str]:
    import torch

    from gcsearch import __version__

    return {"gcsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "python": platform.python_version()}


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install_sigterm() -> Any:
    if not _main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted()

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and _main_thread():
        signal.signal(signal.SIGTERM, previous)


# --- results so far ------------------------------------------------------------------------------------


def best_candidates(trials: list[FrozenTrial], spec: StudySpec, limit: int = 5) -> list[Best]:
    """The front so far (accuracy up, every cost down), over candidates averaged across their repeats.

    Feasible COMPLETE trials only; reused trials repeat another trial's result and are left out.
    """
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if (t.state == TrialState.COMPLETE and not is_reused(t) and t.values is not None
                and all(v <= 0 for v in t.constraints.values()) and isinstance(t.user_attrs.get(Attr.KEY), str)):
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


def summarize(run: Run, seconds: float, trained: int) -> Summary:
    trials = run.study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    reasons: dict[str, int] = {}
    for t in trials:
        if t.state == TrialState.FAIL and Attr.FAIL_REASON in t.user_attrs:
            reason = failure_kind(str(t.user_attrs[Attr.FAIL_REASON]))
            reasons[reason] = reasons.get(reason, 0) + 1
    return Summary(study=run.spec.name, storage=run.where, target=run.target, counts=counts, seconds=seconds,
                   trained=trained, best=best_candidates(trials, run.spec, limit=10),
                   exhausted=counts.finished < run.target and _exhausted(run, trials, counts),
                   failures=[f"{n} {r}" for r, n in sorted(reasons.items())])


# --- several local workers -----------------------------------------------------------------------------


def _worker_main(options: RunOptions, threads: int, log: str | None) -> None:
    """Entry point of a worker process: the same study, its own device, its own share of the CPU."""
    _passive_openmp_threads()
    import torch

    if threads:
        torch.set_num_threads(threads)
    stream = sys.stderr if log == "stderr" else sys.stdout
    reporter: Reporter = Reporter() if log is None else LogLines(
        prefix=f"[worker {options.worker_index}] ", write=lambda line: print(line, file=stream, flush=True))
    try:
        run, _ = prepare(options)
        work(run, reporter)
    except KeyboardInterrupt:
        sys.exit(130)
    except InputError as exc:
        print(f"error: [worker {options.worker_index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except RuntimeFailure as exc:
        print(f"error: [worker {options.worker_index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def worker_devices(device: str | None, workers: int) -> list[str | None]:
    """Devices for `workers` local workers: cuda:i round robin over the GPUs when the device is cuda/auto."""
    import torch

    if device not in (None, "auto", "cuda") or not torch.cuda.is_available():
        return [device] * workers
    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)]


def worker_threads(workers: int, cpus: int | None) -> int:
    """torch CPU threads for each of `workers` local workers: an equal share of the cores, on any device.

    A GPU worker's CPU work is launching kernels and small host-side ops; with torch's default (every core)
    in each of several workers, their OpenMP threads fight over the same cores.
    """
    return max(1, (cpus or 1) // workers)


def run_local_workers(run: Run, reporter: Reporter, log: str | None) -> int:
    """Start `run.options.workers` worker processes on the study `run` has set up; poll it until they end.

    `log`: where each worker prints its log lines ("stdout" or "stderr"), or None for silent workers whose
    results this process reports as it sees them in the storage.
    Returns the trials they trained. Raises KeyboardInterrupt (after the workers recorded their trials) on
    Ctrl-C or SIGTERM, RuntimeFailure or InputError when a worker failed.
    """
    options = run.options
    ctx = multiprocessing.get_context("spawn")
    devices = worker_devices(options.device, options.workers)
    threads = worker_threads(options.workers, os.cpu_count())
    before = count_trials(run.study.get_trials(deepcopy=False))
    procs: list[Any] = []
    for i, device in enumerate(devices):
        child = replace(options, worker_index=i, workers=1, device=device, fill_grid=False)
        p = ctx.Process(target=_worker_main, args=(child, threads, log), name=f"gcsearch-worker-{i}")
        p.start()
        procs.append(p)
    previous = _install_sigterm()
    seen = {t.number for t in run.study.get_trials(deepcopy=False) if t.state.is_finished()}
    try:
        with _quiet_optuna():
            while any(p.is_alive() for p in procs):
                trials = run.study.get_trials(deepcopy=False)
                counts, best = count_trials(trials), best_candidates(trials, run.spec)
                if not log:  # the workers are silent: tell their results here
                    for t in trials:
                        if t.state.is_finished() and t.number not in seen:
                            seen.add(t.number)
                            reporter.trial_finished(outcome_of(t), counts, best)
                reporter.waiting(counts, [t for t in trials if t.state == TrialState.RUNNING], best)
                for p in procs:
                    p.join(timeout=options.poll_s / len(procs))
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise
    finally:
        _restore_sigterm(previous)
    codes = [p.exitcode for p in procs]
    after = count_trials(run.study.get_trials(deepcopy=False))
    trained = (after.finished - before.finished) + (after.failed - before.failed)
    if 130 in codes or any(c is not None and c < 0 for c in codes):
        raise Interrupted()
    if 2 in codes:
        raise InputError(f"a worker stopped on bad input (exit codes {codes}); see its message above")
    if any(c not in (0, None) for c in codes):
        raise RuntimeFailure(f"a worker failed (exit codes {codes}); see its message above")
    return trained


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


def _stop_workers(procs: list[Any], grace_s: float = 30.0) -> None:
    """Ask every worker to stop (SIGTERM: each records its trial as interrupted), then wait for them."""
    for p in procs:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


# --- plain log lines (also what each local worker prints with --quiet) --------------------------------


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
        return f"{what}: {o.accuracy:.2f}%, {format_count(o.flops)} FLOPs, {o.seconds:.1f} s"
    if o.state == "REUSED":
        return f"{what}: reused trial {o.reused_from}'s result"
    if o.state == "PRUNED":
        return f"{what}: pruned, {o.reason}"
    if o.state == "LOST":
        return f"{what}: not stored, {o.reason}"
    return f"{what}: FAILED, {o.reason}"


def format_count(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"
