"""The `gcsearch` command line: parsing and printing only; the work lives in the other modules.

Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer

from gcsearch.commands import fail
from gcsearch.commands import inspect as inspect_cmd
from gcsearch.commands import report as report_cmd
from gcsearch.commands import run as run_cmd
from gcsearch.errors import InputError, RuntimeFailure

try:  # typer >= 0.20 ships its own copy of click; its parse errors are not click's classes
    from typer._click import exceptions as _typer_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _typer_click = click.exceptions
_USAGE_ERRORS = (click.UsageError, _typer_click.UsageError)
_CLICK_ERRORS = (click.ClickException, _typer_click.ClickException)
_NO_ARGS = getattr(_typer_click, "NoArgsIsHelpError", ())

app = typer.Typer(
    name="gcsearch",
    help=(
        "Which global-context block, where in my backbone, at what cost?\n\n"
        "Build ResNet candidates with GC, SE, SNL or NL blocks, measure their FLOPs and params, "
        "train them briefly, and keep every trial in an Optuna database."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Global options."""


app.command("inspect")(inspect_cmd.inspect)
app.command("run")(run_cmd.run)
app.command("report")(report_cmd.report)
app.command("studies")(report_cmd.studies)
app.command("show")(report_cmd.show)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: turn every known error into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Outside standalone mode Typer returns an exit code (a Ctrl-C becomes 130, `typer.Exit(n)` n)
        # instead of exiting: pass it on, or an interrupted command would exit 0.
        code = app(args=args, prog_name="gcsearch", standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        raise SystemExit(exc.exit_code) from None
    except _NO_ARGS:  # `gcsearch` alone: the help was printed
        raise SystemExit(0) from None
    except (click.exceptions.Abort, typer.Abort):
        fail("interrupted", 130)
    except _USAGE_ERRORS as exc:
        if debug:
            raise
        path = exc.ctx.command_path if exc.ctx else ""
        where = f" (see 'gcsearch {path.split(' ', 1)[-1]} --help')" if " " in path else ""
        fail(f"{exc.format_message()}{where}", 2)
    except _CLICK_ERRORS as exc:
        if debug:
            raise
        fail(exc.format_message(), exc.exit_code or 1)
    except InputError as exc:
        if debug:
            raise
        fail(str(exc), 2)
    except RuntimeFailure as exc:
        if debug:
            raise
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:
            fail("interrupted", 130)
        raise SystemExit(code)
