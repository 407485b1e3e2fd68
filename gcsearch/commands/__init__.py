"""One module per CLI command; `gcsearch.cli` registers them on the app. Here: what they share (the consoles,
the one-line error); options.py holds the shared options, view.py the shared output. No command imports another."""

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


def wide(out: Console) -> Console:
    """The console itself on a terminal; a 200-column one when output goes to a pipe or file."""
    if out.is_terminal:
        return out
    return Console(width=200, color_system=None, soft_wrap=False)


def interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM during training: the runner has recorded the trial; say so and exit 130.

    SystemExit, not KeyboardInterrupt: Typer turns the latter into a return value outside standalone mode.
    """
    err_console.print("[yellow]interrupted:[/] the running trial is recorded as failed (interrupted) and "
                      "queued again; run the same command to resume.", highlight=False)
    raise SystemExit(130)
