"""The Optuna study's life: create it (queueing a grid's points) or resume it, and the sampler that proposes.

A resumed study must stay comparable: the same proxy settings (their fingerprint), objectives, backbone and
seed. A grid study's points are queued trials that workers claim; resuming queues the points it misses.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from gcsearch.contract import STUDY_META, Attr, Meta, point_of, taken_points
from gcsearch.errors import InputError
from gcsearch.space import ArchSpec
from gcsearch.storage.writer import exclusive
from gcsearch.study.spec import Candidate, StudySpec

SETUP_QUIET_S = 5.0  # a study with no metadata whose trial count has not moved for this long: its creator died


def point_attrs(candidate: Candidate | ArchSpec, repeat: int) -> dict[str, Any]:
    spec = candidate.spec if isinstance(candidate, Candidate) else candidate
    return {Attr.SPEC: spec.to_dict(), Attr.KEY: spec.key, Attr.LABEL: spec.label(), Attr.REPEAT: repeat}


def make_sampler(spec: StudySpec, target: int, *, worker_index: int = 0, existing: int = 0
                 ) -> optuna.samplers.BaseSampler:
    """The study file's sampler, seeded from the study's final seed. A grid study's points are queued trials,
    so its sampler never proposes.

    Each local worker gets its own stream (`worker_index`), and a resumed study that holds `existing` trials
    another one, so that a random or TPE sampler does not replay the proposals of the first run.
    """
    seed = spec.seed + 7919 * worker_index + (104729 * existing if not spec.is_grid else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                              n_startup_trials=max(2, min(10, target // 3)))
        if spec.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, target // 4)))
        return optuna.samplers.RandomSampler(seed=seed)


@dataclass
class OpenedStudy:
    """A study ready for workers: its final spec, the Optuna study with its sampler, what it records."""

    spec: StudySpec  # the file's, with --seed, then the stored seed and baseline repeats of a resumed study
    study: optuna.Study
    meta: dict[str, Any]  # the stored metadata (contract.Meta)
    queued: int  # grid points this call queued
    target: int  # finished trials to reach
    distributions: dict[str, BaseDistribution]  # what each parameter is recorded with


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, meta: dict[str, Any], *,
               trials: int | None = None, worker_index: int = 0, pruner: optuna.pruners.BasePruner | None = None,
               where: str = "", check_seed: bool = True, fill_grid: bool = True) -> OpenedStudy:
    """Create the study (queueing every grid point) or load it to resume, and settle what it runs with.

    `spec` is the study file with the command line's settings; `check_seed`: whether its seed was given
    (--seed), so a resumed study started with another is refused, else the stored seed is the study's.
    The target (`trials`, else the budget) and the sampler are made once, from the final spec.

    Creation is atomic in the database (the study name is unique), so when several workers start at
    once exactly one creates the study and queues the grid; the others wait until it has written the
    metadata, which it does last. A resumed study must have been made with the same proxy settings,
    objectives, backbone and seed; its grid gets the points it misses (new ones, or ones whose trial
    failed for a reason other than divergence) queued again, unless `fill_grid` is False (a local worker
    whose parent process has just done that).
    """
    try:
        study = optuna.create_study(study_name=spec.name, directions=spec.directions, storage=storage,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage, pruner=pruner)
        spec, stored, queued = _resume(spec, storage, meta, study, where, check_seed, fill_grid)
    else:
        queued = queue_points(study, spec, spec.grid()) if spec.is_grid else 0
        study.set_user_attr(STUDY_META, meta)
        stored = meta
    trials_now = study.get_trials(deepcopy=False)
    target = spec.target(trials)
    study.sampler = make_sampler(spec, target, worker_index=worker_index, existing=len(trials_now))
    return OpenedStudy(spec=spec, study=study, meta=stored, queued=queued, target=target,
                       distributions=trial_distributions(spec, trials_now))


def _resume(spec: StudySpec, storage: optuna.storages.BaseStorage, meta: dict[str, Any], study: optuna.Study,
            where: str, check_seed: bool, fill_grid: bool) -> tuple[StudySpec, dict[str, Any], int]:
    """A study that exists: its creator's metadata, the checks, the spec it was made with, its missing points."""
    stored = _wait_for_meta(study)
    if stored is None:
        if any(point_of(t) is None for t in study.get_trials(deepcopy=False)):
            raise InputError(f"--study: a study named {spec.name!r} already exists in {where or 'the storage'} "
                             "and was not made by gcsearch; give the study file another name")
        stored = meta  # its creator stopped before writing the metadata: adopt it
    check_resumable(spec, stored, meta, study, where, check_seed=check_seed)
    if not check_seed and stored.get(Meta.SEED) is not None:
        spec = replace(spec, seed=int(stored[Meta.SEED]))
    spec = as_created(spec, stored)
    queued = 0
    if spec.is_grid and fill_grid:
        # One at a time: machines resuming together would each see a point missing and each queue it.
        with exclusive(storage, f"gcsearch: queue {spec.name}"):
            queued = queue_missing(study, spec)
    if stored is meta or stored.get(Meta.STUDY_FILE) != meta[Meta.STUDY_FILE]:
        # The space, budget or sampler may change between runs; the stored file is the latest one.
        keys = (Meta.STUDY_FILE, Meta.STUDY, Meta.SAMPLER, Meta.REPEATS, Meta.CONSTRAINTS, Meta.VERSION, Meta.RACE,
                *([Meta.BASELINE_REPEATS] if Meta.BASELINE_REPEATS in stored else []))
        stored = {**stored, **{k: meta[k] for k in keys if k in meta}}
        study.set_user_attr(STUDY_META, stored)
    return spec, stored, queued


