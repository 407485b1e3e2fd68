"""Study files: TOML text -> a validated `StudySpec` -> the candidates a sampler may propose.

A study file says what to search (the space: each dimension with its choices, plus fixed values), how to
judge a candidate (objectives, constraints), how to search (sampler, seed, budget) and how to train (proxy).
Every error names the file and the key, `studies/mine.toml:space.ratio: ...`, and exits 2 in the CLI.

The space is finite: each dimension is a list of choices. A grid study runs every canonical candidate
(points that build the same model are merged by their ArchSpec key) times every repeat, baseline included.
Other samplers propose one value per dimension and the runner builds the ArchSpec from it.
"""

from __future__ import annotations

import difflib
import importlib.resources
import itertools
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution

from gcsearch.contract import (
    GRID_PARAM,
    OBJECTIVES,
    STUDY_META,
    Attr,
    Meta,
    point_of,
    taken_points,
)
from gcsearch.errors import InputError, SpecError
from gcsearch.space import ArchSpec
from gcsearch.space.vocabulary import ACTS, BLOCK_SETS, BLOCKS, CONTEXTS, FUSIONS, NORMS, POSITIONS, STAGES, TRANSFORMS
from gcsearch.storage.writer import exclusive
from gcsearch.training.config import ProxyConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The dimensions a space may vary, in the order trials suggest them.
DIMENSIONS: tuple[str, ...] = ("block", "stages", "position", "blocks", "ratio", "context", "transform", "norm",
                               "act", "fusion")
DIMENSION_CHOICES: dict[str, tuple[str, ...] | None] = {
    "block": BLOCKS, "stages": None, "position": POSITIONS, "blocks": BLOCK_SETS, "ratio": None,
    "context": CONTEXTS, "transform": TRANSFORMS, "norm": NORMS, "act": ACTS, "fusion": FUSIONS,
}
SAMPLERS: tuple[str, ...] = ("grid", "tpe", "nsga2", "random")
TOP_KEYS: tuple[str, ...] = ("name", "description", "backbone", "width", "depth", "objectives", "sampler", "seed",
                             "space", "fixed", "constraints", "budget", "proxy", "pruning")
BUDGET_KEYS: tuple[str, ...] = ("trials", "repeats")
CONSTRAINT_KEYS: tuple[str, ...] = ("max_flops", "max_params")
DEFAULT_TRIALS = 20  # budget of a tpe/nsga2/random study whose file gives none
MAX_POINTS = 100_000  # combinations enumerated to validate a space; beyond this a space is refused
BUILTIN_PACKAGE = "gcsearch.studies"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class StudyFileError(InputError):
    """A study file that cannot be read or holds a bad value: `file:key: message`."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}:{key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Candidate:
    """One canonical point of a study's space: the spec, its label, and the sampler values that give it."""

    spec: ArchSpec
    params: dict[str, Any]  # one value per space dimension (the first combination that canonicalized to spec)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def label(self) -> str:
        return self.spec.label()


