"""What does a GC block add to a training step, next to what it adds to the FLOPs?

Three models are trained side by side in one process on the same batch, one step each per round, in
alternating order: the proxy backbone with block none, with gcsearch's GC blocks at c3-c5, and with a
straightforward transcription of the reference implementation (mmcv's ContextBlock, written out below) at
the same places. The figures are medians over the rounds, so a busy machine slows all three alike; "per
round" is the median of the ratios taken within each round.

    python benchmarks/block_overhead.py                      # CPU, proxy width 16, batch 128 at 32x32
    python benchmarks/block_overhead.py --width 32 --rounds 40
    python benchmarks/block_overhead.py --device cuda --batch 512
    python benchmarks/block_overhead.py --device cuda --batch 64 --autocast --steps-per-round 20   # as a trial
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from gcsearch import ArchSpec, build_model
from gcsearch.model.cost import measure


class ReferenceContextBlock(nn.Module):
    """mmcv.cnn.bricks.ContextBlock (att pooling, channel_add fusion), transcribed as it is written there."""

    def __init__(self, inplanes: int, ratio: float) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.planes = int(inplanes * ratio)
        self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
        self.softmax = nn.Softmax(dim=2)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2d(self.inplanes, self.planes, kernel_size=1),
            nn.LayerNorm([self.planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.planes, self.inplanes, kernel_size=1))
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.channel_add_conv[-1].weight)
        nn.init.zeros_(self.channel_add_conv[-1].bias)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        batch, channel, height, width = x.size()
        input_x = x.view(batch, channel, height * width)
        input_x = input_x.unsqueeze(1)
        context_mask = self.conv_mask(x)
        context_mask = context_mask.view(batch, 1, height * width)
        context_mask = self.softmax(context_mask)
        context_mask = context_mask.unsqueeze(-1)
        context = torch.matmul(input_x, context_mask)
        return context.view(batch, channel, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        return x + self.channel_add_conv(context)


def make_models(width: int, ratio: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    base = ArchSpec(backbone="proxy", width=width, block="none")
    gc = ArchSpec(backbone="proxy", width=width, block="gc", ratio=ratio, stages=("c3", "c4", "c5"))
    reference = build_model(gc)
    for stage in ("c3", "c4", "c5"):
        for block in getattr(reference, stage):
            block.context = ReferenceContextBlock(block.context.channels, 1 / ratio)
    models = {"none": build_model(base), "gc": build_model(gc), "gc reference": reference}
    # same backbone weights everywhere: only the blocks differ
    state = models["none"].state_dict()
    for name in ("gc", "gc reference"):
        models[name].load_state_dict(state, strict=False)
    return models


def run(width: int = 16, ratio: int = 16, batch: int = 128, size: int = 32, rounds: int = 30, warmup: int = 3,
        device: str = "cpu", channels_last: bool = True, clock: str = "wall", steps_per_round: int = 1,
        autocast: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """Median step milliseconds per model, and the median within-round ratio to block none.

    `steps_per_round`: training steps per model per round, timed together (on a GPU, one step between two syncs
    measures the sync as much as the step). `autocast`: bf16 autocast on CUDA, as proxy training runs.
    """
    dev = torch.device(device)
    amp = autocast and dev.type == "cuda"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = make_models(width, ratio)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)
    steps = {}
    for name, model in models.items():
        model.to(dev, memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

        def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            for _ in range(steps_per_round):
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                    loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()

        steps[name] = step
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    # "cpu": this process's CPU seconds, blind to time spent descheduled on a shared machine (one thread only:
    # with more, idle OpenMP workers spin and count as CPU time)
    now = time.process_time if clock == "cpu" else time.perf_counter
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):  # alternate who goes first
            sync()
            t0 = now()
            steps[name]()
            sync()
            times[name].append((now() - t0) / steps_per_round)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    # the same ratio taken within each round, where all models ran within a second of each other
    per_round = {name: statistics.median(a / b for a, b in zip(t, times["none"], strict=True))
                 for name, t in times.items()}
    return medians, per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--ratio", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--steps-per-round", type=int, default=1, help="steps per model per round, timed together")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast on CUDA, as proxy training runs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: process CPU time, for one thread on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = measure(ArchSpec(backbone="proxy", width=args.width, block="none"), input_size=(3, args.size, args.size),
                   num_classes=10)
    gc = measure(ArchSpec(backbone="proxy", width=args.width, block="gc", ratio=args.ratio, stages=("c3", "c4", "c5")),
                 input_size=(3, args.size, args.size), num_classes=10)
    ms, per_round = run(args.width, args.ratio, args.batch, args.size, args.rounds, device=args.device,
                        channels_last=not args.no_channels_last, clock=args.clock,
                        steps_per_round=args.steps_per_round, autocast=args.autocast)
    where = args.device if args.device != "cpu" else f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"
    print(f"proxy width {args.width}, gc r{args.ratio} at c3-c5, batch {args.batch} at {args.size}x{args.size}, "
          f"{'NCHW' if args.no_channels_last else 'channels_last'}, {where}, torch {torch.__version__}, "
          f"{args.clock} clock, median of {args.rounds} alternating rounds")
    print(f"{'model':14s} {'step ms':>9s} {'vs none':>8s} {'per round':>10s}")
    for name, t in ms.items():
        print(f"{name:14s} {t:9.1f} {t / ms['none']:8.3f} {per_round[name]:10.3f}")
    print(f"FLOPs ratio gc/none: {gc.flops / base.flops:.4f}  (+{gc.block_flops:,} multiply-adds per image)")
    print(f"gc / gc reference:   {ms['gc'] / ms['gc reference']:.3f}")


if __name__ == "__main__":
    main()
