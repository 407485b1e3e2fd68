"""The candidate as data: `ArchSpec` and the vocabulary it is written in (backbones, stages, positions, blocks).

Torch-free, so that checking a spec or a study file costs no torch import.
"""

from gcsearch.space.spec import ArchSpec

__all__ = ["ArchSpec"]
