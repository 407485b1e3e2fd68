"""Pareto dominance, non-dominated ranks and hypervolume: the one implementation the run, pruning and report use.

Every function takes losses: lower is better in every coordinate (negate an accuracy before passing it).
A point dominates another when it is no worse in every coordinate and better in at least one; equal points do
not dominate each other and share a rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether loss vector `a` dominates `b`: no worse anywhere, better somewhere."""
    if any(x > y for x, y in zip(a, b, strict=True)):
        return False
    return any(x < y for x, y in zip(a, b, strict=True))


def nondominated_ranks(loss: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Non-dominated sorting: rank 1 for the Pareto front, rank 2 for the front of the rest, and so on.

    Equal points share a rank. The points are sorted once (lexicographically, duplicates merged) and fronts
    are peeled off the sorted array; in that order no point can dominate one before it.
    """
    loss = np.asarray(loss, dtype=float)
    if loss.size == 0:
        return np.zeros(0, dtype=int)
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)
    ranks = np.zeros(len(unique), dtype=int)
    remaining = np.arange(len(unique))
    rank = 0
    while remaining.size:
        rank += 1
        on_front = _front_of_sorted(unique[remaining])
        ranks[remaining[on_front]] = rank
        remaining = remaining[~on_front]
    return ranks[inverse.reshape(-1)]


def _front_of_sorted(points: np.ndarray) -> np.ndarray:
    """Which of lexicographically sorted, distinct points are on their front."""
    n, dims = points.shape
    if dims == 1:
        return np.arange(n) == 0
    if dims == 2:  # the first coordinate only grows: on the front exactly when the second one drops
        running_min = np.minimum.accumulate(points[:, 1])
        on_front = np.ones(n, dtype=bool)
        on_front[1:] = running_min[1:] < running_min[:-1]
        return on_front
    on_front = np.zeros(n, dtype=bool)
    candidates = np.arange(n)
    while candidates.size:
        # The first candidate left is on the front (nothing after it can dominate it); drop what it dominates.
        top = candidates[0]
        on_front[top] = True
        candidates = candidates[np.any(points[candidates, 1:] < points[top, 1:], axis=1)]
    return on_front


def hypervolume(loss: np.ndarray | Sequence[Sequence[float]], reference: np.ndarray | Sequence[float]) -> float:
    """The volume that the points dominate, bounded by `reference` (which no point may exceed).

    Exact: in two dimensions a sweep over the front; in more, slices along the last coordinate, each slab's
    volume being the hypervolume of the points below it in one dimension less.
    """
    loss = np.asarray(loss, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if loss.size == 0:
        return 0.0
    if np.any(loss > reference):
        raise ValueError("the reference point must be worse than every point in every coordinate")
    unique = np.unique(loss, axis=0)
    return float(_volume(unique[_front_of_sorted(unique)], reference))


def _volume(front: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of lexicographically sorted points on their front."""
    dims = front.shape[1]
    if dims == 1:
        return float(reference[0] - front[0, 0])
    if dims == 2:
        # Rectangles between consecutive points: width to the reference, height down from the previous point.
        widths = reference[0] - front[:, 0]
        heights = np.concatenate([reference[1:], front[:-1, 1]]) - front[:, 1]
        return float(widths @ heights)
    order = np.argsort(front[:, -1], kind="stable")
    levels = np.append(front[order, -1], reference[-1])
    total = 0.0
    for i in range(len(order)):
        thickness = levels[i + 1] - levels[i]
        if thickness <= 0:
            continue
        below = np.unique(front[order[: i + 1], :-1], axis=0)
        total += thickness * _volume(below[_front_of_sorted(below)], reference[:-1])
    return total
