"""Every command's options with bad values: out-of-range numbers, unknown names, empty values, paths that do
not exist. Each must exit 2 with one line that names the option or the value, and write nothing."""

from __future__ import annotations

import contextlib
import io
import os

import pytest
from reliability_helpers import FIGURES, write_grid
from report_study import build_hand_study

from gcsearch.cli import main

CASES = [
    # gcsearch run
    ("run --study {study} --trials 0", "--trials"),
    ("run --study {study} --trials -3", "--trials"),
    ("run --study {study} --trials many", "--trials"),
    ("run --study {study} --workers 0", "--workers"),
    ("run --study {study} --heartbeat 0", "--heartbeat"),
    ("run --study {study} --seed x", "--seed"),
    ("run --study {study} --device tpu", "device"),
    ("run --study {study} --device cuda:7", "device"),
    ("run --study {study} --device ''", "device"),
    ("run --study {study} --storage ''", "--storage"),
    ("run --study {study} --storage sqlite:///{tmp}/missing/x.db", "does not exist"),
    ("run --study {study} --bogus 1", "--bogus"),
    ("run --study ''", "--study"),
    ("run --study placment", "placment"),
    ("run --study {tmp}/missing.toml", "missing.toml"),
    ("run --study {tmp}", "--study"),
    ("run", "--study"),
    # gcsearch check
    ("check --study {study} --seeds 1", "--seeds"),
    ("check --study {study} --seeds many", "--seeds"),
    ("check --study {study} --candidates 0", "--candidates"),
    ("check --study {study} --candidates -2", "--candidates"),
    ("check --study {study} --longer 1", "--longer"),
    ("check --study {study} --longer 0.5", "--longer"),
    ("check --study {study} --longer nan", "--longer"),
    ("check --study {study} --difference 0", "--difference"),
    ("check --study {study} --difference -1", "--difference"),
    ("check --study {study} --protocol fresh", "--protocol"),
    ("check --study {study} --protocol ''", "--protocol"),
    ("check --study {study} --device tpu", "device"),
    ("check --study {study} --storage sqlite:///{tmp}/missing/x.db", "does not exist"),
    ("check --study placment", "placment"),
    ("check --study {tmp}/missing.toml", "missing.toml"),
    ("check", "--study"),
    # gcsearch inspect
    ("inspect --width 0", "width"),
    ("inspect --width -4", "width"),
    ("inspect --ratio 0", "ratio"),
    ("inspect --ratio 1000", "ratio"),
    ("inspect --block gcc", "block"),
    ("inspect --block ''", "block"),
    ("inspect --backbone resnet152", "backbone"),
    ("inspect --stages c9", "stages"),
    ("inspect --stages ''", "stages"),
    ("inspect --position middle", "position"),
    ("inspect --blocks some", "blocks"),
    ("inspect --depth 1,2", "depth"),
    ("inspect --depth 1,1,1,-1", "depth"),
    ("inspect --input-size 0", "input-size"),
    ("inspect --input-size big", "input-size"),
    ("inspect --input-size ''", "input-size"),
    ("inspect --num-classes 0", "classes: expected a positive integer"),
    ("inspect --classes 0", "classes: expected a positive integer"),
    ("inspect --device tpu", "device"),
    ("inspect --spec {tmp}/missing.json", "missing.json"),
    ("inspect --spec {tmp}", "spec"),
    ("inspect --spec {study}", "spec"),
    # gcsearch report
    ("report --storage {db} --top 0", "top"),
    ("report --storage {db} --top -1", "top"),
    ("report --storage {db} --sort colour", "colour"),
    ("report --storage {db} --sort ''", "sort"),
    ("report --storage {db} --format yaml", "yaml"),
    ("report --storage {db} --format ''", "format"),
    ("report --storage {db} --objectives speed", "speed"),
    ("report --storage {db} --objectives ''", "objectives"),
    ("report --storage {db} --by colour", "colour"),
    ("report --storage {db} --study nosuch", "nosuch"),
    ("report --storage {db} --study ''", "study"),
    ("report --storage {tmp}/missing.db", "missing.db"),
    ("report --storage ''", "storage"),
    ("report --storage {db} --output {tmp}/missing/out.csv -f csv", "missing"),
    ("report --storage {db} --plot {tmp}/front.gif", "front.gif"),
    # gcsearch studies, gcsearch show
    ("studies --storage {tmp}/missing.db", "missing.db"),
    ("studies --storage ''", "storage"),
    ("show 999 --storage {db}", "999"),
    ("show -1 --storage {db}", "-1"),
    ("show one --storage {db}", "TRIAL"),
    ("show 0 --storage {db} --study nosuch", "nosuch"),
    ("show --storage {db}", "TRIAL"),
    # gcsearch analyze, export (the hand-made study's trials kept no weights)
    ("analyze --storage {db}", "TRIAL"),
    ("analyze 0 --storage {db}", "kept no weights"),
    ("analyze 0 --storage {db} --images 0", "--images"),
    ("analyze 0 --storage {db} --plot {tmp}/maps.gif", "plot"),
    ("export 0 --storage {db}", "--output"),
    ("export 0 --storage {db} -o {tmp}/m.pt", "kept no weights"),
    ("export 999 --storage {db} -o {tmp}/m.pt", "no trial 999"),
    ("nosuchcommand", "nosuchcommand"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("options")
    db = tmp / "hand.db"
    build_hand_study(db)
    study = write_grid(tmp / "tiny.toml", "tiny", stage_sets=1, positions=1)
    return {"tmp": str(tmp), "db": str(db), "study": str(study)}


def _argv(template: str, places: dict[str, str]) -> list[str]:
    import shlex

    return [arg.format(**places) for arg in shlex.split(template)]


@pytest.mark.parametrize(("template", "named"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_option_is_exit_2_with_one_line(template: str, named: str, places: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(places["tmp"])
    before = sorted(os.listdir(places["tmp"]))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(_argv(template, places))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2, (code, out.getvalue(), err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    assert named in lines[0], lines[0]
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert sorted(os.listdir(places["tmp"])) == before  # no database, output or plot file left behind
    FIGURES["bad_inputs"] += 1


def test_the_table_covers_every_command() -> None:
    from gcsearch.cli import app

    commands = {c.name for c in app.registered_commands}
    assert commands <= {template.split()[0] for template, _ in CASES}
    assert len(CASES) >= 50
