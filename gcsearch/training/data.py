"""Proxy datasets as uint8 tensors on the training device.

Every dataset ends up as four tensors (`x_train`, `y_train`, `x_val`, `y_val`) held on the device, images as
uint8 N x C x H x W, labels as int64. Training reads batches by slicing them; there is no DataLoader. The
train/val split and the train_size/val_size subsets are drawn with a fixed seed (`SPLIT_SEED`), so every trial
of a study sees the same images, and validation images never train.

- `synthetic` (synthetic.py): generated from a seed, no download (see `make_synthetic` for why global context
  matters there).
- `cifar10` / `cifar100` (cifar.py): the official python-pickle batches, checked before use; `download=True`
  fetches them.
- `folder` (folder.py): one subfolder per class, read with Pillow and resized to image_size; only the
  images of the split are decoded, and they are cached for the next process (see folder.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gcsearch.errors import DataError
from gcsearch.training.cifar import read_cifar
from gcsearch.training.config import DATASETS, ProxyConfig
from gcsearch.training.folder import index_folder, read_folder_split
from gcsearch.training.synthetic import SYNTHETIC_CLASSES, make_synthetic

SPLIT_SEED = 0


@dataclass
class ProxyData:
    """A proxy dataset on one device. Images uint8 N x C x H x W, labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    in_chans: int
    image_size: int
    name: str
    mean: tuple[float, ...]  # per-channel mean of the training images, in 0..255
    std: tuple[float, ...]  # per-channel std of the training images, in 0..255
    classes: tuple[str, ...] = ()

    @property
    def train_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def val_size(self) -> int:
        return int(self.x_val.shape[0])


def load_data(cfg: ProxyConfig, device: torch.device | str, download: bool = False) -> ProxyData:
    """Load the dataset that `cfg` names, split and subset it, and put it on `device`."""
    device = torch.device(device)
    classes: tuple[str, ...] = ()
    if cfg.dataset == "synthetic":
        x_train, y_train, x_val, y_val, num_classes = _synthetic_split(cfg)
    elif cfg.dataset in ("cifar10", "cifar100"):
        x, y, classes = read_cifar(cfg.dataset, cfg.data_dir, download=download)
        x_train, y_train, x_val, y_val = _split(x, y, cfg.train_size, cfg.val_size, cfg.dataset)
        num_classes = len(classes)
    elif cfg.dataset == "folder":
        # Only the images the split selects are decoded (from the cache when it holds them); the selection
        # is _split's, so the images, their order and labels are those of decoding the whole folder.
        index = index_folder(cfg.data_dir)
        train_idx, val_idx = _split_indices(len(index), cfg.train_size, cfg.val_size, cfg.dataset)
        x, y = read_folder_split(index, cfg.image_size, torch.cat([train_idx, val_idx]).tolist())
        n_train = len(train_idx)
        x_train, y_train, x_val, y_val = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
        classes = index.classes
        num_classes = len(classes)
    else:
        raise DataError(f"dataset: unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    x_train, x_val = _resize(x_train, cfg.image_size), _resize(x_val, cfg.image_size)
    flat = x_train.transpose(0, 1).reshape(x_train.shape[1], -1).float()
    mean = tuple(float(v) for v in flat.mean(1))
    std = tuple(max(float(v), 1e-3) for v in flat.std(1))
    return ProxyData(
        x_train=x_train.to(device),
        y_train=y_train.to(device),
        x_val=x_val.to(device),
        y_val=y_val.to(device),
        num_classes=num_classes,
        in_chans=int(x_train.shape[1]),
        image_size=cfg.image_size,
        name=cfg.dataset,
        mean=mean,
        std=std,
        classes=classes,
    )


def _split(
    x: torch.Tensor, y: torch.Tensor, train_size: int, val_size: int, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded permutation: the first val_size images validate, the next (up to) train_size train."""
    train_idx, val_idx = _split_indices(int(x.shape[0]), train_size, val_size, name)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def _split_indices(n: int, train_size: int, val_size: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices) of `n` images, as `_split` takes them."""
    if n <= val_size:
        raise DataError(f"{name}: {n} images, too few for val_size {val_size} plus training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[val_size : val_size + train_size], order[:val_size]


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x.contiguous()
    out = []
    for chunk in x.split(2048):
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _synthetic_split(cfg: ProxyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    # Train and val come from separate generator streams, so the split is disjoint by construction and a
    # larger train_size never changes the validation images.
    x_train, y_train = make_synthetic(cfg.train_size, seed=SPLIT_SEED * 2 + 1, image_size=cfg.image_size)
    x_val, y_val = make_synthetic(cfg.val_size, seed=SPLIT_SEED * 2 + 2, image_size=cfg.image_size)
    return x_train, y_train, x_val, y_val, SYNTHETIC_CLASSES
