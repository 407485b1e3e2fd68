"""FLOPs and params: fvcore's count for torchvision's resnet50, exact block costs, nothing free, the cache."""

from __future__ import annotations

import json

import pytest
import torch
from block_space import block_values
from torch import nn

from gcsearch import ArchSpec, build_model, measure
from gcsearch.errors import InputError
from gcsearch.model.cost import Measurement, clear_cache, count_flops
from gcsearch.model.resnet import create_block

pytestmark = pytest.mark.usefixtures("one_thread")


RESNET50_FLOPS = 4_111_512_576  # fvcore, torchvision resnet50, eval mode, 1x3x224x224
RESNET50_PARAMS = 25_557_032
RESNET50_STAGES = {"c2": (256, 56, 3), "c3": (512, 28, 4), "c4": (1024, 14, 6), "c5": (2048, 7, 3)}


@pytest.fixture(scope="module")
def resnet50() -> Measurement:
    return measure(ArchSpec(backbone="resnet50", block="none"), input_size=(3, 224, 224), num_classes=1000)


@pytest.fixture(scope="module")
def resnet50_gc() -> Measurement:
    return measure(ArchSpec(backbone="resnet50", block="gc", ratio=16, stages=("c3", "c4", "c5")),
                   input_size=(3, 224, 224), num_classes=1000)


def gc_flops(c: int, hw: int, ratio: int) -> int:
    """conv_mask C*HW + softmax HW + pooling product C*HW + fc1 C*P + LayerNorm 5P + fc2 P*C + add C*HW."""
    p = c // ratio
    return 3 * c * hw + hw + 2 * c * p + 5 * p


def test_resnet50_matches_fvcore_on_torchvision(resnet50: Measurement) -> None:
    assert resnet50.params == RESNET50_PARAMS
    assert abs(resnet50.flops - RESNET50_FLOPS) <= 0.01 * RESNET50_FLOPS
    assert resnet50.flops == RESNET50_FLOPS  # the same layers, counted the same way
    assert resnet50.block_params == resnet50.block_flops == 0
    assert [s["output_size"] for s in resnet50.stages.values()] == [(256, 56, 56), (512, 28, 28), (1024, 14, 14),
                                                                    (2048, 7, 7)]
    assert [s["depth"] for s in resnet50.stages.values()] == [3, 4, 6, 3]


def test_resnet50_gc_r16_costs_exactly_the_formulas(resnet50: Measurement, resnet50_gc: Measurement) -> None:
    params = flops = 0
    for stage in ("c3", "c4", "c5"):
        c, side, n = RESNET50_STAGES[stage]
        p = c // 16
        s = resnet50_gc.stages[stage]
        assert s["blocks"] == n and s["channels"] == c
        assert s["block_params"] == n * (2 * c + 1 + 2 * c * p + 3 * p)
        assert s["block_flops"] == n * gc_flops(c, side * side, 16)
        assert s["flops"] == resnet50.stages[stage]["flops"] + s["block_flops"]
        params += s["block_params"]
        flops += s["block_flops"]
    assert resnet50_gc.stages["c2"]["block_flops"] == resnet50_gc.stages["c2"]["blocks"] == 0
    assert resnet50_gc.block_params == params == resnet50_gc.params - RESNET50_PARAMS == 2_521_741
    assert resnet50_gc.block_flops == flops == resnet50_gc.flops - RESNET50_FLOPS == 11_832_043
    assert sum(b["flops"] for b in resnet50_gc.per_block) == flops
    assert [b["name"] for b in resnet50_gc.per_block][:5] == ["c3.0.context", "c3.1.context", "c3.2.context",
                                                              "c3.3.context", "c4.0.context"]
    # "about 0.3% of ResNet-50's multiply-adds"
    assert resnet50_gc.block_flops_share == pytest.approx(0.0029, abs=0.0002)


def blocks_at(spec: ArchSpec, size: int, stage: str = "c4") -> dict:
    m = measure(spec, input_size=(3, size, size), num_classes=10)
    assert len(m.per_block) == 1 and m.per_block[0]["stage"] == stage
    return {**m.per_block[0], "hw": m.stages[stage]["output_size"][1] * m.stages[stage]["output_size"][2],
            "block_flops": m.block_flops, "block_params": m.block_params}


