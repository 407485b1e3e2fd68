"""The categorical block values of the search space, shared by the combination and FLOP tests."""

from __future__ import annotations

import itertools

from gcsearch.space.vocabulary import ACTS, CONTEXTS, FUSIONS, NORMS, TRANSFORMS

RATIOS = (4, 8, 16, 32)


def block_values() -> list[dict]:
    """Every block: presets and every custom point (pooling x transform x norm x act x fusion x ratio)."""
    out = [{"block": b} for b in ("none", "gc", "snl", "se", "nl")]
    for context, transform, norm, act, fusion, ratio in itertools.product(
            CONTEXTS, TRANSFORMS, NORMS, ACTS, FUSIONS, RATIOS):
        out.append({"block": "custom", "context": context, "transform": transform, "norm": norm, "act": act,
                    "fusion": fusion, "ratio": ratio})
    return out
