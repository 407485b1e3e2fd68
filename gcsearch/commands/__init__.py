"""One module per CLI command; `gcsearch.cli` registers them on the app. Here: what they share (the consoles,
the one-line error, the options of the commands that read a storage)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
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


# The options of the commands that only read a storage (report, studies, show).
StorageOption = Annotated[str, typer.Option(
    "--storage", metavar="URL", envvar="GCSEARCH_STORAGE",
    help="Where the trials live: a SQLAlchemy URL (sqlite:///gcsearch.db, postgresql+psycopg://...) or the path "
         "of a SQLite file. Opened read-only; a missing file is an error, never a new database.")]
StudyOption = Annotated[str | None, typer.Option(
    "--study", "-s", metavar="NAME", help="Study name; may be left out when the storage holds one study.")]

# The options of the commands that train (run, check).
DeviceOption = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", help="auto (cuda when present, else cpu), cpu, cuda, cuda:1, ...")]
DataDirOption = Annotated[str | None, typer.Option(
    "--data-dir", envvar="GCSEARCH_DATA_DIR", metavar="DIR",
    help="Where the dataset's files are (CIFAR's extracted batches, an image folder).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Plain log lines instead of the live view.")]


def interrupted() -> NoReturn:
    """Ctrl-C or SIGTERM during training: the runner has recorded the trial; say so and exit 130.

    SystemExit, not KeyboardInterrupt: Typer turns the latter into a return value outside standalone mode.
    """
    err_console.print("[yellow]interrupted:[/] the running trial is recorded as failed (interrupted) and "
                      "queued again; run the same command to resume.", highlight=False)
    raise SystemExit(130)
