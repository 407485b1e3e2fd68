"""Setting a worker up: what `gcsearch run` was asked (`RunOptions`), and `prepare`, which turns that into a
`Run`: the study file read, the storage opened, the data on the device, the Optuna study created or resumed.

The study file is read first and imports no torch, so a mistake in it costs one line and no torch import.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from gcsearch.contract import Meta
from gcsearch.errors import InputError
from gcsearch.run.engine import Engine, default_engine
from gcsearch.storage.artifacts import artifact_location, check_location
from gcsearch.storage.urls import DEFAULT_STORAGE, StorageURL, mask_url
from gcsearch.storage.writer import DEFAULT_HEARTBEAT, STORAGE_ERRORS, open_storage, storage_failure
from gcsearch.study.lifecycle import as_created, make_sampler, open_study
from gcsearch.study.parse import read_study_file
from gcsearch.study.pruning import EpochPruner, make_pruner
from gcsearch.study.spec import StudySpec


@dataclass(frozen=True)
class RunOptions:
    """What `gcsearch run` was asked to do (one process's share of it)."""

    study: str
    storage: str | StorageURL = DEFAULT_STORAGE  # as the command line resolved it (storage.urls.resolve_storage)
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
    artifacts: str | None = None  # where trained weights go (storage.artifacts.artifact_location); "none": not kept


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
    engine: Engine
    pruner: EpochPruner | None = None
    device_name: str = "cpu"
    warmed_up: bool = False  # whether this process has paid the device's start-up costs (Engine.warm_up)
    artifacts: Path | None = None  # the folder trained weights are kept in; None: not kept

    @property
    def where(self) -> str:
        return mask_url(self.options.storage)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.data.in_chans, self.data.image_size, self.data.image_size)


def prepare(options: RunOptions, *, engine: Engine | None = None, train: bool = True,
            spec: StudySpec | None = None) -> tuple[Run, int]:
    """Read the study file, open the storage, load the data, and create or resume the study.

    Returns the run and how many grid points this call queued. `train=False` (the parent of local
    workers) loads the data on the CPU only to check it and to know its shape. `engine`: the functions
    trials run (default: the real ones). `spec`: a study built in code (`gcsearch check` derives its
    studies from the file) instead of the file `options.study` names.
    """
    if spec is None:
        spec = read_study_file(options.study)
    if options.data_dir is not None:
        spec = replace(spec, proxy=replace(spec.proxy, data_dir=options.data_dir))
    if options.seed is not None:
        spec = replace(spec, seed=options.seed)
    if options.trials is not None and options.trials < 1:
        raise InputError(f"--trials: expected a positive number, got {options.trials}")

    import torch  # the study file is good: now the device and the data

    from gcsearch.training.data import load_data
    from gcsearch.training.device import resolve_device, use_device

    device = resolve_device(options.device) if train else torch.device("cpu")
    if train:
        use_device(device)
    storage = open_storage(options.storage, heartbeat=options.heartbeat)
    where = mask_url(options.storage)
    data = load_data(spec.proxy, device, download=options.download)
    pruner = make_pruner(spec.pruning, spec.directions)
    input_size = (data.in_chans, data.image_size, data.image_size)
    target = spec.target(options.trials)
    sampler_seed = spec.seed + 7919 * options.worker_index
    artifacts = artifact_location(options.storage, options.artifacts)
    if artifacts is not None:
        check_location(artifacts)  # a folder that cannot be made fails now, not after the first trial's training
    meta = {**spec.metadata(input_size, data.num_classes),
            Meta.ARTIFACTS: str(artifacts.resolve()) if artifacts else None}
    with quiet_optuna(), storage_errors(options.storage):
        study, stored, queued = open_study(spec, storage, meta, sampler=make_sampler(spec, sampler_seed, target),
                                           pruner=pruner.optuna_pruner, where=where,
                                           check_seed=options.seed is not None, fill_grid=options.fill_grid)
        if options.seed is None and stored.get(Meta.SEED) is not None:
            spec = replace(spec, seed=int(stored[Meta.SEED]))
        spec = as_created(spec, stored)
        target = spec.target(options.trials)
        # A resumed random or TPE sampler must not replay the proposals of the first run.
        existing = len(study.get_trials(deepcopy=False))
        if existing and not spec.is_grid:
            study.sampler = make_sampler(spec, sampler_seed + 104729 * existing, target)
    device_name = str(device)
    if device.type == "cuda":
        device_name = f"{device} {torch.cuda.get_device_name(device)}"
    run = Run(options=options, spec=spec, storage=storage, study=study, meta=stored, data=data, device=device,
              target=target, seed=spec.seed, engine=engine or default_engine(), pruner=pruner,
              device_name=device_name, artifacts=artifacts)
    return run, queued


def passive_openmp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spin, unless the user chose otherwise (OMP_WAIT_POLICY).

    Spinning threads are right on an idle machine and disastrous on a shared one: when another process (or
    another local worker) holds a core, each parallel op waits for a descheduled thread while its partner
    spins. On this project's 2-core machine under load, a proxy trial ran 2-10x faster with PASSIVE. It
    takes effect only before torch is first imported, which a local worker process does after calling it.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines per trial and its experimental-feature warnings say nothing to our users."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
            warnings.filterwarnings("ignore", message=".*Fixed parameter .* is out of range.*")
            yield
    finally:
        optuna.logging.set_verbosity(level)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A database that fails under a worker (server gone, disk full, read-only file) ends the run with one
    line and exit code 1 instead of a traceback; its running trial is left to the heartbeat retry."""
    try:
        yield
    except STORAGE_ERRORS as exc:
        raise storage_failure(exc, url) from None
