"""Property-based fuzzing of what users write: study files (TOML) and candidate specs (JSON).

Inputs are built from valid pieces with mutations (unknown keys, wrong types, out-of-range values, empty
lists, unknown choices, deleted keys, broken text). Every one must either load, or be refused with exit code
2 and one line naming the file and a key it mutated; never a traceback, never a hang. Runs in this process
through `gcsearch.cli.main`, so each example costs milliseconds.

A study file is checked with `gcsearch run --storage sqlite:///<missing folder>/x.db`: the study file is
validated first, so a valid file stops at the storage with its own message and nothing trains.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import FIGURES
from run_helpers import cli_output as _cli

from gcsearch.commands import printable

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=False)

# -- a TOML writer for the values a study file holds ------------------------------------------------------


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_key(k)}]")
            lines += [f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# -- valid study files, and mutations of them -------------------------------------------------------------

PROXY = {"dataset": "synthetic", "image_size": 8, "train_size": 64, "val_size": 32, "epochs": 1, "batch_size": 32}
BASES = [
    {"name": "fuzz", "backbone": "proxy", "width": 4, "sampler": "grid", "seed": 0, "objectives": ["accuracy", "flops"],
     "space": {"stages": ["c3", "c4", "c5"], "position": ["after_1x1", "after_add"]},
     "fixed": {"block": "gc", "ratio": 2}, "proxy": dict(PROXY)},
    {"name": "fuzz", "backbone": "proxy", "width": 8, "sampler": "tpe", "objectives": ["accuracy", "flops", "params"],
     "space": {"block": ["none", "gc", "se"], "ratio": [2, 4], "stages": ["c4", "c3-c5"]},
     "budget": {"trials": 5, "repeats": 2}, "constraints": {"max_flops": 10_000_000},
     "proxy": {**PROXY, "lr": 0.05, "schedule": "cosine"}, "pruning": {"rule": "front", "warmup_epochs": 1}},
    {"name": "fuzz", "backbone": "proxy_bottleneck", "sampler": "random", "objectives": ["accuracy"],
     "space": {"context": ["att", "avg"], "fusion": ["add", "scale", "both"]},
     "fixed": {"block": "custom", "transform": "bottleneck", "norm": "ln", "act": "relu", "ratio": 4},
     "proxy": dict(PROXY)},
]
PATHS = sorted({(k,) for b in BASES for k in b} | {(k, kk) for b in BASES for k, v in b.items() if isinstance(v, dict)
                                                   for kk in v})
KNOWN_VALUES = ["gc", "none", "se", "nl", "custom", "att", "avg", "full", "bottleneck", "ln", "relu", "add", "scale",
                "both", "after_1x1", "after_3x3", "after_add", "all", "last", "c2", "c3-c5", "c2,c4", "proxy",
                "resnet18", "grid", "tpe", "nsga2", "random", "synthetic", "cifar10", "folder", "onecycle", "front"]

scalars = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12), st.sampled_from([0, -1, 1, 2, 10**6, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.sampled_from(KNOWN_VALUES),
    st.text(max_size=12),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=6), scalars, max_size=2))
names = st.one_of(st.sampled_from(["ratios", "stage", "epoch", "lr_max", "trials", "Block", "name "]),
                  st.text(min_size=1, max_size=10))


@st.composite
def study_docs(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A study document and the dotted keys its mutations touched."""
    doc = json.loads(json.dumps(draw(st.sampled_from(BASES))))  # a deep copy
    touched: set[str] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["unknown key", "wrong value", "empty list", "delete", "bad choice",
                                     "new dimension"]))
        path = draw(st.sampled_from(PATHS))
        table = doc
        for part in path[:-1]:
            table = table.setdefault(part, {}) if isinstance(table.get(part, {}), dict) else {}
        if kind == "unknown key":
            key = draw(names)
            where = draw(st.sampled_from([None, *[k for k, v in doc.items() if isinstance(v, dict)]]))
            (doc if where is None else doc[where])[key] = draw(values)
            touched.add(key if where is None else f"{where}.{key}")
        elif kind == "wrong value":
            table[path[-1]] = draw(values)
            touched.add(".".join(path))
        elif kind == "empty list":
            table[path[-1]] = []
            touched.add(".".join(path))
        elif kind == "delete":
            table.pop(path[-1], None)
            touched.add(".".join(path))
        elif kind == "bad choice" and isinstance(doc.get("space"), dict) and doc["space"]:
            dim = draw(st.sampled_from(sorted(doc["space"])))
            doc["space"][dim] = [*doc["space"][dim], draw(scalars)] if isinstance(doc["space"][dim], list) else []
            touched.add(f"space.{dim}")
        elif kind == "new dimension" and isinstance(doc.get("space"), dict):
            dim = draw(st.sampled_from(["block", "stages", "position", "blocks", "ratio", "context", "transform",
                                        "norm", "act", "fusion"]))
            doc["space"][dim] = draw(st.lists(scalars, max_size=3))
            touched.add(f"space.{dim}")
    return doc, touched


def _names_a_key(line: str, touched: set[str]) -> bool:
    """The message names one of the mutated keys: the dotted key, or (for a key in a table) its table, or a
    key the mutation made invalid by interplay (a ratio a stage cannot take is named where it is set)."""
    wanted = set()
    for key in map(printable, touched):  # as the CLI prints it: control characters escaped
        parts = key.split(".")
        wanted |= {key, parts[0], parts[-1]}
    return any(re.search(rf"(^|[:\s.'\"]){re.escape(w)}([:\s.'\"]|$)", line) for w in wanted if w)


