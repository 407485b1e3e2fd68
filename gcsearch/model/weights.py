"""A trained candidate as one file: its state dict, its canonical spec, and a checksum of both.

The file is a `torch.save` of plain data (tensors, strings, numbers, lists, dicts), so it loads with
`torch.load(..., weights_only=True)`: opening a file someone sent you runs none of its code. The checksum
is a SHA-256 over the spec and every tensor's name, dtype, shape and bytes; a file that was cut short or
altered fails to load, or loads and fails the checksum, and either way is refused with one line.

`load_model(path)` is the public way back: it rebuilds the model from the stored spec (any backbone of the
space) and loads the weights, so the model can be trained further in the user's own code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gcsearch.errors import InputError
from gcsearch.space import ArchSpec

FORMAT = "gcsearch-weights"
FORMAT_VERSION = 1


class WeightsError(InputError):
    """A weights file that is missing, unreadable, altered or not a gcsearch weights file."""


@dataclass(frozen=True)
class Weights:
    """What a weights file holds."""

    spec: ArchSpec
    state_dict: dict[str, torch.Tensor]
    num_classes: int
    in_chans: int
    info: dict[str, Any] = field(default_factory=dict)  # image_size, mean, std (0..255), study, trial, ...

    def build(self) -> nn.Module:
        """The model with these weights, in eval mode, on the CPU."""
        from gcsearch.model.resnet import build_model

        model = build_model(self.spec, num_classes=self.num_classes, in_chans=self.in_chans)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise WeightsError(f"the weights do not fit the model of their spec ({str(exc).splitlines()[0]})") from None
        return model.eval()


def checksum(spec: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the spec and every tensor (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def weights_bytes(model: nn.Module, spec: ArchSpec, *, num_classes: int, in_chans: int,
                  info: dict[str, Any] | None = None) -> bytes:
    """The file's content for `model` (its weights copied to the CPU, contiguous, in NCHW order)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    spec_dict = spec.to_dict()
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "spec": spec_dict, "num_classes": int(num_classes),
               "in_chans": int(in_chans), "info": dict(info or {}), "state_dict": state,
               "checksum": checksum(spec_dict, state)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_weights(path: str | os.PathLike[str], model: nn.Module, spec: ArchSpec, *, num_classes: int,
                 in_chans: int, info: dict[str, Any] | None = None) -> None:
    Path(path).write_bytes(weights_bytes(model, spec, num_classes=num_classes, in_chans=in_chans, info=info))


def load_plain(source: str | os.PathLike[str] | bytes, where: str, error: type[InputError] = InputError,
               unreadable: str = "not a readable weights file (damaged or cut short") -> Any:
    """A `torch.save`d file of plain data (a path, or its bytes), loaded with `weights_only=True`, so a file that
    holds code or arbitrary objects is refused, never run. Any defect is one `error` naming `where`."""
    try:
        raw = source if isinstance(source, bytes) else Path(source).expanduser().read_bytes()
    except FileNotFoundError:
        raise error(f"{where}: no such file") from None
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike: not a plain file of tensors
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise error(f"{where}: {unreadable}: {detail})") from None


def read_weights(source: str | os.PathLike[str] | bytes, name: str | None = None) -> Weights:
    """Load and check a weights file (a path, or its bytes); any defect is a `WeightsError` naming `name`."""
    where = name or (str(source) if not isinstance(source, bytes) else "weights")
    payload = load_plain(source, where, WeightsError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{where}: not a gcsearch weights file")
    if payload.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{where}: weights format version {payload.get('version')!r}; this gcsearch reads "
                           f"version {FORMAT_VERSION}")
    state, spec_dict = payload.get("state_dict"), payload.get("spec")
    if not isinstance(state, dict) or not isinstance(spec_dict, dict):
        raise WeightsError(f"{where}: not a gcsearch weights file (no spec or state dict)")
    if checksum(spec_dict, state) != payload.get("checksum"):
        raise WeightsError(f"{where}: checksum mismatch: the weights were altered or damaged")
    try:
        spec = ArchSpec.from_dict(spec_dict)
    except (InputError, TypeError, ValueError) as exc:
        raise WeightsError(f"{where}: its spec is not valid here ({exc})") from None
    return Weights(spec=spec, state_dict=state, num_classes=int(payload["num_classes"]),
                   in_chans=int(payload["in_chans"]), info=dict(payload.get("info") or {}))


def load_shared(model: nn.Module, start: dict[str, torch.Tensor]) -> list[str]:
    """Load a start's weights into every parameter and buffer `model` shares with it; return the names of
    the model's own new ones, which keep their initialization.

    The start is the block-less network of the same backbone, so each of its tensors must exist in `model`
    under the same name with the same shape (a context block adds tensors, never renames one); anything
    else means the start was made for another backbone and is refused.
    """
    own = model.state_dict()
    missing = [name for name in start if name not in own]
    mismatched = [name for name in start if name in own and own[name].shape != start[name].shape]
    if missing or mismatched:
        name = (missing or mismatched)[0]
        what = "has no tensor" if missing else f"has shape {tuple(own[name].shape)}, the start's is"
        detail = "" if missing else f" {tuple(start[name].shape)}"
        raise WeightsError(f"the start does not fit this model: the model {what} {name!r}{detail}")
    with torch.no_grad():
        for name, tensor in start.items():
            own[name].copy_(tensor)
    return [name for name in own if name not in start]


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """The model a weights file holds (`gcsearch export`, or a trial's kept weights): built from its spec,
    weights loaded, in eval mode on the CPU. Call `.train()` and `.to(device)` to go on training it."""
    return read_weights(path).build()
