"""Counts written for people: 2.26M FLOPs, 177.28k params, 4.112G. One rule, with the digits each place needs."""

from __future__ import annotations


def si(value: float, digits: str = ".2f", *, kilo: str = "k", small: str = ".0f") -> str:
    """`value` scaled to G, M or `kilo` and formatted with `digits` ("2.26M"); below a thousand, with `small`."""
    for unit, scale in (("G", 1e9), ("M", 1e6), (kilo, 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:{digits}}{unit}"
    return f"{value:{small}}"


def prefix_for(value: float) -> tuple[float, str]:
    """The SI prefix a column whose largest value is `value` is written in, and its scale: (1e6, "M")."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return scale, prefix
    return 1.0, ""


def plural(n: int, word: str) -> str:
    """"1 seed", "3 seeds": `n` and `word`, with an s unless n is 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"
