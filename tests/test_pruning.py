"""The pruning rules on hand-made trial histories written through Optuna's API."""

from __future__ import annotations

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState, create_trial

from gcsearch.errors import InputError
from gcsearch.study.front_rule import Finished, find_dominator, front_verdict, headroom
from gcsearch.study.pruning import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)

MULTI = ["maximize", "minimize", "minimize"]  # accuracy, flops, params
EPOCHS = 6


def _study(directions=MULTI, storage=None, objectives=("accuracy", "flops", "params"), epochs=EPOCHS):
    study = optuna.create_study(directions=directions, storage=storage)
    study.set_user_attr(
        "gcsearch",
        {
            "objectives": [
                {"name": n, "direction": "maximize" if n == "accuracy" else "minimize"} for n in objectives
            ],
            "proxy": {"epochs": epochs},
        },
    )
    return study


def _finished(study, accuracies, flops=None, params=None, *, key=None, max_flops=None, state=TrialState.COMPLETE):
    """Add a finished trial with a per-epoch accuracy curve; its final value is the last epoch's."""
    values = [accuracies[-1]] + [c for c in (flops, params) if c is not None]
    user_attrs = {"accuracies": list(accuracies), "accuracy": accuracies[-1]}
    if key is not None:
        user_attrs["key"] = key
    constraints = {"max_flops": flops - max_flops} if max_flops is not None else None
    study.add_trial(
        create_trial(
            state=state,
            values=values if state == TrialState.COMPLETE else None,
            user_attrs=user_attrs,
            constraints=constraints,
        )
    )


def _history(study, n=5):
    """n finished trials: trial 0 is cheap and accurate (60% at epoch 2, 80% final); the others are expensive
    slow climbers that gained 25, 20, 15, 10 and 5 points after epochs 1..5 to end at 45%."""
    _finished(study, [40, 60, 70, 75, 78, 80], flops=2e6, params=1e5)
    for i in range(1, n):
        _finished(study, SLOW, flops=8e6 + i, params=4e5)


SLOW = [20, 25, 30, 35, 40, 45]
FRONT = {"rule": "front"}  # at its default settings


def test_clearly_dominated_trial_is_pruned_with_reason():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "front"}, MULTI)
    trial = study.ask()
    # Trials that stood at <= 42% at epoch 2 gained at most 20 points: 40 + 20 + 2 <= trial 0's 80%.
    reason = pruner.check(study, trial, 2, 40.0, {"flops": 3e6, "params": 2e5})
    assert reason == (
        "epoch 2: best 40.00% + 20 points of headroom + 2 margin <= trial 0's final 80.00% "
        "with flops 2M <= 3M, params 100k <= 200k"
    )


def test_cheaper_than_everyone_is_not_pruned():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "front"}, MULTI)
    trial = study.ask()
    # Hopeless in accuracy at epoch 3, but the cheapest candidate: it can still be on the front.
    assert pruner.check(study, trial, 3, 30.0, {"flops": 1e6, "params": 5e4}) is None
    # Cheaper in FLOPs only, more params than trial 0: trial 0 does not dominate it either.
    assert pruner.check(study, trial, 3, 30.0, {"flops": 1.5e6, "params": 9e5}) is None


def test_a_trial_that_could_still_reach_the_front_is_not_pruned():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "front", "margin": 2.0}, MULTI)
    trial = study.ask()
    costs = {"flops": 9e6, "params": 9e5}  # the most expensive of all
    # Epoch 4, 2.5 points behind trial 0's 75%: the slow climbers gained 10 after epoch 4, so 72.5 may reach 82.5.
    assert pruner.check(study, trial, 4, 72.5, costs) is None
    # 35% at epoch 4, where the slow climbers stood: they ended at 45, far below trial 0.
    assert "trial 0's final 80.00%" in pruner.check(study, trial, 4, 35.0, costs)


def test_below_every_finished_trial_is_not_pruned_without_evidence():
    study = _study()
    _history(study)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    # No finished trial stood at <= 12% at epoch 2, so nothing says how far such a trial climbs.
    assert pruner.check(study, trial, 2, 10.0, {"flops": 9e6, "params": 9e5}) is None


