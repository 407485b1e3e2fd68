"""Proxy training loop speed: train_candidate's loop against a bare loop, side by side.

The bare loop is the floor: forward, backward and SGD step on one batch that is already normalized,
channels_last and on the device, the same model and batch size. train_candidate adds what a real trial needs
(shuffling, crop and flip, normalization, the schedule, the NaN check). Runs alternate and medians are
reported, so load from other processes hits both sides alike.

    python benchmarks/train_loop.py [--rounds 5] [--device cpu] [--block gc] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gcsearch import ArchSpec, build_model
from gcsearch.model.device import resolve_device
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import load_data
from gcsearch.training.loop import seed_everything, train_candidate


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, cuda: bool) -> float:
    """Images per second of forward/backward/step on a fixed batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize(x.device)
    return steps * x.shape[0] / (time.perf_counter() - t0)


def compare(device: torch.device, cfg: ProxyConfig, spec: ArchSpec, rounds: int,
            report: Callable[[str], None] = print) -> dict[str, float]:
    """train_candidate against the bare loop, `rounds` alternating epochs each; medians of images per second."""
    cuda = device.type == "cuda"
    data = load_data(cfg, device)
    seed_everything(0)
    model_loop = build_model(spec, num_classes=data.num_classes).to(device, memory_format=torch.channels_last)
    seed_everything(0)
    model_bare = build_model(spec, num_classes=data.num_classes).to(device, memory_format=torch.channels_last)

    bs = cfg.batch_size
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    x = ((data.x_train[:bs].float() - mean) / std).contiguous(memory_format=torch.channels_last)
    y = data.y_train[:bs]
    steps = cfg.train_size // bs

    bare_loop(model_bare, x, y, 3, cuda)  # warm-up both sides
    train_candidate(model_loop, data, cfg, seed=0, device=device)
    loop_ips, bare_ips, ratios = [], [], []
    for r in range(rounds):
        result = train_candidate(model_loop, data, cfg, seed=r, device=device)
        b = bare_loop(model_bare, x, y, steps, cuda)
        loop_ips.append(result.images_per_second)
        bare_ips.append(b)
        ratios.append(result.images_per_second / b)
        report(f"round {r + 1}: train_candidate {result.images_per_second:8.0f} img/s   bare {b:8.0f} img/s   "
               f"ratio {ratios[-1]:.3f}")
    loop, bare = statistics.median(loop_ips), statistics.median(bare_ips)
    return {"loop_img_s": loop, "bare_img_s": bare, "ratio": loop / bare, "median_ratio": statistics.median(ratios),
            "batch": bs, "steps_per_epoch": steps, "image_size": cfg.image_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--block", default="gc", help="block of the proxy backbone (gc at c3-c5, or none)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    ap.add_argument("--train-size", type=int, default=0, help="0: the default ProxyConfig's")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    defaults = ProxyConfig()
    cfg = ProxyConfig(train_size=args.train_size or defaults.train_size, val_size=200, epochs=1)
    spec = ArchSpec(block=args.block) if args.block != "none" else ArchSpec(block="none")
    result = compare(device, cfg, spec, args.rounds, report=lambda line: print(line, flush=True))
    print(f"device {device}, threads {torch.get_num_threads()}, block {args.block}, batch {result['batch']}, "
          f"{result['steps_per_epoch']} steps/epoch, image {cfg.image_size}")
    print(f"median: train_candidate {result['loop_img_s']:.0f} img/s, bare {result['bare_img_s']:.0f} "
          f"img/s, ratio of medians {result['ratio']:.3f}, median ratio {result['median_ratio']:.3f}")


if __name__ == "__main__":
    main()
