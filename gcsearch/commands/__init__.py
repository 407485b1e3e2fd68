"""One module per CLI command (or family of commands); `gcsearch.cli` registers them on the app."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line naming what is wrong and exit with `code` (2 bad input, 1 runtime failure)."""
    # emoji=False: Rich would otherwise draw "file.toml:o: unknown key" as "file.toml⭕ unknown key".
    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True,
                      markup=True, emoji=False)
    raise SystemExit(code)


def printable(text: str) -> str:
    """`text` with control characters written as escapes: a key named "a\\nb" or "\\r" in a user's file must
    not split the one-line error or move the cursor back over it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
