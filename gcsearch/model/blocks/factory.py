"""From an `ArchSpec` to the block module that sits at one place in the backbone."""

from __future__ import annotations

from torch import nn

from gcsearch.model.blocks.context_block import ContextBlock
from gcsearch.model.blocks.non_local import NonLocalBlock
from gcsearch.space.spec import ArchSpec


def create_block(spec: ArchSpec, channels: int) -> nn.Module | None:
    """The context block that `spec` describes, for a feature map of `channels` channels; None for block none."""
    if not spec.has_blocks:
        return None
    if spec.context == "nl":
        return NonLocalBlock(channels)
    return ContextBlock(channels, pooling=spec.context, transform=spec.transform, fusion=spec.fusion,
                        ratio=spec.ratio, norm=spec.norm, act=spec.act)
