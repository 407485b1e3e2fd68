"""Proxy datasets as uint8 tensors on the training device.

Every dataset ends up as four tensors (`x_train`, `y_train`, `x_val`, `y_val`) held on the device, images as
uint8 N x C x H x W, labels as int64. Training reads batches by slicing them; there is no DataLoader. The
train/val split and the train_size/val_size subsets are drawn with a fixed seed (`SPLIT_SEED`), so every trial
of a study sees the same images, and validation images never train.

- `synthetic`: generated from a seed, no download (see `make_synthetic` for why global context matters there).
- `cifar10` / `cifar100`: the official python-pickle batches, checked before use; `download=True` fetches them.
- `folder`: one subfolder per class, read with Pillow and resized to image_size.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from gcsearch.errors import InputError

if TYPE_CHECKING:
    from gcsearch.training.loop import ProxyConfig

DATASETS = ("synthetic", "cifar10", "cifar100", "folder")
SPLIT_SEED = 0
# Bumped whenever the synthetic generator changes its images, so that a changed generator changes the proxy
# fingerprint and old trials are never mixed with new ones.
SYNTHETIC_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class DataError(InputError):
    """A dataset cannot be read: a missing or truncated file, a malformed folder. One line, naming the path."""


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
        x, y, classes = read_folder(cfg.data_dir, cfg.image_size)
        x_train, y_train, x_val, y_val = _split(x, y, cfg.train_size, cfg.val_size, cfg.dataset)
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
    n = int(x.shape[0])
    if n <= val_size:
        raise DataError(f"{name}: {n} images, too few for val_size {val_size} plus training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx = order[:val_size]
    train_idx = order[val_size : val_size + train_size]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x.contiguous()
    out = []
    for chunk in x.split(2048):
        r = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(r.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------------------
# synthetic


def _synthetic_split(cfg: ProxyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    # Train and val come from separate generator streams, so the split is disjoint by construction and a
    # larger train_size never changes the validation images.
    x_train, y_train = make_synthetic(cfg.train_size, seed=SPLIT_SEED * 2 + 1, image_size=cfg.image_size)
    x_val, y_val = make_synthetic(cfg.val_size, seed=SPLIT_SEED * 2 + 2, image_size=cfg.image_size)
    return x_train, y_train, x_val, y_val, SYNTHETIC_CLASSES


SYNTHETIC_CLASSES = 5


def _shape_masks(size: int) -> torch.Tensor:
    """Five outline shapes on a size x size canvas: ring, plus, filled square, X, small center square."""
    m = torch.zeros(SYNTHETIC_CLASSES, size, size)
    t = max(size // 5, 1)  # stroke width
    mid = size // 2
    m[0] = 1
    m[0, t:-t, t:-t] = 0
    m[1, mid - t // 2 - 1 : mid + (t + 1) // 2, :] = 1
    m[1, :, mid - t // 2 - 1 : mid + (t + 1) // 2] = 1
    m[2] = 1
    r = torch.arange(size)
    for d in range(t):
        keep = r + d < size
        m[3, r[keep], (r + d)[keep]] = 1
        m[3, r[keep], (size - 1 - r - d).clamp(min=0)[keep]] = 1
    q = max(size // 3, 1)
    m[4, q:-q, q:-q] = 1
    return m


def _paste(img: torch.Tensor, color: torch.Tensor, mask: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
    """Paint `color` (n x 3) where `mask` (n x h x w, 0/1) is set, with its corner at (ys, xs), in place."""
    n, h, w = mask.shape
    rows = (ys[:, None] + torch.arange(h))[:, :, None].expand(n, h, w)
    cols = (xs[:, None] + torch.arange(w))[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    on = mask > 0
    patch = img[batch, :, rows, cols]  # n x h x w x 3
    patch = torch.where(on[..., None], color[:, None, None, :], patch)
    img[batch, :, rows, cols] = patch


def make_synthetic(
    n: int, seed: int, image_size: int = 32, *, with_factors: bool = False
) -> tuple[torch.Tensor, ...]:
    """`n` generated images (uint8 n x 3 x S x S) and labels in 0..4; the same seed gives the same images.

    Each image is colored noise with random colored blobs (clutter), a faint color cast over the whole
    image (warm or cool: one hidden bit), and one bright shape out of five at a random place. The label is
    (shape + cast) mod 5: the shape alone leaves two candidates, and the cast alone says nothing. The cast
    is weak per pixel and its strength varies per image, so a small neighbourhood, blobs included, often
    tells it wrongly, while an average over the whole image tells it well. Recognizing the class therefore
    needs the image-wide cast at the shape's location, which a global-context block brings there in one
    step while plain convolutions must build it up through their receptive field. At 32 x 32 the proxy's
    c5 already sees the whole image, so plain ResNets learn it too, only later (measured in BENCHMARKS.md).

    Images are made in chunks of `SYNTHETIC_CHUNK`, each from its own seed, so the first k images of a set
    do not depend on its size: a larger train_size adds images and keeps the others.
    With `with_factors`, also returns the shape (0..4) and the cast (0 cool, 1 warm) of every image.
    """
    chunks = [_synthetic_chunk(seed * 1_000_003 + k, image_size) for k in range(-(-n // SYNTHETIC_CHUNK))]
    if not chunks:
        chunks = [_synthetic_chunk(0, image_size)]
    parts = tuple(torch.cat([c[i] for c in chunks])[:n] for i in range(4))
    return parts if with_factors else parts[:2]


def _synthetic_chunk(seed: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = SYNTHETIC_CHUNK
    g = torch.Generator().manual_seed(seed)
    s = image_size
    img = 0.5 + SYNTHETIC_NOISE * torch.randn(n, 3, s, s, generator=g)
    cell = max(s // 4, 2)
    # clutter: blobs in distinct cells of a 4 x 4 grid, random colors, half their pixels set
    cells = torch.rand(n, 16, generator=g).argsort(1)[:, :SYNTHETIC_BLOBS]
    for j in range(SYNTHETIC_BLOBS):
        ys = (cells[:, j] // 4) * cell
        xs = (cells[:, j] % 4) * cell
        color = torch.rand(n, 3, generator=g)
        mask = (torch.rand(n, cell, cell, generator=g) > 0.5).float()
        _paste(img, color, mask, ys.clamp(max=s - cell), xs.clamp(max=s - cell))
    cast = torch.randint(0, 2, (n,), generator=g)
    lo, hi = SYNTHETIC_CAST
    amp = (lo + (hi - lo) * torch.rand(n, generator=g)) * (2 * cast - 1).float()
    img[:, 0] += amp[:, None, None]
    img[:, 2] -= amp[:, None, None]
    size = max(round(s * 10 / 32), 3)
    shape = torch.randint(0, SYNTHETIC_CLASSES, (n,), generator=g)
    color = 0.6 + 0.4 * torch.rand(n, 3, generator=g)
    ys = torch.randint(0, s - size + 1, (n,), generator=g)
    xs = torch.randint(0, s - size + 1, (n,), generator=g)
    _paste(img, color, _shape_masks(size)[shape], ys, xs)
    x = (img.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return x, (shape + cast) % SYNTHETIC_CLASSES, shape, cast


SYNTHETIC_CHUNK = 256  # images per independently seeded chunk
SYNTHETIC_NOISE = 0.2  # per-pixel std of the background noise
SYNTHETIC_BLOBS = 6  # clutter blobs per image
SYNTHETIC_CAST = (0.02, 0.06)  # range of the cast's strength per pixel (red up and blue down, or the reverse)


# --------------------------------------------------------------------------------------------------------------
# CIFAR

CIFAR = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "meta": "batches.meta",
        "names": b"label_names",
        "labels": b"labels",
        "classes": 10,
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "train": ["train"],
        "meta": "meta",
        "names": b"fine_label_names",
        "labels": b"fine_labels",
        "classes": 100,
    },
}


def default_data_dir() -> Path:
    return Path(os.environ.get("GCSEARCH_DATA", Path.home() / ".cache" / "gcsearch"))


def cifar_root(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The folder that holds the batch files: `data_dir` itself or its extracted tarball folder."""
    info = CIFAR[name]
    base = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if (base / info["folder"]).is_dir():
        return base / info["folder"]
    return base


