"""`gcsearch run` end to end on the CPU with the real models, FLOP counter, data and training loop."""

from __future__ import annotations

import gc
import json
import math
import sqlite3
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from run_helpers import load, run_cli, snapshot, states, write_grid, write_sampled

import gcsearch
from gcsearch import ArchSpec, measure
from gcsearch.run.functions import default_functions
from gcsearch.study.lifecycle import point_attrs
from gcsearch.study.parse import read_study_file
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import load_data

TRIAL_ATTRS = {"spec", "key", "label", "flops", "params", "block_flops", "block_params", "accuracy", "accuracies",
               "train_seconds", "epochs", "seed", "repeat", "device", "threads", "versions"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gcsearch.db'}"


def test_a_tiny_grid_runs_end_to_end(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_grid(tmp_path / "tiny.toml", "tiny", epochs=2)
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    out = capsys.readouterr().out
    assert "tiny: done, 5/5 finished (5 complete, 0 pruned, 0 failed)" in " ".join(out.split())

    study = load(db, "tiny")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    baseline = ArchSpec(backbone="proxy", width=8, block="none")
    assert trials[0].user_attrs["key"] == baseline.key  # the grid runs its baseline first
    assert len({t.user_attrs["key"] for t in trials}) == 5
    base_flops = trials[0].user_attrs["flops"]
    classes = study.user_attrs["gcsearch"]["num_classes"]
    for t in trials:
        attrs = t.user_attrs
        assert TRIAL_ATTRS <= set(attrs), TRIAL_ATTRS - set(attrs)
        spec = ArchSpec.from_dict(attrs["spec"])
        assert spec.key == attrs["key"] and spec.label() == attrs["label"]
        # One parameter per dimension of the space (the baseline has no stages or position).
        expected = {"stages": ",".join(spec.stages), "position": spec.position} if spec.has_blocks else {}
        assert t.params == expected
        m = measure(spec, input_size=(3, 16, 16), num_classes=classes)
        assert (attrs["flops"], attrs["params"], attrs["block_flops"]) == (m.flops, m.params, m.block_flops)
        assert attrs["flops"] == base_flops + attrs["block_flops"]
        assert (attrs["block_flops"] > 0) == spec.has_blocks
        assert t.values == [attrs["accuracy"], attrs["flops"]]
        assert 0.0 <= attrs["accuracy"] <= 100.0 and len(attrs["accuracies"]) == 2 == attrs["epochs"]
        assert attrs["accuracies"][-1] == attrs["accuracy"]
        assert 0.0 < attrs["train_seconds"] < 60.0
        assert (attrs["seed"], attrs["repeat"], attrs["device"], attrs["threads"]) == (0, 0, "cpu", 1)
        assert attrs["versions"]["torch"] == torch.__version__ and attrs["versions"]["gcsearch"] == gcsearch.__version__

    meta = study.user_attrs["gcsearch"]
    assert meta["study_file"] == path.read_text() and meta["sampler"] == "grid" and meta["repeats"] == 1
    assert meta["input_size"] == [3, 16, 16] and meta["backbone"] == "proxy"
    assert meta["proxy"]["epochs"] == 2
    assert meta["proxy_fingerprint"] == ProxyConfig.from_dict(meta["proxy"]).fingerprint()
    assert [o["name"] for o in meta["objectives"]] == ["accuracy", "flops"]
    # The database file is in WAL mode, so a reader never blocks the workers.
    with sqlite3.connect(tmp_path / "gcsearch.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # Run again: the grid is done, nothing is trained and nothing is added.
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    assert "Nothing to do" in capsys.readouterr().out
    assert len(load(db, "tiny").get_trials()) == 5


@pytest.mark.cuda
def test_a_tiny_grid_trains_on_the_gpu(tmp_path: Path, db: str) -> None:
    """Every kind of trial on the CUDA path: bf16 autocast, channels_last, GC blocks' backward, the device stored."""
    path = write_grid(tmp_path / "gpu.toml", "gpu", epochs=2)
    assert run_cli("--study", str(path), "--storage", db, "--quiet", "--device", "cuda") == 0
    trials = load(db, "gpu").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5, [t.user_attrs.get("fail_reason") for t in trials]
    for t in trials:
        assert t.user_attrs["device"] == f"cuda {torch.cuda.get_device_name()}"
        assert len(t.user_attrs["accuracies"]) == 2 and all(math.isfinite(a) for a in t.user_attrs["accuracies"])


def test_resume_finishes_the_rest_and_leaves_finished_trials_alone(tmp_path: Path, db: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sampled(tmp_path / "resume.toml", "resume")
    assert run_cli("--study", str(path), "--storage", db, "--trials", "2", "--quiet") == 0
    first = load(db, "resume").get_trials()
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2

    assert run_cli("--study", str(path), "--storage", db, "--trials", "4", "--quiet") == 0
    second = load(db, "resume").get_trials()
    assert states(load(db, "resume")) == {"COMPLETE": 4}
    assert [snapshot(t) for t in second[:2]] == [snapshot(t) for t in first]
    assert len({(t.user_attrs["key"], t.user_attrs["repeat"]) for t in second}) == 4  # four distinct results

    capsys.readouterr()
    assert run_cli("--study", str(path), "--storage", db, "--trials", "4", "--quiet") == 0
    assert "Nothing to do" in capsys.readouterr().out
    assert [snapshot(t) for t in load(db, "resume").get_trials()] == [snapshot(t) for t in second]


def test_resuming_with_other_proxy_settings_is_refused(tmp_path: Path, db: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_grid(tmp_path / "proxy.toml", "proxy", epochs=1)
    assert run_cli("--study", str(path), "--storage", db, "--trials", "1", "--quiet") == 0
    write_grid(path, "proxy", epochs=2)
    capsys.readouterr()
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "study 'proxy' in sqlite:///" in err and "other proxy settings (epochs: 1 stored, 2 now)" in err
    assert states(load(db, "proxy")) == {"COMPLETE": 1, "WAITING": 4}  # nothing was run with the new settings


def test_a_diverging_or_crashing_trial_is_recorded_and_the_study_goes_on(
        tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    real = default_functions()
    c4_add = ArchSpec(backbone="proxy", width=8, block="gc", ratio=4, stages="c4", position="after_add").key

    def build(spec: ArchSpec, *args, **kwargs) -> torch.nn.Module:
        if spec.key == c4_add:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")
        model = real.build(spec, *args, **kwargs)
        if not spec.has_blocks:  # the baseline's logits turn NaN: the real loop must see the loss diverge
            model.register_forward_hook(lambda module, inputs, output: output * float("nan"))
        return model

    path = write_grid(tmp_path / "nan.toml", "nan")
    assert run_cli("--study", str(path), "--storage", db, "--quiet", functions=replace(real, build=build)) == 0
    study = load(db, "nan")
    by_label = {t.user_attrs["label"]: t for t in study.get_trials()}
    base = by_label["none (baseline)"]
    assert base.state == TrialState.FAIL and base.number == 0
    assert base.user_attrs["fail_reason"].startswith("diverged: loss is nan at epoch 1")
    crashed = by_label["gc r4 @ c4 after_add all"]
    assert crashed.state == TrialState.FAIL
    assert crashed.user_attrs["fail_reason"] == "error: RuntimeError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert states(study) == {"FAIL": 2, "COMPLETE": 3}  # the trials after the failures ran
    out = " ".join(capsys.readouterr().out.split())
    assert "every point has been run, 3/5 finished" in out and "failed trials: 1 diverged, 1 error" in out

    # A rerun retries the point that crashed (it may pass now); the diverged one would only diverge again.
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    study = load(db, "nan")
    assert states(study) == {"FAIL": 2, "COMPLETE": 4}
    assert study.get_trials()[-1].user_attrs["key"] == c4_add


def test_an_out_of_memory_trial_frees_its_model_before_memory_is_released(tmp_path: Path, db: str) -> None:
    """The traceback of an out-of-memory error holds the trial's model and activations; the cache is emptied for
    the other workers on the GPU only once nothing holds them any more."""
    models: list[weakref.ref] = []
    alive_when_freed: list[bool] = []

    def train_out_of_memory(model: torch.nn.Module, *args, **kwargs) -> None:
        models.append(weakref.ref(model))
        activations = model(torch.zeros(2, 3, 16, 16))  # noqa: F841 -- held by this frame, as a real step's are
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def free_memory() -> None:
        gc.collect()
        alive_when_freed.append(models[-1]() is not None)

    functions = replace(default_functions(), train=train_out_of_memory, free_memory=free_memory)
    path = write_grid(tmp_path / "oom.toml", "oom")
    assert run_cli("--study", str(path), "--storage", db, "--quiet", functions=functions) == 0
    assert alive_when_freed == [False] * 5  # every trial failed, and each model was gone when memory was freed
    trials = load(db, "oom").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 5
    assert {t.user_attrs["fail_reason"] for t in trials} == {
        "error: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"}


def test_a_non_finite_accuracy_is_a_divergence_and_is_not_retried(tmp_path: Path, db: str) -> None:
    from gcsearch.training.loop import TrainResult

    def train_to_nan(*args, **kwargs) -> TrainResult:  # noqa: ANN002, ANN003
        return TrainResult(accuracy=float("nan"), accuracies=[float("nan")], epochs=1)

    functions = replace(default_functions(), train=train_to_nan)
    path = write_grid(tmp_path / "nan.toml", "nan", stages='["c4"]')
    for _ in range(2):  # the second run retries nothing: the same seed would diverge the same way
        assert run_cli("--study", str(path), "--storage", db, "--quiet", functions=functions) == 0
    trials = load(db, "nan").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert trials[0].user_attrs["fail_reason"].startswith("diverged: a non-finite objective value [nan, ")


def test_the_device_is_warmed_up_once_before_the_first_training(tmp_path: Path, db: str) -> None:
    """CUDA's start-up (kernels, cuDNN and cuBLAS handles) must not count as the first trial's training time."""
    calls: list[tuple[str, str]] = []
    real = default_functions()

    def train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(("train", str(kwargs["device"])))
        return real.train(*args, **kwargs)

    functions = replace(real, warm_up=lambda device: calls.append(("warm_up", str(device))), train=train)
    path = write_grid(tmp_path / "warm.toml", "warm")
    assert run_cli("--study", str(path), "--storage", db, "--quiet", "--trials", "3", functions=functions) == 0
    assert calls == [("warm_up", "cpu")] + [("train", "cpu")] * 3


def test_local_workers_share_the_cores_on_any_device() -> None:
    from gcsearch.run.local import worker_threads

    assert [worker_threads(w, 16) for w in (1, 2, 3, 4, 16, 32)] == [16, 8, 5, 4, 1, 1]
    assert worker_threads(2, None) == 1  # os.cpu_count() may not know


def test_a_measured_candidate_is_not_trained_again(tmp_path: Path, db: str) -> None:
    path = write_sampled(tmp_path / "reuse.toml", "reuse")
    assert run_cli("--study", str(path), "--storage", db, "--trials", "1", "--quiet") == 0
    study = load(db, "reuse")
    first = study.get_trials()[0]
    # The sampler proposes the same candidate again (here: queued by hand).
    spec = ArchSpec.from_dict(first.user_attrs["spec"])
    study.enqueue_trial(first.params, user_attrs=point_attrs(spec, 0))
    assert run_cli("--study", str(path), "--storage", db, "--trials", "2", "--quiet") == 0
    trials = load(db, "reuse").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    again = trials[1]
    assert again.user_attrs["reused_from"] == 0 and again.values == first.values
    assert again.user_attrs["accuracies"] == first.user_attrs["accuracies"]
    assert "reused_from" not in trials[2].user_attrs and trials[2].user_attrs["key"] != first.user_attrs["key"]


def test_constraints_are_stored_and_an_infeasible_candidate_is_not_trained(tmp_path: Path, db: str) -> None:
    study_file = read_study_file(str(write_grid(tmp_path / "c.toml", "c")))
    classes = load_data(study_file.proxy, "cpu").num_classes
    flops = sorted(measure(c.spec, input_size=(3, 16, 16), num_classes=classes).flops for c in study_file.candidates())
    limit = (flops[2] + flops[3]) // 2  # three candidates fit, two do not
    path = write_grid(tmp_path / "c.toml", "c", extra=f"\n[constraints]\nmax_flops = {limit}\n")
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    trials = load(db, "c").get_trials()
    assert states(load(db, "c")) == {"COMPLETE": 3, "PRUNED": 2}
    for t in trials:
        assert t.constraints == {"max_flops": t.user_attrs["flops"] - limit}
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["flops"] > limit and t.user_attrs["pruned_epoch"] == 0
            assert t.user_attrs["prune_reason"].startswith("infeasible (max_flops: ")
            assert "accuracies" not in t.user_attrs
        else:
            assert t.user_attrs["flops"] <= limit and len(t.user_attrs["accuracies"]) == 1


def test_the_epoch_pruner_stops_a_trial_and_it_is_stored_as_pruned(tmp_path: Path, db: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from gcsearch.study.pruning import EpochPruner

    seen: list[tuple[int, int, float, dict]] = []
    curves: list[list[float]] = []

    def check(self, study, trial, epoch, accuracy, costs, curve=None):  # the decision is replaced, not the wiring
        seen.append((trial.number, epoch, accuracy, dict(costs)))
        curves.append(list(curve))
        return "epoch 1: dominated by trial 0" if trial.number == 2 and epoch == 1 else None

    monkeypatch.setattr(EpochPruner, "check", check)
    path = write_grid(tmp_path / "p.toml", "p", epochs=2)
    assert run_cli("--study", str(path), "--storage", db, "--trials", "3", "--quiet") == 0
    trials = load(db, "p").get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = trials[2]
    assert pruned.user_attrs["pruned_epoch"] == 1
    assert pruned.user_attrs["prune_reason"] == "epoch 1: dominated by trial 0"
    assert len(pruned.user_attrs["accuracies"]) == 1  # stored after each epoch, before the pruner is asked
    assert [(n, e) for n, e, _, _ in seen] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)]
    assert all(costs == {"flops": float(trials[n].user_attrs["flops"])} for n, _, _, costs in seen)
    assert math.isclose(seen[-1][2], pruned.user_attrs["accuracies"][0])
    assert curves[1] == trials[0].user_attrs["accuracies"] and curves[-1] == pruned.user_attrs["accuracies"]


def test_json_summary(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_grid(tmp_path / "j.toml", "j")
    assert run_cli("--study", str(path), "--storage", db, "--trials", "2", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert {k: summary[k] for k in ("study", "target", "finished", "complete", "failed", "waiting", "target_met")} == {
        "study": "j", "target": 2, "finished": 2, "complete": 2, "failed": 0, "waiting": 3, "target_met": True}
    assert summary["best"] and all(0 <= b["accuracy"] <= 100 for b in summary["best"])


@pytest.mark.parametrize(("url", "code", "message"), [
    ("postgresql+psycopg://gc:s3cret-pw@127.0.0.1:port/gc", 2,
     "'postgresql+psycopg://gc:***@127.0.0.1:port/gc' is not a database URL"),
    ("nosuchdb://host/x", 2, "unknown database kind 'nosuchdb'"),
    ("postgresql+psycopg://gc:s3cret-pw@127.0.0.1:1/gc", 1, "cannot reach postgresql+psycopg://gc:***@127.0.0.1:1/gc"),
    ("sqlite:////no/such/folder/gc.db", 2, "the folder '/no/such/folder' for sqlite:////no/such/folder/gc.db "
                                           "does not exist"),
])
def test_a_bad_or_unreachable_storage_is_one_line(url: str, code: int, message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_grid(tmp_path / "s.toml", "s")
    assert run_cli("--study", str(path), "--storage", url, "--quiet") == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "s3cret" not in captured.out + captured.err