def test_each_kind_of_block_costs_its_formula() -> None:
    one = {"backbone": "proxy", "stages": ("c4",), "blocks": "last"}  # one block at c4, 64 channels
    gc = blocks_at(ArchSpec(block="gc", **one), 32)
    c, n = gc["channels"], gc["hw"]
    assert (c, n) == (64, 64)
    assert gc["flops"] == gc["block_flops"] == gc_flops(c, n, 16)
    p = c // 16
    assert blocks_at(ArchSpec(block="se", **one), 32)["flops"] == c * n + 2 * c * p + c + c * n  # mean, fcs, gate
    assert blocks_at(ArchSpec(block="snl", **one), 32)["flops"] == 3 * c * n + n + c * c
    both = ArchSpec(block="custom", context="att", transform="bottleneck", fusion="both", ratio=4, **one)
    p = c // 4
    assert blocks_at(both, 32)["flops"] == 2 * c * n + n + 2 * (2 * c * p + 5 * p) + c + c * n  # addcmul: C*HW


def test_nl_flops_grow_with_the_square_of_positions() -> None:
    spec = ArchSpec(backbone="proxy", block="nl", stages=("c4",), blocks="last")
    costs = {}
    for size in (16, 32, 64):
        b = blocks_at(spec, size)
        costs[b["hw"]] = b["flops"]
    c, i = 64, 32
    for n, flops in costs.items():
        # theta, phi, g, out convs 4*C*i*n; BN 2*C*n and residual add C*n; two products i*n^2 each; softmax n^2
        assert flops == n * (4 * c * i + 3 * c) + n * n * (2 * i + 1)
    (n1, f1), (n2, f2), (n3, f3) = sorted(costs.items())
    assert (n1, n2, n3) == (16, 64, 256)
    # the quadratic part dominates: 4x the positions gives more than 4x the FLOPs, increasingly so
    assert f2 / f1 > 4 * 1.1 and f3 / f2 > f2 / f1
    gc = ArchSpec(backbone="proxy", block="gc", stages=("c4",), blocks="last")
    assert blocks_at(gc, 64)["flops"] / blocks_at(gc, 32)["flops"] < 4.01  # GC stays linear in H*W