def _check_study(text: str, touched: set[str] | None, folder: Path) -> str:
    """`touched`: the keys the mutations changed; None when the text itself was damaged (any key may be hit,
    including a key's own name, so the message only has to have the `file:key: message` form)."""
    path = folder / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    code, _, err = _cli("run", "--study", str(path), "--storage", f"sqlite:///{folder / 'no' / 'x.db'}")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err, text)
    line = lines[0]
    if "--storage: the folder" in line:
        return "loaded"
    assert line.startswith(f"error: {path}:"), (line, text)
    rest = line[len(f"error: {path}:"):]
    if touched is None:
        assert rest.startswith(" malformed TOML") or re.match(r"[^\s:]+: \S", rest), (line, text)
    else:
        assert rest.startswith(" malformed TOML") or _names_a_key(line, touched), (line, touched, text)
    return "refused"


@FUZZ
@given(study_docs())
def test_fuzzed_study_files_load_or_name_the_key(tmp_path_factory, case: tuple[dict[str, Any], set[str]]) -> None:  # noqa: ANN001
    doc, touched = case
    # A changed table changes its keys: with [fixed] gone, the error may name the ratio that now defaults.
    touched |= {f"{path[0]}.{path[1]}" for path in PATHS if len(path) == 2 and path[0] in touched}
    _check_study(to_toml(doc), touched, tmp_path_factory.getbasetemp())
    FIGURES["bad_inputs"] += 1


@FUZZ
@given(st.sampled_from(BASES), st.data())
def test_broken_study_file_text_is_refused_in_one_line(tmp_path_factory, base: dict[str, Any], data) -> None:  # noqa: ANN001
    text = to_toml(base)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    # Any character a UTF-8 file can hold: a lone surrogate cannot be written to one, so it is no study file.
    junk = data.draw(st.text(alphabet=st.sampled_from(list("[]{}=\"',.\n #\\x0"))
                             | st.characters(exclude_categories=("Cs",)), max_size=6))
    mutated = text[:cut] + junk + text[cut + data.draw(st.integers(min_value=0, max_value=4)):]
    _check_study(mutated, None, tmp_path_factory.getbasetemp())
    FIGURES["bad_inputs"] += 1


# -- ArchSpec JSON through `gcsearch inspect --spec` ------------------------------------------------------

SPEC_BASES = [
    {"backbone": "proxy", "width": 4, "depth": [1, 1, 1, 1], "block": "gc", "ratio": 2, "stages": ["c3", "c4"],
     "position": "after_1x1", "blocks": "all"},
    {"backbone": "proxy", "width": 8, "block": "custom", "context": "avg", "transform": "full", "fusion": "both",
     "stages": ["c5"], "position": "after_add", "blocks": "last"},
    {"backbone": "proxy_bottleneck", "width": 4, "block": "none"},
    {"backbone": "proxy", "width": 4, "block": "se", "ratio": 4, "stages": ["c2", "c3", "c4", "c5"]},
]
SPEC_FIELDS = ["backbone", "width", "depth", "block", "context", "transform", "norm", "act", "fusion", "ratio",
               "stages", "position", "blocks"]
spec_values = st.one_of(values, st.sampled_from(["proxy_bottleneck", "resnet18", "nl", "snl", "c9", "after_3x3"]),
                        st.lists(st.sampled_from(["c2", "c3", "c4", "c5", "c6", ""]), max_size=4),
                        st.lists(st.integers(min_value=-1, max_value=3), max_size=5))


@st.composite
def spec_docs(draw: st.DrawFn) -> tuple[Any, set[str]]:
    doc = dict(draw(st.sampled_from(SPEC_BASES)))
    touched: set[str] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["unknown field", "wrong value", "delete", "empty list"]))
        field = draw(st.sampled_from(SPEC_FIELDS))
        if kind == "unknown field":
            field = draw(names)
            doc[field] = draw(spec_values)
        elif kind == "wrong value":
            doc[field] = draw(spec_values)
        elif kind == "delete":
            doc.pop(field, None)
        else:
            doc[field] = []
        touched.add(field)
    if draw(st.integers(min_value=0, max_value=20)) == 0:  # now and then not an object at all
        return draw(st.sampled_from([[doc], "gc", 16, None])), {"spec"}
    return doc, touched


@FUZZ
@given(spec_docs())
def test_fuzzed_specs_load_or_name_the_field(tmp_path_factory, case: tuple[Any, set[str]]) -> None:  # noqa: ANN001
    doc, touched = case
    path = tmp_path_factory.getbasetemp() / "spec.json"
    path.write_text(json.dumps(doc))
    code, out, err = _cli("inspect", "--spec", str(path), "--input-size", "16", "--json")
    if code == 0:
        assert err == "" and json.loads(out)["key"]
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, (code, err, doc)
        assert _names_a_key(lines[0], touched | {"spec"} | _made_invalid(touched)), (lines[0], touched, doc)
    FIGURES["bad_inputs"] += 1


# A mutated spec field can make another, untouched field invalid, which is then the one named: a width that
# resnet18 does not take once the backbone changed, a ratio that leaves no channel once the width shrank.
INTERPLAY = {"backbone": {"width", "depth", "ratio"}, "width": {"ratio"}, "depth": {"ratio", "stages"},
             "stages": {"ratio"}, "block": {"context", "transform", "norm", "act", "fusion", "ratio"},
             "context": {"transform", "fusion", "ratio"}, "transform": {"norm", "act", "ratio"}}


def _made_invalid(touched: set[str]) -> set[str]:
    return {other for key in touched for other in INTERPLAY.get(key, ())}
