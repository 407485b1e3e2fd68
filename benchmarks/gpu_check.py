"""GPU check: the CUDA tests and four speed figures of the CUDA path, in one command.

On one GPU, in at most 8 minutes:

1. the suite's CUDA tests (`pytest -m cuda`: the tests marked `cuda`, skipped without a GPU);
2. proxy training loop: `train_candidate`'s images per second against a bare forward/backward/step loop,
   same model (proxy width 16, GC r16 at c3-c5, batch 64, 32 px). Goal >= 0.97;
3. GC r16 at c3-c5 on that proxy: training step time against block none and against a transcription of the
   reference implementation (bf16 autocast, channels_last, batch 64). Goal: at most +2% over block none;
4. ResNet-18 (CIFAR style: 3x3 stem, no max-pool; `proxy` at width 64) at 32 px: `train_candidate`'s
   training images per second with the data on the device, batch 512. Anchor: about 24,000 img/s for an
   airbench-style ResNet-18 on an A100. Goal >= 30,000 img/s on an H100 or H200;
5. a short grid study (`gcsearch run`) with several local workers sharing the device, against one worker:
   total training images per second, from the first trial's start to the last one's end;
6. the paired design on the device (`[proxy] start = "baseline"`): the same grid, each seed's block-less start
   trained once, kept and loaded back, every candidate fine-tuned from it for half an epoch: the start's
   seconds, the seconds per fine-tune, and a fine-tune's cost as a share of a from-scratch trial of part 5.

Writes gpu_check.json and gpu_check.md (the table it prints) to --out. The goals are GPU goals; on the CPU
they are shown but not judged. Exit code 1 when a part could not be measured or a CUDA test failed.

    python benchmarks/gpu_check.py                          # cuda, full sizes
    python benchmarks/gpu_check.py --device cpu --quick     # CI smoke run: one to two minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `gcsearch run` sets it, before torch loads

import torch  # noqa: E402
from block_overhead import run as block_steps  # noqa: E402
from train_loop import compare as compare_loops  # noqa: E402

from gcsearch import ArchSpec, build_model  # noqa: E402
from gcsearch.model.device import resolve_device  # noqa: E402
from gcsearch.training.config import ProxyConfig  # noqa: E402
from gcsearch.training.data import load_data  # noqa: E402
from gcsearch.training.device import use_device  # noqa: E402
from gcsearch.training.loop import seed_everything, train_candidate  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("cuda_tests", "train_loop", "gc_overhead", "resnet18", "workers", "paired")


@dataclass(frozen=True)
class Sizes:
    """How much each part runs: the GPU check's sizes, or a CPU smoke run's (--quick)."""

    tests_timeout_s: int
    loop_train_size: int
    loop_val_size: int
    loop_rounds: int
    block_batch: int
    block_rounds: int
    block_steps: int
    r18_train_size: int
    r18_batch: int
    r18_epochs: int
    workers: int
    study: str  # the grid study the workers run (stages x positions), with its proxy
    study_timeout_s: int


FULL = Sizes(tests_timeout_s=300, loop_train_size=3000, loop_val_size=200, loop_rounds=5, block_batch=64,
             block_rounds=30, block_steps=20, r18_train_size=20000, r18_batch=512, r18_epochs=2, workers=4,
             study_timeout_s=240,
             study="""
stages = ["c2", "c3", "c4", "c5", "c4,c5", "c3,c4,c5"]
position = ["after_1x1", "after_add"]
[proxy]
image_size = 32
train_size = 3000
val_size = 500
epochs = 2
batch_size = 64
""")
QUICK = Sizes(tests_timeout_s=120, loop_train_size=192, loop_val_size=64, loop_rounds=2, block_batch=32,
              block_rounds=3, block_steps=1, r18_train_size=64, r18_batch=32, r18_epochs=1, workers=2,
              study_timeout_s=120,
              study="""
stages = ["c4", "c5", "c4,c5"]
position = ["after_1x1"]
[proxy]
image_size = 16
train_size = 128
val_size = 64
epochs = 1
batch_size = 32
""")

STUDY = """
name = "gpu-check"
backbone = "proxy"
width = {width}
sampler = "grid"
seed = 0
objectives = ["accuracy", "flops"]
[budget]
baseline_repeats = 1  # a throughput check: one trial per candidate, the baseline too
[fixed]
block = "gc"
ratio = 4
[space]
{space}
"""


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- 1. the CUDA tests --------------------------------------------------------------------------------------


def cuda_tests(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """`pytest -m cuda` over the test files that hold such tests; counts from pytest's JUnit XML."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "mark.cuda" in p.read_text())
    env = dict(os.environ)
    if device.type == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # --device cpu on a GPU machine: the tests see no GPU and skip
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "cuda.xml"
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                               f"--junitxml={xml}", *files], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=sizes.tests_timeout_s)
        if not xml.exists():
            raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {proc.stdout[-2000:]}")
        suites = ET.parse(xml).getroot()
        suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = counts["failures"] + counts["errors"]
    if failed:
        log(proc.stdout[-4000:])
    return {"value": passed, "passed": passed, "failed": failed, "skipped": counts["skipped"], "files": files,
            "goal": "all pass", "met": None if passed == 0 and not failed else failed == 0,
            "summary": f"{passed} passed, {failed} failed, {counts['skipped']} skipped"}


