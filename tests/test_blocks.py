"""The three-step framework as modules: parameter counts, reference init, fast paths equal to plain math."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from gcsearch import ArchSpec
from gcsearch.model.blocks import (
    AttentionPool,
    AveragePool,
    BottleneckTransform,
    ContextBlock,
    FullTransform,
    NonLocalBlock,
    create_transform,
)
from gcsearch.model.blocks.pooling import _AttentionPoolFn, attention_pool_reference
from gcsearch.model.resnet import create_block

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels, ratio", [(512, 16), (1024, 16), (2048, 4), (64, 8), (32, 32)])
def test_gc_block_params_follow_the_reference_formula(channels: int, ratio: int) -> None:
    c, p = channels, channels // ratio
    gc = ContextBlock(c, "att", "bottleneck", "add", ratio, "ln", "relu")
    assert n_params(gc) == 2 * c + 1 + 2 * c * p + 3 * p
    # avg pooling drops the context conv (C + 1); no LayerNorm drops 2P
    assert n_params(ContextBlock(c, "avg", "bottleneck", "add", ratio, "ln", "relu")) == c + 2 * c * p + 3 * p
    assert n_params(ContextBlock(c, "att", "bottleneck", "add", ratio, "none", "relu")) == 2 * c + 1 + 2 * c * p + p
    # act has no parameters; 'both' has one transform per fusion branch, as the reference
    assert n_params(ContextBlock(c, "att", "bottleneck", "add", ratio, "ln", "none")) == n_params(gc)
    transform = 2 * c * p + 3 * p + c
    assert n_params(ContextBlock(c, "att", "bottleneck", "both", ratio, "ln", "relu")) == c + 1 + 2 * transform
    # SNL: one C -> C map with bias
    assert n_params(ContextBlock(c, "att", "full", "add")) == c + 1 + c * c + c


def test_non_local_block_params_and_inner_width() -> None:
    nl = NonLocalBlock(64)
    inner = 32
    assert nl.inner == inner
    assert n_params(nl) == 3 * (64 * inner + inner) + (inner * 64 + 64) + 2 * 64
    assert NonLocalBlock(1).inner == 1  # never a zero-width block


def test_reference_initialization() -> None:
    torch.manual_seed(0)
    block = ContextBlock(2048, "att", "bottleneck", "both", 16, "ln", "relu")
    conv = block.pool.conv
    # kaiming normal, fan_in, relu gain: std = sqrt(2 / C)
    assert conv.weight.std().item() == pytest.approx((2 / 2048) ** 0.5, rel=0.1)
    assert torch.count_nonzero(conv.bias) == 0
    for transform in (block.fusion.add_transform, block.fusion.scale_transform):
        assert torch.count_nonzero(transform.fc2.weight) == 0 and torch.count_nonzero(transform.fc2.bias) == 0
        assert torch.count_nonzero(transform.fc1.weight) == transform.fc1.weight.numel()
        assert torch.equal(transform.norm.weight, torch.ones(128))
    full = FullTransform(8)
    assert torch.count_nonzero(full.fc.weight) == 0 and torch.count_nonzero(full.fc.bias) == 0
    nl = NonLocalBlock(16)
    assert torch.count_nonzero(nl.norm.weight) == 0 and torch.count_nonzero(nl.norm.bias) == 0


@pytest.mark.parametrize("block", [
    ContextBlock(32, "att", "bottleneck", "add", 4, "ln", "relu"),
    ContextBlock(32, "avg", "bottleneck", "add", 8, "none", "none"),
    ContextBlock(32, "att", "full", "add"),
    NonLocalBlock(32),
])
@pytest.mark.parametrize("train", [True, False])
def test_add_fused_blocks_start_as_the_identity(block: nn.Module, train: bool) -> None:
    x = torch.randn(2, 32, 5, 7)
    block.train(train)
    assert torch.equal(block(x), x)


def test_scale_fusion_starts_as_a_half_gate_and_both_scales_then_adds() -> None:
    x = torch.randn(2, 16, 4, 4)
    assert torch.allclose(ContextBlock(16, "avg", "bottleneck", "scale", 4, "none", "relu")(x), 0.5 * x)
    torch.manual_seed(1)
    both = ContextBlock(16, "att", "bottleneck", "both", 4, "ln", "relu")
    for p in both.parameters():
        nn.init.normal_(p, std=0.3)
    context = both.pool(x)
    expected = x * torch.sigmoid(both.fusion.scale_transform(context))[:, :, None, None]
    expected = expected + both.fusion.add_transform(context)[:, :, None, None]
    assert torch.allclose(both(x), expected, atol=1e-6)


def test_transform_is_the_reference_conv_layernorm_stack_on_a_1x1_map() -> None:
    """Linear + LayerNorm(P) on [N, C] is the same math as the reference's 1x1 convs + LayerNorm([P, 1, 1])."""
    torch.manual_seed(2)
    ours = BottleneckTransform(64, 4, "ln", "relu")
    for p in ours.parameters():
        nn.init.normal_(p)
    ref = nn.Sequential(nn.Conv2d(64, 4, 1), nn.LayerNorm([4, 1, 1]), nn.ReLU(), nn.Conv2d(4, 64, 1))
    with torch.no_grad():
        ref[0].weight.copy_(ours.fc1.weight.view(4, 64, 1, 1))
        ref[0].bias.copy_(ours.fc1.bias)
        ref[1].weight.copy_(ours.norm.weight.view(4, 1, 1))
        ref[1].bias.copy_(ours.norm.bias.view(4, 1, 1))
        ref[3].weight.copy_(ours.fc2.weight.view(64, 4, 1, 1))
        ref[3].bias.copy_(ours.fc2.bias)
    x = torch.randn(3, 64)
    assert torch.allclose(ours(x), ref(x.view(3, 64, 1, 1)).view(3, 64), atol=1e-5)


