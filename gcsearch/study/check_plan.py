"""What `gcsearch check` trains: a few candidates that span a study's space, each with several seeds, on the
study's own proxy, so the seed noise can be set against the spread between candidates before the study runs.

It measures two protocols on the same candidates and seeds (`--protocol`, default both):

- scratch: every candidate trained from its own random start (`[proxy] start = "scratch"`), as the grid
  study `<name>-check`, and with a longer training `<name>-check-longer` (the same candidates, one seed,
  F x the epochs);
- paired: the study's proxy with `start = "baseline"` (its own fine-tune settings when the study is paired,
  else ProxyConfig's defaults): every candidate of seed s fine-tunes from the trained block-less start of
  seed s, as `<name>-check-paired`, and with a longer training `<name>-check-paired-longer` (F x
  `finetune_epochs`, with the check's own seeds, since a paired delta needs the control of the same seed and
  the rank correlation compares mean paired deltas). The starts are shared through the storage's
  `gcsearch-starts` study, so the longer paired check trains only its fine-tunes.

Each is an ordinary study: stored like any other, resumed by running the check again.
Torch-free: a bad option costs one line and no torch import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from gcsearch.errors import InputError
from gcsearch.space import ArchSpec
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.study.spec import Candidate, StudySpec
from gcsearch.training.config import ProxyConfig

CHECK_SUFFIX = "-check"
LONGER_SUFFIX = "-check-longer"
PAIRED_SUFFIX = "-check-paired"
PAIRED_LONGER_SUFFIX = "-check-paired-longer"
SCRATCH, PAIRED = "scratch", "paired"
PROTOCOLS = ("both", SCRATCH, PAIRED)  # what --protocol accepts
BASELINE_REPEATS_BEFORE_THE_FIELD = 3  # what a grid gave its baseline by default when it first repeated it


@dataclass(frozen=True)
class CheckPlan:
    """The studies a check trains, derived from the study it checks."""

    study: StudySpec  # the study being checked, as its file says
    candidates: list[Candidate]  # the baseline first, then the spanning candidates in the order chosen
    seeds: int
    proxy: StudySpec  # `<name>-check`: every candidate with `seeds` seeds on the study's proxy, from scratch
    longer: StudySpec | None  # `<name>-check-longer`: every candidate once, with `factor` x the epochs
    factor: float | None = None
    paired: StudySpec | None = None  # `<name>-check-paired`: every candidate with `seeds` seeds, fine-tuned
    paired_longer: StudySpec | None = None  # `<name>-check-paired-longer`: `factor` x the fine-tune, `seeds` seeds
    protocol: str = "both"  # which protocols are measured: "both", "scratch" or "paired"

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.candidates]

    @property
    def protocols(self) -> list[str]:
        """The protocols measured, scratch first."""
        return [p for p in (SCRATCH, PAIRED) if self.protocol in ("both", p)]

    def studies(self, protocol: str) -> tuple[StudySpec, StudySpec | None]:
        """The check study of `protocol` and its longer training (None without --longer)."""
        if protocol == SCRATCH:
            return self.proxy, self.longer
        assert self.paired is not None
        return self.paired, self.paired_longer

    def to_train(self) -> list[StudySpec]:
        """Every study the check trains, in the order it trains them."""
        return [s for p in self.protocols for s in self.studies(p) if s is not None]


def spec_distance(a: ArchSpec, b: ArchSpec) -> int:
    """How many of the two specs' fields differ (canonical forms, so a field a block does not use is None)."""
    return sum(getattr(a, name) != getattr(b, name) for name in SPEC_FIELDS)


def spanning_candidates(study: StudySpec, count: int) -> list[Candidate]:
    """Up to `count` of the study's canonical candidates that span its space, by greedy farthest-point choice.

    The baseline counts as already chosen, so the first pick is the candidate farthest from it; each next
    pick is the candidate whose nearest chosen one is farthest away. Distance: `spec_distance`. Ties go to
    the candidate that comes first in the space's order, so the choice is the same on every run, and the
    choice of `count` candidates begins with the choice of fewer.
    """
    baseline = study.baseline
    pool = [c for c in study.candidates() if c.key != baseline.key]
    nearest = [spec_distance(c.spec, baseline) for c in pool]  # distance to the closest chosen point
    chosen: list[Candidate] = []
    while pool and len(chosen) < count:
        i = nearest.index(max(nearest))  # the first of the farthest
        pick = pool.pop(i)
        nearest.pop(i)
        chosen.append(pick)
        nearest = [min(d, spec_distance(c.spec, pick.spec)) for c, d in zip(pool, nearest, strict=True)]
    return chosen


