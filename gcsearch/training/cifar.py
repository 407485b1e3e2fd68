"""CIFAR-10 and CIFAR-100: the official python-pickle batches, checked before use and unpickled safely, and their
download (md5 checked before extracting)."""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import torch

from gcsearch.errors import DataError

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
