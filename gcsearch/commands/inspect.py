"""`gcsearch inspect`: build one candidate and print its params and FLOPs per stage."""

from __future__ import annotations


def inspect() -> None:
    """Inspect a candidate (not yet implemented)."""
    raise NotImplementedError
