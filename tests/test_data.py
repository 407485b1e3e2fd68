"""Proxy datasets: CIFAR's official pickle format, image folders, the synthetic set, splits and subsets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gcsearch.errors import DataError, InputError
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import SPLIT_SEED, load_data
from gcsearch.training.synthetic import SYNTHETIC_CLASSES, make_synthetic

CPU = torch.device("cpu")


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five training batches and a test batch in CIFAR-10's exact python format; returns all training data."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f)
        if name != "test_batch":
            xs.append(data)
            ys.append(labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f)
    return np.concatenate(xs), np.concatenate(ys)


def write_cifar100(root: Path, n: int = 60) -> None:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        with open(root / name, "wb") as f:
            pickle.dump({b"filenames": [b"x.png"] * n, b"fine_labels": fine,
                         b"coarse_labels": [v // 5 for v in fine], b"data": data}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}, f)


def test_cifar10_official_format_round_trip(tmp_path: Path) -> None:
    x_all, y_all = write_cifar10(tmp_path / "cifar-10-batches-py")
    cfg = ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), train_size=60, val_size=30)
    d = load_data(cfg, CPU)
    assert (d.num_classes, d.in_chans, d.image_size, d.name) == (10, 3, 32, "cifar10")
    assert d.x_train.shape == (60, 3, 32, 32) and d.x_val.shape == (30, 3, 32, 32)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert d.classes[0] == "airplane" and d.classes[9] == "truck"
    # every image is one of the file's rows, with its own label: CIFAR rows are R plane, G plane, B plane
    order = torch.randperm(100, generator=torch.Generator().manual_seed(SPLIT_SEED))
    expect = torch.from_numpy(x_all).view(-1, 3, 32, 32)
    assert torch.equal(d.x_val, expect[order[:30]])
    assert torch.equal(d.y_val, torch.from_numpy(y_all)[order[:30]])
    assert torch.equal(d.x_train, expect[order[30:90]])
    assert d.x_train[0, 0, 0, 1].item() == x_all[order[30].item(), 1]  # red plane, row 0, column 1
    assert d.x_train[0, 2, 1, 0].item() == x_all[order[30].item(), 2048 + 32]  # blue plane, row 1


def test_cifar_data_dir_may_name_the_batch_folder_itself(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    d = load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), train_size=10, val_size=5), CPU)
    assert d.train_size == 10 and d.val_size == 5


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "cifar-100-python")
    d = load_data(ProxyConfig(dataset="cifar100", data_dir=str(tmp_path), train_size=100, val_size=20), CPU)
    assert d.num_classes == 100 and d.classes[3] == "c3"
    assert d.train_size == 40  # capped by the 60 images there are
    assert int(d.y_train.max()) < 100


def test_cifar_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing cifar10 batch file") as e:
        load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path)), CPU)
    assert "\n" not in str(e.value) and isinstance(e.value, InputError)


def test_cifar_truncated_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"data_batch_2: truncated or not a CIFAR python batch"):
        load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path)), CPU)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((4, 3072), np.uint8)}, r"needs keys b'data' and b'labels'"),
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"uint8 array N x 3072"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, r"uint8 array N x 3072"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, r"4 images but 3 labels"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"labels outside 0..9"),
        ([1, 2, 3], r"expected dict"),
    ],
)
def test_cifar_malformed_batch(tmp_path: Path, content: object, message: str) -> None:
    write_cifar10(tmp_path)
    with open(tmp_path / "data_batch_4", "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(DataError, match=message):
        load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path)), CPU)


def test_cifar_without_files_and_no_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing cifar100 batch file \(pass --download"):
        load_data(ProxyConfig(dataset="cifar100", data_dir=str(tmp_path / "nowhere")), CPU)


def test_cifar_resized_to_image_size(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    d = load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), image_size=16, train_size=8,
                              val_size=4), CPU)
    assert d.x_train.shape == (8, 3, 16, 16) and d.image_size == 16 and d.x_train.dtype == torch.uint8


def write_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 12)) -> None:
    from PIL import Image

    for i, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for j in range(count):
            color = (40 * i + 10, 7 * j, 200 - 30 * i)
            Image.new("RGB", size, color).save(root / name / f"{j:03d}.png")


def test_folder_loader(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is in the test extra")
    write_folder(tmp_path, {"cat": 12, "dog": 9, "emu": 9})
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    d = load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path), image_size=8, train_size=100,
                              val_size=6), CPU)
    assert d.classes == ("cat", "dog", "emu") and d.num_classes == 3
    assert d.x_train.shape == (24, 3, 8, 8) and d.x_val.shape == (6, 3, 8, 8)
    # a solid-color image stays that color after resizing: label i has red 40 * i + 10
    for x, y in zip(torch.cat([d.x_train, d.x_val]), torch.cat([d.y_train, d.y_val]), strict=True):
        assert int(x[0, 4, 4]) == 40 * int(y) + 10 and int(x[2, 0, 0]) == 200 - 30 * int(y)
    assert torch.bincount(torch.cat([d.y_train, d.y_val])).tolist() == [12, 9, 9]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"only": 3}, r"needs at least 2 class subfolders, found 1"),
        ({"a": 3, "b": 0}, r"b: class folder holds no images"),
    ],
)
def test_folder_bad_layout(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    pytest.importorskip("PIL", reason="Pillow is in the test extra")
    for name, count in layout.items():
        if count == 0:
            (tmp_path / name).mkdir()
    write_folder(tmp_path, {k: v for k, v in layout.items() if v})
    with pytest.raises(DataError, match=message):
        load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path), val_size=1), CPU)


def test_folder_unreadable_image_names_the_file(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is in the test extra")
    write_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken.png: cannot read image"):
        load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path), val_size=1), CPU)


def test_folder_missing_or_unset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data_dir: the folder dataset needs --data-dir"):
        load_data(ProxyConfig(dataset="folder"), CPU)
    with pytest.raises(DataError, match=r"nope: no such folder"):
        load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path / "nope")), CPU)


def test_folder_too_small_for_val_size(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="Pillow is in the test extra")
    write_folder(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(DataError, match=r"folder: 4 images, too few for val_size 4"):
        load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path), val_size=4), CPU)


def test_folder_without_pillow_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(DataError, match=r"needs Pillow \(pip install pillow\)"):
        load_data(ProxyConfig(dataset="folder", data_dir=str(tmp_path)), CPU)


def test_synthetic_is_deterministic_and_balanced() -> None:
    x1, y1 = make_synthetic(400, seed=5)
    x2, y2 = make_synthetic(400, seed=5)
    x3, _ = make_synthetic(400, seed=6)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert x1.shape == (400, 3, 32, 32) and x1.dtype == torch.uint8
    counts = torch.bincount(y1, minlength=SYNTHETIC_CLASSES)
    assert len(counts) == SYNTHETIC_CLASSES and int(counts.min()) > 400 / SYNTHETIC_CLASSES * 0.6


def test_synthetic_split_is_disjoint_and_subsets_are_stable() -> None:
    small = load_data(ProxyConfig(train_size=100, val_size=50), CPU)
    big = load_data(ProxyConfig(train_size=300, val_size=50), CPU)
    assert torch.equal(small.x_val, big.x_val)  # a larger train_size never changes validation
    assert torch.equal(small.x_train, big.x_train[:100])
    train_rows = {bytes(r.numpy()) for r in big.x_train.flatten(1)}
    assert not any(bytes(r.numpy()) in train_rows for r in big.x_val.flatten(1))
    assert big.num_classes == SYNTHETIC_CLASSES and big.image_size == 32
    assert len(big.mean) == 3 and all(0 < s < 255 for s in big.std)


def test_seeded_split_is_disjoint_for_files(tmp_path: Path) -> None:
    x_all, _ = write_cifar10(tmp_path, per_batch=40)
    # make every image unique so that rows identify images
    d = load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), train_size=150, val_size=50), CPU)
    train_rows = {bytes(r.numpy()) for r in d.x_train.flatten(1)}
    val_rows = {bytes(r.numpy()) for r in d.x_val.flatten(1)}
    assert len(train_rows) == 150 and len(val_rows) == 50 and not train_rows & val_rows
    again = load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), train_size=150, val_size=50), CPU)
    assert torch.equal(d.x_train, again.x_train) and torch.equal(d.y_val, again.y_val)


def test_synthetic_cast_needs_the_whole_image() -> None:
    """The design claim, in numbers: the cast is read well from the whole image and badly from a patch."""
    x, y, shape, cast = make_synthetic(2000, seed=3, with_factors=True)
    assert torch.equal(y, (shape + cast) % SYNTHETIC_CLASSES)
    warmth = x[:, 0].float() - x[:, 2].float()  # red minus blue, per pixel
    whole = (warmth.mean((1, 2)) > 0).long()
    patch = (warmth[:, :6, :6].mean((1, 2)) > 0).long()  # a 6 x 6 corner, a small receptive field
    acc_whole = float((whole == cast).float().mean())
    acc_patch = float((patch == cast).float().mean())
    assert acc_whole > 0.95 and acc_patch < 0.88 and acc_whole - acc_patch > 0.1
    # the shape alone leaves two classes: the best shape-only guess is right half the time
    assert torch.bincount(cast).min() > 900