def test_attention_pool_is_the_reference_softmax_weighted_sum() -> None:
    torch.manual_seed(3)
    pool = AttentionPool(8)
    x = torch.randn(2, 8, 3, 5)
    logits = (pool.conv.weight.view(1, 8, 1) * x.view(2, 8, 15)).sum(1) + pool.conv.bias
    expected = (x.view(2, 8, 15) * logits.softmax(1).view(2, 1, 15)).sum(2)
    assert torch.allclose(pool(x), expected, atol=1e-6)
    assert torch.allclose(AveragePool(8)(x), x.mean((2, 3)))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_attention_pool_backward_is_exact(memory_format: torch.memory_format) -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 5, 3, 4, dtype=torch.double).contiguous(memory_format=memory_format).requires_grad_()
    w = torch.randn(1, 5, 1, 1, dtype=torch.double, requires_grad=True)
    b = torch.randn(1, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(_AttentionPoolFn.apply, (x, w, b))
    # and it agrees with autograd through the plain ops
    g = torch.randn(2, 5, dtype=torch.double)
    fast = torch.autograd.grad(_AttentionPoolFn.apply(x, w, b), (x, w, b), g)
    plain = torch.autograd.grad(attention_pool_reference(x, w, b), (x, w, b), g)
    for a, e in zip(fast, plain, strict=True):
        assert torch.allclose(a, e, atol=1e-12)
    assert fast[0].is_contiguous(memory_format=memory_format)  # no layout change on the way back


class SoftmaxInFloat32(TorchFunctionMode):
    """What CUDA autocast does to a softmax (it is on autocast's float32 list); CPU autocast keeps it in bf16."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = dict(kwargs or {})
        if func in (torch.softmax, torch.Tensor.softmax, nn.functional.softmax) and kwargs.get("dtype") is None:
            kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


class OpDtypes(TorchDispatchMode):
    """Records every aten op with the dtypes of its floating-point tensor arguments and of its result."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[torch.dtype], torch.dtype | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        dtypes = [t.dtype for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        self.calls.append((func.overloadpacket.__name__, dtypes, out.dtype if isinstance(out, torch.Tensor) else None))
        return out

    def of(self, name: str) -> list[tuple[list[torch.dtype], torch.dtype | None]]:
        return [(args, out) for op, args, out in self.calls if op == name]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_attention_pool_is_dtype_consistent_with_a_bf16_map_and_a_float32_softmax(
        memory_format: torch.memory_format) -> None:
    """The CUDA autocast case on the CPU: a bf16 map, float32 parameters, the softmax in float32. CUDA's bmm
    and softmax backward refuse operands of two dtypes; the CPU's do too, so a mix would raise here."""
    torch.manual_seed(5)
    x32 = torch.randn(3, 16, 5, 6).contiguous(memory_format=memory_format)
    x = x32.bfloat16().requires_grad_()
    w = (0.3 * torch.randn(1, 16, 1, 1)).requires_grad_()
    b = torch.randn(1, requires_grad=True)
    g = torch.randn(3, 16)
    log = OpDtypes()
    with SoftmaxInFloat32(), log:
        out = _AttentionPoolFn.apply(x, w, b)
        out.backward(g.bfloat16())
    bf16, f32 = torch.bfloat16, torch.float32
    mixed = [(op, args) for op, args, _ in log.calls if len(set(args)) > 1 and op != "copy_"]
    assert mixed == []
    assert log.of("_softmax") == [([f32], f32)]
    assert log.of("_softmax_backward_data") == [([f32, f32], f32)]  # the softmax's gradient in its own precision
    products = log.of("bmm") + log.of("baddbmm")
    assert len(products) == 5  # logits, context; then g_attn, g_weight, g_x
    assert all(args == [bf16] * len(args) and res == bf16 for args, res in products)
    assert (out.dtype, x.grad.dtype, w.grad.dtype, b.grad.dtype) == (bf16, bf16, f32, f32)
    assert x.grad.is_contiguous(memory_format=memory_format)

    # ...and it is the reference's math, to bf16 precision: the same rounded map in float32 throughout
    xr = x.detach().float().requires_grad_()
    wr, br = w.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ref = attention_pool_reference(xr, wr, br)
    ref.backward(g.bfloat16().float())
    assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2)
    assert torch.allclose(x.grad.float(), xr.grad, rtol=2e-2, atol=2e-2)
    assert torch.allclose(w.grad, wr.grad, rtol=3e-2, atol=3e-2 * wr.grad.abs().max().item())
    assert torch.allclose(b.grad, br.grad, atol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("block", ["gc", "snl"])
def test_att_blocks_train_under_cuda_bf16_autocast(block: str) -> None:
    """The first backward of every `att` candidate on a GPU, against the same block in float32."""
    torch.manual_seed(6)
    module = create_block(ArchSpec(block=block, ratio=4), 32).cuda()
    for p in module.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(4, 32, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 32, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = module(x)
    out.float().backward(g)
    mixed = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    module(x).backward(g)
    assert out.dtype == torch.bfloat16
    for low, full in zip(mixed, (p.grad for p in module.parameters()), strict=True):
        assert torch.isfinite(low).all()
        assert torch.allclose(low, full, rtol=5e-2, atol=5e-2 * full.abs().max().item())


def test_blocks_keep_channels_last() -> None:
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    for fusion in ("add", "scale", "both"):
        block = ContextBlock(16, "att", "bottleneck", fusion, 4, "ln", "relu")
        assert block(x).is_contiguous(memory_format=torch.channels_last)


def test_create_block_from_spec() -> None:
    assert create_block(ArchSpec(block="none"), 64) is None
    assert isinstance(create_block(ArchSpec(block="nl"), 64), NonLocalBlock)
    se = create_block(ArchSpec(block="se", ratio=4), 64)
    assert isinstance(se, ContextBlock) and isinstance(se.pool, AveragePool)
    assert se.fusion.add_transform is None and se.fusion.scale_transform.fc1.out_features == 16
    assert isinstance(se.fusion.scale_transform.norm, nn.Identity)
    snl = create_block(ArchSpec(block="snl"), 64)
    assert isinstance(snl.fusion.add_transform, FullTransform)
    custom = create_block(ArchSpec(block="custom", context="att", transform="bottleneck", norm="ln", act="none",
                                   fusion="both", ratio=8), 64)
    assert isinstance(custom.fusion.add_transform.act, nn.Identity)
    assert custom.fusion.scale_transform.fc1.out_features == 8


def test_create_transform_rejects_a_ratio_that_leaves_no_channel() -> None:
    with pytest.raises(ValueError, match="ratio"):
        create_transform("bottleneck", 8, ratio=16)
