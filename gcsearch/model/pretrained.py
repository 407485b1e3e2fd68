"""A pretrained ResNet's state dict (torchvision's or timm's layout) as a start for gcsearch's ResNet.

torchvision and timm name a plain ResNet's tensors the same way: `conv1`, `bn1` (the stem), `layer1`..`layer4`
(blocks `.i.conv1/bn1/conv2/bn2[/conv3/bn3]`, the shortcut `.i.downsample.0` (1x1 conv) and `.i.downsample.1`
(BN)), and `fc`. gcsearch's ResNet holds the same layers under the paper's stage names:

    conv1 -> stem.conv    bn1 -> stem.bn    layer1..layer4 -> c2..c5    fc -> head.fc

Inside a stage the names are equal, the shortcut's 1x1 conv included (`StridedPointwise` is an `nn.Conv2d`
with the same weight shape). A `module.` prefix (a checkpoint saved from DataParallel/DDP) is dropped, and a
state dict already in gcsearch's names passes through unchanged.

`num_batches_tracked` counts the batches a BN layer has seen; it only matters for BN with `momentum=None`,
which gcsearch does not use, and torchvision's own ImageNet files do not have it. A file's counter is kept
when present, set to 0 when absent, and never reported as missing.

The mapped state dict covers the block-less backbone (and the classifier when it fits), so
`weights.load_shared(model, mapped)` loads it into any candidate of that backbone and the context blocks keep
their own initialization (GC's last layer at zero: the candidate starts as the pretrained function).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gcsearch.errors import InputError
from gcsearch.model.weights import load_plain, load_shared
from gcsearch.space import ArchSpec

# Source prefix -> gcsearch prefix, for the keys that differ.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("conv1.", "stem.conv."),
    ("bn1.", "stem.bn."),
    ("layer1.", "c2."),
    ("layer2.", "c3."),
    ("layer3.", "c4."),
    ("layer4.", "c5."),
    ("fc.", "head.fc."),
)
CLASSIFIER = ("head.fc.weight", "head.fc.bias")
WRAPPERS = ("state_dict", "model")  # where training scripts put the weights inside a checkpoint
COUNTER = "num_batches_tracked"


class PretrainedError(InputError):
    """A pretrained state dict that cannot be read or does not fit the backbone."""


@dataclass(frozen=True)
class Pretrained:
    """A source state dict mapped to gcsearch's names for one backbone."""

    state_dict: dict[str, torch.Tensor]  # gcsearch names; the classifier only when it was kept
    num_classes: int  # the model's classes
    source_classes: int | None  # the source's classifier rows; None when it has no classifier
    classifier_replaced: bool
    counters_filled: int  # BN counters the source lacked, set to 0

    @property
    def message(self) -> str:
        """What happened to the classifier, said once; empty when the source's classifier was kept."""
        if not self.classifier_replaced:
            return ""
        if self.source_classes is None:
            return f"the pretrained weights have no classifier: a new one for {self.num_classes} classes"
        return (f"the pretrained classifier ({self.source_classes} classes) is replaced by a new one for "
                f"{self.num_classes} classes")


def gcsearch_name(key: str) -> str:
    """`key` of a torchvision or timm ResNet in gcsearch's names (a gcsearch name is returned unchanged)."""
    if key.startswith("module."):
        key = key[len("module."):]
    for source, target in PREFIXES:
        if key.startswith(source):
            return target + key[len(source):]
    return key


def source_name(name: str) -> str:
    """gcsearch's `name` in torchvision's names, for messages about a torchvision or timm file."""
    for source, target in PREFIXES:
        if name.startswith(target):
            return source + name[len(target):]
    return name


