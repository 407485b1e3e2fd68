"""Candidates in a few words ("gc r16 c3-c5 1x1 all", "baseline") and values as the tables show them."""

from __future__ import annotations

from typing import Any

from gcsearch.space.vocabulary import STAGES

_POSITION_SHORT = {"after_1x1": "1x1", "after_3x3": "3x3", "after_add": "add"}


def short_label(spec: dict[str, Any] | None, fallback: str = "?") -> str:
    """A candidate in a few words: "gc r16 c3-c5 1x1 all", "att/scale r8 noLN c4 add last", "baseline"."""
    if not isinstance(spec, dict) or "block" not in spec:
        return str(fallback)
    block = spec.get("block")
    if block == "none":
        return "baseline"
    if block == "custom":
        parts = [f"{spec.get('context')}/{spec.get('fusion')}"]
        if spec.get("transform") == "full":
            parts.append("full")
    else:
        parts = [str(block)]
    if spec.get("ratio") is not None:
        parts.append(f"r{spec['ratio']}")
    if block == "custom" and spec.get("transform") == "bottleneck":
        if spec.get("norm") == "none":
            parts.append("noLN")
        if spec.get("act") == "none":
            parts.append("noReLU")
    parts.append(stages_short(spec.get("stages")))
    parts.append(_POSITION_SHORT.get(spec.get("position"), str(spec.get("position"))))
    parts.append(str(spec.get("blocks")))
    return " ".join(p for p in parts if p)


def stages_short(stages: Any) -> str:
    if not isinstance(stages, (list, tuple)) or not stages:
        return ""
    idx = [STAGES.index(s) for s in stages if s in STAGES]
    if len(idx) == len(stages) and len(idx) > 2 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{stages[0]}-{stages[-1]}"
    return "+".join(stages)


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)
