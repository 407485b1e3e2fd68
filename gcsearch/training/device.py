"""The device a worker trains on (resolved from --device by `gcsearch.model.device.resolve_device`): made
current, warmed up before the first trial, and its memory handed back after a failed one."""

from __future__ import annotations

import gc

import torch
import torch.nn.functional as F
from torch import nn


def use_device(device: torch.device) -> None:
    """Make `device` this process's current GPU. Without it a worker given cuda:1 still opens a context (and
    allocates) on GPU 0 for anything that uses the current device. Nothing to do for cpu or a bare "cuda"."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def warm_up(device: torch.device) -> None:
    """One small training step in the proxy loop's settings, so that one-off start-up costs are paid here and
    not inside the first trial's training time.

    On a GPU the first convolution, matrix product, autocast step and optimizer step load their kernels and
    create the cuDNN and cuBLAS handles, which takes far longer than a step. On the CPU the first optimizer
    step's one-off imports (about a second) move out of the first trial the same way.
    """
    cuda = device.type == "cuda"
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=gpus):  # the seeded random state stays as the caller left it
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(1), nn.Linear(8, 2)).to(device=device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        x = torch.randn(4, 3, 8, 8, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.zeros(4, dtype=torch.int64, device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = net(x)
            attn = torch.softmax(logits.unsqueeze(1), dim=2)
            loss = F.cross_entropy(logits + torch.bmm(attn, logits.unsqueeze(2)).squeeze(2), y)
        loss.backward()
        optimizer.step()
    if cuda:
        torch.cuda.synchronize(device)


def free_memory() -> None:
    """Collect the failed trial's objects and hand the GPU memory they held back to the driver, so that the
    other workers on that GPU can use it. Call it once the trial's exception is gone: its traceback's frames
    hold the model, the optimizer and the activations."""
    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory must never fail the study
        pass
