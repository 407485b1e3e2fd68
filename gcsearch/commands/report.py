"""`gcsearch report`, `gcsearch studies`, `gcsearch show`: read a study's storage, never write it."""

from __future__ import annotations


def report() -> None:
    """Print the Pareto front of a study (not yet implemented)."""
    raise NotImplementedError


def studies() -> None:
    """List the studies in a storage (not yet implemented)."""
    raise NotImplementedError


def show() -> None:
    """Show one trial in full (not yet implemented)."""
    raise NotImplementedError
