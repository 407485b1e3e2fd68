"""The ablation view: one row per value of a spec dimension (baseline first), pooling the trials of every
candidate that has that value; chosen automatically when exactly one dimension varies among the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gcsearch.report.labels import format_value
from gcsearch.report.rows import Row, mean, mean_std, seed_means, set_deltas
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.space.vocabulary import (
    BACKBONES,
    BLOCK_SETS,
    BLOCKS,
    COMPONENTS,
    CONTEXTS,
    FUSIONS,
    NORMS,
    POSITIONS,
    STAGES,
)

_ORDER: dict[str, Sequence[Any]] = {
    "backbone": tuple(BACKBONES), "block": BLOCKS, "context": CONTEXTS, "transform": ("bottleneck", "full"),
    "norm": NORMS, "act": ("relu", "none"), "fusion": FUSIONS, "position": POSITIONS, "blocks": BLOCK_SETS,
}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _value_sort_key(dim: str, value: Any) -> tuple:
    if value is None:
        return (2, 0, "")
    order = _ORDER.get(dim)
    if order is not None and value in order:
        return (0, order.index(value), "")
    if dim == "stages" and isinstance(value, tuple):
        return (0, len(value), "".join(str(STAGES.index(s)) if s in STAGES else s for s in value))
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value))


def varying_dimension(rows: Sequence[Row]) -> str | None:
    """The one spec dimension that tells the non-baseline candidates apart, if there is exactly one.

    A dimension varies when it takes more than one value (None, "not used by this block", does not count).
    Presets differ in several components at once, so when the block varies the components count only for
    custom blocks. The candidates and the values must match one to one.
    """
    specs = [r.spec for r in rows if not r.baseline]
    if len(specs) < 2 or any(s is None for s in specs):
        return None
    varying = [d for d in SPEC_FIELDS if len({_hashable(s.get(d)) for s in specs} - {None}) > 1]
    if "block" in varying and len(varying) > 1 and set(varying) - {"block"} <= set(COMPONENTS):
        components = [d for d in varying if d != "block"]
        custom = any(s.get("block") == "custom" for s in specs)
        varying = components if custom and len(components) == 1 else ["block"]
    if len(varying) != 1:
        return None
    dim = varying[0]
    values = [_hashable(s.get(dim)) for s in specs]
    return dim if len(set(values)) == len(values) else None


def ablation_rows(rows: Sequence[Row], dim: str, baseline: Row | None) -> list[Row]:
    """One row per value of `dim` (trials of all candidates with that value pooled), baseline first."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        if row.baseline:
            continue
        groups.setdefault(_hashable((row.spec or {}).get(dim)), []).append(row)
    out = []
    if baseline is not None:
        base = _pool([baseline], key=baseline.key)
        base.value, base.value_order = None, -1
        out.append(base)
    for order, value in enumerate(sorted(groups, key=lambda v: _value_sort_key(dim, v))):
        members = groups[value]
        pooled = _pool(members, key=f"{dim}={format_value(value)}")
        pooled.value = list(value) if isinstance(value, tuple) else value
        pooled.value_order = order
        if len(members) > 1:
            pooled.candidate = f"{dim} {format_value(value)} ({len(members)} candidates)"
        set_deltas(pooled, baseline)
        out.append(pooled)
    return out


def _pool(members: Sequence[Row], key: str) -> Row:
    if len(members) == 1:
        src = members[0]
        row = Row(**{k: getattr(src, k) for k in src.__dataclass_fields__})
        row.trials, row.reused, row.violated = list(src.trials), list(src.reused), list(src.violated)
        return row
    accuracies = [a for m in members for a in m.accuracies]
    acc, std = mean_std(accuracies)
    ranks = [m.rank for m in members if m.rank is not None]
    spec = _common_spec([m.spec for m in members])
    row = Row(key=key, candidate=key, label=key, spec=spec,
              trials=sorted(t for m in members for t in m.trials), reused=sorted(t for m in members for t in m.reused),
              n=len(accuracies), candidates=len(members), accuracy=acc, accuracy_std=std,
              flops=mean(m.flops for m in members), params=mean(m.params for m in members),
              latency_ms=mean(m.latency_ms for m in members), block_flops=mean(m.block_flops for m in members),
              block_params=mean(m.block_params for m in members),
              train_seconds=mean(m.train_seconds for m in members),
              feasible=all(m.feasible for m in members), violated=sorted({v for m in members for v in m.violated}),
              rank=min(ranks) if ranks else None, pareto=any(m.pareto for m in members), accuracies=accuracies,
              by_seed=seed_means((seed, value) for m in members for seed, value in m.by_seed.items()))
    return row


def _common_spec(specs: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The fields all specs share (others None): what an ablation row stands for."""
    if not specs or any(s is None for s in specs):
        return None
    first = specs[0]
    return {k: (v if all(s.get(k) == v for s in specs) else None) for k, v in first.items()}
