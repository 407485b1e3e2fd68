"""The paired design end to end: each seed's start is trained once and shared (by the candidates of a study, by
other studies in the storage, by several workers), a candidate loads it and fine-tunes, a killed trainer's
start is taken over, and what a scratch proxy stores is what it stored before the design existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from run_helpers import TINY_PROXY, cli_output, gcsearch_process, kill_when, load, run_cli, write_grid

from gcsearch import ArchSpec, build_model
from gcsearch.contract import STARTS_STUDY, Attr
from gcsearch.errors import InputError
from gcsearch.model.weights import load_shared
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import ProxyData
from gcsearch.training.loop import train_candidate

PAIRED = TINY_PROXY + 'start = "baseline"\nfinetune_epochs = 0.5\nfinetune_lr = 0.02\n'
TWO_SEEDS = '\n[budget]\nrepeats = 2\nbaseline_repeats = 2\n'


def _paired_grid(path: Path, name: str, *, seeds: int = 2, epochs: int = 1) -> Path:
    # The GRID text sets baseline_repeats = 1 in its own [budget]; a second [budget] table is refused, so the
    # seeds go in by replacing that line.
    path = write_grid(path, name, epochs=epochs, proxy=PAIRED)
    text = path.read_text().replace("baseline_repeats = 1", f"repeats = {seeds}\nbaseline_repeats = {seeds}")
    path.write_text(text)
    return path


def _starts(db: str) -> list:
    return load(db, STARTS_STUDY).get_trials(deepcopy=False)


def test_a_scratch_proxy_keeps_the_dict_and_fingerprint_it_had_before_the_paired_design() -> None:
    # The values of the release before `start` existed: every stored scratch study must still match.
    assert ProxyConfig().fingerprint() == "3081d5486ca4d26d"
    assert ProxyConfig(image_size=16, epochs=2).fingerprint() == "d454b8c076544604"
    assert "start" not in ProxyConfig().to_dict() and "finetune_lr" not in ProxyConfig().to_dict()
    paired = ProxyConfig(start="baseline")
    assert paired.fingerprint() != ProxyConfig().fingerprint()
    assert paired.start_proxy() == ProxyConfig()
    assert ProxyConfig(start="baseline", finetune_lr=0.05).fingerprint() != paired.fingerprint()
    with pytest.raises(InputError, match=r"^start: must be one of scratch, baseline"):
        ProxyConfig(start="pretrained")
    with pytest.raises(InputError, match=r"^finetune_epochs: must be a number in \(0, 1000\]"):
        ProxyConfig(start="baseline", finetune_epochs=0)


def test_a_fraction_of_an_epoch_trains_that_share_of_the_steps() -> None:
    g = torch.Generator().manual_seed(0)
    data = ProxyData(name="t", x_train=torch.randint(0, 255, (320, 3, 8, 8), dtype=torch.uint8, generator=g)
                     .contiguous(memory_format=torch.channels_last), y_train=torch.randint(0, 2, (320,), generator=g),
                     x_val=torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8, generator=g)
                     .contiguous(memory_format=torch.channels_last), y_val=torch.randint(0, 2, (64,), generator=g),
                     num_classes=2, in_chans=3, image_size=8, mean=(127.0,) * 3, std=(70.0,) * 3)
    steps: list[tuple[int, int]] = []
    model = build_model(ArchSpec(block="none", width=4), num_classes=2)
    cfg = ProxyConfig(image_size=8, train_size=320, val_size=64, batch_size=32, epochs=1)
    result = train_candidate(model, data, cfg, seed=0, device="cpu", epochs=1.5,
                             on_step=lambda s, total: steps.append((s, total)))
    assert steps[-1] == (15, 15)  # 10 steps an epoch: one epoch and half of the next
    assert result.epochs == 2 and len(result.accuracies) == 2


@pytest.mark.parametrize(("spec", "identity"), [
    (ArchSpec(block="gc", width=8), True),
    (ArchSpec(block="snl", width=8, stages=["c4"]), True),
    (ArchSpec(block="gc", width=8, position="after_add", blocks="last"), True),
    (ArchSpec(block="gc", width=8, position="after_3x3"), True),
    (ArchSpec(block="nl", width=8, stages=["c5"]), True),
    (ArchSpec(block="se", width=8), False),
    (ArchSpec(block="custom", width=8, context="att", transform="bottleneck", norm="ln", act="relu",
              fusion="scale"), False),
    (ArchSpec(block="custom", width=8, context="avg", transform="full", fusion="both"), False),
])
def test_identity_at_insertion_says_whether_a_candidate_starts_as_its_start(spec: ArchSpec, identity: bool) -> None:
    torch.manual_seed(1)
    start = build_model(ArchSpec(block="none", width=8), num_classes=5)
    with torch.no_grad():  # a start that has trained: BN statistics away from their initial 0 and 1
        for name, buffer in start.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.5)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    torch.manual_seed(2)
    candidate = build_model(spec, num_classes=5)
    new = load_shared(candidate, start.state_dict())
    assert new and all(".context." in name for name in new)
    x = torch.randn(4, 3, 16, 16)
    same = torch.allclose(start.eval()(x), candidate.eval()(x), atol=1e-6)
    assert spec.identity_at_insertion == identity == same


def test_a_start_of_another_backbone_is_refused_with_the_key() -> None:
    start = build_model(ArchSpec(block="none", width=8), num_classes=5).state_dict()
    wider = build_model(ArchSpec(block="gc", width=16), num_classes=5)
    with pytest.raises(InputError, match=r"^the start does not fit this model: the model has shape \(16, 3, 3, 3\), "
                                         r"the start's is 'stem.conv.weight' \(8, 3, 3, 3\)$"):
        load_shared(wider, start)


def test_each_seed_trains_one_start_that_every_candidate_and_every_study_shares(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    first = _paired_grid(tmp_path / "first.toml", "first")
    assert run_cli("--study", str(first), "--storage", db, "--quiet") == 0
    starts = _starts(db)
    assert sorted((t.state, t.user_attrs[Attr.SEED]) for t in starts) == [(TrialState.COMPLETE, 0),
                                                                           (TrialState.COMPLETE, 1)]
    number_of = {t.user_attrs[Attr.SEED]: t.number for t in starts}
    trials = load(db, "first").get_trials(deepcopy=False)
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.user_attrs[Attr.START]["trial"] == number_of[t.user_attrs[Attr.SEED]]
        assert t.user_attrs[Attr.EPOCHS] == 1  # half an epoch: validated once

    # Another study with the same backbone, proxy and seeds trains no start of its own.
    second = _paired_grid(tmp_path / "second.toml", "second")
    second.write_text(second.read_text().replace('["c4", "c5"]', '["c3"]'))
    assert run_cli("--study", str(second), "--storage", db, "--quiet") == 0
    assert len(_starts(db)) == 2
    assert {t.user_attrs[Attr.START]["trial"] for t in load(db, "second").get_trials(deepcopy=False)} == \
        set(number_of.values())

    code, out, _ = cli_output("report", "--study", "first", "--storage", db, "--format", "json")
    assert code == 0
    noise = json.loads(out)["study"]["noise"]
    assert noise["design"] == "paired" and noise["rows"] == 5 and noise["seeds"] == 2 and noise["df"] == 4
    assert set(noise["starts"]) == {"0", "1"}
    code, _, err = cli_output("report", "--storage", db)  # the starts study is never counted as a study to pick
    assert code == 2 and "holds 2 studies" in err and STARTS_STUDY not in err.split("(")[-1]


def test_without_a_place_for_the_starts_the_run_is_refused_before_any_trial(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    path = _paired_grid(tmp_path / "p.toml", "p", seeds=1)
    code, out, err = cli_output("run", "--study", str(path), "--storage", db, "--artifacts", "none", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "--artifacts" in err and 'start = "baseline"' in err
    assert "Traceback" not in out + err


def test_two_workers_needing_one_start_train_it_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    path = _paired_grid(tmp_path / "w.toml", "w", seeds=1, epochs=3)  # every trial needs the start of seed 0
    assert run_cli("--study", str(path), "--storage", db, "--quiet", "--workers", "2") == 0
    starts = _starts(db)
    assert [(t.state, t.user_attrs[Attr.SEED]) for t in starts] == [(TrialState.COMPLETE, 0)]
    trials = load(db, "w").get_trials(deepcopy=False)
    assert len(trials) == 5 and {t.user_attrs[Attr.START]["trial"] for t in trials} == {starts[0].number}


def test_a_start_whose_trainer_was_killed_is_trained_by_the_next_run(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'k.db'}"
    path = _paired_grid(tmp_path / "k.toml", "k", seeds=1)
    path.write_text(path.read_text().replace("train_size = 128", "train_size = 1024").replace(
        "epochs = 1", "epochs = 6"))
    proc = gcsearch_process("run", "--study", str(path), "--storage", db, "--quiet", "--heartbeat", "1",
                            cwd=tmp_path)

    def start_running() -> bool:
        try:
            return any(t.state == TrialState.RUNNING for t in _starts(db))
        except KeyError:
            return False

    kill_when(proc, start_running, "the start's training")
    assert run_cli("--study", str(path), "--storage", db, "--quiet", "--heartbeat", "1") == 0
    states = sorted(t.state.name for t in _starts(db))
    assert states.count("COMPLETE") == 1 and "RUNNING" not in states
    trials = load(db, "k").get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    done = next(t for t in _starts(db) if t.state == TrialState.COMPLETE)
    assert {t.user_attrs[Attr.START]["trial"] for t in complete} == {done.number}


WEIGHTS_STUDY = """
name = "{name}"
backbone = "resnet18"
sampler = "grid"
seed = 0
objectives = ["accuracy", "flops"]