def test_margin_zero_needs_a_strictly_better_objective():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "front", "margin": 0}, MULTI)
    trial = study.ask()
    # 60 at epoch 2 + 20 of headroom reaches trial 0's 80 exactly; same costs: not dominated.
    assert pruner.check(study, trial, 2, 60.0, {"flops": 2e6, "params": 1e5}) is None
    # Same accuracy, one cost worse: dominated.
    assert pruner.check(study, trial, 2, 60.0, {"flops": 2e6, "params": 1e5 + 1}) is not None


def test_a_late_climber_among_the_finished_raises_the_headroom():
    study = _study()
    _history(study)
    trial = study.ask()
    costs = {"flops": 3e6, "params": 2e5}
    pruner = make_pruner(FRONT, MULTI)
    assert pruner.check(study, trial, 2, 25.0, costs) is not None
    # A finished trial that stood at 25% after epoch 2 and ended highest of all, at 90%.
    _finished(study, [20, 25, 60, 80, 88, 90], flops=9e6, params=9e5)
    assert pruner.check(study, trial, 2, 25.0, costs) is None
    # By epoch 4 it was at 80%: trials at 35% then still climbed 10 points at most.
    assert "trial 0's final" in pruner.check(study, trial, 4, 35.0, costs)


def test_a_dip_while_the_learning_rate_is_high_is_not_held_against_a_trial():
    study = _study()
    _history(study)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    costs = {"flops": 3e6, "params": 2e5}
    # 30% at epoch 3 alone is where the slow climbers stood (they ended at 45%).
    assert pruner.check(study, trial, 3, 30.0, costs) is not None
    # The same 30% after 65% at epoch 2: judged by its best, 65 + 15 + 2 > 80.
    assert pruner.check(study, trial, 3, 30.0, costs, curve=[40.0, 65.0, 30.0]) is None


def test_headroom():
    def f(best, final):
        return Finished(0, best, final, ())

    assert headroom([], 50.0, 2.0) is None
    assert headroom([f(60, 90)], 50.0, 2.0) is None  # stood higher than 52: not comparable
    assert headroom([f(52, 70), f(30, 80), f(60, 99)], 50.0, 2.0) == 50.0
    assert headroom([f(40, 35)], 50.0, 0.0) == 0.0  # a trial that fell back: no negative headroom


