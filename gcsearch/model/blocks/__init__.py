"""The three-step framework as code: context modeling -> transform -> fusion.

One small module per step (`pooling`, `transform`, `fusion`), the blocks they make (`ContextBlock` for
GC, SNL, SE and custom points; `NonLocalBlock` for NL), and `create_block(spec, channels)`.
"""

from gcsearch.model.blocks.context_block import ContextBlock
from gcsearch.model.blocks.factory import create_block
from gcsearch.model.blocks.fusion import Fusion
from gcsearch.model.blocks.non_local import NonLocalBlock
from gcsearch.model.blocks.pooling import AttentionPool, AveragePool, create_pool
from gcsearch.model.blocks.transform import BottleneckTransform, FullTransform, create_transform

__all__ = [
    "AttentionPool",
    "AveragePool",
    "BottleneckTransform",
    "ContextBlock",
    "FullTransform",
    "Fusion",
    "NonLocalBlock",
    "create_block",
    "create_pool",
    "create_transform",
]
