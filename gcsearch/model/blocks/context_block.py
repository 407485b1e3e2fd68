"""The global context block: context modeling -> transform -> fusion, one module per step."""

from __future__ import annotations

import torch
from torch import nn

from gcsearch.model.blocks.fusion import Fusion
from gcsearch.model.blocks.pooling import create_pool
from gcsearch.model.blocks.transform import create_transform


class ContextBlock(nn.Module):
    """A query-independent context block: GC, SNL, SE and every custom point between them.

    Args:
        channels: C, the channels of the feature map the block sees.
        pooling: 'att' (attention pooling) or 'avg' (global average pooling).
        transform: 'bottleneck' (C -> C // ratio -> C) or 'full' (one C -> C map).
        fusion: 'add', 'scale' or 'both' (scale, then add).
        ratio, norm, act: the bottleneck's reduction ratio r, 'ln' | 'none' and 'relu' | 'none'.
    """

    def __init__(self, channels: int, pooling: str = "att", transform: str = "bottleneck", fusion: str = "add",
                 ratio: int | None = 16, norm: str | None = "ln", act: str | None = "relu") -> None:
        super().__init__()
        self.channels = channels
        self.pool = create_pool(pooling, channels)
        self.fusion = Fusion(fusion, lambda: create_transform(transform, channels, ratio, norm, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fusion(x, self.pool(x))