def backbone_shapes(target: ArchSpec | nn.Module, num_classes: int | None = None,
                    in_chans: int = 3) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Name -> (shape, dtype) of every tensor of the block-less backbone of `target` (a spec or a model)."""
    if isinstance(target, ArchSpec):
        from gcsearch.model.resnet import build_model

        bare = target.baseline
        with torch.device("meta"):  # shapes only: no memory, no initialization cost
            target = build_model(bare, num_classes=num_classes or 1000, in_chans=in_chans)
    if not isinstance(target, nn.Module):
        raise TypeError(f"expected an ArchSpec or a gcsearch ResNet, got {type(target).__name__}")
    return {name: (t.shape, t.dtype) for name, t in target.state_dict().items()
            if ".context." not in name}


def map_pretrained(target: ArchSpec | nn.Module, source: dict[str, Any], num_classes: int | None = None,
                   *, in_chans: int = 3, name: str = "pretrained weights", seed: int | None = None) -> Pretrained:
    """Map `source` (a torchvision/timm/gcsearch ResNet state dict) onto the block-less backbone of `target`.

    Every backbone tensor must be in `source` with its shape, and `source` may hold nothing else: the first
    missing, mismatched or unexpected key is refused with one line (`PretrainedError`). The classifier is kept
    when its shape fits `num_classes` (a model's own when `target` is a model); otherwise it is left out and
    the model keeps its new one, or, with `seed`, the mapped dict holds a new one drawn as `nn.Linear` draws
    it from that seed, so every candidate of a seed starts from the same classifier.
    """
    if isinstance(target, nn.Module) and num_classes is None:
        num_classes = int(target.state_dict()[CLASSIFIER[0]].shape[0])
    if num_classes is None:
        raise TypeError("map_pretrained needs num_classes when the target is a spec")
    shapes = backbone_shapes(target, num_classes, in_chans)
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in source.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise PretrainedError(f"{name}: not a state dict: {key!r} holds {type(value).__name__}, not a tensor")
        new = gcsearch_name(key)
        if new in mapped:
            raise PretrainedError(f"{name}: two tensors map to {new!r} ({origin[new]!r} and {key!r})")
        mapped[new], origin[new] = value, key

    def shown(gc_name: str) -> str:
        key = origin.get(gc_name) or source_name(gc_name)
        return key if key == gc_name else f"{key!r} (gcsearch {gc_name!r})"

    out: dict[str, torch.Tensor] = {}
    filled = 0
    for gc_name, (shape, dtype) in shapes.items():
        if gc_name in CLASSIFIER:
            continue
        tensor = mapped.get(gc_name)
        if tensor is None:
            if gc_name.endswith(COUNTER):
                out[gc_name] = torch.zeros((), dtype=dtype)
                filled += 1
                continue
            raise PretrainedError(f"{name}: does not fit {_what(target)}: no tensor for {shown(gc_name)}")
        if tensor.shape != shape:
            raise PretrainedError(f"{name}: does not fit {_what(target)}: {shown(gc_name)} has shape "
                                  f"{tuple(tensor.shape)}, the model's is {tuple(shape)}")
        out[gc_name] = tensor.detach().to(dtype=dtype, device="cpu").clone()
    for gc_name in mapped:
        if gc_name not in shapes:
            raise PretrainedError(f"{name}: does not fit {_what(target)}: unexpected tensor {shown(gc_name)}")

    weight, bias = (mapped.get(n) for n in CLASSIFIER)
    (w_shape, w_dtype), (b_shape, _) = shapes[CLASSIFIER[0]], shapes[CLASSIFIER[1]]
    if (weight is None) != (bias is None):
        missing = CLASSIFIER[0] if weight is None else CLASSIFIER[1]
        raise PretrainedError(f"{name}: does not fit {_what(target)}: no tensor for {shown(missing)}")
    source_classes = None if weight is None else int(weight.shape[0])
    if weight is not None and (weight.dim() != 2 or weight.shape[1] != w_shape[1]
                               or tuple(bias.shape) != (weight.shape[0],)):
        raise PretrainedError(f"{name}: does not fit {_what(target)}: {shown(CLASSIFIER[0])} has shape "
                              f"{tuple(weight.shape)} and its bias {tuple(bias.shape)}; the classifier takes "
                              f"{w_shape[1]} features")
    kept = weight is not None and weight.shape == w_shape
    if kept:
        out[CLASSIFIER[0]] = weight.detach().to(dtype=w_dtype, device="cpu").clone()
        out[CLASSIFIER[1]] = bias.detach().to(dtype=w_dtype, device="cpu").clone()
    elif seed is not None:
        out[CLASSIFIER[0]], out[CLASSIFIER[1]] = new_classifier(w_shape[1], b_shape[0], seed, w_dtype)
    return Pretrained(state_dict=out, num_classes=int(w_shape[0]), source_classes=source_classes,
                      classifier_replaced=not kept, counters_filled=filled)


def load_pretrained(model: nn.Module, source: dict[str, Any] | str | os.PathLike[str], *,
                    seed: int | None = None) -> Pretrained:
    """Load a pretrained state dict (or the file at a path) into `model`'s backbone; its context blocks, and
    the classifier when the classes differ, keep their initialization. Returns what was loaded."""
    name = "pretrained weights"
    if not isinstance(source, dict):
        name = Path(source).name
        source = read_state_dict(source)
    pretrained = map_pretrained(model, source, name=name, seed=seed)
    load_shared(model, pretrained.state_dict)
    return pretrained


def new_classifier(features: int, classes: int, seed: int,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A classifier drawn as `nn.Linear.reset_parameters` draws it, from its own generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(features)  # kaiming_uniform_(a=sqrt(5)) gives the same bound as the bias's
    weight = torch.empty(classes, features).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(classes).uniform_(-bound, bound, generator=generator)
    return weight.to(dtype), bias.to(dtype)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in the file at `path`: bare, or under `state_dict` or `model` (a training checkpoint).

    Read with `weights_only=True`, so a file that holds code or arbitrary objects is refused, never run.
    """
    payload = load_plain(path, str(path), PretrainedError, "not a readable PyTorch state dict (damaged, cut "
                         "short, or holding objects other than tensors")
    where = str(path)
    if isinstance(payload, dict):
        for wrapper in WRAPPERS:
            if isinstance(payload.get(wrapper), dict):
                payload = payload[wrapper]
                break
    if not isinstance(payload, dict) or not payload:
        raise PretrainedError(f"{where}: not a state dict (expected a dict of tensors, bare or under "
                              f"{' or '.join(repr(w) for w in WRAPPERS)})")
    return payload


def _what(target: ArchSpec | nn.Module) -> str:
    spec = target if isinstance(target, ArchSpec) else getattr(target, "spec", None)
    return spec.backbone if isinstance(spec, ArchSpec) else "the model"
