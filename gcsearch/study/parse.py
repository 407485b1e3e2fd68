"""Study files: TOML text -> a validated `StudySpec` (study/spec.py), checked without importing torch.

A study file says what to search (the space: each dimension with its choices, plus fixed values), how to
judge a candidate (objectives, constraints), how to search (sampler, seed, budget) and how to train (proxy).
Every error names the file and the key, `studies/mine.toml:space.ratio: ...`, and exits 2 in the CLI.
"""

from __future__ import annotations

import difflib
import importlib.resources
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gcsearch.contract import OBJECTIVES
from gcsearch.errors import InputError, SpecError, not_int_at_least
from gcsearch.space import ArchSpec
from gcsearch.space.vocabulary import stage_set
from gcsearch.study.pruning import make_pruner
from gcsearch.study.spec import (
    BUDGET_KEYS,
    CONSTRAINT_KEYS,
    DEFAULT_BASELINE_REPEATS,
    DEFAULT_MAX_REPEATS,
    DEFAULT_RACE_MARGIN,
    DIMENSION_CHOICES,
    DIMENSIONS,
    MAX_POINTS,
    SAMPLERS,
    TOP_KEYS,
    Candidate,
    StudyFileError,
    StudySpec,
)
from gcsearch.training.config import ProxyConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN_PACKAGE = "gcsearch.studies"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
T = TypeVar("T")


def builtin_studies() -> list[str]:
    """Names of the study files that ship with gcsearch (`--study NAME`)."""
    root = importlib.resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def read_study_file(ref: str) -> StudySpec:
    """A study from `--study`: a built-in name (`placement`) or a path to a TOML file."""
    path = Path(ref)
    if ref.endswith(".toml") or path.exists() or "/" in ref or "\\" in ref:
        if not path.is_file():
            raise InputError(f"--study: no such file {ref!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--study: cannot read {ref!r} ({exc})") from None
        return parse_study(text, source=ref, default_name=path.stem)
    names = builtin_studies()
    if ref not in names:
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"--study: no built-in study {ref!r} (built-in: {', '.join(names)}; or give a "
                         f"path to a .toml file){hint}")
    text = importlib.resources.files(BUILTIN_PACKAGE).joinpath(f"{ref}.toml").read_text(encoding="utf-8")
    return parse_study(text, source=f"studies/{ref}.toml", default_name=ref)


def stored_study_name(ref: str | None) -> str | None:
    """The stored study a command that reads one is asked for: `ref` itself (a name), or the name of the study
    file it names (`mine.toml` -> its `name`, else `mine`); None stays None (the storage's only study)."""
    if ref is None or not (ref.endswith(".toml") or Path(ref).is_file()):
        return ref
    return read_study_file(ref).name


