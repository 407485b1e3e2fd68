"""Errors that the CLI turns into one clear line instead of a traceback.

`InputError` and its subclasses mean the user gave something wrong (exit code 2);
`RuntimeFailure` means the input was fine but the work could not be done (exit code 1).
"""

from __future__ import annotations

from typing import Any


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


# Whole numbers in the words every message uses. A bool is an int to Python, never to a user.

def not_positive_int(value: Any, maximum: int | None = None) -> str | None:
    """Why `value` is not an integer in 1..maximum; None when it is one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"expected a positive integer, got {value!r}"
    if maximum is not None and value > maximum:
        return f"at most {maximum}, got {value}"
    return None


def not_int_at_least(value: Any, minimum: int) -> str | None:
    """Why `value` is not an integer >= `minimum`; None when it is one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer, got {value!r}"
    if value < minimum:
        return f"must be >= {minimum}, got {value}"
    return None


def positive_int(name: str, value: Any) -> int:
    """`value` when it is an integer >= 1; otherwise InputError "<name>: expected a positive integer, got ..."."""
    why = not_positive_int(value)
    if why is not None:
        raise InputError(f"{name}: {why}")
    return value