def plan_check(study: StudySpec, candidates: int = 4, seeds: int = 3, longer: float | None = None,
               protocol: str = "both") -> CheckPlan:
    """The check's studies for `study`: InputError (exit 2) naming the option when an option is out of range."""
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise InputError(f"--candidates: expected a positive number of candidates, got {candidates}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise InputError(f"--seeds: the noise between seeds needs at least 2 seeds per candidate, got {seeds}")
    if longer is not None and not (isinstance(longer, (int, float)) and math.isfinite(longer) and longer > 1):
        raise InputError(f"--longer: expected a factor above 1 for the epochs (e.g. 4), got {longer}")
    chosen = [baseline_candidate(study), *spanning_candidates(study, candidates)]
    scratch = scratch_proxy(study.proxy)
    proxy = derived_grid(study, study.name + CHECK_SUFFIX, chosen, repeats=seeds, proxy=scratch)
    paired = paired_proxy(study.proxy)
    paired_spec = derived_grid(study, study.name + PAIRED_SUFFIX, chosen, repeats=seeds, proxy=paired)
    longer_spec = paired_longer = None
    if longer is not None:
        epochs = longer_epochs(study.proxy.epochs, longer)
        longer_spec = derived_grid(study, study.name + LONGER_SUFFIX, chosen, repeats=1,
                                   proxy=replace(scratch, epochs=epochs))
        finetune = round(paired.finetune_epochs * longer, 9)
        paired_longer = derived_grid(study, study.name + PAIRED_LONGER_SUFFIX, chosen, repeats=seeds,
                                     proxy=replace(paired, finetune_epochs=finetune))
    return CheckPlan(study=study, candidates=chosen, seeds=seeds, proxy=proxy, longer=longer_spec, factor=longer,
                     paired=paired_spec, paired_longer=paired_longer, protocol=protocol)


def scratch_proxy(proxy: ProxyConfig) -> ProxyConfig:
    """The study's proxy with every candidate trained from its own random start (a scratch proxy as it is)."""
    return proxy if not proxy.paired else proxy.start_proxy()


def paired_proxy(proxy: ProxyConfig) -> ProxyConfig:
    """The study's proxy with `start = "baseline"`: its own fine-tune settings when it is paired already, else
    ProxyConfig's defaults (a scratch study's finetune keys are not its settings)."""
    if proxy.paired:
        return proxy
    default = ProxyConfig()
    return replace(proxy, start="baseline", finetune_epochs=default.finetune_epochs, finetune_lr=default.finetune_lr)


def baseline_candidate(study: StudySpec) -> Candidate:
    """The study's block-less baseline: a grid's own candidate, else one made for the check."""
    key = study.baseline.key
    return next((c for c in study.candidates() if c.key == key), Candidate(study.baseline, {}))


def derived_grid(study: StudySpec, name: str, candidates: Sequence[Candidate], repeats: int,
                 proxy: object | None = None) -> StudySpec:
    """A grid study over `candidates` (baseline first), each with `repeats` seeds, on the study's backbone,
    seed, objectives and proxy (or `proxy`).

    No constraints and no pruning: a candidate the study would stop early or skip still needs its accuracy
    for the noise to be measured.
    """
    changes: dict[str, object] = {"name": name, "sampler": "grid", "trials": None, "repeats": repeats,
                                  "max_flops": None, "max_params": None, "pruning": None,
                                  "_candidates": list(candidates)}
    if proxy is not None:
        changes["proxy"] = proxy
    if _has_field("baseline_repeats"):
        changes["baseline_repeats"] = repeats
    return replace(study, **changes)


def longer_epochs(epochs: int, factor: float) -> int:
    """`epochs` x `factor`, rounded up, and at least one epoch more."""
    return max(epochs + 1, math.ceil(round(epochs * factor, 9)))


def study_repeats(study: StudySpec) -> tuple[int, int]:
    """The seeds the study itself gives a candidate and its baseline: (`[budget] repeats`, baseline repeats).

    A study that samples (tpe, random, ...) trains no separate baseline: its candidates are compared with
    each other, each with `repeats` seeds.
    """
    if not study.is_grid:
        return study.repeats, study.repeats
    baseline = getattr(study, "baseline_repeats", None)
    if isinstance(baseline, bool) or not isinstance(baseline, int):
        baseline = BASELINE_REPEATS_BEFORE_THE_FIELD
    return study.repeats, max(study.repeats, baseline)


def study_candidate_count(study: StudySpec) -> int:
    """How many candidates besides the baseline the study compares: a grid's whole space, else its budget."""
    if study.is_grid:
        return max(1, sum(c.key != study.baseline.key for c in study.candidates()))
    return max(1, study.target() // study.repeats)


def _has_field(name: str) -> bool:
    return any(f.name == name for f in fields(StudySpec))


def refuse_other_candidates(spec: StudySpec, plan: CheckPlan, stored: set[str] | None, where: str) -> None:
    """A check study keeps the candidates it was made with: its grid's one parameter lists their labels, and
    Optuna refuses a trial whose parameter lists others. InputError when `stored` (the candidate keys already
    in `spec.name`, None for a new study) are not this plan's."""
    if not stored or stored == set(plan.keys):
        return
    before = len(stored - {plan.study.baseline.key})
    raise InputError(f"--candidates: study {spec.name!r} in {where} holds {before} candidates besides the "
                     f"baseline, not these {len(plan.candidates) - 1} (the choice follows --candidates and the "
                     "study's space); run the check with the --candidates it was made with, or with another "
                     "--storage")
