"""`gcsearch run`: run or resume a study."""

from __future__ import annotations


def run() -> None:
    """Run a study (not yet implemented)."""
    raise NotImplementedError
