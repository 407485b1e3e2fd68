"""ArchSpec: one candidate backbone, described as data.

A candidate is a backbone plus a context block (context modeling -> transform -> fusion) placed at
some stages and positions. Construction canonicalizes: components that a block does not use are
dropped, stages are sorted, and a preset's name is recovered from explicit components. Two specs
that build the same model therefore compare equal and share one `key`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from gcsearch.errors import SpecError, not_positive_int
from gcsearch.space.vocabulary import (
    ACTS,
    BACKBONES,
    BLOCK_SETS,
    BLOCKS,
    COMPONENTS,
    CONTEXTS,
    DEFAULT_RATIO,
    FUSIONS,
    MAX_DEPTH,
    MAX_WIDTH,
    NORMS,
    POSITIONS,
    PRESETS,
    TRANSFORMS,
    block_channels,
    stage_set,
)


@dataclass(frozen=True)
class ArchSpec:
    """A candidate architecture. Every instance is canonical; compare with `==` or `.key`."""

    backbone: str = "proxy"
    width: int | None = None
    depth: tuple[int, ...] | None = None
    block: str = "gc"
    context: str | None = None
    transform: str | None = None
    norm: str | None = None
    act: str | None = None
    fusion: str | None = None
    ratio: int | None = None
    stages: tuple[str, ...] | None = ("c3", "c4", "c5")
    position: str | None = "after_1x1"
    blocks: str | None = "all"

    def __post_init__(self) -> None:
        for name, value in _canonical(self).items():
            object.__setattr__(self, name, value)

    # -- identity -------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """A short stable hash of the canonical form: the candidate's identity across runs."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:16]

    @property
    def has_blocks(self) -> bool:
        return self.block != "none"

    @property
    def baseline(self) -> ArchSpec:
        """The same backbone with block none: what a block's cost is measured against, and a paired start."""
        return ArchSpec(backbone=self.backbone, width=self.width, depth=self.depth, block="none")

    @property
    def identity_at_insertion(self) -> bool:
        """Whether the network computes its block-less network's function before training: each block's last
        layer starts at zero, so an added block (add fusion, NL's zero-scaled output) adds nothing, while a
        scaling one multiplies by sigmoid(0) = 1/2 (SE, scale and both fusion). A fine-tune from a trained start
        measures the first kind's effect; the second kind's starts by recovering from the halving."""
        return self.block == "none" or self.context == "nl" or self.fusion == "add"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("depth", "stages"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        if not isinstance(data, dict):
            raise SpecError("spec", f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for name in data:
            if name not in known:
                raise SpecError(str(name), f"unknown field (known: {', '.join(sorted(known))})")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError("spec", f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    # -- presentation ---------------------------------------------------------------------
    def block_label(self) -> str:
        """The block alone, short: 'gc r16', 'se r4', 'custom att/bottleneck-none-relu/scale r8'."""
        if self.block == "none":
            return "none"
        if self.block == "custom":
            transform = self.transform or "-"
            if self.transform == "bottleneck":
                transform = f"bottleneck-{self.norm}-{self.act}"
            name = f"{self.context}/{transform}/{self.fusion}"
        else:
            name = self.block
        return f"{name} r{self.ratio}" if self.ratio is not None else name

    def label(self) -> str:
        """One readable line: block, stages, position, which residual blocks."""
        if self.block == "none":
            return "none (baseline)"
        stages = "+".join(self.stages or ())
        return f"{self.block_label()} @ {stages} {self.position} {self.blocks}"


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ArchSpec))  # in the order a report shows them


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpecError(field, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _positive_int(field: str, value: Any, maximum: int | None = None) -> int:
    """A count from JSON, TOML or a command line: 4, 4.0 and "4" are all 4."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    why = not_positive_int(value, maximum)
    if why is not None:
        raise SpecError(field, why)
    return value


def _stages(value: Any) -> tuple[str, ...]:
    try:
        return tuple(stage_set(value))
    except ValueError as exc:
        raise SpecError("stages", str(exc)) from None


def _canonical(spec: ArchSpec) -> dict[str, Any]:
    """Validate every field and return the canonical values."""
    backbone = _choice("backbone", spec.backbone, tuple(BACKBONES))
    cfg = BACKBONES[backbone]
    out: dict[str, Any] = {"backbone": backbone}

    if cfg.resizable:
        out["width"] = cfg.width if spec.width is None else _positive_int("width", spec.width, MAX_WIDTH)
        depth = cfg.depth if spec.depth is None else spec.depth
        if isinstance(depth, (int, str)) and not isinstance(depth, bool):
            depth = [depth] * 4 if isinstance(depth, int) else depth.split(",")
        if not isinstance(depth, (list, tuple)) or len(depth) != 4:
            raise SpecError("depth", f"expected four residual-block counts (c2..c5), got {depth!r}")
        out["depth"] = tuple(_positive_int("depth", d, MAX_DEPTH) for d in depth)
    else:
        for name, fixed in (("width", cfg.width), ("depth", cfg.depth)):
            given = getattr(spec, name)
            if isinstance(given, list):
                given = tuple(given)
            if given is not None and given != fixed:
                raise SpecError(name, f"{backbone} has a fixed {name}; only proxy backbones take one")
        out["width"] = None
        out["depth"] = None

    block = _choice("block", spec.block, BLOCKS)
    empty = dict.fromkeys((*COMPONENTS, "stages", "position", "blocks"))
    if block == "none":
        return {**out, "block": "none", **empty}

    # A preset supplies the components the caller did not give; explicit ones override it.
    base = PRESETS.get(block, PRESETS["gc"])
    given = {name: getattr(spec, name) for name in COMPONENTS if getattr(spec, name) is not None}
    comp = {**base, **given}
    context = _choice("context", comp.get("context"), CONTEXTS)
    placement = {
        "stages": _stages(spec.stages),
        "position": _choice("position", spec.position, POSITIONS),
        "blocks": _choice("blocks", spec.blocks, BLOCK_SETS),
    }
    if context == "nl":
        # The non-local block has a fixed inner width (C/2), transform and residual fusion.
        resolved = {**dict.fromkeys(COMPONENTS), "context": "nl"}
    else:
        transform = _choice("transform", comp.get("transform"), TRANSFORMS)
        if transform == "se":  # SE's transform is a bottleneck without norm: FC -> ReLU -> FC
            transform, comp["norm"], comp["act"] = "bottleneck", "none", "relu"
        fusion = _choice("fusion", comp.get("fusion"), FUSIONS)
        resolved = {"context": context, "transform": transform, "fusion": fusion}
        if transform == "bottleneck":
            resolved["norm"] = _choice("norm", comp.get("norm", "ln"), NORMS)
            resolved["act"] = _choice("act", comp.get("act", "relu"), ACTS)
            ratio = _positive_int("ratio", comp.get("ratio", DEFAULT_RATIO))
            width = out["width"] or cfg.width
            narrowest = min(block_channels(cfg.kind, width, s, placement["position"]) for s in placement["stages"])
            if narrowest // ratio < 1:
                raise SpecError("ratio", f"ratio {ratio} leaves no channel in a block of {narrowest} channels")
            resolved["ratio"] = ratio
        else:
            resolved.update(norm=None, act=None, ratio=None)
    name = next((n for n, p in PRESETS.items() if p and all(resolved.get(k) == v for k, v in p.items())
                 and all(resolved[k] is None for k in ("norm", "act") if k not in p)), "custom")
    return {**out, "block": name, **resolved, **placement}