@dataclass(frozen=True)
class StudySpec:
    """A validated study file. `space` maps each varied dimension to its choices (stages as "c3,c4,c5")."""

    name: str
    description: str
    source: str
    text: str
    data: dict[str, Any]
    backbone: str
    width: int | None
    depth: tuple[int, ...] | None
    space: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    objectives: tuple[str, ...]
    max_flops: int | None
    max_params: int | None
    sampler: str
    seed: int
    trials: int | None
    repeats: int
    proxy: ProxyConfig
    pruning: dict[str, Any] | None
    _candidates: list[Candidate] = field(default_factory=list, repr=False, compare=False)

    # -- objectives ------------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name].direction for name in self.objectives]

    @property
    def is_grid(self) -> bool:
        return self.sampler == "grid"

    # -- candidates ------------------------------------------------------------------------
    def spec_from_params(self, params: dict[str, Any]) -> ArchSpec:
        """The ArchSpec for one value per space dimension (missing dimensions take the fixed values)."""
        values: dict[str, Any] = {**self.fixed, **{d: params[d] for d in self.space if d in params}}
        return ArchSpec(backbone=self.backbone, width=self.width, depth=self.depth, **values)

    @property
    def baseline(self) -> ArchSpec:
        return ArchSpec(backbone=self.backbone, width=self.width, depth=self.depth, block="none")

    def candidates(self) -> list[Candidate]:
        """Every canonical candidate of the space, in the space's order, each once.

        A grid study puts the block-less baseline first, whether or not the space holds it.
        """
        return list(self._candidates)

    def grid(self) -> list[tuple[Candidate, int]]:
        """The points a grid study runs: candidate by candidate, each with every repeat index."""
        return [(c, r) for c in self._candidates for r in range(self.repeats)]

    @property
    def size(self) -> int:
        """How many distinct (candidate, repeat) points the space holds."""
        return len(self._candidates) * self.repeats

    def distributions(self) -> dict[str, CategoricalDistribution]:
        """The parameters a trial records. Grid: one categorical "candidate" (labels); else one per dimension."""
        if self.is_grid:
            return {GRID_PARAM: CategoricalDistribution([c.label for c in self._candidates])}
        return {d: CategoricalDistribution(list(choices)) for d, choices in self.space.items()}

    def target(self, trials: int | None = None) -> int:
        """Finished trials to reach: `trials`, else the budget, capped at the distinct points of the space."""
        wanted = trials if trials is not None else self.trials
        if wanted is None:
            wanted = self.size if self.is_grid else DEFAULT_TRIALS
        return min(wanted, self.size)

    def metadata(self, input_size: tuple[int, int, int], num_classes: int | None = None) -> dict[str, Any]:
        """The study's metadata (`gcsearch.contract.Meta`): everything that defines the study."""
        from gcsearch import __version__

        return {
            Meta.VERSION: __version__,
            Meta.OBJECTIVES: [{"name": n, "direction": OBJECTIVES[n].direction} for n in self.objectives],
            Meta.STUDY_FILE: self.text,
            Meta.STUDY: self.data,
            Meta.PROXY: self.proxy.to_dict(),
            Meta.PROXY_FINGERPRINT: self.proxy.fingerprint(),
            Meta.SAMPLER: self.sampler,
            Meta.SEED: self.seed,
            Meta.REPEATS: self.repeats,
            Meta.BACKBONE: self.backbone,
            Meta.WIDTH: self.width,
            Meta.DEPTH: list(self.depth) if self.depth is not None else None,
            Meta.CONSTRAINTS: {"max_flops": self.max_flops, "max_params": self.max_params},
            Meta.INPUT_SIZE: list(input_size),
            Meta.NUM_CLASSES: num_classes,
        }


# --- loading ----------------------------------------------------------------------------------------


