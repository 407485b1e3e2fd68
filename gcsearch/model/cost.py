"""What a candidate costs: parameters, FLOPs (fvcore, per stage and per block) and optional latency.

FLOPs follow fvcore's convention, the paper's: one FLOP is one multiply-add, counted on a batch of one in
eval mode. fvcore counts convs, matmuls, norms, pooling and linear layers and skips elementwise ops; the
backbone is counted exactly that way, so `resnet50` gives the 4,111,512,576 that fvcore reports for
torchvision's (its max-pool and residual sums stay uncounted). Inside context blocks the ops that fvcore
would skip are counted too (softmax, sigmoid, mean, the fusion's add and mul, one per element), so no block
is ever free. The block's cost is the difference to the same backbone with block `none`.

Results are cached per process by (spec key, input size, classes, latency, device). `gcsearch.measure` is
this module's `measure`.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from gcsearch.errors import InputError, RuntimeFailure, positive_int
from gcsearch.model.device import resolve_device
from gcsearch.model.resnet import build_model
from gcsearch.space import ArchSpec
from gcsearch.space.vocabulary import BACKBONES, STAGES

with warnings.catch_warnings():  # fvcore scripts a loss function at import; torch deprecates torch.jit.script
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

__all__ = ["Measurement", "clear_cache", "count_flops", "measure"]


@dataclass(frozen=True)
class Measurement:
    """A candidate's cost. FLOPs count multiply-adds on one image of `input_size`."""

    spec: ArchSpec
    input_size: tuple[int, int, int]
    num_classes: int
    params: int
    flops: int
    block_params: int  # params minus those of the same backbone with block none
    block_flops: int
    # {c2..c5: {depth, blocks, channels, output_size, params, flops, block_params, block_flops}}
    stages: dict[str, dict[str, Any]]
    # one entry per context block: {name, stage, channels, params, flops}
    per_block: list[dict[str, Any]]
    latency_ms: dict[str, float] | None = None  # {"forward", "forward_backward"}, medians, batch of one
    device: str = "cpu"

    @property
    def block_flops_share(self) -> float:
        """The blocks' FLOPs as a fraction of the backbone without them."""
        base = self.flops - self.block_flops
        return self.block_flops / base if base else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        d["input_size"] = list(self.input_size)
        for stage in d["stages"].values():
            if stage.get("output_size") is not None:
                stage["output_size"] = list(stage["output_size"])
        return d


_CACHE: dict[tuple, Measurement] = {}
_COUNTS: dict[tuple, dict[str, Any]] = {}


def clear_cache() -> None:
    """Forget every cached measurement (tests, or after changing the code of a block)."""
    _CACHE.clear()
    _COUNTS.clear()


def measure(spec: ArchSpec, input_size: tuple[int, int, int] | list[int] = (3, 224, 224), num_classes: int = 1000,
            latency: bool = False, device: str = "cpu") -> Measurement:
    """Params, FLOPs (total, per stage, per block, and the blocks' share) and optionally latency of `spec`.

    `input_size` is (channels, height, width) of one image; `device` only matters for latency.
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"measure expects an ArchSpec, got {type(spec).__name__}")
    size = _input_size(input_size)
    num_classes = positive_int("num_classes", num_classes)
    device = str(resolve_device(str(device))) if latency else str(device)
    key = (spec.key, size, num_classes, bool(latency), device)
    if key in _CACHE:
        return _CACHE[key]

    counts = _counts(spec, size, num_classes)
    base = _counts(spec.baseline, size, num_classes) if spec.has_blocks else counts
    stages = {}
    for stage in STAGES:
        s, b = counts["stages"][stage], base["stages"][stage]
        stages[stage] = {**s, "block_params": s["params"] - b["params"], "block_flops": s["flops"] - b["flops"]}
    result = Measurement(
        spec=spec, input_size=size, num_classes=num_classes,
        params=counts["params"], flops=counts["flops"],
        block_params=counts["params"] - base["params"], block_flops=counts["flops"] - base["flops"],
        stages=stages, per_block=copy.deepcopy(counts["per_block"]),
        latency_ms=time_model(build_model(spec, num_classes=num_classes, in_chans=size[0]), size, device)
        if latency else None,
        device=device,
    )
    _CACHE[key] = result
    return result


# -- FLOPs ----------------------------------------------------------------------------------------------------


def count_flops(model: torch.nn.Module, inputs: torch.Tensor) -> FlopCountAnalysis:
    """An fvcore analysis of `model` (put in eval mode) with gcsearch's handles for context-block ops."""
    analysis = FlopCountAnalysis(model.eval(), inputs)
    analysis.set_op_handle(**_BLOCK_OP_HANDLES)
    analysis.set_op_handle(**dict.fromkeys(_ZERO_COST_OPS))
    return analysis


def _in_block(node: Any) -> bool:
    """Whether a traced op runs inside a context block (a module named `...context`)."""
    return any(part.rsplit(".", 1)[-1] == "context" for part in node.scopeName().split("/"))


