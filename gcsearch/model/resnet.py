"""The ResNet family with stages named as in the paper (c2..c5) and context blocks placed by an ArchSpec.

The layers follow torchvision's ResNet (v1.5: the stride sits on the 3x3 conv), so `resnet50` with 1000
classes has torchvision's 25,557,032 parameters and its fvcore FLOPs. Proxy members (`proxy`,
`proxy_bottleneck`) swap the ImageNet stem for a 3x3 stride-1 conv without max-pool, for small images.

Where a block sits inside a residual block (`position`):
- `after_1x1`: after the residual branch's last conv + BN, before the residual sum (the paper's default;
  in a basic block, after its second conv's BN).
- `after_3x3`: after the 3x3 conv + BN + ReLU on the bottleneck width (in a basic block, after the first
  3x3 conv + BN + ReLU).
- `after_add`: after the residual sum, before the final ReLU.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gcsearch.errors import positive_int
from gcsearch.model.blocks import ContextBlock, NonLocalBlock
from gcsearch.space import ArchSpec
from gcsearch.space.vocabulary import BACKBONES, STAGES, BackboneConfig, block_channels


def create_block(spec: ArchSpec, channels: int) -> nn.Module | None:
    """The context block that `spec` describes, for a feature map of `channels` channels; None for block none."""
    if not spec.has_blocks:
        return None
    if spec.context == "nl":
        return NonLocalBlock(channels)
    return ContextBlock(channels, pooling=spec.context, transform=spec.transform, fusion=spec.fusion,
                        ratio=spec.ratio, norm=spec.norm, act=spec.act)


class ResidualBlock(nn.Module):
    """What both kinds of residual block share: the shortcut, the final ReLU, and the context block at its
    position. A kind supplies its own layers and the two halves of its branch, split where `after_3x3` sits.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, context: nn.Module | None = None,
                 position: str | None = None) -> None:
        super().__init__()
        # The kind's own layers first, then the shortcut: torchvision's order, which fixes the order in which
        # the layers draw their initial weights.
        self.make_layers(in_channels, width, stride)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, width * self.expansion, stride)
        self.context = context
        self.position = position if context is not None else None

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        raise NotImplementedError

    def branch_start(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch up to and including its 3x3 conv's BN and ReLU."""
        raise NotImplementedError

    def branch_end(self, out: torch.Tensor) -> torch.Tensor:
        """The residual branch's last conv and BN."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.branch_start(x)
        if self.position == "after_3x3":
            out = self.context(out)
        out = self.branch_end(out)
        if self.position == "after_1x1":
            out = self.context(out)
        out += identity
        if self.position == "after_add":
            out = self.context(out)
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (resnet18/34, proxy)."""

    expansion = 1

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def branch_start(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def branch_end(self, out: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 (stride) -> 1x1 with expansion 4 (resnet50/101, proxy_bottleneck)."""

    expansion = 4

    def make_layers(self, in_channels: int, width: int, stride: int) -> None:
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)

    def branch_start(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))

    def branch_end(self, out: torch.Tensor) -> torch.Tensor:
        return self.bn3(self.conv3(out))


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(StridedPointwise(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution with a stride, computed as every `step`-th pixel followed by a stride-1 1x1 conv.

    The same numbers, parameters and FLOPs as `nn.Conv2d(in, out, 1, stride)`. PyTorch 2.13's CPU backward of
    a strided 1x1 conv on channels_last input with few channels corrupts the heap and aborts the process
    (seen with 4 -> 8 and 4 -> 16 channels on one thread, on AMD EPYC); the stride-1 conv does not. The slice
    costs a copy (the downsample op takes 20-45% longer, about 1% of a proxy training step), so only CPU
    inputs take it; other devices run the strided conv.
    """

    def __init__(self, in_channels: int, out_channels: int, step: int) -> None:
        super().__init__(in_channels, out_channels, 1, bias=False)
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step == 1:
            return super().forward(x)
        if x.device.type == "cpu":
            return super().forward(x[:, :, :: self.step, :: self.step])
        return nn.functional.conv2d(x, self.weight, self.bias, stride=self.step)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, step={self.step}"


class ResNet(nn.Module):
    """`stem` -> `c2` .. `c5` (nn.Sequential of residual blocks) -> `head` (pool, flatten, `fc`)."""

    def __init__(self, spec: ArchSpec, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        cfg: BackboneConfig = BACKBONES[spec.backbone]
        width = spec.width or cfg.width
        depth = spec.depth or cfg.depth
        block_cls = Bottleneck if cfg.kind == "bottleneck" else BasicBlock
        self.spec = spec
        self.stem = _stem(cfg.stem, in_chans, width)

        in_channels = width
        for index, stage in enumerate(STAGES):
            stage_width = width * 2**index
            placed = spec.has_blocks and stage in spec.stages
            residual_blocks = []
            for i in range(depth[index]):
                with_block = placed and (spec.blocks == "all" or i == depth[index] - 1)
                context = None
                if with_block:
                    channels = block_channels(cfg.kind, width, stage, spec.position)
                    context = create_block(spec, channels)
                stride = 2 if index > 0 and i == 0 else 1
                residual_blocks.append(block_cls(in_channels, stage_width, stride, context, spec.position))
                in_channels = stage_width * block_cls.expansion
            setattr(self, stage, nn.Sequential(*residual_blocks))

        self.head = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(in_channels, num_classes)))
        self.num_features = in_channels
        _init_backbone(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.c2(x)
        x = self.c3(x)
        x = self.c4(x)
        x = self.c5(x)
        return self.head(x)

    def context_blocks(self) -> list[tuple[str, nn.Module]]:
        """(qualified name, module) of every context block, in forward order."""
        return [(f"{stage}.{i}.context", blk.context) for stage in STAGES
                for i, blk in enumerate(getattr(self, stage)) if blk.context is not None]


def _stem(kind: str, in_chans: int, width: int) -> nn.Sequential:
    if kind == "imagenet":
        return nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_chans, width, 7, 2, 3, bias=False), bn=nn.BatchNorm2d(width),
            relu=nn.ReLU(inplace=True), pool=nn.MaxPool2d(3, 2, 1)))
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True)))


def _init_backbone(model: ResNet) -> None:
    """torchvision's ResNet init, applied to the backbone only: context blocks keep their own init."""
    own = {id(m) for _, block in model.context_blocks() for m in block.modules()}
    for module in model.modules():
        if id(module) in own:
            continue
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(spec: ArchSpec, num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """Build the candidate `spec` as a PyTorch model (train mode, float32, on the CPU)."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"build_model expects an ArchSpec, got {type(spec).__name__}")
    positive_int("num_classes", num_classes)
    positive_int("in_chans", in_chans)
    return ResNet(spec, num_classes=num_classes, in_chans=in_chans)
