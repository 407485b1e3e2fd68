"""Context modeling, step one of the framework: pool a C x H x W feature map into one C-vector per image.

`att` is GCNet's attention pooling: a 1x1 conv C->1 gives one logit per position, a softmax over the H*W
positions turns them into weights, and the weighted sum of the features is the context. `avg` is global
average pooling, as in SE. (The query-dependent `nl` context lives in `non_local.py`: it has no single
context vector.)

Attention pooling is written as two matrix products over the flattened positions, always with the
row vector on the left (`[N, 1, HW] @ [N, HW, C]`), which is the fast orientation for both NCHW and
channels_last inputs and never copies the feature map. Training uses a hand-written backward that
produces the feature-map gradient in one batched product instead of autograd's two outer products and
a sum; `torch.jit` tracing (fvcore's FLOP counter) sees the same math as plain ops.

The softmax runs in float32 at least, as CUDA autocast runs it, while the products run in the feature map's
dtype (bf16 under autocast). The backward keeps the two apart: the softmax's own gradient is taken in the
softmax's dtype and every product gets operands of one dtype, which the CUDA kernels insist on.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """`att`: softmax(conv1x1(x)) over H*W, then the attention-weighted sum of x -> [N, C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=1)  # the reference's `conv_mask`
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As the reference implementation: kaiming normal, fan_in, bias zero.
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return attention_pool_reference(x, self.conv.weight, self.conv.bias)
        return _AttentionPoolFn.apply(x, self.conv.weight, self.conv.bias)


class AveragePool(nn.Module):
    """`avg`: global average pooling -> [N, C]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


POOLS: dict[str, type[nn.Module]] = {"att": AttentionPool, "avg": AveragePool}


def create_pool(kind: str, channels: int) -> nn.Module:
    """The context-modeling module for `kind` ('att' or 'avg')."""
    return POOLS[kind](channels)


def attention_pool_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention pooling with plain ops, for tracing and as the definition the fast path must match."""
    n, c = x.shape[:2]
    flat = x.flatten(2)  # [N, C, HW], a view for NCHW and channels_last alike
    logits = torch.nn.functional.conv2d(x, weight, bias).flatten(2)  # [N, 1, HW]
    attn = torch.softmax(logits, dim=2)
    return torch.bmm(attn, flat.transpose(1, 2)).view(n, c)


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for bf16 and fp16 maps (what autocast gives the softmax), the map's own dtype otherwise."""
    return torch.promote_types(dtype, torch.float32)


class _AttentionPoolFn(torch.autograd.Function):
    """Attention pooling with a backward that touches the feature map three times instead of five."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        flat = x.flatten(2)  # [N, C, HW]
        w = weight.to(x.dtype).view(1, 1, c).expand(n, 1, c)
        logits = torch.baddbmm(bias.to(x.dtype).view(1, 1, 1), w, flat)  # [N, 1, HW]
        attn = torch.softmax(logits, dim=2, dtype=_softmax_dtype(x.dtype))
        ctx.save_for_backward(x, weight, attn)
        return torch.bmm(attn.to(x.dtype), flat.transpose(1, 2)).view(n, c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, attn = ctx.saved_tensors
        n, c, h, w = x.shape
        flat = x.flatten(2)
        grad = grad.to(x.dtype).reshape(n, 1, c)
        # d(context)/d(attn), then through the softmax in its own precision:
        # g_logits = attn * (g_attn - <attn, g_attn>), in one op
        g_attn = torch.bmm(grad, flat)  # [N, 1, HW]
        g_logits = torch._softmax_backward_data(g_attn.to(attn.dtype), attn, 2, attn.dtype)
        g_weight = g_bias = g_x = None
        if ctx.needs_input_grad[1]:
            g_weight = torch.bmm(g_logits.to(x.dtype), flat.transpose(1, 2)).sum(dim=0, dtype=weight.dtype)
            g_weight = g_weight.view_as(weight)
        if ctx.needs_input_grad[2]:
            g_bias = g_logits.sum(dtype=weight.dtype).view(1)
        if ctx.needs_input_grad[0]:
            # g_x[n, c, k] = grad[n, c] * attn[n, k] + weight[c] * g_logits[n, k]: one product with K = 2.
            left = torch.cat((grad, weight.to(x.dtype).view(1, 1, c).expand(n, 1, c)), dim=1)  # [N, 2, C]
            right = torch.cat((attn, g_logits), dim=1).to(x.dtype)  # [N, 2, HW]
            if x.stride(1) == 1 and c > 1:  # channels_last: write [N, HW, C] and view it back
                g_x = torch.bmm(right.transpose(1, 2), left).view(n, h, w, c).permute(0, 3, 1, 2)
            else:
                g_x = torch.bmm(left.transpose(1, 2), right).view(n, c, h, w)
        return g_x, g_weight, g_bias