def _per_element(which: str = "output"):
    """One FLOP per element of the op's output (or first input), counted only inside context blocks."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        if not _in_block(outputs[0].node()):
            return 0  # the backbone's residual sums: uncounted, as fvcore counts torchvision's ResNets
        shape = get_shape(outputs[0] if which == "output" else inputs[0])
        count = 1
        for dim in shape or ():
            count *= dim
        return count

    return handle


# Ops that fvcore skips but context blocks use. Softmax, sigmoid and mean cost about one op per element;
# add, mul and addcmul (the fusion) one per output element.
_BLOCK_OP_HANDLES = {
    "aten::softmax": _per_element("input"),
    "aten::sigmoid": _per_element(),
    "aten::sigmoid_": _per_element(),
    "aten::mean": _per_element("input"),
    "aten::add": _per_element(),
    "aten::add_": _per_element(),
    "aten::mul": _per_element(),
    "aten::mul_": _per_element(),
    "aten::addcmul": _per_element(),
}
# Ops with no multiply-adds in fvcore's convention for torchvision's ResNets.
_ZERO_COST_OPS = ("aten::max_pool2d", "aten::relu", "aten::relu_")


def _counts(spec: ArchSpec, size: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
    key = (spec.key, size, num_classes)
    if key in _COUNTS:
        return _COUNTS[key]
    model = build_model(spec, num_classes=num_classes, in_chans=size[0]).eval()
    x = torch.zeros(1, *size)
    with _one_thread(), torch.no_grad():
        output_sizes = _stage_output_sizes(model, x)
        analysis = count_flops(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = analysis.by_module()
        total = int(analysis.total())
    unsupported = {op: n for op, n in analysis.unsupported_ops().items() if op not in _ZERO_COST_OPS}
    if unsupported:  # a block op we do not count would make that block look cheaper than it is
        raise RuntimeFailure(f"fvcore cannot count ops {sorted(unsupported)} in {spec.label()}")

    cfg = BACKBONES[spec.backbone]
    depth = spec.depth or cfg.depth
    stages: dict[str, dict[str, Any]] = {}
    for index, stage in enumerate(STAGES):
        module = getattr(model, stage)
        blocks = [blk.context for blk in module if blk.context is not None]
        stages[stage] = {
            "depth": depth[index],
            "blocks": len(blocks),
            "channels": blocks[0].channels if blocks else None,
            "output_size": output_sizes[stage],
            "params": _params(module),
            "flops": int(by_module.get(stage, 0)),
        }
    per_block = [{"name": name, "stage": name.split(".")[0], "channels": block.channels,
                  "params": _params(block), "flops": int(by_module.get(name, 0))}
                 for name, block in model.context_blocks()]
    _COUNTS[key] = {"params": _params(model), "flops": total, "stages": stages, "per_block": per_block}
    return _COUNTS[key]


@contextlib.contextmanager
def _one_thread():
    """Trace on one thread: a batch of one gains nothing from more, and on a busy machine every parallel op
    waits for a descheduled worker (tracing resnet50 went from seconds to a fraction of one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _stage_output_sizes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    sizes: dict[str, tuple[int, int, int]] = {}
    hooks = [getattr(model, stage).register_forward_hook(
        lambda _m, _i, out, stage=stage: sizes.__setitem__(stage, tuple(out.shape[1:]))) for stage in STAGES]
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


# -- latency --------------------------------------------------------------------------------------------------


def time_model(model: torch.nn.Module, size: tuple[int, int, int], device: str = "cpu", warmup: int = 3,
               min_repeats: int = 5, max_repeats: int = 50, budget_s: float = 0.5) -> dict[str, float]:
    """Median milliseconds of a forward pass (eval, no grad) and of forward+backward (train) of `model` on a
    batch of one image of `size`.

    The model runs as proxy training runs it: channels_last, and under bf16 autocast on a GPU.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    model = model.to(dev, memory_format=torch.channels_last)
    x = torch.randn(1, *size, device=dev).contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            model(x)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(x)
        out.float().sum().backward()

    model.eval()
    fwd = _median_ms(forward, dev, warmup, min_repeats, max_repeats, budget_s)
    model.train()
    try:
        fwd_bwd = _median_ms(forward_backward, dev, warmup, min_repeats, max_repeats, budget_s)
    except ValueError as exc:  # BatchNorm refuses a 1x1 map on a batch of one in train mode
        raise InputError(f"input_size: {list(size)} is too small to time a training step ({exc})") from None
    return {"forward": fwd, "forward_backward": fwd_bwd}


def _median_ms(fn, device: torch.device, warmup: int, min_repeats: int, max_repeats: int, budget_s: float) -> float:
    sync = device_sync(device)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def device_sync(device: torch.device) -> Callable[[], None]:
    """Waits for the work queued on `device` (the one the model is on, not the current GPU); nothing on cpu."""
    if device.type != "cuda":
        return lambda: None
    return lambda: torch.cuda.synchronize(device)


# -- input checks ---------------------------------------------------------------------------------------------


def _input_size(value: Any) -> tuple[int, int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (3, value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise InputError(f"input_size: expected (channels, height, width), got {value!r}")
    return tuple(positive_int("input_size", v) for v in value)  # type: ignore[return-value]