def read_cifar(
    name: str, data_dir: str | os.PathLike | None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """The official training images of CIFAR-10/100 (uint8 N x 3 x 32 x 32), labels, and class names.

    Only the training batches are read: the proxy's validation images are held out from them, and the
    official test set stays untouched by the search.
    """
    info = CIFAR[name]
    root = cifar_root(name, data_dir)
    missing = [f for f in info["train"] if not (root / f).is_file()]
    if missing and download:
        download_cifar(name, Path(data_dir).expanduser() if data_dir else default_data_dir())
        root = cifar_root(name, data_dir)
        missing = [f for f in info["train"] if not (root / f).is_file()]
    if missing:
        hint = "" if download else " (pass --download to fetch it, or --data-dir to point at it)"
        raise DataError(f"{root / missing[0]}: missing {name} batch file{hint}")
    xs, ys = [], []
    for fname in info["train"]:
        x, y = _read_cifar_batch(root / fname, info["labels"], info["classes"])
        xs.append(x)
        ys.append(y)
    classes = _read_cifar_names(root / info["meta"], info["names"], info["classes"])
    return torch.cat(xs), torch.cat(ys), classes


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python batches and nothing else.

    The official files hold dicts of bytes, ints, lists and one numpy array; pickle would otherwise call any
    global a file names (os.system included), so a file dropped into --data-dir could run code. Only the
    numpy functions that rebuild an array are allowed.
    """

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays, "
                                         "lists, bytes and numbers")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing"):
            raise DataError(f"{path}: not a CIFAR python batch ({e})") from None
        raise DataError(f"{path}: truncated or not a CIFAR python batch ({type(e).__name__})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: truncated or not a CIFAR python batch ({type(e).__name__})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR python batch (holds {type(d).__name__}, expected dict)")
    return d


def _read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    d = _unpickle(path)
    data, labels = d.get(b"data"), d.get(label_key)
    if data is None or labels is None:
        raise DataError(f"{path}: not a CIFAR python batch (needs keys b'data' and {label_key!r})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: b'data' must be a uint8 array N x 3072, found {type(data).__name__} {shape}")
    if len(labels) != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {len(labels)} labels (truncated?)")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"{path}: labels outside 0..{num_classes - 1}")
    x = torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32)
    return x, y


def _read_cifar_names(path: Path, key: bytes, num_classes: int) -> tuple[str, ...]:
    if path.is_file():
        names = _unpickle(path).get(key)
        if isinstance(names, list) and len(names) == num_classes:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return tuple(str(i) for i in range(num_classes))


def download_cifar(name: str, data_dir: Path) -> Path:
    """Fetch and extract the official tarball into `data_dir`; the md5 is checked before extracting."""
    info = CIFAR[name]
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=data_dir, suffix=".tar.gz", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        try:
            urllib.request.urlretrieve(info["url"], tmp_path)
        except OSError as e:
            raise DataError(f"{info['url']}: download failed ({getattr(e, 'reason', e)})") from None
        md5 = hashlib.md5(tmp_path.read_bytes()).hexdigest()
        if md5 != info["md5"]:
            raise DataError(f"{info['url']}: download corrupt (md5 {md5}, expected {info['md5']})")
        with tarfile.open(tmp_path, "r:gz") as tar:
            tar.extractall(data_dir, filter="data")
    finally:
        tmp_path.unlink(missing_ok=True)
    return data_dir / info["folder"]


# --------------------------------------------------------------------------------------------------------------
# image folder


def read_folder(
    data_dir: str | os.PathLike | None, image_size: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images under `data_dir/<class>/`, RGB, resized to image_size x image_size; classes sorted by name."""
    if not data_dir:
        raise DataError("data_dir: the folder dataset needs --data-dir, a folder with one subfolder per class")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    try:
        from PIL import Image
    except ImportError:
        raise DataError("folder: reading an image folder needs Pillow (pip install pillow)") from None
    import numpy as np

    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{root}: needs at least 2 class subfolders, found {len(class_dirs)}")
    images, labels = [], []
    for label, cdir in enumerate(class_dirs):
        files = sorted(p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{cdir}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
            except (OSError, ValueError) as e:
                raise DataError(f"{path}: cannot read image ({e})") from None
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64), tuple(p.name for p in class_dirs)


__all__ = [
    "DATASETS",
    "DataError",
    "ProxyData",
    "load_data",
    "make_synthetic",
    "read_cifar",
    "read_folder",
    "download_cifar",
]
