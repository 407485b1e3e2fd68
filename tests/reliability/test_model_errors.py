"""A trial whose model raises while it trains (here a simulated CUDA out-of-memory) is recorded as FAIL with
its reason, and the study goes on with the next candidate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from optuna.trial import TrialState
from reliability_helpers import by_state, grid_size, trials_of, write_grid
from run_helpers import run_cli

from gcsearch.run.functions import default_functions

OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"


def test_an_out_of_memory_trial_fails_with_its_reason_and_the_study_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_grid(tmp_path / "oom.toml", "oom", stage_sets=2, positions=2)
    n = grid_size(2, 2)
    db = f"sqlite:///{tmp_path / 'oom.db'}"
    state = {"trial": 0, "raised": 0}
    real = default_functions()

    def counting_train(*args: Any, **kwargs: Any) -> Any:
        state["trial"] += 1
        return real.train(*args, **kwargs)

    def fail_in_training(block: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if block.training and state["trial"] == 2:  # only while the second trial trains (not while measured)
            state["raised"] += 1
            raise OOM(MESSAGE)

    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real.build(*args, **kwargs)
        for _, block in model.context_blocks():
            block.register_forward_pre_hook(fail_in_training)
        return model

    functions = replace(real, build=build, train=counting_train)
    assert run_cli("--study", str(path), "--storage", db, "--quiet", functions=functions) == 0
    out = capsys.readouterr().out
    assert state["raised"] == 1

    trials = trials_of(db, "oom")
    assert by_state(trials) == {"COMPLETE": n - 1, "FAIL": 1}
    failed = trials[1]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == f"error: OutOfMemoryError: {MESSAGE}"
    assert {"spec", "key", "flops", "params", "seed"} <= set(failed.user_attrs)  # what was known is kept
    assert all(t.state == TrialState.COMPLETE for t in trials[2:])  # the study went on
    assert "FAILED, error: OutOfMemoryError" in out and "1 failed" in out
