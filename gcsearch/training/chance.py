"""Chance level: the accuracy of a model that learned nothing, and how far above it a result must be to count.

A proxy too short or too small to learn anything still gives every trial an accuracy, near 1 / classes; ranked
and put on a front, those numbers look like results. A validation accuracy measured on n images by a model that
guesses has a standard error of sqrt(p (1 - p) / n) around p = 1 / classes, so a result within
`CHANCE_SIGMAS` standard errors of p (or below it) cannot be told from guessing. Torch-free: `run` and `report`
both say it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CHANCE_SIGMAS = 3.0  # one-sided, a guessing model exceeds p + 3 standard errors about once in 740 trials


@dataclass(frozen=True)
class Chance:
    """The chance level of a proxy task: `classes` balanced classes, validated on `val_size` images."""

    classes: int
    val_size: int

    @property
    def level(self) -> float:
        """Accuracy in % of guessing one class at random."""
        return 100.0 / self.classes

    @property
    def ceiling(self) -> float:
        """Accuracy in % at or below which a result cannot be told from guessing."""
        p = 1.0 / self.classes
        return 100.0 * (p + CHANCE_SIGMAS * math.sqrt(p * (1.0 - p) / self.val_size))

    def at_chance(self, accuracy: float | None) -> bool:
        return accuracy is not None and math.isfinite(accuracy) and accuracy <= self.ceiling

    def describe(self) -> str:
        """`chance level 20% (5 classes); at most 23.79% is at chance (3 standard errors on 1,000 images)`."""
        return (f"chance level {self.level:.4g}% ({self.classes} classes); at most {self.ceiling:.2f}% is at chance "
                f"({CHANCE_SIGMAS:g} standard errors of guessing on {self.val_size:,} validation images)")

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "ceiling": self.ceiling, "classes": self.classes, "val_size": self.val_size}


def chance_of(classes: Any, val_size: Any) -> Chance | None:
    """The chance level of a study's proxy, None when its metadata lacks the number of classes."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (classes, val_size))
    return Chance(int(classes), int(val_size)) if ok and int(classes) >= 2 else None
