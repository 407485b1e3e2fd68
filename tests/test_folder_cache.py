"""Image folders: only the split's images are decoded, the result is cached for the next process, a changed
folder or a damaged cache file is decoded again, and the images equal those of decoding the whole folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import SPLIT_SEED, load_data
from gcsearch.training.folder import CACHE_ENV

PIL = pytest.importorskip("PIL", reason="Pillow is in the test extra")
from PIL import Image  # noqa: E402

CPU = torch.device("cpu")


def write_noise_folder(root: Path, counts: dict[str, int], size: int = 40, suffix: str = ".png") -> None:
    """Images of random pixels and varied sizes, so a wrong order or a wrong image cannot go unnoticed."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for j in range(count):
            h, w = size + (j % 5), size + 2 * (j % 3)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{j:04d}{suffix}")


def old_reader(root: Path, image_size: int, train_size: int, val_size: int):
    """The reader before the cache: decode every image one at a time, then take the seeded split."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for label, cdir in enumerate(class_dirs):
        for path in sorted(p for p in cdir.iterdir() if p.suffix.lower() in (".png", ".jpg") and p.is_file()):
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val, train = order[:val_size], order[val_size:val_size + train_size]
    return x[train], y[train], x[val], y[val]


def cfg(root: Path, **kw: int) -> ProxyConfig:
    return ProxyConfig(dataset="folder", data_dir=str(root), **{"image_size": 16, "train_size": 30,
                                                                "val_size": 10, **kw})


def cache_files(where: Path) -> list[Path]:
    return sorted(where.glob("*.pt"))


def test_same_images_order_and_labels_as_decoding_the_whole_folder(tmp_path: Path, folder_cache: Path) -> None:
    write_noise_folder(tmp_path / "data", {"b": 23, "a": 17, "c": 11})
    want = old_reader(tmp_path / "data", 16, 30, 10)
    for _ in range(2):  # decoded, then from the cache
        d = load_data(cfg(tmp_path / "data"), CPU)
        for got, expected in zip((d.x_train, d.y_train, d.x_val, d.y_val), want, strict=True):
            assert torch.equal(got, expected)
    assert d.classes == ("a", "b", "c") and d.x_train.shape == (30, 3, 16, 16)
    assert len(cache_files(folder_cache)) == 1


def test_only_the_split_is_decoded(tmp_path: Path) -> None:
    write_noise_folder(tmp_path, {"a": 20, "b": 20})
    order = torch.randperm(40, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    unused = order[-1]  # train_size 10 + val_size 5 of 40: the last of the permutation is not used
    label, j = divmod(unused, 20)
    (tmp_path / "ab"[label] / f"{j:04d}.png").write_bytes(b"\x89PNG not really")
    d = load_data(cfg(tmp_path, train_size=10, val_size=5), CPU)
    assert d.train_size == 10 and d.val_size == 5


def test_a_changed_image_rebuilds_the_cache(tmp_path: Path, folder_cache: Path) -> None:
    write_noise_folder(tmp_path, {"a": 20, "b": 20})
    first = load_data(cfg(tmp_path, train_size=40, val_size=5), CPU)
    [old_file] = cache_files(folder_cache)
    # Overwrite one image with a solid one of the same size; give it another mtime even on a coarse clock.
    path = tmp_path / "b" / "0003.png"
    with Image.open(path) as im:
        size = im.size
    Image.new("RGB", size, (1, 2, 3)).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = load_data(cfg(tmp_path, train_size=40, val_size=5), CPU)
    want = old_reader(tmp_path, 16, 40, 5)
    assert torch.equal(second.x_train, want[0]) and torch.equal(second.x_val, want[2])
    changed = (first.x_train != second.x_train).flatten(1).any(1)
    assert int(changed.sum()) == 1  # exactly the changed image differs, and it is the solid color now
    assert second.x_train[changed][0, :, 5, 5].tolist() == [1, 2, 3]
    [new_file] = cache_files(folder_cache)  # the superseded file is gone
    assert new_file != old_file


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, folder_cache: Path, damage: str) -> None:
    write_noise_folder(tmp_path, {"a": 12, "b": 12})
    first = load_data(cfg(tmp_path, train_size=20, val_size=4), CPU)
    [path] = cache_files(folder_cache)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # inside the image bytes: the file still loads, only the checksum can tell
        middle = raw.find(bytes(first.x_train[0, 0, 0, :8].tolist()))
        assert middle > 0
        raw[middle] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"garbage" * 100)
    path.write_bytes(bytes(raw))
    second = load_data(cfg(tmp_path, train_size=20, val_size=4), CPU)
    assert torch.equal(second.x_train, first.x_train) and torch.equal(second.x_val, first.x_val)
    assert path.read_bytes() != bytes(raw)  # rewritten
    third = load_data(cfg(tmp_path, train_size=20, val_size=4), CPU)
    assert torch.equal(third.x_train, first.x_train)


def test_cache_off_writes_nothing(tmp_path: Path, folder_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, "off")
    write_noise_folder(tmp_path / "data", {"a": 6, "b": 6})
    d = load_data(cfg(tmp_path / "data", train_size=8, val_size=2), CPU)
    assert d.train_size == 8
    assert not cache_files(folder_cache)


LOAD = """
import json, sys, time
import torch
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import load_data
cfg = ProxyConfig(dataset="folder", data_dir=sys.argv[1], image_size=32, train_size=300, val_size=20)
t = time.perf_counter()
d = load_data(cfg, torch.device("cpu"))
print(json.dumps({"seconds": time.perf_counter() - t, "sum": int(d.x_train.sum()) + int(d.x_val.sum())}))
"""


def test_a_second_process_loads_the_cached_folder_ten_times_faster(tmp_path: Path) -> None:
    write_noise_folder(tmp_path / "data", {"a": 120, "b": 120, "c": 120}, size=256, suffix=".jpg")

    def load() -> dict:
        out = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "data")], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=60)
        return json.loads(out.stdout)

    first, second = load(), load()
    assert first["sum"] == second["sum"]
    assert first["seconds"] >= 10 * second["seconds"], (first, second)


def test_a_cache_folder_that_cannot_be_made_costs_a_decode_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a-file" / "cache"))
    write_noise_folder(tmp_path / "data", {"a": 6, "b": 6})
    want = old_reader(tmp_path / "data", 16, 8, 2)
    d = load_data(cfg(tmp_path / "data", train_size=8, val_size=2), CPU)
    assert torch.equal(d.x_train, want[0]) and torch.equal(d.x_val, want[2])


def test_workers_starting_together_share_one_cache_file(tmp_path: Path, folder_cache: Path) -> None:
    write_noise_folder(tmp_path / "data", {"a": 60, "b": 60}, size=64)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", LOAD, str(tmp_path / "data")], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    sums = {json.loads(p.communicate(timeout=60)[0])["sum"] for p in procs}
    assert [p.returncode for p in procs] == [0, 0] and len(sums) == 1
    assert len(cache_files(folder_cache)) == 1 and not list(folder_cache.glob("*.tmp"))
