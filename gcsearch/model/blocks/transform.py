"""Transform, step two of the framework: map the pooled C-vector to a C-vector of channel-wise terms.

The reference implementation writes these as 1x1 convs on a C x 1 x 1 map with `LayerNorm([P, 1, 1])`.
On a 1 x 1 map a 1x1 conv is a linear layer and that LayerNorm normalizes the same P numbers, so here they
are `nn.Linear` and `nn.LayerNorm(P)` on [N, C]: the same parameters (shapes aside) and the same math,
without 4-D bookkeeping on tensors of a few hundred numbers.

The last layer of every transform starts at zero (weight and bias), as in the reference, so that an
add-fused block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from gcsearch.space.vocabulary import ACTS, NORMS


class BottleneckTransform(nn.Module):
    """C -> P -> C with optional LayerNorm and ReLU in between (GC: ln + relu; SE: none + relu)."""

    def __init__(self, channels: int, hidden: int, norm: str = "ln", act: str = "relu") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm: {norm!r} is not one of {', '.join(NORMS)}")
        if act not in ACTS:
            raise ValueError(f"act: {act!r} is not one of {', '.join(ACTS)}")
        self.fc1 = nn.Linear(channels, hidden)
        self.norm = nn.LayerNorm(hidden) if norm == "ln" else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act == "relu" else nn.Identity()
        self.fc2 = nn.Linear(hidden, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        if isinstance(self.norm, nn.LayerNorm):
            self.norm.reset_parameters()
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


class FullTransform(nn.Module):
    """One C -> C linear map: the paper's transform "w/o ratio" (SNL)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def create_transform(kind: str, channels: int, ratio: int | None = None, norm: str | None = "ln",
                     act: str | None = "relu") -> nn.Module:
    """The transform for `kind`: 'bottleneck' (C -> C // ratio -> C) or 'full' (C -> C)."""
    if kind == "full":
        return FullTransform(channels)
    if kind == "bottleneck":
        if ratio is None or channels // ratio < 1:
            raise ValueError(f"ratio: {ratio!r} leaves no channel in a block of {channels} channels")
        return BottleneckTransform(channels, channels // ratio, norm or "none", act or "none")
    raise ValueError(f"transform: {kind!r} is not one of bottleneck, full")
