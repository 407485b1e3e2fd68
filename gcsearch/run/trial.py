"""One trial: build the candidate, measure it, train it, and tell Optuna how it ended.

A claimed trial ends as:

- COMPLETE with the objective values (accuracy %, FLOPs, params, latency ms), or
- REUSED: the candidate and repeat already have a finished trial, whose result is told again (not trained), or
- PRUNED (the epoch pruner stopped it, or it breaks a constraint and is not trained), or
- FAIL with a reason (`gcsearch.contract`): "diverged: ...", "error: ...", or "interrupted" (Ctrl-C, SIGTERM:
  the trial is queued again, the process exits 130).

Building, measuring and training go through `run.functions`; the rest is bookkeeping in the storage.
"""

from __future__ import annotations

import math
import os
import platform
import time
import traceback
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from gcsearch.contract import (
    ERROR,
    FINISHED_STATES,
    INTERRUPTED,
    POINT_ATTRS,
    Attr,
    fail_reason,
    is_reused,
    point_of,
)
from gcsearch.errors import RuntimeFailure
from gcsearch.run.heartbeat import heartbeat
from gcsearch.run.optuna_access import queued_params, requeue_params, stored_trial, trial_id
from gcsearch.run.progress import Reporter, TrialOutcome
from gcsearch.run.setup import Run
from gcsearch.run.signals import sigint_ignored
from gcsearch.run.start import Start, StartDiverged, obtain_start, pretrained_start
from gcsearch.space import ArchSpec
from gcsearch.storage.artifacts import keep_weights
from gcsearch.storage.writer import describe_error
from gcsearch.study.lifecycle import contains, point_attrs
from gcsearch.training.config import finetune_seed


def run_trial(run: Run, trial: optuna.Trial, reporter: Reporter) -> TrialOutcome:
    """Build, measure, train and tell one claimed trial; never raises except for an interruption."""
    started = time.perf_counter()
    outcome = TrialOutcome(number=trial.number, state="FAIL")
    timing = {"train_s": 0.0}
    with heartbeat(run.storage, trial_id(trial), run.options.heartbeat):
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
        seed = run.spec.seed + repeat
        _set_attrs(trial, {**point_attrs(spec, repeat), Attr.SEED: seed, Attr.DEVICE: run.device_name,
                           Attr.THREADS: cpu_threads(), Attr.VERSIONS: versions()})
        if fresh and run.spec.repeats > 1:
            _queue_repeats(run, spec, params)
        costs = _measure(run, trial, spec, outcome)
        violated = _constraints(run, trial, costs)
        if violated:
            raise _Prune(0, violated)
        _warm_up(run)
        start = _start_of(run, trial, spec, seed, reporter)
        reporter.trial_started(trial.number, outcome.label, repeat, math.ceil(run.spec.proxy.trial_epochs))
        train_started = time.perf_counter()
        result, model = _train(run, trial, spec, seed, costs, reporter, start)
        timing["train_s"] = time.perf_counter() - train_started
        values = [float(result.accuracy), *(float(costs[name]) for name in run.spec.objectives[1:])]
        if not all(math.isfinite(v) for v in values):
            raise _non_finite(values, int(result.epochs))
        _set_attrs(trial, {Attr.ACCURACY: float(result.accuracy),
                           Attr.ACCURACIES: [float(a) for a in result.accuracies],
                           Attr.TRAIN_SECONDS: float(result.train_seconds), Attr.EPOCHS: int(result.epochs)})
        if run.artifacts is not None:
            _keep_weights(run, trial, spec, model)
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
        run.functions.free_memory()
        _record_failure(run, trial, failure)


class _Prune(optuna.TrialPruned):
    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.epoch = epoch
        self.reason = reason


def _non_finite(values: list[float], epoch: int) -> Exception:
    """Objective values that came out NaN or infinite: the training loop's own Diverged, after its last epoch."""
    from gcsearch.training.loop import Diverged

    return Diverged(epoch, f"a non-finite objective value {values}")


def _fail_reason(exc: BaseException) -> str:
    from gcsearch.training.loop import Diverged

    if isinstance(exc, (Diverged, StartDiverged)):
        return str(exc)  # worded as a fail reason where it is raised
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if os.environ.get("GCSEARCH_DEBUG"):
        traceback.print_exc()
    return fail_reason(ERROR, message[:500])


