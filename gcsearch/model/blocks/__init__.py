"""The three-step framework as code: context modeling -> transform -> fusion.

One small module per step (`pooling`, `transform`, `fusion`) and the blocks they make (`ContextBlock` for
GC, SNL, SE and custom points; `NonLocalBlock` for NL). The layers know nothing of `ArchSpec`: the ResNet
builder (`gcsearch.model.resnet.create_block`) turns a spec into their arguments.
"""

from gcsearch.model.blocks.context_block import ContextBlock
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
    "create_pool",
    "create_transform",
]
