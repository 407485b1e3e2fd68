"""A study and its trials as the reader hands them out, and the decoding of Optuna's stored values into them."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from gcsearch.contract import Meta, feasible, objective_names, proxy_settings, study_meta

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
CONSTRAINTS_KEY = "constraints"  # Optuna's system-attribute key: "constraints:<name>" (and an old list form)


@dataclass
class TrialRecord:
    """One trial as stored: state, objective values, user attributes, constraints."""

    number: int
    trial_id: int
    state: str
    values: list[float] | None
    user_attrs: dict[str, Any]
    constraints: dict[str, float]
    datetime_start: dt.datetime | None = None
    datetime_complete: dt.datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return feasible(self.constraints)

    @property
    def duration_s(self) -> float | None:
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()


@dataclass
class StudySummary:
    """A study at a glance: trial counts by state and the time of the last change."""

    name: str
    study_id: int
    directions: list[str]
    counts: dict[str, int]
    last_update: dt.datetime | None
    user_attrs: dict[str, Any]

    @property
    def n_trials(self) -> int:
        return sum(self.counts.values())

    @property
    def meta(self) -> dict[str, Any]:
        """The study's metadata (`gcsearch.contract.Meta`; {} for a study not written by gcsearch)."""
        return study_meta(self.user_attrs)


@dataclass
class StudyData:
    """A study and its trials, read in one pass."""

    summary: StudySummary
    trials: list[TrialRecord]
    storage: str

    @property
    def name(self) -> str:
        return self.summary.name


def constraints_from_system_attrs(system_attrs: dict[str, Any]) -> dict[str, float]:
    """Constraint values as Optuna stores them: "constraints:<name>" keys, or the older list under "constraints"."""
    out: dict[str, float] = {}
    old = system_attrs.get(CONSTRAINTS_KEY)
    if isinstance(old, list):
        out.update({str(i): float(v) for i, v in enumerate(old)})
    prefix = CONSTRAINTS_KEY + ":"
    for key, value in system_attrs.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = float(value)
    return out


def parse_datetime(value: Any) -> dt.datetime | None:
    """Optuna stores naive UTC; return an aware UTC datetime (SQLite hands back text)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
    return None


def stored_value(value: float | None, value_type: Any) -> float:
    kind = str(value_type).upper()
    if kind.endswith("INF_POS"):
        return math.inf
    if kind.endswith("INF_NEG"):
        return -math.inf
    if kind.endswith("NAN") or value is None:
        return math.nan
    return float(value)


def loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def loads_cached(text: str | None, cache: dict[str, Any]) -> Any:
    # Specs, labels and version dicts repeat across trials; decoding each distinct string once is cheaper.
    # Only short strings are cached, and lists/dicts are shared read-only by the report.
    if text is None or len(text) > 2048:
        return loads(text)
    try:
        return cache[text]
    except KeyError:
        value = cache[text] = loads(text)
        return value


def summary_dict(s: StudySummary) -> dict[str, Any]:
    """A study's summary as `gcsearch studies --json` prints it."""
    meta = s.meta
    names = objective_names(meta)
    return {
        "name": s.name, "trials": s.n_trials, "counts": {k.lower(): v for k, v in s.counts.items()},
        "dataset": proxy_settings(meta).get("dataset"), "backbone": meta.get(Meta.BACKBONE),
        "objectives": names or [d.lower() for d in s.directions], "directions": [d.lower() for d in s.directions],
        "last_update": s.last_update.isoformat() if s.last_update else None,
    }
