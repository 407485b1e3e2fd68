"""The words a candidate is written in: the ResNet family as plain data (depths, widths, channel counts at every
stage), where a block can sit in it, and the context block's three steps with their presets.

Kept free of torch so that `ArchSpec` validation and study-file checks stay cheap; the model's layers take
their choices from here too, so each name is spelled in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# -- the backbone and where a block sits in it ------------------------------------------------------------

STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")
POSITIONS: tuple[str, ...] = ("after_1x1", "after_3x3", "after_add")
BLOCK_SETS = ("all", "last")  # every residual block of the chosen stages, or only the last one


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
# Bounds of a proxy backbone, so that a typo (width = 16000) is refused instead of building a model that
# never fits in memory: width 256 gives c5 2048 channels, as ResNet-50's; ResNet-152 has 36 blocks in c4.
MAX_WIDTH = 256
MAX_DEPTH = 64


def block_channels(kind: str, width: int, stage: str, position: str) -> int:
    """Channels that a context block sees at `position` in a residual block of `stage`."""
    mid = width * 2 ** STAGES.index(stage)
    if kind == "bottleneck" and position != "after_3x3":
        return mid * 4
    return mid


# -- the context block: context modeling -> transform -> fusion ------------------------------------------

CONTEXTS = ("att", "avg", "nl")  # attention pooling (GC), average pooling (SE), the query-dependent NL block
TRANSFORMS = ("bottleneck", "full", "se")  # "se" is a bottleneck without norm: FC -> ReLU -> FC
NORMS = ("ln", "none")  # the bottleneck's LayerNorm
ACTS = ("relu", "none")  # the bottleneck's activation
FUSIONS = ("add", "scale", "both")  # both: scale, then add

# Each preset is a point of the three-step space. NL fixes its own transform and fusion.
PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "gc": {"context": "att", "transform": "bottleneck", "norm": "ln", "act": "relu", "fusion": "add"},
    "snl": {"context": "att", "transform": "full", "fusion": "add"},
    "se": {"context": "avg", "transform": "bottleneck", "norm": "none", "act": "relu", "fusion": "scale"},
    "nl": {"context": "nl"},
}
BLOCKS = (*PRESETS, "custom")
COMPONENTS = ("context", "transform", "norm", "act", "fusion", "ratio")
DEFAULT_RATIO = 16


def stage_set(value: Any) -> list[str]:
    """A stage set in any form a study file or `inspect --stages` takes: a list (["c3", "c4"]), a comma list
    ("c3,c4") or a range ("c3-c5"), as the stages it names in the backbone's order. ValueError says what is wrong."""
    if isinstance(value, str):
        text = value.replace(" ", "")
        if re.fullmatch(r"c[2-5]-c[2-5]", text):
            lo, hi = STAGES.index(text[:2]), STAGES.index(text[3:])
            if lo > hi:
                raise ValueError(f"empty stage range {value!r}")
            return list(STAGES[lo:hi + 1])
        items = [s for s in text.split(",") if s]
    elif isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        items = list(value)
    else:
        raise ValueError(f"expected a stage list like ['c3', 'c4'] or 'c3,c4' or 'c3-c5', got {value!r}")
    if not items:
        raise ValueError(f"an empty stage set; give stages from {', '.join(STAGES)}")
    for s in items:
        if s not in STAGES:
            raise ValueError(f"the backbone has no stage {s!r} (it has {', '.join(STAGES)})")
    return [s for s in STAGES if s in items]
