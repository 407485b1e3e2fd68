"""Fusion, step three of the framework: bring the transformed context back into every position.

`add` broadcasts the transformed vector over H x W and adds it; `scale` multiplies by its sigmoid (a
channel gate); `both` does the scale first and then the add, as the reference implementation does. Each
fusion branch has its own transform, as in the reference (`channel_mul_conv`, `channel_add_conv`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gcsearch.space.vocabulary import FUSIONS


class Fusion(nn.Module):
    """Fuse a context vector [N, C] into a feature map [N, C, H, W] by `mode` ('add', 'scale', 'both')."""

    def __init__(self, mode: str, make_transform: Callable[[], nn.Module]) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"fusion: {mode!r} is not one of {', '.join(FUSIONS)}")
        self.mode = mode
        self.scale_transform = make_transform() if mode in ("scale", "both") else None
        self.add_transform = make_transform() if mode in ("add", "both") else None

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c = context.shape
        if self.scale_transform is None:
            return x + self.add_transform(context).view(n, c, 1, 1)
        gate = torch.sigmoid(self.scale_transform(context)).view(n, c, 1, 1)
        if self.add_transform is None:
            return x * gate
        # scale then add in one pass over the feature map: x * gate + term
        return torch.addcmul(self.add_transform(context).view(n, c, 1, 1), x, gate)
