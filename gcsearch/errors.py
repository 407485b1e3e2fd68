"""Errors that the CLI turns into one clear line instead of a traceback.

`InputError` and its subclasses mean the user gave something wrong (exit code 2);
`RuntimeFailure` means the input was fine but the work could not be done (exit code 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a flag, a study file, a spec, a data path, a storage URL."""

    exit_code = 2


class SpecError(InputError):
    """An ArchSpec field holds a value that cannot describe a candidate."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DataError(InputError):
    """A dataset cannot be read: a missing or truncated file, a malformed folder. One line, naming the path."""


class RuntimeFailure(RuntimeError):
    """Valid input, but the work failed (an unreachable database, a full disk)."""

    exit_code = 1
