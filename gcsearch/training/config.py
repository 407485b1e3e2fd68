"""The proxy task's settings: what a trial trains on and for how long. Torch-free, so a study file's [proxy] table
is checked, and a study's proxy fingerprint compared, without loading torch.

Where a trial starts (`start`):
- "scratch": every candidate is trained from its own random initialization for `epochs` at `lr`.
- "baseline": the paired design. For each seed the block-less network is trained once with the settings above
  (the *start*); every candidate of that seed, the block-less control included, loads the start's weights
  for every layer it shares with it, keeps its own new layers at their reference initialization, and is
  fine-tuned for `finetune_epochs` at `finetune_lr` (cosine schedule) on the same data order. Candidates of
  one seed then differ only by their blocks, so their differences are measured per seed (paired).
- "weights": the same, from a pretrained file instead of a trained baseline (`weights`: a torchvision- or
  timm-layout ResNet state dict for the study's resnet18/34/50/101). The seed sets the data order and the new
  layers' (and a replaced classifier's) initialization. The fingerprint holds the file's SHA-256, not its path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from gcsearch.errors import InputError

DATASETS = ("synthetic", "cifar10", "cifar100", "folder")
SCHEDULES = ("onecycle", "cosine")
STARTS = ("scratch", "baseline", "weights")
FINETUNE_SCHEDULE = "cosine"
def weights_sha256(path: str | None) -> str:
    """The SHA-256 of a pretrained file: what its trials were started from. InputError when it cannot be read."""
    try:
        with open(os.path.expanduser(str(path)), "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else \
                hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        raise InputError(f"weights: {path}: no such file") from None
    except OSError as exc:
        raise InputError(f"weights: {path}: cannot read it ({exc.strerror or exc})") from None


FINETUNE_SEED_OFFSET = 1_000_000  # a fine-tune's data order: not the one its start trained on


def finetune_seed(seed: int) -> int:
    """The seed of a fine-tune's shuffling and augmentation: one per seed, shared by every candidate of it."""
    return seed + FINETUNE_SEED_OFFSET


# Settings that only the paired design reads: a "scratch" proxy leaves them out of its dict and fingerprint,
# so every study made before they existed keeps its fingerprint.
START_KEYS = ("start", "finetune_epochs", "finetune_lr", "weights")
# Both versions enter the fingerprint, so that trials made before and after a change never share a study.
# Bump TRAIN_VERSION when the loop changes in a way that changes results (augmentation, schedule shape,
# optimizer); bump SYNTHETIC_VERSION whenever the synthetic generator (synthetic.py) changes its images.
TRAIN_VERSION = 1
SYNTHETIC_VERSION = 1


@dataclass(frozen=True)
class ProxyConfig:
    """Everything about the proxy task that changes a trial's accuracy, except the seed."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    image_size: int = 32
    train_size: int = 3000
    val_size: int = 1000
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"
    start: str = "scratch"
    finetune_epochs: float = 0.5  # may be a fraction: the fine-tune then ends part-way through its last epoch
    finetune_lr: float = 0.02
    weights: str | None = None  # start = "weights": the pretrained file (where; its SHA-256 is what)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.start == "scratch":
            for key in START_KEYS:
                del d[key]
        return d

    @property
    def paired(self) -> bool:
        """Whether candidates fine-tune from a shared start per seed (and are compared per seed)."""
        return self.start != "scratch"

    def start_proxy(self) -> ProxyConfig:
        """What the start (the block-less baseline of a seed) is trained with: these settings from scratch."""
        return replace(self, start="scratch", weights=None)

    def finetune_proxy(self) -> ProxyConfig:
        """What a candidate is fine-tuned with, from the start: same data, its own learning rate and cosine
        schedule. Its length is `finetune_epochs`, which the loop takes as its `epochs` (it may be a fraction);
        `epochs` here is that rounded up, the number of validations."""
        return replace(self, start="scratch", weights=None, epochs=math.ceil(self.finetune_epochs),
                       lr=self.finetune_lr, schedule=FINETUNE_SCHEDULE)

    @property
    def trial_epochs(self) -> float:
        """How long one trial trains: `epochs` from scratch, `finetune_epochs` in the paired design."""
        return self.finetune_epochs if self.paired else self.epochs

    def trial_proxy(self) -> ProxyConfig:
        """What one trial trains with: the proxy itself, or its fine-tune in the paired design."""
        return self.finetune_proxy() if self.paired else self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProxyConfig:
        """Build from plain data (a study file's [proxy] table); InputError names the first bad key."""
        if not isinstance(d, dict):
            raise InputError(f"proxy: expected a table, found {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        for key in d:
            if key not in known:
                raise InputError(f"{key}: unknown proxy setting; known: {', '.join(known)}")
        return cls(**d)

    def fingerprint(self) -> str:
        """16 hex chars; equal exactly when trials are comparable (data_dir is where, not what)."""
        d = self.to_dict()  # a "scratch" proxy without START_KEYS: its fingerprint predates them
        del d["data_dir"]
        if self.start == "weights":
            d["weights"] = weights_sha256(self.weights)
        elif "weights" in d:
            del d["weights"]
        d["_versions"] = {"train": TRAIN_VERSION, "synthetic": SYNTHETIC_VERSION}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _validate(cfg: ProxyConfig) -> None:
    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise InputError(f"{key}: {message} (got {getattr(cfg, key)!r})")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    need(cfg.dataset in DATASETS, "dataset", f"must be one of {', '.join(DATASETS)}")
    need(cfg.data_dir is None or isinstance(cfg.data_dir, str), "data_dir", "must be a path string")
    need(is_int(cfg.image_size) and 8 <= cfg.image_size <= 512, "image_size", "must be an integer in 8..512")
    need(is_int(cfg.train_size) and cfg.train_size >= 1, "train_size", "must be an integer >= 1")
    need(is_int(cfg.val_size) and cfg.val_size >= 1, "val_size", "must be an integer >= 1")
    need(is_int(cfg.epochs) and 1 <= cfg.epochs <= 1000, "epochs", "must be an integer in 1..1000")
    need(is_int(cfg.batch_size) and cfg.batch_size >= 2, "batch_size", "must be an integer >= 2")
    need(is_num(cfg.lr) and cfg.lr > 0, "lr", "must be a number > 0")
    need(is_num(cfg.weight_decay) and cfg.weight_decay >= 0, "weight_decay", "must be a number >= 0")
    need(is_num(cfg.label_smoothing) and 0 <= cfg.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
    need(cfg.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
    need(cfg.start in STARTS, "start", f"must be one of {', '.join(STARTS)}")
    need(is_num(cfg.finetune_epochs) and 0 < cfg.finetune_epochs <= 1000, "finetune_epochs",
         "must be a number in (0, 1000]; a fraction ends the fine-tune part-way through an epoch")
    need(is_num(cfg.finetune_lr) and cfg.finetune_lr > 0, "finetune_lr", "must be a number > 0")
    if cfg.start == "weights":
        need(isinstance(cfg.weights, str) and bool(cfg.weights.strip()), "weights",
             'start = "weights" needs the pretrained file: weights = "path/to/resnet50.pth"')
    else:
        need(cfg.weights is None, "weights", 'is read only with start = "weights"')
