"""gcsearch: search and ablation of global-context blocks in ResNet backbones.

`ArchSpec` imports no torch; `build_model`, `measure` and `load_model` (a file from `gcsearch export`) load
torch on first use.
"""

from __future__ import annotations

from typing import Any

from gcsearch.space import ArchSpec

__version__ = "0.1.0"
__all__ = ["ArchSpec", "__version__", "build_model", "load_model", "measure"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from gcsearch.model.resnet import build_model

        return build_model
    if name == "measure":
        from gcsearch.model.cost import measure

        return measure
    if name == "load_model":
        from gcsearch.model.weights import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