def as_created(spec: StudySpec, stored: dict[str, Any]) -> StudySpec:
    """`spec` with the baseline repeats its stored study was made with: a study made before grids repeated
    their baseline keeps its grid, so resuming it runs what it lacked and nothing more."""
    if Meta.BASELINE_REPEATS in stored or spec.baseline_repeats == 1:
        return spec
    return replace(spec, baseline_repeats=1)


def _wait_for_meta(study: optuna.Study) -> dict[str, Any] | None:
    last_count, last_change = -1, time.monotonic()
    while True:
        meta = study.user_attrs.get(STUDY_META)
        if isinstance(meta, dict):
            return meta
        count = len(study.get_trials(deepcopy=False))
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > SETUP_QUIET_S:
            return None
        time.sleep(0.25)


def check_resumable(spec: StudySpec, stored: dict[str, Any], meta: dict[str, Any], study: optuna.Study,
                    where: str = "", check_seed: bool = True) -> None:
    """Refuse to add trials that would not be comparable with the stored ones (InputError, exit 2)."""
    name = f"study {spec.name!r}" + (f" in {where}" if where else "")
    fix = "give the study another name, use another --storage, or restore the earlier settings"
    if stored.get(Meta.PROXY_FINGERPRINT) != meta[Meta.PROXY_FINGERPRINT]:
        old, new = stored.get(Meta.PROXY) or {}, meta[Meta.PROXY]
        diffs = [f"{k}: {old.get(k)!r} stored, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                 if k != "data_dir" and old.get(k) != new.get(k)]
        detail = "; ".join(diffs) if diffs else "a different fingerprint"
        raise InputError(f"--study: {name} was run with other proxy settings ({detail}); trials from different "
                         f"proxies must not share one table: {fix}")
    old_objectives = [o.get("name") for o in stored.get(Meta.OBJECTIVES) or ()]
    if old_objectives != list(spec.objectives) or [d.name.lower() for d in study.directions] != spec.directions:
        raise InputError(f"{spec.source}:objectives: {name} has objectives {old_objectives}, this file says "
                         f"{list(spec.objectives)}: {fix}")
    for key in (Meta.BACKBONE, Meta.WIDTH, Meta.DEPTH):
        if key in stored and stored[key] != meta[key]:
            raise InputError(f"{spec.source}:{key}: {name} was run with {key} {stored[key]!r}, this file says "
                             f"{meta[key]!r}: {fix}")
    if check_seed and stored.get(Meta.SEED, meta[Meta.SEED]) != meta[Meta.SEED]:
        raise InputError(f"--seed: {name} was started with seed {stored.get(Meta.SEED)}, not {meta[Meta.SEED]}; "
                         "run it without --seed to resume it")
    _check_parameters(spec, recorded_distributions(study.get_trials(deepcopy=False)), name, fix)


def _check_parameters(spec: StudySpec, recorded: dict[str, BaseDistribution], name: str, fix: str) -> None:
    """Optuna keeps a parameter's distribution (a categorical's choices) from its first trial on, and fails a
    trial that records it with another. A grid records each point with the distributions already recorded, so
    its values must lie in them; a sampler proposes from the file's choices, so they must be the recorded ones."""
    for dim in spec.space:
        old = recorded.get(dim)
        if old is None:
            continue
        if spec.is_grid:
            outside = [v for c in spec.candidates() if (v := spec.point_params(c.spec).get(dim)) is not None
                       and not contains(old, v)]
            problem = f"{outside[0]!r} is not one of them" if outside else ""
        else:
            new = spec.distributions()[dim]
            problem = "" if compatible(old, new) else f"this file gives {_describe(new)}"
        if problem:
            raise InputError(f"{spec.source}:space.{dim}: {name} records {dim} with {_describe(old)} and Optuna "
                             f"cannot change that once a trial has it; {problem}: {fix}")


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "the choices " + ", ".join(str(c) for c in dist.choices)
    return f"the range {getattr(dist, 'low', '?')}..{getattr(dist, 'high', '?')}"


def recorded_distributions(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """Each parameter's distribution as a study first recorded it (Optuna checks every later one against it)."""
    found: dict[str, BaseDistribution] = {}
    for t in trials:
        for param, dist in t.distributions.items():
            found.setdefault(param, dist)
    return found


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether `value` is a value `dist` holds (a categorical's choice, an integer in an int range)."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    low, high = getattr(dist, "low", None), getattr(dist, "high", None)
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and low is not None
            and high is not None and low <= value <= high)


def compatible(old: BaseDistribution, new: BaseDistribution) -> bool:
    """Whether Optuna lets a trial record `new` for a parameter first recorded with `old`."""
    if type(old) is not type(new):
        return False
    if isinstance(old, CategoricalDistribution):
        return old.choices == new.choices  # type: ignore[attr-defined]
    return getattr(old, "log", None) == getattr(new, "log", None)


def trial_distributions(spec: StudySpec, trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """The distribution each parameter is recorded with in this study: the one recorded first, else the spec's.

    A grid extended after its first run records its new points with the distributions its old ones have (and a
    study made before grids recorded one parameter per dimension keeps recording its `candidate`)."""
    return {**spec.distributions(), **recorded_distributions(trials)}


def queue_points(study: optuna.Study, spec: StudySpec, points: list[tuple[Candidate, int]]) -> int:
    """Queue (candidate, repeat) points as WAITING trials; a worker claims each one exactly once."""
    for cand, repeat in points:
        study.enqueue_trial(spec.point_params(cand.spec), user_attrs=point_attrs(cand, repeat))
    return len(points)


def queue_missing(study: optuna.Study, spec: StudySpec) -> int:
    """Queue the grid points that have no queued, running, finished or diverged trial."""
    taken = taken_points(study.get_trials(deepcopy=False))
    return queue_points(study, spec, [(c, r) for c, r in spec.grid() if (c.key, r) not in taken])
