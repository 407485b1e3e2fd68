"""`gcsearch inspect`: the numbers it prints, --json round-tripping through --spec, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gcsearch.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        main(["inspect", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_json_for_resnet50_gc(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["--backbone", "resnet50", "--block", "gc", "--stages", "c3,c4,c5", "--ratio", "16",
                        "--input-size", "224", "--json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["params"] == 25_557_032 + 2_521_741 and d["block_params"] == 2_521_741
    assert d["flops"] == 4_111_512_576 + 11_832_043 and d["block_flops"] == 11_832_043
    assert d["input_size"] == [3, 224, 224] and d["num_classes"] == 1000
    assert d["spec"]["block"] == "gc" and d["spec"]["stages"] == ["c3", "c4", "c5"]
    assert d["stages"]["c4"]["blocks"] == 6 and d["stages"]["c4"]["channels"] == 1024
    assert d["latency_ms"] is None


def test_spec_file_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["--block", "custom", "--context", "avg", "--transform", "bottleneck", "--norm", "none",
                        "--act", "relu", "--fusion", "both", "--ratio", "4", "--stages", "c4,c2", "--position",
                        "after_3x3", "--blocks", "last", "--width", "8", "--depth", "1,2,2,1", "--json"], capsys)
    assert code == 0
    first = json.loads(out)
    assert first["spec"]["stages"] == ["c2", "c4"] and first["spec"]["depth"] == [1, 2, 2, 1]
    assert first["input_size"] == [3, 32, 32] and first["num_classes"] == 5  # proxy defaults: the built-in set
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(first["spec"]))
    code, out, _ = run(["--spec", str(path), "--json"], capsys)
    second = json.loads(out)
    assert code == 0 and second == first
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(first))  # the whole --json output reads back too
    code, out, _ = run(["--spec", str(whole), "--json", "--input-size", "1x48x40", "--num-classes", "3"], capsys)
    third = json.loads(out)
    assert third["input_size"] == [1, 48, 40] and third["stages"]["c2"]["output_size"] == [8, 48, 40]
    assert third["block_params"] == first["block_params"] and third["params"] < first["params"]


def test_table_shows_stages_and_totals(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["--backbone", "resnet50", "--block", "se", "--stages", "c5"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["c5", "7x7", "3/3"] for line in lines)
    assert any(line.split()[:2] == ["total", "3/16"] for line in lines)
    p = 2048 // 16
    added = 3 * (2 * 2048 * p + p + 2048)  # SE: two linear layers with bias, no LayerNorm, no context conv
    assert f"params {25_557_032 + added:,} (blocks +{added:,})" in out


def test_latency(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["--block", "gc", "--ratio", "4", "--width", "4", "--depth", "1,1,1,1", "--input-size", "16",
                        "--latency", "--json"], capsys)
    assert code == 0
    latency = json.loads(out)["latency_ms"]
    assert set(latency) == {"forward", "forward_backward"} and min(latency.values()) > 0


@pytest.mark.parametrize("args, field", [
    (["--block", "foo"], "block"),
    (["--context", "max"], "context"),
    (["--transform", "mlp"], "transform"),
    (["--norm", "bn"], "norm"),
    (["--act", "gelu"], "act"),
    (["--fusion", "mul"], "fusion"),
    (["--ratio", "64"], "ratio"),
    (["--ratio", "0"], "ratio"),
    (["--stages", "c3,c6"], "stages"),
    (["--position", "middle"], "position"),
    (["--blocks", "first"], "blocks"),
    (["--backbone", "vgg16"], "backbone"),
    (["--backbone", "resnet50", "--width", "32"], "width"),
    (["--depth", "1,2"], "depth"),
    (["--width", "many"], "'--width'"),
    (["--input-size", "big"], "input-size"),
    (["--classes", "0"], "classes: expected a positive integer"),
    (["--dataset", "imagenet"], "dataset: 'imagenet' is not one of synthetic, cifar10, cifar100"),
    (["--device", "tpu"], "device"),
])
def test_invalid_values_exit_2_with_one_line(args: list[str], field: str, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(args, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and lines[0].startswith("error:"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("device, gpus, message", [
    ("cuda", 0, "error: device: cuda requested but CUDA is not available on this machine"),
    ("cuda:1", 0, "error: device: cuda:1 requested but CUDA is not available on this machine"),
    ("cuda:1", 1, "error: device: cuda:1 requested but only 1 GPU(s) exist"),
])
def test_latency_on_a_missing_gpu_is_one_line(device: str, gpus: int, message: str, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    code, out, err = run(["--block", "gc", "--latency", "--device", device], capsys)
    assert (code, out, err.strip().splitlines()) == (2, "", [message])


def test_bad_spec_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = {"missing.json": None, "broken.json": "{not json", "unknown.json": json.dumps({"block": "gc", "size": 3}),
             "invalid.json": json.dumps({"block": "gc", "ratio": 1000})}
    expected = {"missing.json": "spec: cannot read", "broken.json": "is not valid JSON",
                "unknown.json": "size: unknown field", "invalid.json": "ratio: ratio 1000 leaves no channel"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        code, _, err = run(["--spec", str(path)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected[name] in err, err
    code, _, err = run(["--spec", str(tmp_path / "invalid.json"), "--block", "se"], capsys)
    assert code == 2 and "not both" in err


def test_console_script_exit_code_and_help() -> None:
    bad = subprocess.run([sys.executable, "-m", "gcsearch", "inspect", "--fusion", "mul"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["error: fusion: 'mul' is not one of add, scale, both"]
    helped = subprocess.run([sys.executable, "-m", "gcsearch", "inspect", "--help"], capture_output=True, text=True,
                            timeout=60, env={"COLUMNS": "120", "PATH": ""})
    assert helped.returncode == 0
    for option in ("--backbone", "--width", "--depth", "--block", "--context", "--transform", "--norm", "--act",
                   "--fusion", "--ratio", "--stages", "--position", "--blocks", "--spec", "--input-size",
                   "--num-classes", "--latency", "--device", "--json"):
        assert option in helped.stdout
    assert "gcsearch inspect --backbone resnet50 --block gc" in helped.stdout
    assert "(default: c3,c4,c5)" in helped.stdout


def test_stages_take_every_form_a_study_file_takes(capsys: pytest.CaptureFixture) -> None:
    outs = []
    for stages in ("c3-c5", "c3,c4,c5", "c5, c3,c4"):
        code, out, err = run(["--stages", stages, "--json"], capsys)
        assert code == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1] == outs[2] and outs[0]["spec"]["stages"] == ["c3", "c4", "c5"]
    code, _, err = run(["--stages", "c5-c3"], capsys)
    assert code == 2 and err.strip() == "error: stages: empty stage range 'c5-c3'"


def test_proxy_counts_match_a_study_on_the_built_in_dataset_and_say_where_the_classes_come_from(
        capsys: pytest.CaptureFixture) -> None:
    from gcsearch.training.synthetic import SYNTHETIC_CLASSES

    code, out, _ = run(["--json"], capsys)  # a proxy backbone: the synthetic set's 5 classes, as a study's trials
    assert code == 0 and json.loads(out)["num_classes"] == SYNTHETIC_CLASSES == 5
    assert json.loads(out)["params"] == 707_183
    code, out, _ = run(["--dataset", "cifar10", "--json"], capsys)
    assert json.loads(out)["num_classes"] == 10 and json.loads(out)["params"] == 707_828  # + 5 x (128 + 1)
    code, out, _ = run([], capsys)
    assert "5 classes (the synthetic dataset's; --classes or --dataset to change)" in " ".join(out.split())
    code, out, _ = run(["--classes", "7", "--json"], capsys)
    assert json.loads(out)["num_classes"] == 7
