"""The ResNet family (c2..c5 as in the paper) and where context blocks are placed.

`config` is plain data and imports no torch; `build_model` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model"]


def __getattr__(name: str) -> Any:
    if name in ("build_model", "ResNet"):
        from gcsearch.backbones import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
