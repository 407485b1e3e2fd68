"""The proxy training loop: config validation, schedule, augmentation, determinism, divergence, learning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gcsearch import ArchSpec, build_model
from gcsearch.errors import InputError
from gcsearch.model.device import resolve_device
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import ProxyData, load_data
from gcsearch.training.device import use_device, warm_up
from gcsearch.training.loop import (
    CHECK_EVERY,
    Diverged,
    TrainResult,
    crop_flip,
    lr_factor,
    seed_everything,
    train_candidate,
)
from gcsearch.training.synthetic import make_synthetic

CPU = torch.device("cpu")


def tiny_net(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )


def color_data(n_train: int = 256, n_val: int = 128, size: int = 16) -> ProxyData:
    """4 classes told apart by a colored square on noise: a tiny net learns it in a few epochs."""
    g = torch.Generator().manual_seed(0)
    colors = torch.tensor([[220, 30, 30], [30, 200, 30], [30, 30, 220], [220, 220, 30]], dtype=torch.uint8)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(60, 180, (n, 3, size, size), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 4, (n,), generator=g)
        for i in range(n):
            r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
            x[i, :, r : r + 6, c : c + 6] = colors[y[i]].view(3, 1, 1)
        return x, y

    xt, yt = make(n_train)
    xv, yv = make(n_val)
    flat = xt.transpose(0, 1).reshape(3, -1).float()
    return ProxyData(xt, yt, xv, yv, 4, 3, size, "colors", tuple(flat.mean(1).tolist()), tuple(flat.std(1).tolist()))


# ---- ProxyConfig --------------------------------------------------------------------------------------------


def test_config_round_trip_and_fingerprint() -> None:
    cfg = ProxyConfig(epochs=2, lr=0.05, schedule="cosine")
    assert ProxyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == ProxyConfig.from_dict(cfg.to_dict()).fingerprint()
    assert len(cfg.fingerprint()) == 16
    # where the data lives does not change results; everything else does
    assert ProxyConfig(data_dir="/a").fingerprint() == ProxyConfig(data_dir="/b").fingerprint()
    fps = {ProxyConfig(**{k: v}).fingerprint() for k, v in [("epochs", 4), ("lr", 0.3), ("batch_size", 32),
                                                             ("label_smoothing", 0.0), ("schedule", "cosine"),
                                                             ("train_size", 100), ("image_size", 24)]}
    assert len(fps) == 7 and ProxyConfig().fingerprint() not in fps


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"epoch": 3}, r"^epoch: unknown proxy setting"),
        ({"dataset": "mnist"}, r"^dataset: must be one of synthetic, cifar10, cifar100, folder"),
        ({"epochs": 0}, r"^epochs: must be an integer in 1..1000 \(got 0\)"),
        ({"epochs": 2.5}, r"^epochs: must be an integer"),
        ({"batch_size": True}, r"^batch_size: must be an integer"),
        ({"lr": -1}, r"^lr: must be a number > 0"),
        ({"lr": float("nan")}, r"^lr: must be a number > 0"),
        ({"lr": "0.1"}, r"^lr: must be a number > 0"),
        ({"label_smoothing": 1.0}, r"^label_smoothing: must be in \[0, 1\)"),
        ({"schedule": "step"}, r"^schedule: must be one of onecycle, cosine"),
        ({"image_size": 4}, r"^image_size: must be an integer in 8..512"),
        ({"train_size": 0}, r"^train_size: must be an integer >= 1"),
    ],
)
def test_config_rejects_bad_values(d: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ProxyConfig.from_dict(d)


def test_config_accepts_ints_for_floats() -> None:
    assert ProxyConfig.from_dict({"lr": 1, "weight_decay": 0}).lr == 1


# ---- pieces -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_schedule_warms_up_peaks_and_ends_near_zero(schedule: str) -> None:
    total = 200
    f = [lr_factor(schedule, s, total) for s in range(total)]
    assert f[0] == pytest.approx(0.1)
    assert max(f) == pytest.approx(1.0, abs=0.02)
    peak = f.index(max(f))
    assert all(a <= b + 1e-12 for a, b in zip(f[:peak], f[1 : peak + 1], strict=True))  # rises
    assert all(a >= b - 1e-12 for a, b in zip(f[peak:], f[peak + 1 :], strict=False))  # then falls
    assert f[-1] < 0.02


def test_crop_flip_moves_pixels_and_keeps_content() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    x[:, :, 3, 3] = 255  # one bright pixel per image
    fill = torch.tensor([7, 7, 7], dtype=torch.uint8)
    out = crop_flip(x, 2, fill, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    bright = (out == 255).all(1)  # N x H x W
    positions = {(int(r), int(c)) for r, c in bright.nonzero()[:, 1:]}
    assert len(positions) > 10  # shifted to many places, rows 1..5 and columns 1..5 (and their mirrors)
    assert all(1 <= r <= 5 and 1 <= c <= 6 for r, c in positions)
    assert int(bright.sum()) == 64  # the pixel never falls outside with pad 2
    border = (out == 7).all(1).sum(dim=(1, 2))
    assert int(border.max()) > 0 and int(border.min()) == 0  # padding shows with the fill value


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None)
    with pytest.raises(InputError, match=r"^device: 'gpu0' is not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"^device: cuda:1 requested but CUDA is not available"):
            resolve_device("cuda:1")


# ---- training -----------------------------------------------------------------------------------------------


def test_tiny_run_learns_far_above_chance_and_reports_every_epoch() -> None:
    data = color_data()
    cfg = ProxyConfig(epochs=4, batch_size=32, lr=0.1, image_size=16)
    seed_everything(0)
    epochs, steps = [], []
    result = train_candidate(tiny_net(4), data, cfg, seed=0, device=CPU,
                             on_epoch=lambda e, a: epochs.append((e, a)), on_step=lambda s, t: steps.append((s, t)))
    assert isinstance(result, TrainResult)
    assert result.epochs == 4 and len(result.accuracies) == 4 and result.accuracy == result.accuracies[-1]
    assert [e for e, _ in epochs] == [1, 2, 3, 4] and [a for _, a in epochs] == result.accuracies
    assert steps[0] == (1, 32) and steps[-1] == (32, 32) and len(steps) == 32  # 256 // 32 per epoch
    assert result.accuracy >= 90.0  # chance is 25%
    assert all(a * 128 / 100 == pytest.approx(round(a * 128 / 100)) for a in result.accuracies)  # k / 128 images
    assert result.images_per_second > 0 and result.train_seconds > 0


def test_same_seed_same_accuracies_on_cpu() -> None:
    data = color_data(n_train=128, n_val=64)
    cfg = ProxyConfig(epochs=2, batch_size=32, lr=0.05, image_size=16)
    runs = []
    for seed in (3, 3, 4):
        seed_everything(seed)
        model = tiny_net(4)
        result = train_candidate(model, data, cfg, seed=seed, device=CPU)
        runs.append((result.accuracies, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[2][1], strict=True))


def test_training_runs_cudnn_deterministic_and_restores_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed, same result on a GPU too: no autotuned or order-varying cuDNN algorithms while training."""
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, "deterministic", False)
    monkeypatch.setattr(cudnn, "benchmark", True)  # what a user may have set for their own code
    seen = set()
    train_candidate(tiny_net(4), color_data(64, 32), ProxyConfig(epochs=1, batch_size=32, image_size=16), seed=0,
                    device=CPU, on_step=lambda s, t: seen.add((cudnn.deterministic, cudnn.benchmark)))
    assert seen == {(True, False)}
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)


