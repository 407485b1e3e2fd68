"""A race in the report: each candidate's seeds and why it stopped, and accuracy on the control's seeds.

A race (`[budget] race = true`) gives candidates different numbers of seeds, and seeds differ in their starts
by far more than candidates differ, so a raw mean over a candidate's own seeds would rank its seeds. A race's
rows therefore show and rank the accuracy on the control's seeds: the control's mean plus the candidate's mean
paired difference to it (`study.racing.adjusted_means`, the rule the race itself ranks with).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from gcsearch.contract import RACE_ATTR, Meta
from gcsearch.report.noise import paired_differences
from gcsearch.report.rows import Row
from gcsearch.units import plural

# Why a candidate stopped, in words (study/racing.py's states).
REASONS = {"settled": "on the front, separated from everything cheaper", "equivalent": "within the margin of "
           "a cheaper front member", "dominated": "below a cheaper front member", "cap": "still open at the cap",
           "noisy": "too noisy for the cap to settle", "failed": "a seed failed or was pruned",
           "open": "still racing"}


def race_record(user_attrs: dict[str, Any]) -> dict[str, Any] | None:
    """What the workers recorded after the last round ({"round", "done", "candidates"}); None: no race."""
    value = user_attrs.get(RACE_ATTR)
    return value if isinstance(value, dict) and isinstance(value.get("candidates"), dict) else None


def apply_race(rows: Sequence[Row], baseline: Row | None, user_attrs: dict[str, Any]) -> None:
    """Each row's race state, and its accuracy on the control's seeds (see the module docstring)."""
    record = race_record(user_attrs)
    if record is None:
        return
    for row in rows:
        entry = record["candidates"].get(row.key)
        row.race = str(entry.get("state")) if isinstance(entry, dict) else None
        if baseline is not None and baseline.accuracy is not None and not row.baseline:
            differences = paired_differences(row.by_seed, baseline.by_seed)
            if differences:
                row.accuracy = baseline.accuracy + sum(differences) / len(differences)


def race_line(rows: Sequence[Row], meta: dict[str, Any], user_attrs: dict[str, Any]) -> str | None:
    """One line under the table: the race's trials against the full grid's, and why the candidates stopped."""
    record, settings = race_record(user_attrs), meta.get(Meta.RACE)
    if record is None or not isinstance(settings, dict):
        return None
    cap = int(settings.get("max_repeats", 0))
    seeds = sum(r.n for r in rows)
    why = Counter(r.race for r in rows if not r.baseline and r.race)
    stopped = ", ".join(f"{n} {state}" for state, n in why.most_common())
    status = "done" if record.get("done") else f"round {record.get('round')} under way"
    return (f"race ({status}): {plural(seeds, 'trial')} of the full grid's {len(rows) * cap} ({len(rows)} rows x "
            f"{cap} seeds), margin {settings.get('margin')} pts; candidates: {stopped or 'none yet'}")


# A race's paired noise above this fraction of its margin keeps the true front less often than a grid of the
# cap's seeds (benchmarks/racing.py simulate --noise, BENCHMARKS.md "Racing": true front kept in 100% of studies
# at 0.28 of the margin, 99.8% at 0.42, 96.3% at 0.57 and 81.5% at 0.85, against the grid's 100-99.7% and 95.7%).
NOISE_OVER_MARGIN = 0.5


def race_noise_line(meta: dict[str, Any], paired_std: float | None) -> str | None:
    """A warning when the race's pooled paired noise is large against its margin (NOISE_OVER_MARGIN)."""
    settings = meta.get(Meta.RACE)
    if not isinstance(settings, dict) or paired_std is None:
        return None
    margin = float(settings.get("margin") or 0.0)
    if margin <= 0 or paired_std <= NOISE_OVER_MARGIN * margin:
        return None
    return (f"race: the paired noise ±{paired_std:.2f} pts is {paired_std / margin:.2f} of the margin "
            f"({margin:g} pts), over {NOISE_OVER_MARGIN:g}: candidates stop on 3 seeds as noisy and the front "
            "is less sure than a grid's (simulated: true front kept 96% at 0.57, 81.5% at 0.85); raise "
            "race_margin or max_repeats, or run a grid")


def race_text(user_attrs: dict[str, Any], key: str) -> str | None:
    """One candidate's race, for `gcsearch show`: "2 seeds, dominated (below a cheaper front member: KEY)"."""
    record = race_record(user_attrs)
    entry = record["candidates"].get(key) if record else None
    if not isinstance(entry, dict):
        return None
    state = str(entry.get("state"))
    against = f": {entry['against']}" if entry.get("against") else ""
    return f"{plural(int(entry.get('seeds', 0)), 'seed')}, {state} ({REASONS.get(state, state)}{against})"