class _Holder(nn.Module):
    """A one-block model: the block sits at `.context`, as in the backbones."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.context = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(x)


def test_no_block_is_ever_free() -> None:
    """Every distinct block, at a tiny map, counts FLOPs and leaves fvcore no unsupported op."""
    seen = set()
    for values in block_values():
        spec = ArchSpec(backbone="proxy", width=32, **values)
        if spec.key in seen or not spec.has_blocks:
            continue
        seen.add(spec.key)
        block = create_block(spec, 32)
        for side in (1, 3):
            analysis = count_flops(_Holder(block), torch.zeros(1, 32, side, side))
            analysis.unsupported_ops_warnings(False)
            assert analysis.total() > 0, spec.label()
            assert analysis.unsupported_ops() == {}, spec.label()
            if spec.fusion in ("scale", "both"):  # the gate's sigmoid is counted
                assert analysis.by_operator().get("sigmoid", 0) == 32, spec.label()
    assert len(seen) == 103


def test_every_preset_has_a_positive_share_on_every_backbone() -> None:
    for backbone in ("proxy", "proxy_bottleneck"):
        for block in ("gc", "se", "snl", "nl"):
            m = measure(ArchSpec(backbone=backbone, block=block, stages=("c3",)), input_size=(3, 32, 32),
                        num_classes=10)
            assert m.block_flops > 0 and m.block_params > 0
            assert all(b["flops"] > 0 for b in m.per_block)
            assert m.stages["c3"]["block_flops"] == m.block_flops


def test_no_fvcore_warnings(caplog: pytest.LogCaptureFixture) -> None:
    clear_cache()
    with caplog.at_level("WARNING"):
        measure(ArchSpec(backbone="proxy_bottleneck", block="custom", context="att", transform="bottleneck",
                         fusion="both", ratio=4, position="after_add"), input_size=(3, 32, 32), num_classes=10)
        measure(ArchSpec(backbone="resnet18", block="nl", stages=("c5",)), input_size=(3, 64, 64))
    assert [r.getMessage() for r in caplog.records] == []


def test_cache_by_canonical_key_and_arguments() -> None:
    preset = ArchSpec(backbone="proxy", block="snl")
    explicit = ArchSpec(backbone="proxy", block="custom", context="att", transform="full", fusion="add")
    first = measure(preset, input_size=(3, 32, 32), num_classes=10)
    assert measure(explicit, input_size=[3, 32, 32], num_classes=10) is first
    assert measure(preset, input_size=(3, 64, 64), num_classes=10) is not first
    assert measure(preset, input_size=(3, 32, 32), num_classes=100).params == first.params + 90 * 129
    clear_cache()
    again = measure(preset, input_size=(3, 32, 32), num_classes=10)
    assert again is not first and again == first


def test_to_dict_is_json_with_the_contract_fields(resnet50_gc: Measurement) -> None:
    d = json.loads(json.dumps(resnet50_gc.to_dict()))
    for key in ("spec", "params", "flops", "block_params", "block_flops", "stages", "latency_ms"):
        assert key in d
    assert ArchSpec.from_dict(d["spec"]) == resnet50_gc.spec
    assert set(d["stages"]) == {"c2", "c3", "c4", "c5"}
    assert set(d["stages"]["c3"]) >= {"blocks", "params", "flops", "block_params", "block_flops"}
    assert d["latency_ms"] is None


def test_latency_medians() -> None:
    m = measure(ArchSpec(backbone="proxy", width=4, depth=(1, 1, 1, 1), block="gc", ratio=4),
                input_size=(3, 16, 16), num_classes=10, latency=True)
    assert set(m.latency_ms) == {"forward", "forward_backward"}
    assert 0 < m.latency_ms["forward"] < 1000 and 0 < m.latency_ms["forward_backward"] < 1000
    assert m.device == "cpu"


def test_latency_runs_as_training_does_and_waits_for_the_models_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcsearch.model.cost as measure_module

    layouts: list[bool] = []
    model = build_model(ArchSpec(backbone="proxy", width=4, depth=(1, 1, 1, 1), block="gc", ratio=4), num_classes=10)
    model.register_forward_pre_hook(
        lambda _m, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    measure_module.time_model(model, (3, 16, 16), min_repeats=2, max_repeats=2)
    assert layouts and all(layouts)  # channels_last, as train_candidate feeds the model (4-D, so it is a real check)

    # A latency on cuda:1 waits for cuda:1, not for the current GPU (cuda:0 unless set)
    synced: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    measure_module._median_ms(lambda: None, torch.device("cuda:1"), warmup=2, min_repeats=3, max_repeats=3,
                              budget_s=0.0)
    assert synced == [torch.device("cuda:1")] * 4  # after the warm-up and after each of the 3 timed calls
    synced.clear()
    measure_module._median_ms(lambda: None, torch.device("cpu"), warmup=2, min_repeats=3, max_repeats=3, budget_s=0.0)
    assert synced == []


@pytest.mark.cuda
def test_latency_on_the_gpu() -> None:
    m = measure(ArchSpec(backbone="proxy", width=8, block="gc", ratio=4), input_size=(3, 32, 32), num_classes=10,
                latency=True, device="cuda")
    assert 0 < m.latency_ms["forward"] < 1000 and 0 < m.latency_ms["forward_backward"] < 1000
    assert m.device == "cuda"


@pytest.mark.parametrize("kwargs, field", [
    ({"input_size": (3, 0, 32)}, "input_size"),
    ({"input_size": (32, 32)}, "input_size"),
    ({"num_classes": 0}, "num_classes"),
    ({"latency": True, "device": "tpu"}, "device"),
])
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError, match=f"^{field}: "):
        measure(ArchSpec(backbone="proxy", block="none"), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_latency_without_cuda_is_an_input_error() -> None:
    with pytest.raises(InputError, match="^device: cuda requested but CUDA is not available"):
        measure(ArchSpec(backbone="proxy", block="none"), latency=True, device="cuda")
