"""Canonical ArchSpec keys: one candidate, one key, whatever way it was written."""

from __future__ import annotations

import pytest

from gcsearch import ArchSpec
from gcsearch.errors import SpecError


@pytest.mark.parametrize("preset, explicit", [
    ("gc", {"context": "att", "transform": "bottleneck", "norm": "ln", "act": "relu", "fusion": "add"}),
    ("snl", {"context": "att", "transform": "full", "fusion": "add"}),
    ("se", {"context": "avg", "transform": "bottleneck", "norm": "none", "act": "relu", "fusion": "scale"}),
    ("se", {"context": "avg", "transform": "se", "fusion": "scale"}),
    ("nl", {"context": "nl"}),
])
def test_presets_equal_their_explicit_components(preset: str, explicit: dict) -> None:
    a = ArchSpec(backbone="resnet50", block=preset, ratio=16)
    b = ArchSpec(backbone="resnet50", block="custom", ratio=16, **explicit)
    assert a == b and a.key == b.key and hash(a) == hash(b)
    assert b.block == preset


def test_block_none_ignores_everything_a_block_would_use() -> None:
    keys = {ArchSpec(backbone="resnet50", block="none", ratio=r, stages=s, position=p).key
            for r in (4, 8, 16, 32) for s in (("c3",), ("c2", "c5")) for p in ("after_1x1", "after_add")}
    assert len(keys) == 1
    assert ArchSpec(backbone="resnet50", block="none", ratio=4) == ArchSpec(backbone="resnet50", block="none")


def test_order_and_spelling_do_not_matter() -> None:
    a = ArchSpec(block="gc", stages=("c5", "c3", "c4"))
    assert a.key == ArchSpec(block="gc", stages="c3,c4,c5").key == ArchSpec(block="gc", stages=["c4", "c3", "c5"]).key
    assert ArchSpec.from_json(a.to_json()) == a
    # NL and SNL have no ratio: a given ratio does not split them
    assert ArchSpec(block="nl", ratio=4).key == ArchSpec(block="nl", ratio=16).key
    assert ArchSpec(block="snl", ratio=4).key == ArchSpec(block="snl").key


def test_different_candidates_get_different_keys() -> None:
    specs = [ArchSpec(block="gc", ratio=r) for r in (4, 16)]
    specs += [ArchSpec(block="gc", position=p) for p in ("after_3x3", "after_add")]
    specs += [ArchSpec(block="gc", blocks="last"), ArchSpec(block="se"), ArchSpec(block="none"),
              ArchSpec(backbone="proxy", width=32, block="gc"), ArchSpec(backbone="resnet50", block="gc")]
    assert len({s.key for s in specs}) == len(specs)


@pytest.mark.parametrize("kwargs, field", [
    ({"block": "gc", "ratio": 64}, "ratio"),
    ({"block": "gc", "stages": ("c6",)}, "stages"),
    ({"block": "foo"}, "block"),
    ({"block": "gc", "position": "middle"}, "position"),
    ({"backbone": "resnet50", "width": 32}, "width"),
])
def test_invalid_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError, match=f"^{field}: "):
        ArchSpec(**kwargs)
