"""Every combination of the categorical values builds on a proxy backbone and trains one step with finite values.

The block a spec makes depends on (block values, channels); where it sits depends on (position, blocks, stages).
So the product is covered on `proxy` by two exhaustive sweeps that share the positions (every block x every
position at every stage, every placement x every preset), on `proxy_bottleneck` by every placement of GC and
NL, and on both by random draws from the full product.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from block_space import block_values
from hypothesis import given, settings
from hypothesis import strategies as st

from gcsearch import ArchSpec, build_model
from gcsearch.model.blocks import ContextBlock, NonLocalBlock
from gcsearch.space.vocabulary import BLOCK_SETS, POSITIONS

BACKBONES = ("proxy", "proxy_bottleneck")
STAGE_SETS = (("c2",), ("c4",), ("c3", "c4", "c5"), ("c2", "c3", "c4", "c5"))
# width 32 so that ratio 32 leaves a channel at c2; depth 2 in c3 so that 'last' differs from 'all'
WIDTH, DEPTH = 32, (1, 2, 1, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


def distinct_specs(backbone: str, position: str, blocks: str, stages: tuple[str, ...]) -> list[ArchSpec]:
    seen: dict[str, ArchSpec] = {}
    for values in block_values():
        spec = ArchSpec(backbone=backbone, width=WIDTH, depth=DEPTH, stages=stages, position=position, blocks=blocks,
                        **values)
        seen.setdefault(spec.key, spec)
    return list(seen.values())


def train_step(spec: ArchSpec) -> None:
    torch.manual_seed(0)
    model = build_model(spec, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out, torch.tensor([1, 7]))
    loss.backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all(), spec.label()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{spec.label()}: {name}"
    expected = 0 if not spec.has_blocks else sum(
        (DEPTH[i] if spec.blocks == "all" else 1) for i, s in enumerate(("c2", "c3", "c4", "c5")) if s in spec.stages)
    blocks = model.context_blocks()
    assert len(blocks) == expected, spec.label()
    kind = NonLocalBlock if spec.context == "nl" else ContextBlock
    assert all(isinstance(b, kind) for _, b in blocks)


def test_the_block_space_has_the_expected_size() -> None:
    specs = distinct_specs("proxy", "after_1x1", "all", STAGE_SETS[-1])
    # none + nl + att/avg x (bottleneck: 2 norms x 2 acts x 4 ratios + full) x 3 fusions
    assert len(specs) == 1 + 1 + 2 * (2 * 2 * 4 + 1) * 3 == 104


@pytest.mark.parametrize("position", POSITIONS)
def test_every_block_at_every_position(position: str) -> None:
    for spec in distinct_specs("proxy", position, "all", STAGE_SETS[-1]):
        train_step(spec)


@pytest.mark.parametrize("backbone, presets",
                         [("proxy", ("gc", "se", "snl", "nl")), ("proxy_bottleneck", ("gc", "nl"))])
def test_every_placement(backbone: str, presets: tuple[str, ...]) -> None:
    for position, blocks, stages in itertools.product(POSITIONS, BLOCK_SETS, STAGE_SETS):
        for block in presets:
            train_step(ArchSpec(backbone=backbone, width=WIDTH, depth=DEPTH, block=block, ratio=32 if block == "gc"
                                else None, stages=stages, position=position, blocks=blocks))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(backbone=st.sampled_from(BACKBONES), values=st.sampled_from(block_values()),
       position=st.sampled_from(POSITIONS), blocks=st.sampled_from(BLOCK_SETS), stages=st.sampled_from(STAGE_SETS))
def test_random_points_of_the_full_product(backbone, values, position, blocks, stages) -> None:
    train_step(ArchSpec(backbone=backbone, width=WIDTH, depth=DEPTH, position=position, blocks=blocks, stages=stages,
                        **values))
