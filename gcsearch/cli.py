"""The `gcsearch` command line: parsing and printing only; the work lives in the other modules.

Exit codes: 0 done, 1 runtime failure, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core

from gcsearch.commands import analyze as analyze_cmd
from gcsearch.commands import check as check_cmd
from gcsearch.commands import export as export_cmd
from gcsearch.commands import fail
from gcsearch.commands import inspect as inspect_cmd
from gcsearch.commands import report as report_cmd
from gcsearch.commands import run as run_cmd
from gcsearch.commands import show as show_cmd
from gcsearch.commands import studies as studies_cmd
from gcsearch.errors import InputError, RuntimeFailure

if TYPE_CHECKING:
    from gcsearch.run.functions import TrialFunctions

# Typer's parse errors are click's classes on older Typer and those of its own copy of click on newer ones
# (which no longer installs click at all). Both keep them in the module that defines `typer.BadParameter`,
# so take them from there: gcsearch never imports click, which it does not declare.
_parse_errors = importlib.import_module(typer.BadParameter.__module__)
_USAGE_ERROR = _parse_errors.UsageError
_CLICK_ERROR = _parse_errors.ClickException
_NO_ARGS = getattr(_parse_errors, "NoArgsIsHelpError", ())
_EXITS = (typer.Exit, *([_parse_errors.Exit] if hasattr(_parse_errors, "Exit") else []))
_ABORTS = (typer.Abort, *([_parse_errors.Abort] if hasattr(_parse_errors, "Abort") else []))


def reflow(text: str) -> str:
    """Help text whose prose paragraphs are one line each, so the terminal wraps them at its own width.

    Typer keeps a paragraph's line breaks as written: prose hard-wrapped at 120 columns turns ragged at 80.
    Paragraphs whose lines are indented (examples) keep their lines.
    """
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split("\n")) for p in paragraphs)


def _hide_flag_types(params: list) -> list:
    # Newer Typer shows a flag's type (`--json <bool>`); a flag takes no value, so show none.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class _Group(typer.core.TyperGroup):
    def get_params(self, ctx):  # noqa: ANN001, ANN201 - Typer's own signature
        return _hide_flag_types(super().get_params(ctx))


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx):  # noqa: ANN001, ANN201 - Typer's own signature
        return _hide_flag_types(super().get_params(ctx))


app = typer.Typer(
    name="gcsearch",
    cls=_Group,
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


def _print_version(value: bool) -> None:
    if value:
        from gcsearch import __version__

        print(f"gcsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print gcsearch's version and exit.")] = False,
) -> None:
    """Global options."""


# In the order `gcsearch --help` lists them; each is named after its function.
for _function in (inspect_cmd.inspect, check_cmd.check, run_cmd.run, report_cmd.report, studies_cmd.studies,
                  show_cmd.show, analyze_cmd.analyze, export_cmd.export):
    app.command(_function.__name__, cls=_Command, help=reflow(_function.__doc__ or ""))(_function)


def main(argv: list[str] | None = None, *, functions: TrialFunctions | None = None) -> None:
    """Console-script entry point: turn every known error into one line and an exit code.

    `functions`: the functions `run` builds, measures and trains with (default: the real ones; tests pass fakes).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Outside standalone mode Typer returns an exit code (a Ctrl-C becomes 130, `typer.Exit(n)` n)
        # instead of exiting: pass it on, or an interrupted command would exit 0.
        code = app(args=args, prog_name="gcsearch", standalone_mode=False, obj=functions)
    except _EXITS as exc:
        raise SystemExit(exc.exit_code) from None
    except _NO_ARGS:  # `gcsearch` alone: the help was printed
        raise SystemExit(0) from None
    except _ABORTS:
        fail("interrupted", 130)
    except _USAGE_ERROR as exc:
        if debug:
            raise
        path = exc.ctx.command_path if exc.ctx else ""
        where = f" (see 'gcsearch {path.split(' ', 1)[-1]} --help')" if " " in path else ""
        fail(f"{exc.format_message()}{where}", 2)
    except _CLICK_ERROR as exc:
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
