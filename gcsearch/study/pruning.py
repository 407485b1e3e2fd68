"""Early stopping of proxy training: stop a trial after an epoch when it has no chance of reaching the front.

Optuna prunes single-objective studies only (`Trial.report` raises in multi-objective ones), so gcsearch
brings its own rule for those and wraps Optuna's pruners for the rest. The runner builds one pruner per
study with `make_pruner(config, directions)` and, after every epoch, calls
`EpochPruner.check(study, trial, epoch, accuracy, costs)`: a one-line reason means "stop and record the
trial as pruned", None means "go on".

Rules (the study file's [pruning] table, `rule = ...`):

- "front" (multi-objective studies): prune a trial that cannot reach the front even if it gains as much from
  here as the finished trials at its level did (front_rule.py says how, and where it can be wrong).
- "median", "successive_halving", "hyperband": Optuna's MedianPruner, SuccessiveHalvingPruner and
  HyperbandPruner, for single-objective studies only (Optuna cannot run them on several objectives).
  `check` reports the accuracy with `trial.report(accuracy, epoch)` and asks `trial.should_prune()`,
  after installing its Optuna pruner as `study.pruner` (Hyperband needs the study to know it; pass
  `EpochPruner.optuna_pruner` to `optuna.create_study`/`load_study` to have it there from the start).
  Optuna is asked at every epoch (successive halving records rung values as it answers); `warmup_epochs`
  and `min_trials` only hold its answer back.
- "none": never prune, the default. Pruning is opt-in because on the built-in proxy it does not pay: early
  accuracy ranks candidates little like the final one (rank correlation 0.1-0.5 up to the last epoch), and
  the "front" rule at its default settings saved 8-12% of the epochs in two runs (losing 18% of the
  hypervolume in one) and stopped a member of the final front in 41-46% of replayed draws (BENCHMARKS.md,
  "Search efficiency"). Single-objective studies still get their per-epoch accuracy reported, so Optuna's
  dashboard shows learning curves.

Cost: one read of the study's trials per check (`states=(COMPLETE,)`, `deepcopy=False`) and, once per
study, its user attrs (objective names and proxy epochs).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from gcsearch.contract import Attr, objective_names, proxy_settings, study_meta
from gcsearch.errors import InputError, not_int_at_least
from gcsearch.study.front_rule import finished_at, fmt_pair, front_verdict

RULES = ("none", "front", "median", "successive_halving", "hyperband")
OPTUNA_RULES = ("median", "successive_halving", "hyperband")
COMMON_KEYS = ("rule", "warmup_epochs", "min_trials")
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "none": (),
    "front": ("margin",),
    "median": (),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}

DEFAULT_WARMUP_EPOCHS = 1
DEFAULT_MIN_TRIALS = 5
DEFAULT_MARGIN = 2.0  # accuracy points


class EpochPruner:
    """Decides after each epoch whether the running trial should stop. Build one with `make_pruner`."""

    def __init__(
        self,
        rule: str,
        directions: Sequence[str],
        *,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        min_trials: int = DEFAULT_MIN_TRIALS,
        margin: float = DEFAULT_MARGIN,
        optuna_pruner: optuna.pruners.BasePruner | None = None,
    ) -> None:
        self.rule = rule
        self.directions = list(directions)
        self.warmup_epochs = warmup_epochs
        self.min_trials = min_trials
        self.margin = margin
        self.optuna_pruner = optuna_pruner
        self._study_info: dict[str, tuple[list[str], int | None]] = {}

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def check(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        epoch: int,
        accuracy: float,
        costs: dict[str, float],
        curve: Sequence[float] | None = None,
    ) -> str | None:
        """After `epoch` (counted from 1) with validation `accuracy` (percent): a reason to prune, or None.

        `costs` holds the running trial's cost objectives by name (e.g. {"flops": ..., "params": ...}),
        in the units of the trial values. `curve` is the trial's accuracy after each epoch so far (the
        runner passes it); "front" judges the best of it, or `accuracy` alone when it is left out.
        """
        if not self.multi_objective:
            # Single-objective: the accuracy goes to Optuna whatever the rule, so later trials (and
            # Optuna's dashboard) see the learning curve.
            trial.report(float(accuracy), epoch)
        if self.rule == "none":
            return None
        if self.rule in OPTUNA_RULES:
            # Ask Optuna at every epoch, warm-up included: successive halving and Hyperband record each
            # trial's rung values while answering, and later trials are ranked against them.
            return self._check_optuna(study, trial, epoch, accuracy, costs)
        if epoch <= self.warmup_epochs or not math.isfinite(accuracy):
            return None
        names, total_epochs = self._info(study, costs)
        if total_epochs is not None and epoch >= total_epochs:
            return None
        best = max([accuracy, *(a for a in (curve or ())[:epoch] if math.isfinite(a))])
        return self._check_front(study, trial, epoch, best, costs, names, total_epochs)

    def _check_front(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        epoch: int,
        best: float,
        costs: Mapping[str, float],
        names: list[str],
        total_epochs: int | None,
    ) -> str | None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self.min_trials:
            return None
        cost_names = names[1:]
        try:
            ours = tuple(float(costs[name]) for name in cost_names)
        except KeyError as exc:
            raise ValueError(f"costs: missing objective {exc.args[0]!r}; expected {cost_names}") from None
        if total_epochs is None:
            # No proxy settings in the study: the finished curves say how long training is.
            longest = max((len(t.user_attrs.get(Attr.ACCURACIES) or ()) for t in complete), default=0)
            if longest and epoch >= longest:
                return None
        finished = list(finished_at(complete, epoch, len(cost_names)))
        verdict = front_verdict(best, ours, finished, self.margin)
        if verdict is not None and verdict[0].key is not None:
            # Only now read our own key: repeats of this candidate must not prune it.
            key = trial.user_attrs.get(Attr.KEY)
            if key is not None and verdict[0].key == key:
                verdict = front_verdict(best, ours, finished, self.margin, key=key)
        if verdict is None:
            return None
        dominator, room = verdict
        pairs = zip(cost_names, dominator.costs, ours, strict=True)
        than = ", ".join(f"{name} {fmt_pair(theirs, mine)}" for name, theirs, mine in pairs)
        where = f" with {than}" if than else ""
        return (
            f"epoch {epoch}: best {best:.2f}% + {room:.3g} points of headroom + {self.margin:g} margin "
            f"<= trial {dominator.number}'s final {dominator.final:.2f}%{where}"
        )

    def _check_optuna(
        self, study: optuna.Study, trial: optuna.Trial, epoch: int, accuracy: float, costs: Mapping[str, float]
    ) -> str | None:
        assert self.optuna_pruner is not None
        owner = trial.study
        if owner.pruner is not self.optuna_pruner:
            owner.pruner = self.optuna_pruner
        if not trial.should_prune() or epoch <= self.warmup_epochs:
            return None
        _, total_epochs = self._info(study, costs)
        if total_epochs is not None and epoch >= total_epochs:
            return None
        if self.min_trials and len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < self.min_trials:
            return None
        why = {
            "median": "below the median of finished trials at this epoch",
            "successive_halving": "not in the top of its successive-halving rung",
            "hyperband": "not in the top of its Hyperband rung",
        }[self.rule]
        return f"epoch {epoch}: {accuracy:.2f}% is {why} ({type(self.optuna_pruner).__name__})"

    def _info(self, study: optuna.Study, costs: Mapping[str, float]) -> tuple[list[str], int | None]:
        """Objective names and proxy epochs, read once per study from its metadata."""
        cached = self._study_info.get(study.study_name)
        if cached is not None:
            return cached
        meta = study_meta(study.user_attrs)
        names = [str(name) for name in objective_names(meta)]
        if len(names) != len(self.directions):
            # No metadata (a study not made by gcsearch): accuracy first, then the costs in the order given.
            names = ["accuracy", *list(costs)[: len(self.directions) - 1]]
        epochs = proxy_settings(meta).get("epochs")
        info = (names, int(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) else None)
        self._study_info[study.study_name] = info
        return info


# --- configuration -----------------------------------------------------------------------------------


DEFAULT_RULE = "none"  # the rule when a study's [pruning] table names none (the module docstring says why)


def make_pruner(config: dict | None, directions: list[str]) -> EpochPruner:
    """Build the pruner a study's [pruning] table asks for.

    `directions` are the study's objective directions, accuracy ("maximize") first, costs ("minimize")
    after it. Raises InputError with a message starting with the offending key (`pruning.rule: ...`).
    """
    directions = [_direction(d) for d in directions]
    if not directions or directions[0] != "maximize" or any(d != "minimize" for d in directions[1:]):
        raise ValueError(f"directions: expected 'maximize' (accuracy) then 'minimize' costs, got {directions}")
    if config is not None and not isinstance(config, Mapping):
        raise InputError(f"pruning: expected a table, got {type(config).__name__}")
    config = dict(config or {})

    if config and "rule" not in config:
        raise InputError(f"pruning: the table sets {', '.join(map(str, config))} but names no rule, and pruning is "
                         "off unless it does; add rule = \"front\" (or another rule)")
    rule = config.get("rule", DEFAULT_RULE)
    if not isinstance(rule, str) or rule not in RULES:
        raise InputError(f"pruning.rule: {rule!r} is not one of {', '.join(RULES)}")
    multi = len(directions) > 1
    if multi and rule in OPTUNA_RULES:
        raise InputError(
            f"pruning.rule: {rule!r} works on single-objective studies only (Optuna cannot prune several "
            "objectives); use 'front' or 'none'"
        )
    for key in config:
        if key in COMMON_KEYS or key in RULE_KEYS[rule]:
            continue
        owners = [r for r, keys in RULE_KEYS.items() if key in keys]
        if owners:
            raise InputError(f"pruning.{key}: applies to rule {' or '.join(map(repr, owners))} only, not {rule!r}")
        known = sorted({*COMMON_KEYS, *(k for keys in RULE_KEYS.values() for k in keys)})
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"pruning.{key}: unknown key{hint}; known keys: {', '.join(known)}")

    warmup = _int(config, "warmup_epochs", DEFAULT_WARMUP_EPOCHS, minimum=0)
    min_trials = _int(config, "min_trials", DEFAULT_MIN_TRIALS, minimum=0)
    margin = _float(config, "margin", DEFAULT_MARGIN, minimum=0.0)

    optuna_pruner: optuna.pruners.BasePruner | None = None
    if rule == "median":
        # Optuna counts steps as we do (epochs from 1); the first prunable epoch is warmup + 1.
        optuna_pruner = optuna.pruners.MedianPruner(n_startup_trials=min_trials, n_warmup_steps=warmup + 1)
    elif rule == "successive_halving":
        optuna_pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=_int(config, "min_resource", 1, minimum=1),
            reduction_factor=_int(config, "reduction_factor", 3, minimum=2),
            min_early_stopping_rate=_int(config, "min_early_stopping_rate", 0, minimum=0),
        )
    elif rule == "hyperband":
        min_resource = _int(config, "min_resource", 1, minimum=1)
        max_resource: int | str = config.get("max_resource", "auto")
        if max_resource != "auto":
            if isinstance(max_resource, str):
                raise InputError(f"pruning.max_resource: expected an integer or 'auto', got {max_resource!r}")
            max_resource = _int(config, "max_resource", 0, minimum=min_resource)
        optuna_pruner = optuna.pruners.HyperbandPruner(
            min_resource=min_resource,
            max_resource=max_resource,
            reduction_factor=_int(config, "reduction_factor", 3, minimum=2),
        )
    return EpochPruner(
        rule,
        directions,
        warmup_epochs=warmup,
        min_trials=min_trials,
        margin=margin,
        optuna_pruner=optuna_pruner,
    )


def _direction(d: Any) -> str:
    if isinstance(d, optuna.study.StudyDirection):
        return "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize"
    return str(d).lower()


def _int(config: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = config.get(key, default)
    why = not_int_at_least(value, minimum)
    if why is not None:
        raise InputError(f"pruning.{key}: {why}")
    return value


def _float(config: Mapping[str, Any], key: str, default: float, *, minimum: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"pruning.{key}: expected a number, got {value!r}")
    if value < minimum:
        raise InputError(f"pruning.{key}: must be >= {minimum:g}, got {value:g}")
    return float(value)
