"""The ResNet family as plain data: depths, widths and channel counts at every stage.

Kept free of torch so that `ArchSpec` validation and study-file checks stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")
POSITIONS: tuple[str, ...] = ("after_1x1", "after_3x3", "after_add")


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    kind: str  # "basic" or "bottleneck"
    depth: tuple[int, int, int, int]
    width: int
    stem: str  # "imagenet" (7x7 stride 2 + max-pool) or "small" (3x3 stride 1, no pool)
    resizable: bool  # whether width and depth may be chosen (the proxy members)

    @property
    def expansion(self) -> int:
        return 4 if self.kind == "bottleneck" else 1


BACKBONES: dict[str, BackboneConfig] = {
    "resnet18": BackboneConfig("resnet18", "basic", (2, 2, 2, 2), 64, "imagenet", False),
    "resnet34": BackboneConfig("resnet34", "basic", (3, 4, 6, 3), 64, "imagenet", False),
    "resnet50": BackboneConfig("resnet50", "bottleneck", (3, 4, 6, 3), 64, "imagenet", False),
    "resnet101": BackboneConfig("resnet101", "bottleneck", (3, 4, 23, 3), 64, "imagenet", False),
    "proxy": BackboneConfig("proxy", "basic", (2, 2, 2, 2), 16, "small", True),
    "proxy_bottleneck": BackboneConfig("proxy_bottleneck", "bottleneck", (1, 1, 1, 1), 16, "small", True),
}


def block_channels(kind: str, width: int, stage: str, position: str) -> int:
    """Channels that a context block sees at `position` in a residual block of `stage`."""
    mid = width * 2 ** STAGES.index(stage)
    if kind == "bottleneck" and position != "after_3x3":
        return mid * 4
    return mid
