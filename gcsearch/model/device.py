"""Which device a name means: the one check behind --device for training, timing and `inspect --latency`."""

from __future__ import annotations

import torch

from gcsearch.errors import InputError


def resolve_device(name: str | None) -> torch.device:
    """"auto"/None -> cuda when available, else cpu; otherwise the named device, checked to exist."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {name} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device: {name} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif device.type != "cpu":
        raise InputError(f"device: {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device
