"""What gcsearch keeps in an Optuna database: the names every writer and every reader of it agree on.

A study stays a plain Optuna study (Optuna's CLI and dashboard open it too). gcsearch adds:

- the study user attribute `gcsearch` (STUDY_META): a dict of everything that defines the study, keyed by `Meta`;
- trial user attributes, keyed by `Attr`: the point (spec, key, label, repeat) when the trial is queued or
  proposed, what it ran on, its costs, its training, and how it ended;
- a failed trial's reason, "<kind>: <detail>" or a bare kind, with the kinds below. A diverged trial would
  diverge again (same seed, same proxy), so it is final; any other failure is retried.

Trial values are the study's objectives in its order (`OBJECTIVES`), accuracy first. Changing a name here
changes the meaning of every stored study: add names, never rename them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

STUDY_META = "gcsearch"  # the study user attribute that holds `Meta`
# The paired design's starts (`[proxy] start = "baseline"`): one trial per (backbone, proxy, seed), shared by every
# study in the storage; its metadata is {"kind": STARTS_KIND}.
STARTS_STUDY = "gcsearch-starts"
STARTS_KIND = "starts"
# A race (`[budget] race = true`): the study user attribute where the workers record, after each round, every
# candidate's seeds and why it stopped: {"round", "done", "candidates": {key: {"seeds", "state", "against"}}}.
RACE_ATTR = "gcsearch-race"


class Meta:
    """Keys of the study's metadata dict (the STUDY_META study attribute)."""

    VERSION = "version"  # gcsearch's version that last wrote it
    OBJECTIVES = "objectives"  # [{"name", "direction"}], in the order of the trial values
    STUDY_FILE = "study_file"  # the study file's text, and its parsed data under STUDY
    STUDY = "study"
    PROXY = "proxy"  # the proxy settings, and their fingerprint: trials of other settings never share a study
    PROXY_FINGERPRINT = "proxy_fingerprint"
    SAMPLER = "sampler"
    SEED = "seed"
    REPEATS = "repeats"
    BASELINE_REPEATS = "baseline_repeats"  # absent from studies made before grids repeated their baseline
    BACKBONE = "backbone"
    WIDTH = "width"
    DEPTH = "depth"
    CONSTRAINTS = "constraints"  # {"max_flops", "max_params"}
    INPUT_SIZE = "input_size"
    NUM_CLASSES = "num_classes"
    ARTIFACTS = "artifacts"  # the folder the first run kept trained weights in (None: not kept)
    RACE = "race"  # a race's {"max_repeats", "margin"}; None or absent: not a race


class Attr:
    """Keys of a trial's user attributes."""

    # The point: written when the trial is queued (grid points, repeats, retries) or proposed.
    SPEC = "spec"  # the canonical ArchSpec as a dict
    KEY = "key"  # ArchSpec.key: the candidate's identity
    LABEL = "label"
    REPEAT = "repeat"  # which seed of the candidate: the trial trains with the study's seed + repeat
    # What it ran on.
    SEED = "seed"
    DEVICE = "device"
    THREADS = "threads"  # torch's CPU threads: another count sums floats in another order, so results differ
    VERSIONS = "versions"  # {"gcsearch", "torch", "optuna", "python"}
    # Its cost, known before training.
    FLOPS = "flops"
    PARAMS = "params"
    BLOCK_FLOPS = "block_flops"  # against the same backbone with block none
    BLOCK_PARAMS = "block_params"
    LATENCY_MS = "latency_ms"  # {"forward", "forward_backward"}, only when latency is an objective
    # Its training.
    ACCURACY = "accuracy"  # percent, after the last epoch
    ACCURACIES = "accuracies"  # percent, after each epoch (written as training goes)
    TRAIN_SECONDS = "train_seconds"
    EPOCHS = "epochs"
    WEIGHTS = "weights"  # the trained weights in the artifact store: {artifact_id, store, sha256, bytes}
    # How it ended, when not COMPLETE with its own result.
    REUSED_FROM = "reused_from"  # the number of the trial whose result this one repeats (not trained again)
    FAIL_REASON = "fail_reason"
    PRUNED_EPOCH = "pruned_epoch"  # 0: infeasible, never trained
    PRUNE_REASON = "prune_reason"
    # The paired design.
    START = "start"  # a candidate's start: {"trial" (in STARTS_STUDY), "seed", "accuracy", "sha256"}
    START_KEY = "start_key"  # a start trial's identity: backbone, classes, channels, proxy and seed hashed


POINT_ATTRS = (Attr.SPEC, Attr.KEY, Attr.LABEL, Attr.REPEAT)
GRID_PARAM = "candidate"  # the label: the one parameter of grid trials queued before each dimension had its own

