"""The one place that reaches into Optuna past its public API.

Optuna's ask/tell has no way to claim a queued trial atomically, to name a trial to the storage (heartbeats,
state updates) or to read the values a queued trial was enqueued with, all of which several workers sharing one
study need. Each of those reaches a private attribute (`Trial._trial_id`, `Study._storage`, `Study._study_id`)
or an internal key (the `fixed_params` system attribute `Study.enqueue_trial` writes). They are kept here so
that an Optuna release that renames one breaks one module, and `tests/test_layers.py` checks that no other
module touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

FIXED_PARAMS = "fixed_params"  # the system attribute in which Study.enqueue_trial keeps a queued trial's values


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (not its number, which counts within its study)."""
    return trial._trial_id


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage


def stored_trial(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as the storage holds it now (a live Trial's own copy may lag behind)."""
    return study._storage.get_trial(trial._trial_id)


def queued_params(frozen: FrozenTrial) -> dict[str, Any]:
    """The values a trial was queued with, and those it has recorded already (which win)."""
    return {**(frozen.system_attrs.get(FIXED_PARAMS) or {}), **frozen.params}


def requeue_params(frozen: FrozenTrial) -> dict[str, Any]:
    """What to queue a copy of `frozen` with: the values it was queued with, else the ones it recorded."""
    return dict(frozen.system_attrs.get(FIXED_PARAMS) or frozen.params)


def record_heartbeat(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    study._storage.record_heartbeat(trial._trial_id)


def claim_waiting(study: optuna.Study, accept: Callable[[FrozenTrial], bool] | None = None) -> optuna.Trial | None:
    """Take the first queued trial (that `accept` accepts) that no other worker takes first: WAITING -> RUNNING
    in one atomic update.

    The heartbeat is written first: a worker killed between the two writes must not leave a RUNNING trial
    without one (Optuna never takes such a trial for stale, and the next run would wait for it forever).
    """
    storage, study_id = study._storage, study._study_id
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if accept is not None and not accept(waiting):
            continue
        try:
            storage.record_heartbeat(waiting._trial_id)
            if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, waiting._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None
