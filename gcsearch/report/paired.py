"""The paired design's part of a report (`[proxy] start = "baseline"` or `"weights"`): the pooled paired noise of
the candidates x seeds table, a row compared with another per seed, the starts the trials fine-tuned from,
and the candidates that are not the identity at insertion. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gcsearch.contract import Attr
from gcsearch.errors import InputError
from gcsearch.report.noise import Comparison, PairedNoise, compare_paired, paired_differences, paired_noise
from gcsearch.report.rows import Row
from gcsearch.space import ArchSpec

NOT_IDENTITY = " †"  # a candidate that does not compute its start's function at insertion (paired design)


def mark_not_identity(rows: Sequence[Row]) -> None:
    """Paired design: mark the candidates whose blocks are not the identity at insertion (SE, scale or both
    fusion: a sigmoid gate halves each branch), since their fine-tune first recovers from that."""
    for row in rows:
        try:
            identity = row.spec is None or ArchSpec.from_dict(row.spec).identity_at_insertion
        except InputError:  # a spec this version cannot read: leave it unmarked
            identity = True
        if not identity:
            row.candidate += NOT_IDENTITY


def paired_prior(rows: Sequence[Row], baseline: Row | None) -> PairedNoise:
    """The study's pooled paired noise: candidates x seeds, the baseline (the control) one of the rows."""
    if baseline is None:
        return paired_noise([], {})
    return paired_noise([r.by_seed for r in rows if not r.baseline], baseline.by_seed)


def compare_rows(row: Row, reference: Row, paired: PairedNoise) -> Comparison:
    differences = paired_differences(row.by_seed, reference.by_seed)
    if not differences:
        return Comparison(delta=row.accuracy - reference.accuracy if row.accuracy is not None
                          and reference.accuracy is not None else 0.0, low=None, high=None, p=None)
    return compare_paired(differences, paired)


def start_files(trials: Sequence[Any]) -> list[str]:
    """The pretrained files the trials started from (`start = "weights"`), with their SHA-256."""
    found = {(str(t.user_attrs[Attr.START]["file"]), str(t.user_attrs[Attr.START].get("sha256", "")))
             for t in trials if isinstance(t.user_attrs.get(Attr.START), dict) and "file" in t.user_attrs[Attr.START]}
    return [f"{name} (sha256 {sha})" for name, sha in sorted(found)]


def starts(trials: Sequence[Any]) -> dict[int, float]:
    """Each seed's start accuracy, as the trials that fine-tuned from it recorded it."""
    out: dict[int, float] = {}
    for t in trials:
        start = t.user_attrs.get(Attr.START)
        if isinstance(start, dict) and isinstance(start.get("seed"), int) and isinstance(start.get("accuracy"),
                                                                                         (int, float)):
            out[start["seed"]] = float(start["accuracy"])
    return dict(sorted(out.items()))
