"""gcsearch: search and ablation of global-context blocks in ResNet backbones.

`ArchSpec` imports no torch; `build_model` and `measure` load torch on first use.
"""

from __future__ import annotations

from typing import Any

from gcsearch.space import ArchSpec

__version__ = "0.1.0"
__all__ = ["ArchSpec", "__version__", "build_model", "measure"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from gcsearch.model.resnet import build_model

        return build_model
    if name == "measure":
        from gcsearch.model.cost import measure

        return measure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