# Kinds of failure, the first word of a stored fail reason.
DIVERGED = "diverged"  # the loss became NaN or infinite: final
ERROR = "error"  # an exception in the trial, e.g. out of memory: retried
INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: the trial is queued again at once


def fail_reason(kind: str, detail: str | None = None) -> str:
    """The stored reason: "diverged: loss is nan at epoch 2 (step 40)", "interrupted"."""
    return kind if detail is None else f"{kind}: {detail}"


def failure_kind(reason: str) -> str:
    """The kind of a stored reason, as the summary counts them ("1 diverged, 1 error")."""
    return reason.split(":")[0]


@dataclass(frozen=True)
class Objective:
    """What a study can optimize: accuracy (maximized) or a cost (minimized), where a trial keeps its raw value,
    and the unit a report shows it in."""

    name: str
    direction: str  # "maximize" or "minimize"
    attr: str  # the trial user attribute that holds the raw value
    unit: str  # the shown value's unit (the hypervolume and its reference point are in these)
    scale: float  # raw value * scale = shown value
    raw_unit: str  # the unit of the stored value, which CSV and JSON rows carry

    def shown(self, raw: float | None) -> float | None:
        return None if raw is None else raw * self.scale

    @property
    def sign(self) -> float:
        """Multiply a shown value by this to get a loss (lower is better)."""
        return -1.0 if self.direction == "maximize" else 1.0


# Accuracy comes first in every study; the others are costs. Latency is stored in ms already.
OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", "maximize", Attr.ACCURACY, "%", 1.0, "%"),
    "flops": Objective("flops", "minimize", Attr.FLOPS, "GFLOPs", 1e-9, "FLOPs"),
    "params": Objective("params", "minimize", Attr.PARAMS, "M", 1e-6, "params"),
    "latency": Objective("latency", "minimize", Attr.LATENCY_MS, "ms", 1.0, "ms"),
}


# --- reading trials back --------------------------------------------------------------------------------

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def feasible(constraints: dict[str, float]) -> bool:
    """Optuna's rule for a trial's constraint values (`trial.set_constraint`): feasible when each is <= 0."""
    return all(v <= 0.0 for v in constraints.values())


def point_of(trial: FrozenTrial) -> tuple[str, int] | None:
    """A trial's (candidate key, repeat), when it knows them."""
    key, repeat = trial.user_attrs.get(Attr.KEY), trial.user_attrs.get(Attr.REPEAT)
    return (key, int(repeat)) if isinstance(key, str) and isinstance(repeat, int) else None


def is_reused(trial: FrozenTrial) -> bool:
    """Whether the trial repeats another trial's result instead of having one of its own."""
    return Attr.REUSED_FROM in trial.user_attrs


def is_final_failure(trial: FrozenTrial) -> bool:
    """A FAIL that would fail again the same way: the loss diverged (same seed, same proxy, same NaN)."""
    return trial.state == TrialState.FAIL and str(trial.user_attrs.get(Attr.FAIL_REASON, "")).startswith(DIVERGED)


def taken_points(trials: Iterable[FrozenTrial]) -> set[tuple[str, int]]:
    """The points that need no new trial: one is queued, running or finished, or failed for good."""
    return {p for t in trials if (p := point_of(t)) is not None and (t.state != TrialState.FAIL or is_final_failure(t))}


@dataclass(frozen=True)
class Counts:
    """Trials of a study by state. `finished` is what `--trials` counts: COMPLETE or PRUNED, not reused."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    reused: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned - self.reused


def count_trials(trials: Iterable[FrozenTrial]) -> Counts:
    by_state = dict.fromkeys(TrialState, 0)
    reused = 0
    for t in trials:
        by_state[t.state] += 1
        if t.state in FINISHED_STATES and is_reused(t):
            reused += 1
    return Counts(complete=by_state[TrialState.COMPLETE], pruned=by_state[TrialState.PRUNED],
                  failed=by_state[TrialState.FAIL], running=by_state[TrialState.RUNNING],
                  waiting=by_state[TrialState.WAITING], reused=reused)


def study_meta(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The metadata dict among a study's user attributes ({} for a study not written by gcsearch)."""
    meta = user_attrs.get(STUDY_META)
    return meta if isinstance(meta, dict) else {}


def objective_names(meta: dict[str, Any]) -> list[Any]:
    """The objectives a study's metadata names, in the order of its trial values."""
    return [o.get("name") for o in meta.get(Meta.OBJECTIVES) or () if isinstance(o, dict)]


def proxy_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The proxy settings a study's metadata holds ({} when it holds none)."""
    proxy = meta.get(Meta.PROXY)
    return proxy if isinstance(proxy, dict) else {}