def parse_study(text: str, source: str = "<study>", default_name: str | None = None) -> StudySpec:
    """Validate a study file's text. Raises StudyFileError naming `source` and the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(source, "", f"malformed TOML: {exc}") from None
    return _Parser(source, text, data, default_name).parse()


class _Parser:
    def __init__(self, source: str, text: str, data: dict[str, Any], default_name: str | None) -> None:
        self.source = source
        self.text = text
        self.data = data
        self.default_name = default_name

    def error(self, key: str, message: str) -> StudyFileError:
        return StudyFileError(self.source, key, message)

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table ([{key}]), got {_kind(value)}")
        return value

    def known(self, table: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
        for key in table:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(f"{prefix}{key}", f"unknown key (known: {', '.join(keys)}){hint}")

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        why = not_int_at_least(value, minimum)
        if why is not None:
            raise self.error(key, why)
        return value

    def parse(self) -> StudySpec:
        d = self.data
        self.known(d, "", TOP_KEYS)
        name = d.get("name", self.default_name)
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error("name", f"expected a name of letters, digits, '_', '-' or '.', got {name!r}")
        description = d.get("description", "")
        if not isinstance(description, str):
            raise self.error("description", f"expected a string, got {_kind(description)}")

        backbone, width, depth = self.backbone()
        objectives = self.objectives()
        sampler = d.get("sampler", "tpe")
        if sampler not in SAMPLERS:
            raise self.error("sampler", f"{sampler!r} is not one of {', '.join(SAMPLERS)}")
        seed = self.integer("seed", d.get("seed", 0), 0)

        budget = self.table("budget")
        self.known(budget, "budget.", BUDGET_KEYS)
        trials = self.integer("budget.trials", budget["trials"], 1) if "trials" in budget else None
        repeats = self.integer("budget.repeats", budget.get("repeats", 1), 1)
        baseline_repeats = self.integer("budget.baseline_repeats", budget.get(
            "baseline_repeats", DEFAULT_BASELINE_REPEATS if sampler == "grid" else 1), 1)

        constraints = self.table("constraints")
        self.known(constraints, "constraints.", CONSTRAINT_KEYS)
        max_flops = self.integer("constraints.max_flops", constraints["max_flops"], 1) \
            if "max_flops" in constraints else None
        max_params = self.integer("constraints.max_params", constraints["max_params"], 1) \
            if "max_params" in constraints else None

        space = self.space()
        fixed = self.fixed(space)
        proxy = self.proxy()
        pruning = self.pruning([OBJECTIVES[o].direction for o in objectives])
        race, max_repeats, race_margin = self.race(budget, sampler, proxy)

        spec = StudySpec(
            name=name, description=description, source=self.source, text=self.text, data=d,
            backbone=backbone, width=width, depth=depth, space=space, fixed=fixed, objectives=objectives,
            max_flops=max_flops, max_params=max_params, sampler=sampler, seed=seed, trials=trials,
            repeats=repeats, proxy=proxy, pruning=pruning, baseline_repeats=baseline_repeats,
            race=race, max_repeats=max_repeats, race_margin=race_margin,
        )
        spec._candidates.extend(self.enumerate(spec))
        return spec

    def race(self, budget: dict[str, Any], sampler: str, proxy: ProxyConfig) -> tuple[bool, int, float]:
        """`[budget] race`, `max_repeats`, `race_margin`: a paired grid that races (study/racing.py)."""
        race = budget.get("race", False)
        if not isinstance(race, bool):
            raise self.error("budget.race", f"expected true or false, got {_kind(race)}")
        if not race:
            for key in ("max_repeats", "race_margin"):
                if key in budget:
                    raise self.error(f"budget.{key}", "only with race = true")
            return False, DEFAULT_MAX_REPEATS, DEFAULT_RACE_MARGIN
        if sampler != "grid":
            raise self.error("budget.race", f"racing needs sampler = \"grid\" (this file says {sampler!r}): a race "
                                            "decides each round over every candidate of a grid")
        if proxy.start == "scratch":
            raise self.error("budget.race", "racing compares candidates seed by seed with the control of the same "
                                            "seed, which needs a paired proxy ([proxy] start = \"baseline\" or "
                                            "\"weights\")")
        for key in ("repeats", "baseline_repeats"):
            if key in budget:
                raise self.error(f"budget.{key}", "a race gives each candidate its seeds round by round; give "
                                                  "max_repeats (the cap) instead")
        max_repeats = self.integer("budget.max_repeats", budget.get("max_repeats", DEFAULT_MAX_REPEATS), 2)
        margin = budget.get("race_margin", DEFAULT_RACE_MARGIN)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < float("inf"):
            raise self.error("budget.race_margin", f"expected a positive number of accuracy points, got {margin!r}")
        return True, max_repeats, float(margin)

    def backbone(self) -> tuple[str, int | None, tuple[int, ...] | None]:
        d = self.data
        try:
            probe = ArchSpec(backbone=d.get("backbone", "proxy"), width=d.get("width"), depth=d.get("depth"),
                             block="none")
        except SpecError as exc:
            raise self.error(exc.field, exc.message) from None
        return probe.backbone, probe.width, probe.depth

    def objectives(self) -> tuple[str, ...]:
        value = self.data.get("objectives", ["accuracy", "flops"])
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error("objectives", f"expected a list of names from {', '.join(OBJECTIVES)}, got {value!r}")
        for name in value:
            if name not in OBJECTIVES:
                raise self.error("objectives", f"{name!r} is not one of {', '.join(OBJECTIVES)}")
        if len(set(value)) != len(value):
            raise self.error("objectives", f"an objective is listed twice: {value}")
        if value[0] != "accuracy":
            raise self.error("objectives", f"the first objective must be 'accuracy' (maximized), got {value[0]!r}")
        return tuple(value)

    def space(self) -> dict[str, tuple[Any, ...]]:
        table = self.table("space")
        self.known(table, "space.", DIMENSIONS)
        if not table:
            raise self.error("space", "the search space is empty; give at least one dimension with its choices, "
                                      "e.g. ratio = [4, 16]")
        space: dict[str, tuple[Any, ...]] = {}
        for dim in DIMENSIONS:  # a fixed order, so the sampler sees the same parameters whatever the file says
            if dim not in table:
                continue
            choices = table[dim]
            if not isinstance(choices, list):
                raise self.error(f"space.{dim}", f"expected a list of choices, got {_kind(choices)}")
            if not choices:
                raise self.error(f"space.{dim}", "no choices; give at least one")
            values = [self.value(f"space.{dim}", dim, c) for c in choices]
            seen: list[Any] = []
            for v in values:
                if v not in seen:
                    seen.append(v)
            space[dim] = tuple(seen)
        return space

    def fixed(self, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        table = self.table("fixed")
        self.known(table, "fixed.", DIMENSIONS)
        fixed: dict[str, Any] = {}
        for dim, value in table.items():
            if dim in space:
                raise self.error(f"fixed.{dim}", "also in [space]; give a dimension in one place")
            fixed[dim] = self.value(f"fixed.{dim}", dim, value)
        return fixed

    def value(self, key: str, dim: str, value: Any) -> Any:
        """One choice of a dimension, checked alone and put in the form a sampler stores."""
        if dim == "stages":
            return self.stages(key, value)
        if dim == "ratio":
            return self.integer(key, value, 1)
        allowed = DIMENSION_CHOICES[dim]
        assert allowed is not None
        if not isinstance(value, str) or value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.error(key, f"{value!r} is not one of {', '.join(allowed)}{hint}")
        return value

    def stages(self, key: str, value: Any) -> str:
        """A stage set as a list (["c3", "c4"]), a comma list ("c3,c4") or a range ("c3-c5") -> "c3,c4"."""
        try:
            return ",".join(stage_set(value))
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def checked(self, table: str, check: Callable[[], T]) -> T:
        """Run a check of a table that raises InputError("key: message"), and name the key in this file."""
        try:
            return check()
        except InputError as exc:
            message = str(exc)
            key, sep, rest = message.partition(": ")
            if sep and " " not in key:
                named = key == table or key.startswith(f"{table}.")
                raise self.error(key if named else f"{table}.{key}", rest) from None
            raise self.error(table, message) from None

    def proxy(self) -> ProxyConfig:
        table = self.table("proxy")
        return self.checked("proxy", lambda: ProxyConfig.from_dict(dict(table)))

    def pruning(self, directions: list[str]) -> dict[str, Any] | None:
        if "pruning" not in self.data:
            return None
        table = self.table("pruning")
        self.checked("pruning", lambda: make_pruner(dict(table), directions))
        return dict(table)

    def enumerate(self, spec: StudySpec) -> list[Candidate]:
        """Build every combination once: each must be a valid ArchSpec; merge those with the same key."""
        dims = list(spec.space)
        total = 1
        for choices in spec.space.values():
            total *= len(choices)
        if total > MAX_POINTS:
            raise self.error("space", f"{total:,} combinations; at most {MAX_POINTS:,} (fix some dimensions)")
        found: dict[str, Candidate] = {}
        if spec.is_grid:
            found[spec.baseline.key] = Candidate(spec.baseline, {})
        for combo in itertools.product(*(spec.space[d] for d in dims)):
            params = dict(zip(dims, combo, strict=True))
            try:
                arch = spec.spec_from_params(params)
            except SpecError as exc:
                where = "space." if exc.field in spec.space else "fixed." if exc.field in spec.fixed else ""
                others = ", ".join(f"{d} = {params[d]!r}" for d in dims if d != exc.field)
                context = f" (with {others})" if others else ""
                raise self.error(f"{where}{exc.field}", f"{exc.message}{context}") from None
            if arch.key not in found:
                found[arch.key] = Candidate(arch, params)
        labels: dict[str, str] = {}
        for cand in found.values():
            if cand.label in labels:  # two models, one label: the grid's parameter would not tell them apart
                raise self.error("space", f"candidates {labels[cand.label]} and {cand.key} share the label "
                                          f"{cand.label!r}")
            labels[cand.label] = cand.key
        return list(found.values())


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)
