"""The proxy training loop: a short, seeded SGD run on tensors that already live on the device.

Read it top to bottom: per epoch, one shuffle and one batched crop+flip of the whole training set (tensor ops,
no DataLoader), then plain steps over contiguous slices, then validation accuracy. channels_last everywhere,
bf16 autocast on CUDA only. A NaN/inf loss raises `Diverged`; the check reads a running sum every
`CHECK_EVERY` steps, so a GPU is not synchronized on every step. cuDNN runs deterministic algorithms during
training, so a seed repeats on a GPU too.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gcsearch.contract import DIVERGED, fail_reason
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import ProxyData

CHECK_EVERY = 50  # steps between NaN checks (each one is a device sync on GPU)
EVAL_BATCH = 1000
WARMUP = {"onecycle": 0.25, "cosine": 0.05}  # fraction of steps spent warming up


@dataclass
class TrainResult:
    accuracy: float  # final validation accuracy, percent
    accuracies: list[float] = field(default_factory=list)  # one per epoch, percent
    train_seconds: float = 0.0  # the whole call: training and validation
    epochs: int = 0
    images_per_second: float = 0.0  # training images over the time spent in training steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite. Its message is the trial's fail reason ("diverged: ...")."""

    def __init__(self, epoch: int, detail: str) -> None:
        super().__init__(fail_reason(DIVERGED, detail))
        self.epoch = epoch


@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN with deterministic algorithms and no autotuning, restored afterwards.

    Otherwise cuDNN may pick a convolution algorithm that sums in a varying order (or pick a different one per
    run when benchmarking), and two runs of one seed drift apart in the last bits and then in accuracy. No
    effect on the CPU.
    """
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. Call it before `build_model` so that a trial's weights repeat too."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass


def lr_factor(schedule: str, step: int, total: int) -> float:
    """The learning rate at `step` (0-based) as a fraction of the peak."""
    t = step / max(total, 1)
    warm = WARMUP[schedule]
    if t < warm:
        return 0.1 + 0.9 * t / warm
    t = (t - warm) / (1 - warm)
    if schedule == "onecycle":
        return max(1.0 - t, 0.0)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def crop_flip(x: torch.Tensor, pad: int, fill: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` pixels (the border filled with `fill`) and a random horizontal flip.

    Batched over the whole tensor: images that share a shift are cut in one slice, so an epoch costs
    2 * (2 * pad + 1) slicing ops plus one flip, whatever the dataset size. The random draws are made on the
    CPU from `generator`, so a seed gives the same augmentation on every device.
    """
    n, c, h, w = x.shape
    device = x.device
    out = x
    if pad > 0:
        padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad : pad + h, pad : pad + w] = x
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = torch.empty(n, c, h, w + 2 * pad, dtype=x.dtype, device=device)
        for v in range(2 * pad + 1):
            idx = (dy == v).nonzero().squeeze(1).to(device)
            rows[idx] = padded[idx, :, v : v + h, :]
        out = torch.empty_like(x)
        for v in range(2 * pad + 1):
            idx = (dx == v).nonzero().squeeze(1).to(device)
            out[idx] = rows[idx, :, :, v : v + w]
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)


@deterministic_cudnn()
def train_candidate(
    model: nn.Module,
    data: ProxyData,
    cfg: ProxyConfig,
    *,
    seed: int,
    device: torch.device | str,
    epochs: float | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `model` on `data` as `cfg` says and return its validation accuracy after every epoch.

    `epochs` overrides `cfg.epochs` and may be a fraction: training then ends part-way through its last
    epoch (after `round(epochs * steps per epoch)` steps, validated once more there), with the schedule laid
    over those steps. A fine-tune from a trained start uses it to stay short.
    The seed fixes the shuffling and augmentation; the weights are the caller's (see `seed_everything`).
    On the same device with the same thread count, the same model weights and seed give the same accuracies.
    `on_epoch` may raise (e.g. optuna.TrialPruned) and the exception propagates.
    """
    device = torch.device(device)
    start = time.perf_counter()
    torch.manual_seed(seed)  # anything stochastic inside the model
    generator = torch.Generator().manual_seed(seed)
    cuda = device.type == "cuda"

    model = model.to(device=device, memory_format=torch.channels_last)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    fill = torch.tensor(data.mean, device=device).round().clamp(0, 255).to(x_train.dtype)
    pad = max(data.image_size // 8, 1)

    n = int(x_train.shape[0])
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch
    length = cfg.epochs if epochs is None else epochs
    total_steps = max(round(steps_per_epoch * length), 1)

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=0.9,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg.schedule, s, total_steps))

    def prepare(xb: torch.Tensor) -> torch.Tensor:
        # uint8 channels_last -> normalized float, still channels_last
        return (xb.float() - mean) * inv_std

    accuracies: list[float] = []
    train_time = 0.0
    step = 0
    loss_sum = torch.zeros((), device=device)
    for epoch in range(1, math.ceil(total_steps / steps_per_epoch) + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=generator).to(device)
        x_epoch = crop_flip(x_train[perm], pad, fill, generator).contiguous(memory_format=torch.channels_last)
        y_epoch = y_train[perm]
        epoch_steps = min(steps_per_epoch, total_steps - step)
        for i in range(epoch_steps):
            xb = prepare(x_epoch[i * batch : (i + 1) * batch])
            yb = y_epoch[i * batch : (i + 1) * batch]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach().float()
            step += 1
            if on_step is not None:
                on_step(step, total_steps)
            if step % CHECK_EVERY == 0 or i == epoch_steps - 1:
                _check_finite(loss_sum, epoch, step)
        if cuda:
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        accuracy = evaluate(model, x_val, y_val, prepare, cuda)
        accuracies.append(accuracy)
        if on_epoch is not None:
            on_epoch(epoch, accuracy)
    seconds = time.perf_counter() - start
    return TrainResult(
        accuracy=accuracies[-1],
        accuracies=accuracies,
        train_seconds=seconds,
        epochs=len(accuracies),
        images_per_second=total_steps * batch / train_time if train_time > 0 else 0.0,
    )


def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
    value = float(loss_sum)
    if not math.isfinite(value):
        raise Diverged(epoch, f"loss is {value} at epoch {epoch} (step {step})")


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor], cuda: bool
) -> float:
    """Top-1 accuracy in percent, in eval mode, one device sync at the end."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, int(x.shape[0]), EVAL_BATCH):
        xb = prepare(x[i : i + EVAL_BATCH].contiguous(memory_format=torch.channels_last))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(xb)
        correct += (logits.argmax(1) == y[i : i + EVAL_BATCH]).sum()
    return 100.0 * int(correct) / max(int(x.shape[0]), 1)


__all__ = [
    "CHECK_EVERY",
    "Diverged",
    "TrainResult",
    "crop_flip",
    "evaluate",
    "lr_factor",
    "deterministic_cudnn",
    "seed_everything",
    "train_candidate",
]
