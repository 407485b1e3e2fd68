"""Dominance, non-dominated ranks and hypervolume: worked examples, then random points against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gcsearch.pareto import dominates, hypervolume, nondominated_ranks


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((1.0, 2.0), (2.0, 2.0), True),  # better in one, equal in the other
    ((1.0, 2.0), (1.0, 2.0), False),  # equal points do not dominate each other
    ((1.0, 3.0), (2.0, 2.0), False),  # better in one, worse in the other
    ((-70.0, 1e9, 5.0), (-69.0, 1e9, 5.0), True),
])
def test_dominance_needs_no_worse_everywhere_and_better_somewhere(a, b, expected) -> None:
    assert dominates(a, b) is expected


def test_ranks_peel_fronts_and_equal_points_share_one() -> None:
    loss = [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [2.0, 2.0, 3.0], [3.0, 3.0, 3.0], [1.0, 2.0, 3.0]]
    assert nondominated_ranks(loss).tolist() == [1, 1, 2, 3, 1]
    assert nondominated_ranks([[3.0], [1.0], [2.0], [1.0]]).tolist() == [3, 1, 2, 1]
    assert nondominated_ranks(np.zeros((0, 2))).tolist() == []


def test_hypervolume_of_worked_examples() -> None:
    assert hypervolume([[1.0, 3.0], [2.0, 1.0]], [4.0, 4.0]) == 3 * 1 + 2 * 2
    # Boxes up to (4, 4, 4): 3*2*1 + 2*3*1 - 2*2*1 (their overlap) = 8.
    assert hypervolume([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]], [4.0, 4.0, 4.0]) == 8.0
    assert hypervolume([[1.0, 1.0], [2.0, 2.0]], [3.0, 3.0]) == 4.0  # a dominated point adds nothing
    assert hypervolume([[2.0]], [5.0]) == 3.0
    assert hypervolume(np.zeros((0, 3)), [1.0, 1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="reference point"):
        hypervolume([[1.0, 5.0]], [4.0, 4.0])


def union_volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """The union of the boxes [point, reference] by inclusion-exclusion: slow, and plainly right."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = [max(p[d] for p in subset) for d in range(len(reference))]
            total += (-1) ** (k + 1) * float(np.prod([r - c for r, c in zip(reference, corner, strict=True)]))
    return total


def point_sets(dims: int) -> st.SearchStrategy[list[tuple[float, ...]]]:
    coordinate = st.integers(0, 6).map(float)  # few values, so that ties and duplicates are common
    return st.lists(st.tuples(*[coordinate] * dims), min_size=1, max_size=7)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(point_sets))
def test_ranks_agree_with_the_definition(points: list[tuple[float, ...]]) -> None:
    ranks = nondominated_ranks(points)
    for i, p in enumerate(points):
        dominators = [ranks[j] for j, q in enumerate(points) if dominates(q, p)]
        assert ranks[i] == (max(dominators) + 1 if dominators else 1)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(point_sets))
def test_hypervolume_agrees_with_inclusion_exclusion(points: list[tuple[float, ...]]) -> None:
    reference = (7.0,) * len(points[0])
    assert hypervolume(points, reference) == pytest.approx(union_volume(points, reference))
