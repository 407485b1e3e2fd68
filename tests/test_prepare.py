"""`run/setup.py:prepare` settles a run once, top to bottom: the study file, then the command line, then what a
resumed study was made with; the target and the sampler from that final spec; the input size from the proxy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from run_helpers import load, run_cli, write_sampled

from gcsearch.contract import Meta
from gcsearch.run.setup import Run, RunOptions, prepare

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_resumed_study_keeps_the_seed_it_was_started_with(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'seed.db'}"
    path = write_sampled(tmp_path / "seed.toml", "seed", extra="[budget]\ntrials = 2\n")  # the file says seed 0
    assert run_cli("--study", str(path), "--storage", db, "--seed", "7", "--quiet") == 0
    assert sorted(t.user_attrs["seed"] for t in load(db, "seed").get_trials()) == [7, 7]

    run, queued = prepare(RunOptions(study=str(path), storage=db, trials=3, device="cpu"))
    assert queued == 0
    assert run.spec.seed == 7 and run.meta[Meta.SEED] == 7  # the stored seed, not the file's 0
    assert run.target == 3
    assert run.input_size == (3, 16, 16) == tuple(run.meta[Meta.INPUT_SIZE])  # from [proxy] image_size

    assert run_cli("--study", str(path), "--storage", db, "--trials", "3", "--quiet") == 0
    trials = load(db, "seed").get_trials()
    assert len(trials) == 3 and trials[-1].user_attrs["seed"] == 7


def test_a_run_has_one_seed_and_typed_parts() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(Run)}
    assert "seed" not in fields  # the seed is run.spec.seed, and only that
    assert fields["data"] == "ProxyData" and fields["device"] == "torch.device"
    assert not [name for name, kind in fields.items() if kind == "Any"]