def builtin_studies() -> list[str]:
    """Names of the study files that ship with gcsearch (`--study NAME`)."""
    root = importlib.resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_study(ref: str) -> StudySpec:
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
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
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

        constraints = self.table("constraints")
        self.known(constraints, "constraints.", CONSTRAINT_KEYS)
        max_flops = self.integer("constraints.max_flops", constraints["max_flops"], 1) \
            if "max_flops" in constraints else None
        max_params = self.integer("constraints.max_params", constraints["max_params"], 1) \
            if "max_params" in constraints else None

        space = self.space()
        fixed = self.fixed(space)
        proxy = self.proxy()
        pruning = self.pruning([OBJECTIVES[o].direction for o in objectives], sampler)

        spec = StudySpec(
            name=name, description=description, source=self.source, text=self.text, data=d,
            backbone=backbone, width=width, depth=depth, space=space, fixed=fixed, objectives=objectives,
            max_flops=max_flops, max_params=max_params, sampler=sampler, seed=seed, trials=trials,
            repeats=repeats, proxy=proxy, pruning=pruning,
        )
        spec._candidates.extend(self.enumerate(spec))
        return spec

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
        if isinstance(value, str):
            text = value.replace(" ", "")
            if re.fullmatch(r"c[2-5]-c[2-5]", text):
                lo, hi = STAGES.index(text[:2]), STAGES.index(text[3:])
                if lo > hi:
                    raise self.error(key, f"empty stage range {value!r}")
                items = list(STAGES[lo:hi + 1])
            else:
                items = [s for s in text.split(",") if s]
        elif isinstance(value, list) and all(isinstance(s, str) for s in value):
            items = list(value)
        else:
            raise self.error(key, f"expected a stage list like ['c3', 'c4'] or 'c3,c4' or 'c3-c5', got {value!r}")
        if not items:
            raise self.error(key, "an empty stage set; give stages from c2, c3, c4, c5")
        for s in items:
            if s not in STAGES:
                raise self.error(key, f"the backbone has no stage {s!r} (it has {', '.join(STAGES)})")
        return ",".join(s for s in STAGES if s in items)

    def proxy(self) -> Any:
        table = self.table("proxy")
        try:
            return ProxyConfig.from_dict(dict(table))
        except InputError as exc:
            message = str(exc)
            key, sep, rest = message.partition(": ")
            if sep and " " not in key:
                key = key if key.startswith("proxy.") else f"proxy.{key}"
                raise self.error(key, rest) from None
            raise self.error("proxy", message) from None

    def pruning(self, directions: list[str], sampler: str) -> dict[str, Any] | None:
        if "pruning" not in self.data:
            return None
        table = self.table("pruning")
        from gcsearch.study.pruning import make_pruner

        try:
            make_pruner(dict(table), directions, sampler)
        except InputError as exc:
            message = str(exc)
            key, sep, rest = message.partition(": ")
            if sep and " " not in key:
                raise self.error(key if key.startswith("pruning") else f"pruning.{key}", rest) from None
            raise self.error("pruning", message) from None
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




# --- the Optuna study: create, queue a grid, resume -------------------------------------------------


SETUP_QUIET_S = 5.0  # a study with no metadata whose trial count has not moved for this long: its creator died


def point_attrs(candidate: Candidate | ArchSpec, repeat: int) -> dict[str, Any]:
    spec = candidate.spec if isinstance(candidate, Candidate) else candidate
    return {Attr.SPEC: spec.to_dict(), Attr.KEY: spec.key, Attr.LABEL: spec.label(), Attr.REPEAT: repeat}


