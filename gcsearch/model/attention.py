"""How query-dependent is a trained model's context? The GCNet paper's measurement, on any candidate.

For every non-local (NL) block the paper compares, per image, the vectors at the H*W query positions of three
things: the block's input (the features at each position), its attention map (the row of softmax weights each
query gets) and its output (what the block adds to its input at each position). The number is the mean over
pairs of query positions of the cosine distance 1 - cos(u, v), averaged over images. An attention distance near
0 means every query attends the same way: one query-independent map (GC) would do.

Global context blocks (GC, SNL and the `att` customs) have one attention map per image by construction, so
their question is another: is the map peaked or flat? `entropy` is its entropy relative to the uniform map's,
1 for average pooling, near 0 for a map on a few positions (for NL blocks: the mean over query rows, which
says whether a small attention distance is only flatness). Their output distance is 0 for add fusion (one
vector added everywhere) and positive for scale fusion.

The blocks are observed through forward hooks that recompute the attention from the block's input with the
block's own layers: the model's outputs and FLOPs are untouched, and the hooks are removed afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gcsearch.model.blocks.context_block import ContextBlock
from gcsearch.model.blocks.non_local import NonLocalBlock
from gcsearch.model.blocks.pooling import AttentionPool


def mean_cosine_distance(vectors: torch.Tensor) -> torch.Tensor:
    """[N, P, D] -> [N]: per item, the mean over ordered pairs p != q of 1 - cos(v_p, v_q).

    Computed as 1 - (|sum_p u_p|^2 - sum_p |u_p|^2) / (P (P - 1)) with u_p = v_p / |v_p|, so it costs
    O(P D) instead of O(P^2 D). A zero vector has cosine 0 with every other one.
    """
    n, p = vectors.shape[:2]
    if p < 2:
        return vectors.new_zeros(n)
    unit = torch.nn.functional.normalize(vectors.double(), dim=2)
    total = unit.sum(dim=1).pow(2).sum(dim=1)
    diagonal = unit.pow(2).sum(dim=(1, 2))
    return (1.0 - (total - diagonal) / (p * (p - 1))).to(vectors.dtype)


def relative_entropy(weights: torch.Tensor) -> torch.Tensor:
    """[N, P] softmax maps -> [N]: entropy / log(P); 1 uniform, 0 all weight on one position."""
    p = weights.shape[1]
    if p < 2:
        return weights.new_ones(weights.shape[0])
    w = weights.double()
    entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(dim=1)
    return (entropy / math.log(p)).to(weights.dtype)


def nl_attention(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """The NL block's attention maps for input x: [N, HW query, HW key], as its forward computes them."""
    theta, phi = block.theta(x).flatten(2), block.phi(x).flatten(2)
    return torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=2)


def gc_attention(block: ContextBlock, x: torch.Tensor) -> torch.Tensor | None:
    """A context block's attention map for input x: [N, HW] (None for average pooling)."""
    if not isinstance(block.pool, AttentionPool):
        return None
    logits = torch.nn.functional.conv2d(x, block.pool.conv.weight, block.pool.conv.bias).flatten(2)
    return torch.softmax(logits.float(), dim=2).squeeze(1)


@dataclass
class BlockStats:
    """The figures of one block, summed over images until `row()` averages them."""

    name: str  # the module's path, e.g. "c4.1.context"
    kind: str  # "nl" or "context"
    positions: int = 0  # H * W at the block
    images: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    maps: list[torch.Tensor] = field(default_factory=list)  # the first images' attention (for plots)

    @property
    def stage(self) -> str:
        return self.name.split(".")[0]

    def add(self, key: str, values: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())

    def row(self) -> dict[str, Any]:
        means = {k: v / max(self.images, 1) for k, v in self.sums.items()}
        return {"block": self.name, "stage": self.stage, "kind": self.kind, "positions": self.positions,
                "images": self.images, "input": means.get("input"), "attention": means.get("attention"),
                "output": means.get("output"), "entropy": means.get("entropy")}


@contextlib.contextmanager
def observed(model: nn.Module, keep_maps: int = 0) -> Iterator[list[BlockStats]]:
    """Hooks on every NL and context block of `model` while the body runs forward passes; yields their stats.

    `keep_maps`: keep the attention maps of this many first images per block (NL: [HW, HW], GC: [HW]).
    """
    stats: list[BlockStats] = []
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (NonLocalBlock, ContextBlock)):
            entry = BlockStats(name=name, kind="nl" if isinstance(module, NonLocalBlock) else "context")
            stats.append(entry)
            handles.append(module.register_forward_hook(_hook(entry, keep_maps)))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()


def _hook(entry: BlockStats, keep_maps: int):  # noqa: ANN202 - a forward hook
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        n, c, h, w = x.shape
        entry.positions, entry.images = h * w, entry.images + n
        entry.add("input", mean_cosine_distance(x.flatten(2).transpose(1, 2)))
        entry.add("output", mean_cosine_distance((output - x).flatten(2).transpose(1, 2)))
        if isinstance(module, NonLocalBlock):
            attn = nl_attention(module, x)
            entry.add("attention", mean_cosine_distance(attn))
            entry.add("entropy", relative_entropy(attn.flatten(0, 1)).view(n, -1).mean(dim=1))
        else:
            attn = gc_attention(module, x)
            if attn is not None:
                entry.add("entropy", relative_entropy(attn))
        if attn is not None and len(entry.maps) < keep_maps:
            entry.maps.extend(a.view(-1, h, w).float().cpu() for a in attn[: keep_maps - len(entry.maps)])

    return hook


@torch.no_grad()
def analyze_model(model: nn.Module, images: torch.Tensor, *, batch: int = 250, keep_maps: int = 0
                  ) -> list[BlockStats]:
    """Run `model` (eval mode) on normalized `images` [N, C, H, W] and measure every NL and context block."""
    model.eval()
    with observed(model, keep_maps=keep_maps) as stats:
        for start in range(0, images.shape[0], batch):
            model(images[start : start + batch])
    return stats


def normalized(images: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """uint8 images [N, C, H, W] as the model saw them in training: (x - mean) * (1 / std) per channel, the
    training loop's arithmetic (mean and std in 0..255, as `ProxyData` and a weights file's info hold them)."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float() - mean_t) * inv_std
