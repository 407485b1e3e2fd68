"""One module per CLI command (or family of commands); `gcsearch.cli` registers them on the app."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line naming what is wrong and exit with `code` (2 bad input, 1 runtime failure)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)
    raise SystemExit(code)
