"""How long an image folder takes to load: the reader before the cache, the first load, and a cached load.

Generates a folder of JPEGs once (default 20,000 files of 160 x 160 in 10 classes, smooth shapes plus noise,
reused on the next run) and reads it at the proxy's size, side by side in one run. Each of (a)-(e) is the
folder's reading and the seeded split alone (what `load_data`'s folder branch does):

- (a) the reader before the cache (kept below): every image of the folder decoded one at a time, then the
  split;
- (b) the first load of the split (empty cache): only the split's images decoded, by a thread pool, and the
  cache file written;
- (c) the cached load of the same split in a fresh Python process (what the next worker or study pays);
  also shown: the whole `load_data` call there, whose per-channel mean and std of the training images
  every dataset pays after reading;
- (d) the first and (e) cached loads of the whole folder (train_size covering it), so decoding in threads
  compares with (a) on the same images.

The split read through `load_data` from the cache must equal (a)'s tensors; the script checks that.

    python benchmarks/folder_load.py [--files 20000] [--size 160] [--image-size 64] [--train-size 10000]
        [--val-size 2000] [--dir /tmp/gcsearch-folder-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gcsearch.training.config import ProxyConfig  # noqa: E402
from gcsearch.training.data import SPLIT_SEED, _split_indices, load_data  # noqa: E402
from gcsearch.training.folder import index_folder, read_folder_split  # noqa: E402

CLASSES = 10
CACHED_LOAD = """
import json, sys, time
t0 = time.perf_counter()
import torch
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import load_data
sys.path.insert(0, sys.argv[2])
from folder_load import new_reader
cfg = ProxyConfig(**json.loads(sys.argv[1]))
t1 = time.perf_counter()
new_reader(cfg)
t2 = time.perf_counter()
load_data(cfg, torch.device("cpu"))
t3 = time.perf_counter()
print(json.dumps({"folder": t2 - t1, "process": t2 - t0, "load_data": t3 - t2}))
"""


def generate(root: Path, files: int, size: int) -> None:
    """`files` JPEGs in CLASSES folders; skipped when a previous run left a complete folder."""
    marker = root / f".complete-{files}-{size}"
    if marker.exists():
        return
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(files):
        label = i % CLASSES
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.linspace(0, 255, size, dtype=np.float32)
        img = (base[None, :, None] * rng.uniform(0.2, 1.0, 3) + rng.normal(0, 12, (size, size, 3)))
        im = Image.fromarray(img.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        x, y, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 8, size // 3))]
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(folder / f"{i:06d}.jpg", quality=90)
    marker.write_text("")
    print(f"generated {files} JPEGs of {size}x{size} in {time.perf_counter() - start:.1f} s")


def old_reader(cfg: ProxyConfig) -> tuple[torch.Tensor, ...]:
    """The folder reader and split before the cache: every image decoded in turn, then the seeded split."""
    from PIL import Image

    root = Path(cfg.data_dir)
    suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for label, cdir in enumerate(class_dirs):
        for path in sorted(p for p in cdir.iterdir() if p.suffix.lower() in suffixes and p.is_file()):
            with Image.open(path) as im:
                im = im.convert("RGB").resize((cfg.image_size, cfg.image_size), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = order[: cfg.val_size], order[cfg.val_size : cfg.val_size + cfg.train_size]
    return x[train], y[train], x[val], y[val]


def new_reader(cfg: ProxyConfig) -> tuple[torch.Tensor, ...]:
    """`load_data`'s folder branch alone: list, split, decode or read the cache (no statistics)."""
    index = index_folder(cfg.data_dir)
    train, val = _split_indices(len(index), cfg.train_size, cfg.val_size, "folder")
    x, y = read_folder_split(index, cfg.image_size, torch.cat([train, val]).tolist())
    n = len(train)
    return x[:n], y[:n], x[n:], y[n:]


def timed(fn, *args):  # -> (result, seconds)
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def cached_in_fresh_process(cfg: ProxyConfig) -> dict:
    fields = {"dataset": "folder", "data_dir": cfg.data_dir, "image_size": cfg.image_size,
              "train_size": cfg.train_size, "val_size": cfg.val_size}
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", CACHED_LOAD, json.dumps(fields), here], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--val-size", type=int, default=2_000)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "gcsearch-folder-bench"))
    args = parser.parse_args()
    root = Path(args.dir)
    generate(root, args.files, args.size)
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    split = ProxyConfig(dataset="folder", data_dir=str(root), image_size=args.image_size,
                        train_size=args.train_size, val_size=args.val_size)
    whole = ProxyConfig(dataset="folder", data_dir=str(root), image_size=args.image_size,
                        train_size=args.files, val_size=args.val_size)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GCSEARCH_FOLDER_CACHE"] = cache
        old, t_old = timed(old_reader, split)
        _, t_first = timed(new_reader, split)
        new = load_data(split, cpu)  # from the cache just written, through the whole of load_data
        same = all(torch.equal(a, b) for a, b in zip(old, (new.x_train, new.y_train, new.x_val, new.y_val),
                                                     strict=True))
        cached = [cached_in_fresh_process(split) for _ in range(3)]
        _, t_first_all = timed(new_reader, whole)
        cached_all = [cached_in_fresh_process(whole) for _ in range(3)]
        size_mb = sum(p.stat().st_size for p in Path(cache).glob("*.pt")) / 1e6

    def median(runs: list[dict], key: str) -> float:
        return sorted(r[key] for r in runs)[len(runs) // 2]

    t_cached, t_cached_all = median(cached, "folder"), median(cached_all, "folder")
    n_split = args.train_size + args.val_size
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.files} JPEGs {args.size}x{args.size} -> {args.image_size}x{args.image_size}; split "
          f"{args.train_size} + {args.val_size}; {threads} decoding threads; cache files {size_mb:.0f} MB")
    print(f"identical to the old reader (images, order, labels): {same}")
    rows = [
        ("(a) old reader: whole folder, one image at a time, then the split", t_old),
        (f"(b) first load: the split's {n_split} images, threads, cache written", t_first),
        ("(c) cached load of the split, fresh process (median of 3)", t_cached),
        ("    the same, with the process's imports", median(cached, "process")),
        ("    load_data's whole call there, with the training images' mean and std", median(cached, "load_data")),
        (f"(d) first load: whole folder ({args.files} images), threads, cache written", t_first_all),
        ("(e) cached load of the whole folder, fresh process (median of 3)", t_cached_all),
        ("    load_data's whole call there, with the training images' mean and std",
         median(cached_all, "load_data")),
    ]
    for label, seconds in rows:
        print(f"{label:<76} {seconds:7.2f} s")
    print(f"ratios: (a)/(b) {t_old / t_first:.1f}x   (a)/(c) {t_old / t_cached:.0f}x   (b)/(c) "
          f"{t_first / t_cached:.0f}x   (a)/(d) {t_old / t_first_all:.2f}x   (d)/(e) {t_first_all / t_cached_all:.0f}x")
    if not same:
        raise SystemExit("the cached reader's images differ from the old reader's")


if __name__ == "__main__":
    main()
