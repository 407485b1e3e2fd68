"""Whether a study's results are results: the candidates whose accuracy cannot be told from guessing
(`gcsearch.training.chance`), said above the table and in JSON's header."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gcsearch.units import plural

if TYPE_CHECKING:
    from gcsearch.report.build import Report
    from gcsearch.report.rows import Row


def at_chance(report: Report) -> list[Row]:
    """The finished candidates whose mean accuracy is at chance level."""
    if report.chance is None:
        return []
    return [r for r in report.candidates if report.chance.at_chance(r.accuracy)]


def chance_header(report: Report) -> dict[str, Any] | None:
    """JSON's `chance`: the level, the ceiling, and the candidates at chance (their keys)."""
    if report.chance is None:
        return None
    low = at_chance(report)
    return {**report.chance.to_dict(), "candidates_at_chance": [r.key for r in low],
            "all_at_chance": bool(low) and len(low) == len(report.candidates)}


def chance_lines(report: Report) -> list[str]:
    """Nothing when every candidate is above chance; else the chance level and who is at it."""
    low = at_chance(report)
    if not low or report.chance is None:
        return []
    if len(low) == len(report.candidates):
        verdict = ("at chance: every candidate; the proxy learned nothing, so neither the ranks nor the front mean "
                   "anything (train longer, or on more or larger images)")
    else:
        names = ", ".join(r.candidate for r in low[:5]) + (", ..." if len(low) > 5 else "")
        verdict = f"at chance: {names} ({len(low)} of {plural(len(report.candidates), 'candidate')})"
    return [report.chance.describe(), verdict]