def _candidate_of(run: Run, trial: optuna.Trial) -> tuple[ArchSpec, int, dict[str, Any], bool]:
    """The trial's candidate, repeat and sampler values; `fresh` when the sampler just proposed it.

    Each value is recorded with the distribution the study already records its parameter with
    (`run.distributions`), so the points of an extended grid record as its first ones did.
    """
    attrs = trial.user_attrs
    if Attr.SPEC in attrs:  # a queued trial: a grid point, a repeat, or a retry
        spec = ArchSpec.from_dict(attrs[Attr.SPEC])
        params: dict[str, Any] = {}
        for name, value in queued_params(stored_trial(run.study, trial)).items():
            dist = run.distributions.get(name)
            if dist is not None and contains(dist, value):
                params[name] = _suggest(trial, name, dist)
        return spec, int(attrs.get(Attr.REPEAT, 0)), params, False
    params = {name: _suggest(trial, name, run.distributions[name]) for name in run.spec.space}
    return run.spec.spec_from_params(params), 0, params, True


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"parameter {name!r}: no suggestion for {dist}")


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
    latency = "latency" in run.spec.objectives
    m = run.functions.measure(spec, input_size=run.input_size, num_classes=run.data.num_classes, latency=latency,
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
        run.functions.warm_up(run.device)
        run.warmed_up = True


def _start_of(run: Run, trial: optuna.Trial, spec: ArchSpec, seed: int, reporter: Reporter) -> Start | None:
    """The paired design: the trained start of the trial's seed (loaded, or trained first), recorded on the
    trial. None when candidates train from scratch."""
    if not run.spec.proxy.paired:
        return None
    if run.spec.proxy.start == "weights":
        start = pretrained_start(run, spec, seed, reporter)
    else:
        start = obtain_start(run, spec, seed, reporter)  # StartDiverged: this trial fails as diverged too
    trial.set_user_attr(Attr.START, start.record())
    return start


def _train(run: Run, trial: optuna.Trial, spec: ArchSpec, seed: int, costs: dict[str, float],
           reporter: Reporter, start: Start | None = None) -> Any:
    run.functions.seed(seed)  # the initial weights repeat too (a candidate's own new layers, from a start)
    model = run.functions.build(spec, num_classes=run.data.num_classes, in_chans=run.data.in_chans)
    proxy, epochs, train_seed = run.spec.proxy, None, seed
    if start is not None:  # every layer the start has, from it; the fine-tune's data order is the seed's
        run.functions.load_start(model, start.state_dict)
        proxy, epochs, train_seed = proxy.finetune_proxy(), proxy.finetune_epochs, finetune_seed(seed)
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

    length = {} if epochs is None else {"epochs": epochs}  # a fine-tune's, which may be a fraction
    result = run.functions.train(model, run.data, proxy, seed=train_seed, device=run.device, on_epoch=on_epoch,
                              on_step=reporter.step, **length)
    return result, model


def _keep_weights(run: Run, trial: optuna.Trial, spec: ArchSpec, model: Any) -> None:
    """The trained weights into the study's artifact store, before the trial is told (Optuna records an
    artifact only on a running trial)."""
    info = {"study": run.study.study_name, "trial": trial.number, "image_size": run.data.image_size,
            "mean": list(run.data.mean), "std": list(run.data.std), "dataset": run.data.name}
    content = run.functions.weights(model, spec, num_classes=run.data.num_classes, in_chans=run.data.in_chans,
                                 info=info)
    trial.set_user_attr(Attr.WEIGHTS, keep_weights(run.artifacts, trial, content))


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
    with sigint_ignored():
        try:
            frozen = stored_trial(run.study, trial)
            trial.set_user_attr(Attr.FAIL_REASON, fail_reason(INTERRUPTED))
            run.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if Attr.SPEC in frozen.user_attrs:
                keep = {k: frozen.user_attrs[k] for k in POINT_ATTRS if k in frozen.user_attrs}
                run.study.enqueue_trial(requeue_params(frozen), user_attrs=keep)
        except Exception:  # noqa: BLE001 - the storage may be what failed; the heartbeat will tell the next run
            pass


def cpu_threads() -> int:
    """The CPU threads torch computes with in this process."""
    import torch

    return torch.get_num_threads()


def versions() -> dict[str, str]:
    """The library versions a trial ran with."""
    import torch

    from gcsearch import __version__

    return {"gcsearch": __version__, "torch": torch.__version__, "optuna": optuna.__version__,
            "python": platform.python_version()}
