"""Every command's --help reads cleanly at 80 and 120 columns: prose re-wraps to the terminal, examples keep
their lines, flags show no type, and nothing runs past the edge."""

from __future__ import annotations

import math
import re

import pytest
from run_helpers import cli_output

from gcsearch.cli import app, reflow

COMMANDS = ["", "inspect", "check", "run", "report", "studies", "show", "analyze", "export"]
WIDTHS = [80, 120]


def help_text(command: str, width: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = cli_output(*([command] if command else []), "--help")
    assert code == 0, err
    return out.splitlines()


def plain(text: str) -> str:
    return re.sub(r"\[/?[a-z ]*\]", "", text)


def command_help(command: str) -> str:
    if not command:
        return app.info.help
    info = next(c for c in app.registered_commands if c.name == command)
    return info.help


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_the_terminal_and_shows_no_flag_types(command: str, width: int, monkeypatch) -> None:
    lines = help_text(command, width, monkeypatch)
    assert max(len(line.rstrip()) for line in lines) <= width
    text = "\n".join(lines)
    assert "<bool>" not in text and "<str>" not in text
    assert "--help" in text


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", COMMANDS[1:])
def test_prose_rewraps_and_examples_keep_their_lines(command: str, width: int, monkeypatch) -> None:
    lines = [line.strip() for line in help_text(command, width, monkeypatch)]
    body = lines[: next(i for i, line in enumerate(lines) if "Options" in line or "Arguments" in line)]
    paragraphs = reflow(command_help(command)).split("\n\n")
    for paragraph in paragraphs:
        if paragraph.startswith(" "):  # examples: each line whole, on a line of its own
            for example in paragraph.splitlines():
                assert plain(example).strip() in body, example
            continue
        words = plain(paragraph).split()
        start = next(i for i, line in enumerate(body) if line.startswith(" ".join(words[:3])))
        used, seen = 0, []
        while len(seen) < len(words):
            seen += body[start + used].split()
            used += 1
        assert seen == words
        # Not ragged: about as few lines as the text needs at this width (one spare for word breaks).
        assert used <= math.ceil(len(" ".join(words)) / (width - 4)) + 1


def test_reflow_joins_prose_and_keeps_indented_lines() -> None:
    text = "First line.\n\n    One sentence\n    hard-wrapped.\n\n      gcsearch run\n      gcsearch report\n    "
    assert reflow(text) == "First line.\n\nOne sentence hard-wrapped.\n\n  gcsearch run\n  gcsearch report"


def test_version_and_extras_in_help_survive_rich_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    from gcsearch import __version__

    code, out, _ = cli_output("--version")
    assert (code, out) == (0, f"gcsearch {__version__}\n")
    text = " ".join("\n".join(help_text("report", 200, monkeypatch)).replace("│", " ").split())
    assert "pip install 'gcsearch[plots]'" in text