def test_nothing_is_pruned_during_warmup():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "front", "warmup_epochs": 3}, MULTI)
    trial = study.ask()
    costs = {"flops": 9e6, "params": 9e5}
    # Each epoch, exactly where the slow climbers stood: prunable once the warm-up is over.
    assert [pruner.check(study, trial, e, SLOW[e - 1], costs) is None for e in range(1, EPOCHS)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_nothing_is_pruned_before_min_trials_complete():
    study = _study()
    _history(study, n=3)
    # Pruned and failed trials do not count towards min_trials.
    _finished(study, [90, 95, 96, 97, 98, 99], flops=1e6, params=1e4, state=TrialState.PRUNED)
    _finished(study, [90, 95, 96, 97, 98, 99], flops=1e6, params=1e4, state=TrialState.FAIL)
    pruner = make_pruner({"rule": "front", "min_trials": 4}, MULTI)
    trial = study.ask()
    costs = {"flops": 9e6, "params": 9e5}
    assert pruner.check(study, trial, 3, 30.0, costs) is None
    _finished(study, SLOW, flops=8e6, params=4e5)
    assert pruner.check(study, trial, 3, 30.0, costs) is not None


def test_not_pruned_at_the_last_epoch():
    study = _study()
    _history(study)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    costs = {"flops": 9e6, "params": 9e5}
    assert pruner.check(study, trial, EPOCHS - 1, 40.0, costs) is not None
    assert pruner.check(study, trial, EPOCHS, 40.0, costs) is None


def test_last_epoch_from_curves_without_proxy_settings():
    study = optuna.create_study(directions=MULTI)
    _history(study)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    costs = {"flops": 9e6, "params": 9e5}
    assert pruner.check(study, trial, EPOCHS - 1, 40.0, costs) is not None
    assert pruner.check(study, trial, EPOCHS, 40.0, costs) is None


def test_infeasible_finished_trials_never_dominate():
    study = _study()
    # Trial 0 is far ahead and cheap but breaks max_flops; the others climbed 20 points after epoch 3, to 60%.
    _finished(study, [80, 90, 95, 97, 98, 99], flops=5e6, params=1e4, max_flops=4e6)
    for _ in range(4):
        _finished(study, [20, 30, 40, 50, 55, 60], flops=3e6, params=2e5)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    costs = {"flops": 6e6, "params": 3e5}
    assert pruner.check(study, trial, 3, 40.0, costs) is None  # 40 + 20 + 2 > 60, and trial 0 does not count
    # A feasible trial as good as trial 0 does dominate.
    _finished(study, [80, 90, 95, 97, 98, 99], flops=5e6, params=1e4)
    assert "trial 6's final 99.00%" in pruner.check(study, trial, 3, 40.0, costs)  # 5 is the running one


def test_repeats_of_the_same_candidate_do_not_prune_it():
    study = _study()
    _finished(study, [40, 60, 70, 75, 78, 80], flops=2e6, params=1e5, key="aaaa")
    for i in range(4):
        _finished(study, SLOW, flops=8e6 + i, params=4e5)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    trial.set_user_attr("key", "aaaa")
    assert pruner.check(study, trial, 2, 25.0, {"flops": 2e6, "params": 1e5}) is None
    other = study.ask()
    other.set_user_attr("key", "bbbb")
    assert "trial 0" in pruner.check(study, other, 2, 25.0, {"flops": 2e6, "params": 1e5})


def test_objective_names_come_from_the_study():
    # Objectives in the order accuracy, params, flops: costs are matched by name, not by position.
    study = _study(objectives=("accuracy", "params", "flops"))
    _finished(study, [40, 60, 70, 75, 78, 80], flops=1e5, params=2e6)  # values: acc, 1e5 params, 2e6 flops
    for _ in range(4):
        _finished(study, SLOW, flops=9e9, params=9e9)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    assert "params 100k <= 200k, flops 2M <= 3M" in pruner.check(study, trial, 2, 40.0, {"flops": 3e6, "params": 2e5})
    assert pruner.check(study, trial, 2, 40.0, {"flops": 1e6, "params": 2e5}) is None
    with pytest.raises(ValueError, match="costs: missing objective 'params'"):
        pruner.check(study, trial, 2, 40.0, {"flops": 3e6})


def test_reads_complete_trials_once_without_copies(monkeypatch):
    study = _study()
    _history(study)
    calls = []
    original = study.get_trials

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(study, "get_trials", spy)
    pruner = make_pruner(FRONT, MULTI)
    trial = study.ask()
    pruner.check(study, trial, 2, 40.0, {"flops": 3e6, "params": 2e5})
    assert calls == [{"deepcopy": False, "states": (TrialState.COMPLETE,)}]


def test_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = _study(storage=storage)
    _history(study)
    reloaded = optuna.load_study(study_name=study.study_name, storage=storage)
    pruner = make_pruner(FRONT, MULTI)
    trial = reloaded.ask()
    assert "trial 0" in pruner.check(reloaded, trial, 2, 40.0, {"flops": 3e6, "params": 2e5})
    assert pruner.check(reloaded, trial, 2, 40.0, {"flops": 1e6, "params": 2e5}) is None


# --- defaults and configuration ------------------------------------------------------------------------


def test_pruning_is_opt_in():
    # Measured on the built-in proxy, no rule pays (BENCHMARKS.md, "Search efficiency"): a study prunes only
    # when its [pruning] table names a rule, whatever its sampler and objectives.
    assert make_pruner(None, MULTI).rule == "none"
    assert make_pruner(None, ["maximize"]).rule == "none"
    assert make_pruner({}, MULTI).rule == "none"
    assert make_pruner({"rule": "front"}, MULTI).rule == "front"
    assert make_pruner({"rule": "median"}, ["maximize"]).rule == "median"
    pruner = make_pruner({"rule": "front"}, MULTI)
    assert (pruner.warmup_epochs, pruner.min_trials, pruner.margin) == (1, 5, 2.0)


def test_rule_none_never_prunes():
    study = _study()
    _history(study)
    pruner = make_pruner({"rule": "none"}, MULTI)
    trial = study.ask()
    assert pruner.check(study, trial, 3, 0.0, {"flops": 9e6, "params": 9e5}) is None


@pytest.mark.parametrize(
    ("config", "directions", "message"),
    [
        ({"rule": "foo"}, MULTI, "pruning.rule: 'foo' is not one of none, front, median, successive_halving, hyper"),
        ({"rule": 3}, MULTI, "pruning.rule: 3 is not one of"),
        ({"rule": "median"}, MULTI, "pruning.rule: 'median' works on single-objective studies only"),
        ({"rule": "hyperband"}, MULTI, "pruning.rule: 'hyperband' works on single-objective studies only"),
        ({"rule": "front", "warmup_epochs": -1}, MULTI, "pruning.warmup_epochs: must be >= 0, got -1"),
        ({"rule": "front", "warmup_epochs": 1.5}, MULTI, "pruning.warmup_epochs: expected an integer, got 1.5"),
        ({"rule": "front", "min_trials": True}, MULTI, "pruning.min_trials: expected an integer, got True"),
        ({"rule": "front", "margin": -0.5}, MULTI, "pruning.margin: must be >= 0, got -0.5"),
        ({"rule": "front", "margin": "2"}, MULTI, "pruning.margin: expected a number, got '2'"),
        ({"rule": "front", "margin": float("nan")}, MULTI, "pruning.margin: expected a number"),
        ({"rule": "front", "marjin": 1}, MULTI, "pruning.marjin: unknown key (did you mean 'margin'?); known keys: "),
        ({"rule": "none", "margin": 1}, MULTI, "pruning.margin: applies to rule 'front' only, not 'none'"),
        ({"margin": 1}, MULTI, 'pruning: the table sets margin but names no rule, and pruning is off unless it '
                               'does; add rule = "front" (or another rule)'),
        ({"warmup_epochs": 2, "min_trials": 3}, MULTI, "pruning: the table sets warmup_epochs, min_trials but"),
        (
            {"rule": "median", "reduction_factor": 2},
            ["maximize"],
            "pruning.reduction_factor: applies to rule 'successive_halving' or 'hyperband' only, not 'median'",
        ),
        ({"rule": "successive_halving", "reduction_factor": 1}, ["maximize"], "pruning.reduction_factor: must be >= 2"),
        ({"rule": "hyperband", "max_resource": "big"}, ["maximize"], "pruning.max_resource: expected an integer or"),
        ({"rule": "hyperband", "min_resource": 3, "max_resource": 2}, ["maximize"], "pruning.max_resource: must be"),
        ([1, 2], MULTI, "pruning: expected a table, got list"),
    ],
)
def test_invalid_config_names_the_key(config, directions, message):
    with pytest.raises(InputError) as info:
        make_pruner(config, directions)
    assert str(info.value).startswith(message)


# --- single-objective studies: Optuna's pruners ----------------------------------------------------------


def _single_study(rule_config, n=5):
    """n trials run through the pruner epoch by epoch (as the runner does), none pruned, then told."""
    study = _study(directions=["maximize"], objectives=("accuracy",))
    pruner = make_pruner(rule_config, ["maximize"])
    for i in range(n):
        curve = [40 + i, 50 + i, 60 + i, 65 + i, 68 + i, 70 + i]
        trial = study.ask()
        for epoch, acc in enumerate(curve, start=1):
            assert pruner.check(study, trial, epoch, acc, {}) is None
        trial.set_user_attr("accuracies", curve)
        study.tell(trial, curve[-1])
    return study, pruner


def test_single_objective_median_uses_optuna():
    study, pruner = _single_study({"rule": "median"})
    assert isinstance(pruner.optuna_pruner, optuna.pruners.MedianPruner)
    low = study.ask()
    assert pruner.check(study, low, 1, 10.0, {}) is None  # warm-up
    reason = pruner.check(study, low, 2, 10.0, {})
    assert reason == "epoch 2: 10.00% is below the median of finished trials at this epoch (MedianPruner)"
    assert study.pruner is pruner.optuna_pruner
    assert study.trials[low.number].intermediate_values == {1: 10.0, 2: 10.0}
    high = study.ask()
    pruner.check(study, high, 1, 45.0, {})
    assert pruner.check(study, high, 2, 53.0, {}) is None  # above the median (52) at epoch 2


def test_single_objective_median_waits_for_min_trials():
    study, pruner = _single_study({"rule": "median", "min_trials": 6})
    low = study.ask()
    assert pruner.check(study, low, 1, 10.0, {}) is None
    assert pruner.check(study, low, 2, 10.0, {}) is None


def test_single_objective_successive_halving_uses_optuna():
    study, pruner = _single_study({"rule": "successive_halving", "min_resource": 2, "reduction_factor": 2})
    assert isinstance(pruner.optuna_pruner, optuna.pruners.SuccessiveHalvingPruner)
    low = study.ask()
    pruner.check(study, low, 1, 10.0, {})
    assert "successive-halving" in pruner.check(study, low, 2, 10.0, {})
    high = study.ask()
    pruner.check(study, high, 1, 50.0, {})
    assert pruner.check(study, high, 2, 60.0, {}) is None


def test_single_objective_hyperband_is_installed_on_the_study():
    study, pruner = _single_study({"rule": "hyperband", "max_resource": EPOCHS})
    assert isinstance(pruner.optuna_pruner, optuna.pruners.HyperbandPruner)
    trial = study.ask()
    for epoch, acc in enumerate([50.0, 60.0, 70.0], start=1):
        assert pruner.check(study, trial, epoch, acc, {}) is None  # best so far: never pruned
    assert study.pruner is pruner.optuna_pruner


def test_single_objective_front_compares_with_the_best_final_accuracy():
    study, pruner = _single_study({"rule": "front", "margin": 3})
    # Trials 0..4 climbed 10 points after epoch 3 and the best ended at 74%: 60.5 + 10 + 3 < 74, 62 not.
    assert pruner.check(study, study.ask(), 3, 62.0, {}) is None
    assert pruner.check(study, study.ask(), 3, 60.5, {}) == (
        "epoch 3: best 60.50% + 10 points of headroom + 3 margin <= trial 4's final 74.00%"
    )


# --- the dominance test itself -------------------------------------------------------------------------

finished_lists = st.lists(
    st.builds(
        Finished,
        number=st.integers(0, 100),
        best=st.floats(0, 100),
        final=st.floats(0, 100),
        costs=st.tuples(st.floats(1, 1e9), st.floats(1, 1e9)),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(finished=finished_lists, accuracy=st.floats(0, 100))
def test_the_cheapest_or_the_most_accurate_is_never_dominated(finished, accuracy):
    cheapest = tuple(min((f.costs[i] for f in finished), default=2.0) - 1 for i in range(2))
    assert find_dominator(0.0, cheapest, finished) is None
    best = max((f.final for f in finished), default=0.0)
    assert find_dominator(best + 1e-9, (2e9, 2e9), finished) is None
    dominator = find_dominator(accuracy, (2e9, 2e9), finished)
    assert (dominator is None) == all(f.final < accuracy for f in finished)


@settings(max_examples=200, deadline=None)
@given(finished=finished_lists, best=st.floats(0, 100), margin=st.floats(0, 5))
def test_a_trial_that_climbs_like_a_comparable_finished_one_is_never_pruned_below_it(finished, best, margin):
    # Whatever the history, the rule never prunes a trial that, climbing as much as some finished trial that
    # stood at its level, would end at or above every finished trial: it could still be on the front.
    verdict = front_verdict(best, (1.0, 1.0), finished, margin)
    if verdict is not None:
        dominator, room = verdict
        assert dominator.final >= best + room + margin
        assert all(best + (f.final - f.best) < dominator.final for f in finished if f.best <= best + margin)