def make_sampler(spec: StudySpec, seed: int, target: int) -> optuna.samplers.BaseSampler:
    """The study file's sampler. A grid study's points are queued trials, so its sampler never proposes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                              n_startup_trials=max(2, min(10, target // 3)))
        if spec.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, target // 4)))
        return optuna.samplers.RandomSampler(seed=seed)


def open_study(spec: StudySpec, storage: optuna.storages.BaseStorage, meta: dict[str, Any], *,
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner | None = None,
               where: str = "", check_seed: bool = True, fill_grid: bool = True
               ) -> tuple[optuna.Study, dict[str, Any], int]:
    """Create the study (queueing every grid point) or load it to resume. Returns (study, metadata, queued).

    Creation is atomic in the database (the study name is unique), so when several workers start at
    once exactly one creates the study and queues the grid; the others wait until it has written the
    metadata, which it does last. A resumed study must have been made with the same proxy settings,
    objectives, backbone and seed; its grid gets the points it misses (new ones, or ones whose trial
    failed for a reason other than divergence) queued again, unless `fill_grid` is False (a local worker
    whose parent process has just done that).
    """
    kwargs = {"storage": storage, "sampler": sampler, "pruner": pruner}
    try:
        study = optuna.create_study(study_name=spec.name, directions=spec.directions, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, **kwargs)
    else:
        queued = queue_points(study, spec.grid()) if spec.is_grid else 0
        study.set_user_attr(STUDY_META, meta)
        return study, meta, queued

    stored = _wait_for_meta(study)
    if stored is None:
        if any(point_of(t) is None for t in study.get_trials(deepcopy=False)):
            raise InputError(f"--study: a study named {spec.name!r} already exists in {where or 'the storage'} "
                             "and was not made by gcsearch; give the study file another name")
        stored = meta  # its creator stopped before writing the metadata: adopt it
    check_resumable(spec, stored, meta, study, where, check_seed=check_seed)
    queued = 0
    if spec.is_grid and fill_grid:
        # One at a time: machines resuming together would each see a point missing and each queue it.
        with exclusive(storage, f"gcsearch: queue {spec.name}"):
            queued = queue_missing(study, spec)
    if stored is meta or stored.get(Meta.STUDY_FILE) != meta[Meta.STUDY_FILE]:
        # The space, budget or sampler may change between runs; the stored file is the latest one.
        stored = {**stored, **{k: meta[k] for k in (Meta.STUDY_FILE, Meta.STUDY, Meta.SAMPLER, Meta.REPEATS,
                                                     Meta.CONSTRAINTS, Meta.VERSION) if k in meta}}
        study.set_user_attr(STUDY_META, stored)
    return study, stored, queued


def _wait_for_meta(study: optuna.Study) -> dict[str, Any] | None:
    last_count, last_change = -1, time.monotonic()
    while True:
        meta = study.user_attrs.get(STUDY_META)
        if isinstance(meta, dict):
            return meta
        count = len(study.get_trials(deepcopy=False))
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > SETUP_QUIET_S:
            return None
        time.sleep(0.25)


def check_resumable(spec: StudySpec, stored: dict[str, Any], meta: dict[str, Any], study: optuna.Study,
                    where: str = "", check_seed: bool = True) -> None:
    """Refuse to add trials that would not be comparable with the stored ones (InputError, exit 2)."""
    name = f"study {spec.name!r}" + (f" in {where}" if where else "")
    fix = "give the study another name, use another --storage, or restore the earlier settings"
    if stored.get(Meta.PROXY_FINGERPRINT) != meta[Meta.PROXY_FINGERPRINT]:
        old, new = stored.get(Meta.PROXY) or {}, meta[Meta.PROXY]
        diffs = [f"{k}: {old.get(k)!r} stored, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                 if k != "data_dir" and old.get(k) != new.get(k)]
        detail = "; ".join(diffs) if diffs else "a different fingerprint"
        raise InputError(f"--study: {name} was run with other proxy settings ({detail}); trials from different "
                         f"proxies must not share one table: {fix}")
    old_objectives = [o.get("name") for o in stored.get(Meta.OBJECTIVES) or ()]
    if old_objectives != list(spec.objectives) or [d.name.lower() for d in study.directions] != spec.directions:
        raise InputError(f"{spec.source}:objectives: {name} has objectives {old_objectives}, this file says "
                         f"{list(spec.objectives)}: {fix}")
    for key in (Meta.BACKBONE, Meta.WIDTH, Meta.DEPTH):
        if key in stored and stored[key] != meta[key]:
            raise InputError(f"{spec.source}:{key}: {name} was run with {key} {stored[key]!r}, this file says "
                             f"{meta[key]!r}: {fix}")
    if check_seed and stored.get(Meta.SEED, meta[Meta.SEED]) != meta[Meta.SEED]:
        raise InputError(f"--seed: {name} was started with seed {stored.get(Meta.SEED)}, not {meta[Meta.SEED]}; "
                         "run it without --seed to resume it")


def queue_points(study: optuna.Study, points: list[tuple[Candidate, int]]) -> int:
    """Queue (candidate, repeat) points as WAITING trials; a worker claims each one exactly once."""
    for cand, repeat in points:
        study.enqueue_trial({GRID_PARAM: cand.label}, user_attrs=point_attrs(cand, repeat))
    return len(points)


def queue_missing(study: optuna.Study, spec: StudySpec) -> int:
    """Queue the grid points that have no queued, running, finished or diverged trial."""
    taken = taken_points(study.get_trials(deepcopy=False))
    return queue_points(study, [(c, r) for c, r in spec.grid() if (c.key, r) not in taken])
