"""`gcsearch analyze`'s work: a trial's trained model run on its study's validation images, the GCNet paper's
measurement taken per block (model/attention.py) and averaged per stage."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gcsearch.contract import proxy_settings
from gcsearch.errors import InputError
from gcsearch.storage.records import StudySummary, TrialRecord

if TYPE_CHECKING:
    from gcsearch.model.weights import Weights

# The paper's figures (GCNet, Table 1): a trained NL block's mean cosine distances (input, attention, output).
PAPER = {"COCO, Mask R-CNN": (0.401, 0.020, 0.012), "ImageNet": (0.358, 0.004, 0.003)}


def analyze_trial(summary: StudySummary, record: TrialRecord, weights: Weights, *, images: int | None = None,
                  data_dir: str | None = None, keep_maps: int = 0) -> tuple[dict[str, Any], Any, list[Any]]:
    """The figures of one trial (what `--json` prints), the images measured on (uint8) and the per-block stats.

    InputError for a trial whose model has no context or NL block: there is nothing to measure.
    """
    label = weights.spec.label()
    if weights.spec.block == "none":
        raise InputError(f"trial {record.number} ({label}) has no context or NL block: nothing to analyze; "
                         f"pick a trial with one (gcsearch report -s {summary.name} --all)")
    from gcsearch.model.attention import analyze_model, normalized
    from gcsearch.training.config import ProxyConfig
    from gcsearch.training.data import load_data

    settings = proxy_settings(summary.meta)
    if not settings:
        raise InputError(f"study {summary.name!r} holds no proxy settings: not a gcsearch study")
    cfg = ProxyConfig.from_dict({**settings, **({"data_dir": data_dir} if data_dir else {})})
    data = load_data(cfg, "cpu")
    x = data.x_val[:images] if images else data.x_val
    model = weights.build()
    started = time.perf_counter()
    stats = analyze_model(model, normalized(x, weights.info.get("mean") or data.mean,
                                            weights.info.get("std") or data.std), keep_maps=keep_maps)
    seconds = time.perf_counter() - started
    rows = [s.row() for s in stats]
    result = {"study": summary.name, "trial": record.number, "label": label, "images": int(x.shape[0]),
              "seconds": round(seconds, 3), "blocks": rows, "stages": stage_means(rows),
              "paper_nl": {k: dict(zip(("input", "attention", "output"), v, strict=True)) for k, v in PAPER.items()}}
    return result, x, stats


def stage_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks' figures averaged per stage and kind of block."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["kind"]), []).append(row)
    out = []
    for (stage, kind), members in groups.items():
        mean = {k: (sum(m[k] for m in members) / len(members) if all(m[k] is not None for m in members) else None)
                for k in ("input", "attention", "output", "entropy")}
        out.append({"stage": stage, "kind": kind, "blocks": len(members), **mean})
    return out
