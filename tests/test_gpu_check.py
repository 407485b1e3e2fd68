"""`benchmarks/gpu_check.py --device cpu --quick`: the GPU check's CPU smoke run, as CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("cuda_tests", "train_loop", "gc_overhead", "resnet18", "workers", "paired")


def test_the_quick_cpu_run_reports_all_six_figures(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert (report["device"], report["quick"]) == ("cpu", True)
    figures = report["figures"]
    assert tuple(figures) == FIGURES
    for name in FIGURES:
        value = figures[name]["value"]
        assert isinstance(value, (int, float)) and value >= 0, (name, figures[name])
        assert figures[name]["met"] is None  # GPU goals are not judged on the CPU

    tests = figures["cuda_tests"]
    if not torch.cuda.is_available():  # the cuda-marked tests ran, and skipped
        assert tests["passed"] == 0 and tests["failed"] == 0 and tests["skipped"] >= 6
    assert "tests/test_blocks.py" in tests["files"] and "tests/test_gpu_check.py" not in tests["files"]
    assert 0.3 < figures["train_loop"]["ratio"] < 3 and figures["train_loop"]["steps_per_epoch"] == 3  # 192 // 64
    assert set(figures["gc_overhead"]["step_ms"]) == {"none", "gc", "gc reference"}
    assert figures["resnet18"]["params"] == 11_171_397  # CIFAR ResNet-18 (11,173,962 at 10 classes), 5 classes
    for run, workers in (("one_worker", 1), ("several_workers", 2)):
        study = figures["workers"][run]
        assert (study["workers"], study["trials"], study["devices"]) == (workers, 4, ["cpu"])
        assert study["images"] == 4 * 1 * (128 // 32) * 32  # 4 trials x 1 epoch x 4 steps of 32 images

    fine = figures["paired"]
    assert (fine["starts"], fine["trials"]) == (1, 4)  # one seed: one start, every candidate fine-tuned from it
    assert fine["paired"]["images"] == 4 * 1 * (128 // 32 // 2) * 32  # half an epoch each: 2 of 4 steps
    assert 0 < fine["value"] < 1.5  # a fine-tune of half an epoch costs less than a 1-epoch trial

    table = (tmp_path / "gpu_check.md").read_text()
    assert table == proc.stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert "not measured" not in table
