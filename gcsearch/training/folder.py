"""An image folder as a dataset: one subfolder per class, read with Pillow and resized to the proxy's size.

Only the images a split uses are decoded (`read_folder_split`), by a pool of threads (Pillow releases the GIL
while it decodes and resizes), and the decoded uint8 tensors are kept in a cache file, so the next process,
worker or study with the same folder and settings loads them instead of decoding again.

The cache file is named after what makes its content: every file's path under the folder, size and
modification time, the image size, the selected images, and Pillow's version. A folder whose files change
gets a new key, so a stale cache is never served; the file it supersedes (same folder, image size and number
of images) is removed when the new one is written.
A cache file is read with `torch.load(weights_only=True)` and its SHA-256 checked against the one stored in
it: a damaged file is decoded again and rewritten, never trusted. Where the cache lives: `GCSEARCH_FOLDER_CACHE`
(a folder; `off` turns the cache off), else `folder-cache` beside gcsearch's other data (`GCSEARCH_DATA`, else
`~/.cache/gcsearch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from gcsearch.errors import DataError
from gcsearch.training.cifar import default_data_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
CACHE_ENV = "GCSEARCH_FOLDER_CACHE"
CACHE_FORMAT = "gcsearch-folder-cache"
CACHE_VERSION = 1  # bump when the decoding changes what an image becomes


@dataclass(frozen=True)
class FolderIndex:
    """The images of a folder, in the order the dataset numbers them: classes by name, files by name."""

    root: Path
    classes: tuple[str, ...]
    names: tuple[str, ...]  # "<class>/<file>", relative to root
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return self.root / self.names[i]

    def fingerprint(self) -> str:
        """SHA-256 of every file's relative path, size and modification time."""
        digest = hashlib.sha256()
        base = str(self.root)
        for name in self.names:
            try:
                st = os.stat(os.path.join(base, name))
            except OSError as exc:
                raise DataError(f"{self.root / name}: cannot read image ({exc.strerror or exc})") from None
            digest.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def index_folder(data_dir: str | os.PathLike | None) -> FolderIndex:
    """List `data_dir/<class>/<image>` without decoding anything; classes and files sorted by name."""
    if not data_dir:
        raise DataError("data_dir: the folder dataset needs --data-dir, a folder with one subfolder per class")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    _pillow_version()  # before listing: without Pillow, nothing else about the folder matters
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: needs at least 2 class subfolders, found {len(classes)}")
    names: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        with os.scandir(root / cls) as entries:
            found = sorted(e.name for e in entries
                           if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file())
        if not found:
            raise DataError(f"{root / cls}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        names.extend(f"{cls}/{name}" for name in found)
        labels.extend([label] * len(found))
    return FolderIndex(root, tuple(classes), tuple(names), tuple(labels))


def read_folder_split(
    index: FolderIndex, image_size: int, selected: Sequence[int], cache_dir: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images `selected` (indices into `index`, in that order) and their labels, from the cache when it
    holds them, otherwise decoded and cached. `cache_dir` None: `cache_location()`."""
    selected = [int(i) for i in selected]
    labels = torch.tensor([index.labels[i] for i in selected], dtype=torch.int64)
    where = cache_location() if cache_dir is None else cache_dir
    if where is None:
        return decode_images([index.path(i) for i in selected], image_size), labels
    key, family = _cache_key(index, image_size, selected)
    path = where / f"{family}-{key}.pt"
    with _locked(where, family):  # a second worker waits for the first one's file instead of decoding too
        x = _read_cache(path, key)
        if x is None or tuple(x.shape) != (len(selected), 3, image_size, image_size):
            x = decode_images([index.path(i) for i in selected], image_size)
            _write_cache(path, key, x)
            for old in where.glob(f"{family}-*.pt"):
                if old != path:
                    with contextlib.suppress(OSError):
                        old.unlink()
    return x, labels


def cache_location() -> Path | None:
    """Where decoded folders are cached; None when `GCSEARCH_FOLDER_CACHE=off`."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("off", "0", "none", "no"):
        return None
    return Path(value).expanduser() if value else default_data_dir() / "folder-cache"


def decode_images(paths: Sequence[Path], image_size: int, workers: int | None = None) -> torch.Tensor:
    """Decode `paths` (RGB, resized to image_size with Pillow's bilinear filter) into uint8 N x 3 x H x W,
    in that order, with a pool of threads."""
    import numpy as np

    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)  # N x C x H x W: no copy after
    workers = workers or min(32, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                             else os.cpu_count() or 1)
    chunks = [range(start, min(start + 256, len(paths))) for start in range(0, len(paths), 256)]

    def run(chunk: range) -> None:
        for i in chunk:
            out[i] = _decode(paths[i], image_size).transpose(2, 0, 1)

    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            run(chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, chunks))  # list(): re-raises the first DataError
    return torch.from_numpy(out)


def _decode(path: Path, image_size: int):  # -> np.ndarray (H x W x 3 uint8)
    import numpy as np

    Image = _pillow()
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def _pillow():  # -> the PIL.Image module
    try:
        from PIL import Image
    except ImportError:
        raise DataError("folder: reading an image folder needs Pillow (pip install pillow)") from None
    return Image


def _pillow_version() -> str:
    """Pillow's version, without importing PIL.Image (a cached load never needs it)."""
    try:
        import PIL
    except ImportError:
        raise DataError("folder: reading an image folder needs Pillow (pip install pillow)") from None
    return str(PIL.__version__)


def _cache_key(index: FolderIndex, image_size: int, selected: Sequence[int]) -> tuple[str, str]:
    """(key of the content, its family: the folder, the image size and the number of images). A changed
    folder keeps its family, so the superseded cache file can be found and removed; studies that select
    other numbers of images from one folder keep a file each."""
    where = json.dumps([str(index.root.resolve()), image_size, len(selected)])
    family = hashlib.sha256(where.encode()).hexdigest()[:16]
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, CACHE_VERSION, _pillow_version(), image_size]).encode())
    digest.update(index.fingerprint().encode())
    digest.update(json.dumps(list(index.classes)).encode())
    digest.update(torch.tensor(list(selected), dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest(), family


def _tensor_sha256(x: torch.Tensor) -> str:
    digest = hashlib.sha256(f"{tuple(x.shape)}|{x.dtype}|".encode())
    digest.update(memoryview(x.contiguous().numpy()).cast("B"))
    return digest.hexdigest()


def _read_cache(path: Path, key: str) -> torch.Tensor | None:
    """The cached images, or None when the file is absent, damaged, or not this key's."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        x = payload["images"]
        ok = (payload.get("format") == CACHE_FORMAT and payload.get("version") == CACHE_VERSION
              and payload.get("key") == key and isinstance(x, torch.Tensor) and x.dtype == torch.uint8
              and x.dim() == 4 and payload.get("sha256") == _tensor_sha256(x))
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, whatever is wrong with it
        return None
    return x if ok else None


def _write_cache(path: Path, key: str, x: torch.Tensor) -> None:
    """Write atomically (a temporary file renamed into place); a cache that cannot be written is skipped."""
    payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, "images": x,
               "sha256": _tensor_sha256(x)}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain file would be, so a shared cache folder can be shared
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # a read-only or full disk costs the next process a decode, never a failure
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _locked(where: Path, family: str) -> Iterator[None]:
    """An exclusive lock per folder and image size, across processes on this machine (where fcntl exists)."""
    try:
        import fcntl

        where.mkdir(parents=True, exist_ok=True)
        fh = open(where / f"{family}.lock", "a+b")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()
