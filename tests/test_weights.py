"""Trained weights: kept per completed trial in Optuna's artifact store, checked when read, exported to one file
that `gcsearch.load_model` turns back into the same model."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

import gcsearch
from gcsearch.contract import Attr
from gcsearch.model.weights import WeightsError, read_weights, save_weights
from gcsearch.space import ArchSpec
from gcsearch.storage.artifacts import artifact_location, default_location
from tests.run_helpers import cli_output, load, run_cli, write_grid

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny 3-point grid run once, its weights kept beside its SQLite file."""
    folder = tmp_path_factory.mktemp("weights")
    db = f"sqlite:///{folder / 'w.db'}"
    study = write_grid(folder / "w.toml", "w", stages='["c4"]')
    assert run_cli("--study", str(study), "--storage", db, "-q") == 0
    return folder, db


def test_every_completed_trial_keeps_its_weights_as_an_optuna_artifact(kept: tuple[Path, str]) -> None:
    folder, db = kept
    study = load(db, "w")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 3
    for t in trials:
        meta = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert [m.artifact_id for m in meta] == [t.user_attrs[Attr.WEIGHTS]["artifact_id"]]
        path = folder / "w.artifacts" / meta[0].artifact_id
        assert path.stat().st_size == t.user_attrs[Attr.WEIGHTS]["bytes"]
        assert read_weights(path).spec == ArchSpec.from_dict(t.user_attrs[Attr.SPEC])


def test_export_then_load_model_gives_the_trained_outputs(kept: tuple[Path, str], tmp_path: Path) -> None:
    folder, db = kept
    out = tmp_path / "model.pt"
    code, stdout, _ = cli_output("export", "1", "--storage", db, "-o", str(out))
    assert code == 0 and "model.pt" in stdout
    model = gcsearch.load_model(out)
    artifact = folder / "w.artifacts" / load(db, "w").trials[1].user_attrs[Attr.WEIGHTS]["artifact_id"]
    reference = read_weights(artifact).build()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert not model.training
    assert cli_output("export", "1", "--storage", db, "-o", str(out))[0] == 2  # exists: not overwritten


def test_a_corrupt_artifact_is_refused_with_one_line(kept: tuple[Path, str], tmp_path: Path) -> None:
    folder, db = kept
    artifact = folder / "w.artifacts" / load(db, "w").trials[2].user_attrs[Attr.WEIGHTS]["artifact_id"]
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original[: len(original) // 2])
        code, stdout, stderr = cli_output("export", "2", "--storage", db, "-o", str(tmp_path / "m.pt"))
        assert code == 2 and stdout == ""
        assert stderr.strip().count("\n") == 0 and "corrupt (checksum mismatch)" in stderr
        artifact.unlink()
        code, _, stderr = cli_output("export", "2", "--storage", db, "-o", str(tmp_path / "m.pt"))
        assert code == 2 and "is missing" in stderr and stderr.strip().count("\n") == 0
    finally:
        artifact.write_bytes(original)


def test_an_altered_or_damaged_weights_file_is_refused(tmp_path: Path) -> None:
    spec = ArchSpec(backbone="proxy", width=8, block="gc", stages=("c4",), ratio=4)
    model = gcsearch.build_model(spec, num_classes=10)
    path = tmp_path / "m.pt"
    save_weights(path, model, spec, num_classes=10, in_chans=3)
    payload = torch.load(path, weights_only=True)
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name].view(-1)[0] += 1.0
    torch.save(payload, tmp_path / "altered.pt")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        read_weights(tmp_path / "altered.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="not a readable weights file"):
        gcsearch.load_model(tmp_path / "cut.pt")
    with pytest.raises(WeightsError, match="no such file"):
        gcsearch.load_model(tmp_path / "absent.pt")


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_load_model_rebuilds_any_backbone(backbone: str, tmp_path: Path) -> None:
    spec = ArchSpec(backbone=backbone, block="gc", stages=("c4",), ratio=16)
    model = gcsearch.build_model(spec, num_classes=7).eval()
    save_weights(tmp_path / "m.pt", model, spec, num_classes=7, in_chans=3)
    loaded = gcsearch.load_model(tmp_path / "m.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_the_artifact_folder_defaults_beside_a_sqlite_file_only(tmp_path: Path) -> None:
    assert default_location(f"sqlite:///{tmp_path}/runs/a.db") == tmp_path / "runs" / "a.artifacts"
    assert default_location("postgresql+psycopg://u@h/db") is None
    assert artifact_location("postgresql+psycopg://u@h/db", "/mnt/w") == Path("/mnt/w")
    assert artifact_location("sqlite:///a.db", "none") is None
    assert artifact_location("sqlite:///a.db", "file:///x/y") == Path("/x/y")


def test_a_run_with_artifacts_none_keeps_no_weights(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    study = write_grid(tmp_path / "n.toml", "n", stages='["c4"]')
    assert run_cli("--study", str(study), "--storage", db, "-q", "--trials", "1", "--artifacts", "none") == 0
    assert not (tmp_path / "n.artifacts").exists()
    assert all(Attr.WEIGHTS not in t.user_attrs for t in load(db, "n").trials)
    code, _, stderr = cli_output("export", "0", "--storage", db, "-o", str(tmp_path / "m.pt"))
    assert code == 2 and "kept no weights" in stderr