@pytest.mark.cuda
def test_same_seed_same_accuracies_on_the_gpu() -> None:
    cfg = ProxyConfig(train_size=512, val_size=256, epochs=2)
    data = load_data(cfg, torch.device("cuda"))
    runs = []
    for _ in range(2):
        seed_everything(3)
        model = build_model(ArchSpec(block="gc", width=8), num_classes=data.num_classes)
        result = train_candidate(model, data, cfg, seed=3, device="cuda")
        runs.append((result.accuracies, [p.detach().cpu() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_use_device_makes_a_numbered_gpu_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker on cuda:1 must not open a context on (or allocate from) GPU 0."""
    made_current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    for device in ("cuda:1", "cpu", "cuda", "cuda:0"):
        use_device(torch.device(device))
    assert made_current == [torch.device("cuda:1"), torch.device("cuda:0")]  # plain "cuda" is the current one


def test_warm_up_leaves_the_seeded_random_state_alone() -> None:
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    warm_up(CPU)  # the rest of its work is on a GPU: kernels loaded, cuDNN and cuBLAS handles made
    assert torch.equal(torch.rand(3), expected)


def test_absurd_lr_raises_diverged_with_epoch() -> None:
    data = color_data(n_train=128, n_val=32)
    cfg = ProxyConfig(epochs=3, batch_size=32, lr=1e12, image_size=16)
    seed_everything(0)
    with pytest.raises(Diverged, match=r"^diverged: loss is (nan|inf) at epoch 1") as e:
        train_candidate(tiny_net(4), data, cfg, seed=0, device=CPU)
    assert e.value.epoch == 1 and isinstance(e.value, RuntimeError)


def test_divergence_is_found_within_check_every_steps() -> None:
    data = color_data(n_train=32 * (CHECK_EVERY + 10), n_val=32)
    cfg = ProxyConfig(epochs=1, batch_size=32, lr=0.01, image_size=16)
    seen = []
    model = tiny_net(4)

    def poison(step: int, total: int) -> None:
        seen.append(step)
        if step == 3:
            with torch.no_grad():
                model[-1].weight.fill_(math.inf)

    with pytest.raises(Diverged):
        train_candidate(model, data, cfg, seed=0, device=CPU, on_step=poison)
    assert max(seen) == CHECK_EVERY  # stopped at the first check, not at the end of the epoch


def test_on_epoch_may_raise_and_it_propagates() -> None:
    class Stop(Exception):
        pass

    def stop(epoch: int, accuracy: float) -> None:
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_candidate(tiny_net(4), color_data(64, 32), ProxyConfig(epochs=5, batch_size=32, image_size=16), seed=0,
                        device=CPU, on_epoch=stop)


def test_proxy_backbone_trains_on_synthetic_through_load_data() -> None:
    """The real pieces together, small: proxy ResNet with GC blocks, the built-in set, both schedules."""
    for schedule in ("onecycle", "cosine"):
        cfg = ProxyConfig(train_size=256, val_size=200, epochs=1, schedule=schedule)
        data = load_data(cfg, CPU)
        seed_everything(0)
        model = build_model(ArchSpec(block="gc"), num_classes=data.num_classes)
        before = [p.detach().clone() for p in model.parameters()]
        result = train_candidate(model, data, cfg, seed=0, device=CPU)
        assert result.epochs == 1 and 0 <= result.accuracy <= 100
        assert result.accuracy * 2 == round(result.accuracy * 2)  # k / 200 images
        changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        assert changed == len(before)  # every parameter, the GC blocks' included, took a step
    x, _ = make_synthetic(4, seed=1)
    assert torch.equal(x, data.x_train[:4])
