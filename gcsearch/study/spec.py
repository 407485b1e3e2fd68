"""A validated study file (`StudySpec`) and its space's candidates: what the parser returns and the run reads.

The space is finite: each dimension is a list of choices. A grid study runs every canonical candidate
(points that build the same model are merged by their ArchSpec key) times every repeat, baseline included.
Other samplers propose one value per dimension and the runner builds the ArchSpec from it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from gcsearch.contract import OBJECTIVES, Meta
from gcsearch.errors import InputError
from gcsearch.space import ArchSpec
from gcsearch.space.vocabulary import (
    ACTS,
    BLOCK_SETS,
    BLOCKS,
    CONTEXTS,
    FUSIONS,
    MAX_WIDTH,
    NORMS,
    POSITIONS,
    STAGES,
    TRANSFORMS,
    block_channels,
)
from gcsearch.training.config import ProxyConfig

# The dimensions a space may vary, in the order trials suggest them.
DIMENSIONS: tuple[str, ...] = ("block", "stages", "position", "blocks", "ratio", "context", "transform", "norm",
                               "act", "fusion")
DIMENSION_CHOICES: dict[str, tuple[str, ...] | None] = {
    "block": BLOCKS, "stages": None, "position": POSITIONS, "blocks": BLOCK_SETS, "ratio": None,
    "context": CONTEXTS, "transform": TRANSFORMS, "norm": NORMS, "act": ACTS, "fusion": FUSIONS,
}
# What a grid trial records per dimension. Optuna fixes a categorical parameter's choices at its first use in a
# study, so a grid records each dimension over everything it could ever hold, not over the study file's choices:
# a value added to [space] later is a choice the study already knows, and its new points record as the old did.
STAGE_SETS: tuple[str, ...] = tuple(",".join(c) for n in range(1, len(STAGES) + 1)
                                    for c in itertools.combinations(STAGES, n))
MAX_RATIO = block_channels("bottleneck", MAX_WIDTH, STAGES[-1], "after_1x1")  # the widest block of any backbone
GRID_DISTRIBUTIONS: dict[str, BaseDistribution] = {
    **{d: CategoricalDistribution(list(c)) for d, c in DIMENSION_CHOICES.items() if c is not None},
    "stages": CategoricalDistribution(list(STAGE_SETS)),
    "ratio": IntDistribution(1, MAX_RATIO, log=True),
}
SAMPLERS: tuple[str, ...] = ("grid", "tpe", "nsga2", "random")
TOP_KEYS: tuple[str, ...] = ("name", "description", "backbone", "width", "depth", "objectives", "sampler", "seed",
                             "space", "fixed", "constraints", "budget", "proxy", "pruning")
BUDGET_KEYS: tuple[str, ...] = ("trials", "repeats", "baseline_repeats", "race", "max_repeats", "race_margin")
CONSTRAINT_KEYS: tuple[str, ...] = ("max_flops", "max_params")
DEFAULT_BASELINE_REPEATS = 3  # seeds of a grid's baseline: the noise estimate of a study whose candidates have one
DEFAULT_MAX_REPEATS = 6  # a race's cap on seeds per candidate (BENCHMARKS.md "Racing": why 6)
DEFAULT_RACE_MARGIN = 0.5  # accuracy points: in a race, closer than this to a cheaper front member is equal
DEFAULT_TRIALS = 20  # budget of a tpe/nsga2/random study whose file gives none
MAX_POINTS = 100_000  # combinations enumerated to validate a space; beyond this a space is refused


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
    baseline_repeats: int = 1  # seeds of a grid's baseline (at least `repeats`)
    race: bool = False  # a paired grid that gives seeds only to candidates still open (study/racing.py)
    max_repeats: int = DEFAULT_MAX_REPEATS
    race_margin: float = DEFAULT_RACE_MARGIN
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

    def repeats_of(self, candidate: Candidate) -> int:
        """Seeds a grid gives `candidate`: the baseline gets more, so that every study measures its noise.
        A race: at most `max_repeats` each, the baseline (the control) included."""
        if self.race:
            return self.max_repeats
        if self.is_grid and candidate.key == self.baseline.key:
            return max(self.repeats, self.baseline_repeats)
        return self.repeats

    def grid(self) -> list[tuple[Candidate, int]]:
        """The points a grid study queues up front: candidate by candidate, each with every repeat index (a
        race: its first round, every candidate on seed 0; the worker queues the later rounds)."""
        if self.race:
            return [(c, 0) for c in self._candidates]
        return [(c, r) for c in self._candidates for r in range(self.repeats_of(c))]

    @property
    def size(self) -> int:
        """How many distinct (candidate, repeat) points the space holds."""
        return sum(self.repeats_of(c) for c in self._candidates)

    def distributions(self) -> dict[str, BaseDistribution]:
        """The parameters a trial records, one per dimension of the space: a sampler's over the file's choices,
        a grid's over every value the dimension can take (`GRID_DISTRIBUTIONS`), so that the space can grow."""
        if self.is_grid:
            return {d: GRID_DISTRIBUTIONS[d] for d in self.space}
        return {d: CategoricalDistribution(list(choices)) for d, choices in self.space.items()}

    def point_params(self, arch: ArchSpec) -> dict[str, Any]:
        """A grid point's parameters: the candidate's value of each dimension of the space, as the canonical
        spec holds it (a dimension the candidate has no value for, such as the baseline's ratio, is left out)."""
        params: dict[str, Any] = {}
        for dim in self.space:
            value = getattr(arch, dim)
            if value is not None:
                params[dim] = ",".join(value) if dim == "stages" else value
        return params

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
            Meta.BASELINE_REPEATS: self.baseline_repeats,
            Meta.RACE: {"max_repeats": self.max_repeats, "margin": self.race_margin} if self.race else None,
            Meta.BACKBONE: self.backbone,
            Meta.WIDTH: self.width,
            Meta.DEPTH: list(self.depth) if self.depth is not None else None,
            Meta.CONSTRAINTS: {"max_flops": self.max_flops, "max_params": self.max_params},
            Meta.INPUT_SIZE: list(input_size),
            Meta.NUM_CLASSES: num_classes,
        }
