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
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution

from gcsearch.contract import Meta
from gcsearch.errors import InputError
from gcsearch.run.functions import TrialFunctions, default_functions
from gcsearch.storage.artifacts import artifact_location, check_location
from gcsearch.storage.urls import DEFAULT_STORAGE, StorageURL, mask_url
from gcsearch.storage.writer import DEFAULT_HEARTBEAT, STORAGE_ERRORS, open_storage, storage_failure
from gcsearch.study.lifecycle import open_study
from gcsearch.study.parse import read_study_file
from gcsearch.study.pruning import EpochPruner, make_pruner
from gcsearch.study.spec import StudySpec
from gcsearch.training.chance import Chance
from gcsearch.training.config import ProxyConfig

if TYPE_CHECKING:
    import torch

    from gcsearch.training.data import ProxyData


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
    """One worker's view of a study: the final study spec, the storage, the data on the device, the target.

    `spec.seed` is the study's seed, settled once by `study.lifecycle.open_study` (the file's, else --seed,
    else the one a resumed study was started with); a trial trains with it plus its repeat index.
    """

    options: RunOptions
    spec: StudySpec
    storage: optuna.storages.RDBStorage
    study: optuna.Study
    meta: dict[str, Any]  # the stored metadata (contract.Meta): JSON values
    data: ProxyData
    device: torch.device
    target: int
    functions: TrialFunctions
    distributions: dict[str, BaseDistribution]  # what each parameter is recorded with (study.lifecycle)
    pruner: EpochPruner | None = None
    device_name: str = "cpu"
    warmed_up: bool = False  # whether this process has paid the device's start-up costs (TrialFunctions.warm_up)
    artifacts: Path | None = None  # the folder trained weights are kept in; None: not kept

    @property
    def where(self) -> str:
        return mask_url(self.options.storage)

    @property
    def chance(self) -> Chance:
        """The proxy's chance level: its classes, validated on `val_size` images."""
        return Chance(self.data.num_classes, self.spec.proxy.val_size)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return input_size(self.spec.proxy)


def input_size(proxy: ProxyConfig) -> tuple[int, int, int]:
    """What a candidate sees: every dataset reader returns RGB images, resized to the proxy's image size."""
    return (3, proxy.image_size, proxy.image_size)


def with_options(spec: StudySpec, options: RunOptions) -> StudySpec:
    """The study file with what the command line changes in it: the data folder and the seed."""
    if options.data_dir is not None:
        spec = replace(spec, proxy=replace(spec.proxy, data_dir=options.data_dir))
    if options.seed is not None:
        spec = replace(spec, seed=options.seed)
    return spec


def prepare(options: RunOptions, *, functions: TrialFunctions | None = None, train: bool = True,
            spec: StudySpec | None = None) -> tuple[Run, int]:
    """Read the study file, load the data, open the storage, and create or resume the study, in that order.

    Returns the run and how many grid points this call queued. `train=False` (the parent of local
    workers) loads the data on the CPU only to check it and to count its classes. `functions`: the functions
    trials run (default: the real ones). `spec`: a study built in code (`gcsearch check` derives its
    studies from the file) instead of the file `options.study` names.
    """
    spec = with_options(spec if spec is not None else read_study_file(options.study), options)
    if options.trials is not None and options.trials < 1:
        raise InputError(f"--trials: expected a positive number, got {options.trials}")

    import torch  # the study file is good: now the device and the data

    from gcsearch.model.device import resolve_device
    from gcsearch.training.data import load_data
    from gcsearch.training.device import use_device

    device = resolve_device(options.device) if train else torch.device("cpu")
    if train:
        use_device(device)
    data = load_data(spec.proxy, device, download=options.download)
    if spec.proxy.start == "weights":  # a file that does not fit the backbone: one line, before any training
        check_pretrained(spec, data.num_classes, data.in_chans)
    storage = open_storage(options.storage, heartbeat=options.heartbeat)
    artifacts = artifact_location(options.storage, options.artifacts)
    if artifacts is not None:
        check_location(artifacts)  # a folder that cannot be made fails now, not after the first trial's training
    elif spec.proxy.start == "baseline":
        raise InputError("--artifacts: [proxy] start = \"baseline\" keeps each seed's start in the artifact store; "
                         "give a folder with --artifacts (one that every machine of the study sees), not none")
    pruner = make_pruner(spec.pruning, spec.directions)
    meta = {**spec.metadata(input_size(spec.proxy), data.num_classes),
            Meta.ARTIFACTS: str(artifacts.resolve()) if artifacts else None}
    with quiet_optuna(), storage_errors(options.storage):
        opened = open_study(spec, storage, meta, trials=options.trials, worker_index=options.worker_index,
                            pruner=pruner.optuna_pruner, where=mask_url(options.storage),
                            check_seed=options.seed is not None, fill_grid=options.fill_grid)
    device_name = str(device)
    if device.type == "cuda":
        device_name = f"{device} {torch.cuda.get_device_name(device)}"
    run = Run(options=options, spec=opened.spec, storage=storage, study=opened.study, meta=opened.meta, data=data,
              device=device, target=opened.target, functions=functions or default_functions(),
              distributions=opened.distributions, pruner=pruner, device_name=device_name, artifacts=artifacts)
    return run, opened.queued


def check_pretrained(spec: StudySpec, num_classes: int, in_chans: int) -> None:
    """`start = "weights"`: the file must be readable and fit the study's backbone (InputError naming the first
    missing or mismatched key)."""
    from pathlib import Path

    from gcsearch.model.pretrained import map_pretrained, read_state_dict

    path = str(spec.proxy.weights)
    map_pretrained(spec.baseline, read_state_dict(path), num_classes, in_chans=in_chans, name=Path(path).name)


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