[space]
stages = ["c4", "c5"]

[fixed]
block = "gc"
ratio = 16

[budget]
repeats = 2
baseline_repeats = 2

[proxy]
dataset = "folder"
image_size = 32
train_size = 48
val_size = 16
batch_size = 16
start = "weights"
weights = "{weights}"
finetune_epochs = 1
"""


def test_a_pretrained_file_is_every_candidates_start_on_an_image_folder(tmp_path: Path) -> None:
    from test_data import write_folder
    from test_pretrained import torchvision_layout

    folder = tmp_path / "images"
    write_folder(folder, {"cat": 32, "dog": 32}, size=(36, 36))
    weights = tmp_path / "r18.pth"
    torch.save(torchvision_layout("resnet18", classes=1000), weights)
    path = tmp_path / "w.toml"
    path.write_text(WEIGHTS_STUDY.format(name="w", weights=weights))
    db = f"sqlite:///{tmp_path / 'w.db'}"
    code, out, err = cli_output("run", "--study", str(path), "--storage", db, "--data-dir", str(folder), "--quiet")
    assert code == 0, out + err
    assert "r18.pth: the pretrained classifier (1000 classes) is replaced by a new one for 2 classes" in out
    trials = load(db, "w").get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    import hashlib

    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert {(t.user_attrs[Attr.START]["file"], t.user_attrs[Attr.START]["sha256"]) for t in trials} == \
        {("r18.pth", sha)}
    code, out, _ = cli_output("report", "--study", "w", "--storage", db)
    assert code == 0 and f"start: the pretrained weights r18.pth (sha256 {sha})" in out.replace("\n", " ")

    # A file that does not fit the backbone: one line naming the first key, before any trial.
    broken = torchvision_layout("resnet18", classes=1000)
    del broken["layer3.1.bn2.running_var"]
    torch.save(broken, weights)
    path.write_text(WEIGHTS_STUDY.format(name="w2", weights=weights))
    code, out, err = cli_output("run", "--study", str(path), "--storage", db, "--data-dir", str(folder), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "'layer3.1.bn2.running_var'" in err, err
    with pytest.raises(KeyError):
        load(db, "w2")


def test_a_start_whose_weights_are_gone_is_trained_again(tmp_path: Path) -> None:
    import shutil

    db = f"sqlite:///{tmp_path / 'g.db'}"
    first = _paired_grid(tmp_path / "first.toml", "first", seeds=1)
    assert run_cli("--study", str(first), "--storage", db, "--quiet") == 0
    shutil.rmtree(tmp_path / "g.artifacts")
    second = _paired_grid(tmp_path / "second.toml", "second", seeds=1)
    proc = gcsearch_process("run", "--study", str(second), "--storage", db, "--quiet", cwd=tmp_path)  # a new process
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "seed 0: its start (trial 0 of gcsearch-starts) cannot be used" in out, out
    starts = _starts(db)
    assert [t.state for t in starts] == [TrialState.COMPLETE, TrialState.COMPLETE]
    trials = load(db, "second").get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE and t.user_attrs[Attr.START]["trial"] == 1 for t in trials)
