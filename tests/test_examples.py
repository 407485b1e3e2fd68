"""Every `gcsearch ...` example in every command's --help and in the README parses with the command's own parser:
its options exist and its values are accepted (`analyze`'s example trial is checked in test_attention.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from gcsearch.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples(text: str) -> list[str]:
    text = re.sub(r"\[/?[a-z ]*\]", "", text)  # rich markup
    found = []
    for line in text.splitlines():
        if not line.startswith(" ") and not line.startswith("gcsearch") and not line.startswith("until"):
            continue  # prose: help examples are indented, README ones sit in code blocks
        for part in re.split(r"&&|\||;|\$\(|`|>", line.split("#")[0]):
            part = part.strip()
            if part.startswith("gcsearch ") and "..." not in part:
                found.append(part)
    return found


def _readme_examples() -> list[str]:
    lines, fence, shell = [], False, False
    for line in README.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            fence, shell = not fence, not fence and line in ("```", "```bash")
            continue
        if shell:
            lines.append(line)
    return _examples("\n".join(lines))


HELP_EXAMPLES = [e for c in app.registered_commands for e in _examples(c.help or "")]


@pytest.mark.parametrize("example", sorted(set(HELP_EXAMPLES + _readme_examples())))
def test_the_example_parses(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = shlex.split(example)[1:]
    group = typer.main.get_command(app)
    command = group.commands[args[0]]
    with command.make_context(args[0], args[1:]) as ctx:
        assert ctx.params  # parsed: every option known, every value of its type


def test_there_are_examples_to_check() -> None:
    assert len(HELP_EXAMPLES) >= 20 and len(_readme_examples()) >= 10


def test_the_readme_shows_every_built_in_study_and_command_and_the_defaults() -> None:
    from gcsearch.study.parse import builtin_studies
    from gcsearch.training.config import ProxyConfig
    from gcsearch.training.synthetic import SYNTHETIC_CLASSES

    text = README.read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert sorted(line.split("`")[1] for line in table) == sorted(builtin_studies())
    for command in app.registered_commands:
        assert f"gcsearch {command.name}" in text
    assert "`gcsearch inspect`" in (README.parent / "ARCHITECTURE.md").read_text()
    example = text[text.index("A study file, every key explained"):]
    assert f"lr = {ProxyConfig().lr}\n" in example
    assert f"at 32x32 with {SYNTHETIC_CLASSES} classes" in text
