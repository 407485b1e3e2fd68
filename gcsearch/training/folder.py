"""An image folder as a dataset: one subfolder per class, read with Pillow and resized to the proxy's size."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gcsearch.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


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
