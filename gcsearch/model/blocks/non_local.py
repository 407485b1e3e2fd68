"""The query-dependent non-local block (Wang et al. 2018, embedded Gaussian), the `nl` context.

Every query position gets its own softmax over all key positions: softmax(theta(x)^T phi(x)) weights
g(x), an output 1x1 conv maps the C/2 channels back to C, BatchNorm follows, and the result is added to
the input. The BatchNorm's scale starts at zero, so the block starts as the identity (as in the paper).
Its cost grows with (H*W)^2, which is what GCNet's query-independent context avoids.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block with inner width C // 2 and a residual connection."""

    def __init__(self, channels: int, inner: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.inner = inner or max(1, channels // 2)
        self.theta = nn.Conv2d(channels, self.inner, kernel_size=1)
        self.phi = nn.Conv2d(channels, self.inner, kernel_size=1)
        self.g = nn.Conv2d(channels, self.inner, kernel_size=1)
        self.out = nn.Conv2d(self.inner, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)  # as mmcv's NonLocal2d
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.norm.weight)  # zero scale: the block starts as the identity
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2)  # [N, C', HW]
        phi = self.phi(x).flatten(2)
        g = self.g(x).flatten(2)
        attn = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=2)  # [N, HW query, HW key]
        y = torch.bmm(g, attn.transpose(1, 2)).view(n, self.inner, h, w)  # y[:, :, q] = sum_k g[:, :, k] attn[q, k]
        return x + self.norm(self.out(y))