# --- 2. the proxy training loop against a bare loop ---------------------------------------------------------


def train_loop(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    cfg = ProxyConfig(train_size=sizes.loop_train_size, val_size=sizes.loop_val_size, epochs=1)
    r = compare_loops(device, cfg, ArchSpec(block="gc"), sizes.loop_rounds, report=log)
    return {"value": r["ratio"], **r, "goal": 0.97, "met": gpu_goal(device, r["ratio"] >= 0.97),
            "summary": f"{r['ratio']:.3f} ({r['loop_img_s']:,.0f} vs {r['bare_img_s']:,.0f} img/s)"}


# --- 3. GC blocks' step time ----------------------------------------------------------------------------------


def gc_overhead(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    ms, per_round = block_steps(width=16, ratio=16, batch=sizes.block_batch, size=32, rounds=sizes.block_rounds,
                                device=str(device), steps_per_round=sizes.block_steps, autocast=True)
    vs_none, vs_reference = ms["gc"] / ms["none"], ms["gc"] / ms["gc reference"]
    return {"value": vs_none, "vs_reference": vs_reference, "reference_vs_none": ms["gc reference"] / ms["none"],
            "per_round_vs_none": per_round["gc"], "step_ms": ms, "batch": sizes.block_batch,
            "goal": 1.02, "met": gpu_goal(device, vs_none <= 1.02),
            "summary": f"{100 * (vs_none - 1):+.1f}% (reference {100 * (ms['gc reference'] / ms['none'] - 1):+.1f}%,"
                       f" gc / reference {vs_reference:.3f}; none {ms['none']:.2f} ms/step)"}


# --- 4. ResNet-18 at 32 px ------------------------------------------------------------------------------------


def resnet18(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    cfg = ProxyConfig(train_size=sizes.r18_train_size, val_size=sizes.r18_batch, epochs=sizes.r18_epochs,
                      batch_size=sizes.r18_batch, image_size=32)
    data = load_data(cfg, device)
    spec = ArchSpec(backbone="proxy", width=64, block="none")  # 3x3 stem, 64-128-256-512, 2-2-2-2: 11.2M params
    seed_everything(0)
    model = build_model(spec, num_classes=data.num_classes)
    cuda = device.type == "cuda"
    if cuda:  # cuDNN picks its algorithms for these shapes outside the timing
        train_candidate(model, data, ProxyConfig(**{**cfg.to_dict(), "epochs": 1}), seed=0, device=device)
    result = train_candidate(model, data, cfg, seed=1, device=device)
    ips = result.images_per_second
    return {"value": ips, "batch": cfg.batch_size, "train_size": cfg.train_size, "epochs": cfg.epochs,
            "params": sum(p.numel() for p in model.parameters()), "goal": 30000, "met": gpu_goal(device, ips >= 30000),
            "summary": f"{ips:,.0f} img/s (batch {cfg.batch_size}, {'bf16 autocast' if cuda else 'fp32'}, "
                       "channels_last)"}


# --- 5. several workers sharing the device --------------------------------------------------------------------


def workers(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    space, proxy = sizes.study.split("[proxy]")
    text = STUDY.format(width=16 if sizes is FULL else 8, space=space.strip()) + "[proxy]" + proxy
    one = _study_throughput(device, text, 1, sizes.study_timeout_s)
    many = _study_throughput(device, text, sizes.workers, sizes.study_timeout_s)
    speedup = many["img_s"] / one["img_s"]
    return {"value": speedup, "workers": sizes.workers, "one_worker": one, "several_workers": many,
            "goal": None, "met": None,
            "summary": f"{speedup:.2f}x with {sizes.workers} workers ({many['img_s']:,.0f} vs {one['img_s']:,.0f} "
                       f"img/s, {one['trials']} trials)"}


# --- 6. the paired design: one start per seed, fine-tunes from it ---------------------------------------------

PAIRED = 'start = "baseline"\nfinetune_epochs = 0.5\nfinetune_lr = 0.02\n'


def paired(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    space, proxy = sizes.study.split("[proxy]")
    text = STUDY.format(width=16 if sizes is FULL else 8, space=space.strip()) + "[proxy]" + proxy
    scratch = _study_throughput(device, text, 1, sizes.study_timeout_s)
    fine = _study_throughput(device, text + PAIRED, 1, sizes.study_timeout_s, starts=True)
    per_trial = fine["train_seconds"] / fine["trials"]
    share = per_trial / (scratch["train_seconds"] / scratch["trials"])
    return {"value": share, "starts": fine["starts"], "start_seconds": fine["start_seconds"],
            "finetune_seconds": per_trial, "trials": fine["trials"], "scratch": scratch, "paired": fine,
            "goal": None, "met": None,
            "summary": f"{fine['starts']} start in {fine['start_seconds']:.1f} s, {fine['trials']} fine-tunes of "
                       f"{per_trial:.2f} s ({share:.0%} of a from-scratch trial)"}


def _study_throughput(device: torch.device, study_text: str, n: int, timeout_s: int, starts: bool = False
                      ) -> dict[str, Any]:
    """Runs the grid with `n` local workers on a fresh SQLite file; training images per second of the study."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.toml"
        path.write_text(study_text)
        storage = f"sqlite:///{Path(tmp) / 'gpu_check.db'}"
        args = [sys.executable, "-m", "gcsearch", "run", "--study", str(path), "--storage", storage, "--quiet",
                "--device", _one_device(device)]
        if n > 1:
            args += ["--workers", str(n)]
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"gcsearch run with {n} worker(s) exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout)[-2000:]}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trials = optuna.load_study(study_name="gpu-check", storage=storage).get_trials()
            start_trials = optuna.load_study(study_name="gcsearch-starts", storage=storage).get_trials() \
                if starts else []
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) != len(trials):
        raise RuntimeError(f"{len(trials) - len(done)} of {len(trials)} trials did not complete")
    proxy = ProxyConfig.from_dict(_proxy_of(study_text))
    steps = proxy.train_size // proxy.batch_size  # an epoch's; a paired trial's fine-tune may end part-way
    images = sum(round(steps * (proxy.finetune_epochs if proxy.paired else t.user_attrs["epochs"])) * proxy.batch_size
                 for t in done)
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    out = {"workers": n, "trials": len(done), "images": images, "seconds": span, "img_s": images / span,
           "wall_s": wall, "devices": sorted({t.user_attrs["device"] for t in done}),
           "train_seconds": sum(t.user_attrs["train_seconds"] for t in done)}
    if starts:
        complete = [t for t in start_trials if t.state == optuna.trial.TrialState.COMPLETE]
        out.update(starts=len(complete), start_seconds=sum(t.user_attrs["train_seconds"] for t in complete))
    return out


def _one_device(device: torch.device) -> str:
    """cpu, or cuda:N: with a numbered GPU every local worker runs on that one (plain cuda spreads them)."""
    if device.type != "cuda":
        return "cpu"
    return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"


def _proxy_of(study_text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(study_text)["proxy"]


# --- output ---------------------------------------------------------------------------------------------------


def gpu_goal(device: torch.device, met: bool) -> bool | None:
    """Goals are set for a GPU; a CPU run shows them without judging."""
    return met if device.type == "cuda" else None


TITLES = {
    "cuda_tests": "CUDA tests (`pytest -m cuda`)",
    "train_loop": "proxy loop / bare loop, img/s",
    "gc_overhead": "GC r16 c3-c5 step time vs none",
    "resnet18": "ResNet-18 32 px training",
    "workers": "workers sharing the device vs one, total img/s",
    "paired": "paired design: start once, fine-tunes from it",
}
GOALS = {"cuda_tests": "all pass", "train_loop": ">= 0.97", "gc_overhead": "<= +2%",
         "resnet18": ">= 30,000 img/s (H100/H200)", "workers": "-", "paired": "-"}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"GPU check on {report['device_name']}, torch {report['torch']}"
             f"{', --quick' if report['quick'] else ''}: {report['seconds']:.0f} s", "",
             "| # | check | result | goal | met |", "|---|---|---|---|---|"]
    for i, name in enumerate(FIGURES, 1):
        fig = report["figures"][name]
        result = fig.get("summary") or f"not measured: {fig.get('error', '?')}"
        met = {True: "yes", False: "**no**", None: "-"}[fig.get("met")]
        lines.append(f"| {i} | {TITLES[name]} | {result} | {GOALS[name]} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (one to two minutes on 2 CPUs)")
    parser.add_argument("--out", default=".", help="folder for gpu_check.json and gpu_check.md (default: .)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    use_device(device)
    sizes = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Callable[[torch.device, Sizes], dict[str, Any]]] = {
        "cuda_tests": cuda_tests, "train_loop": train_loop, "gc_overhead": gc_overhead, "resnet18": resnet18,
        "workers": workers, "paired": paired}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    report: dict[str, Any] = {"device": str(device), "device_name": name, "torch": torch.__version__,
                              "quick": args.quick, "figures": {}}
    start = time.perf_counter()
    for key, part in parts.items():
        log(f"[{key}] ...")
        t0 = time.perf_counter()
        try:
            fig = part(device, sizes)
        except Exception as exc:  # noqa: BLE001 -- the other parts still run, and the report says what failed
            traceback.print_exc()
            fig = {"value": None, "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}", "met": None}
        fig["seconds"] = round(time.perf_counter() - t0, 1)
        report["figures"][key] = fig
        log(f"[{key}] {fig.get('summary') or fig['error']} ({fig['seconds']} s)")
    report["seconds"] = round(time.perf_counter() - start, 1)
    table = markdown(report)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(table)
    print(table, end="")
    figures = report["figures"]
    broken = [k for k in FIGURES if figures[k]["value"] is None] + (
        ["cuda_tests"] if figures["cuda_tests"].get("failed") else [])
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
