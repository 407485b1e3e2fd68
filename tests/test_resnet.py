"""ResNet family: torchvision's parameter counts, block placement, identity at init, the spec's width/depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gcsearch import ArchSpec, build_model
from gcsearch.errors import InputError
from gcsearch.model.blocks import ContextBlock, NonLocalBlock
from gcsearch.space.vocabulary import BACKBONES, block_channels

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# torchvision.models.resnetXX(num_classes=1000), counted once; torchvision is not a dependency
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160}
# (channels after the last 1x1 conv, residual blocks) per stage of resnet50
RESNET50_STAGES = {"c2": (256, 3), "c3": (512, 4), "c4": (1024, 6), "c5": (2048, 3)}


@pytest.mark.parametrize("backbone", TORCHVISION_PARAMS)
def test_imagenet_backbones_have_torchvision_params(backbone: str) -> None:
    assert n_params(build_model(ArchSpec(backbone=backbone, block="none"), num_classes=1000)) == \
        TORCHVISION_PARAMS[backbone]


def gc_formula(stages: tuple[str, ...], ratio: int, pooling: str = "att", norm: str = "ln") -> int:
    total = 0
    for stage in stages:
        c, blocks = RESNET50_STAGES[stage]
        p = c // ratio
        per_block = 2 * c + 1 + 2 * c * p + 3 * p
        if pooling == "avg":
            per_block -= c + 1
        if norm == "none":
            per_block -= 2 * p
        total += blocks * per_block
    return total


@pytest.mark.parametrize("ratio", [16, 4])
def test_resnet50_gc_adds_exactly_the_formulas_params(ratio: int) -> None:
    stages = ("c3", "c4", "c5")
    spec = ArchSpec(backbone="resnet50", block="gc", ratio=ratio, stages=stages, position="after_1x1")
    added = n_params(build_model(spec, num_classes=1000)) - TORCHVISION_PARAMS["resnet50"]
    assert added == gc_formula(stages, ratio)
    assert added == {16: 2_521_741, 4: 10_000_909}[ratio]  # r16: the paper's 25.56M -> 28.08M


def test_avg_pooling_and_no_norm_remove_their_parameters() -> None:
    stages = ("c3", "c4", "c5")
    common = dict(backbone="resnet50", block="custom", transform="bottleneck", fusion="add", act="relu", ratio=16)
    avg = ArchSpec(context="avg", norm="ln", **common)
    no_norm = ArchSpec(context="att", norm="none", **common)
    base = TORCHVISION_PARAMS["resnet50"]
    blocks = sum(RESNET50_STAGES[s][1] for s in stages)
    assert n_params(build_model(avg, num_classes=1000)) - base == gc_formula(stages, 16) - sum(
        (RESNET50_STAGES[s][0] + 1) * RESNET50_STAGES[s][1] for s in stages)
    assert n_params(build_model(avg, num_classes=1000)) - base == gc_formula(stages, 16, pooling="avg")
    assert n_params(build_model(no_norm, num_classes=1000)) - base == gc_formula(stages, 16, norm="none")
    assert blocks == 13


def test_module_names_and_placement_all_vs_last() -> None:
    model = build_model(ArchSpec(backbone="resnet50", block="gc", stages=("c2", "c4"), blocks="last"), num_classes=1000)
    names = [name for name, _ in model.named_children()]
    assert names == ["stem", "c2", "c3", "c4", "c5", "head"]
    assert isinstance(model.head.fc, nn.Linear) and model.head.fc.in_features == 2048
    placed = [name for name, m in model.named_modules() if isinstance(m, ContextBlock)]
    assert placed == ["c2.2.context", "c4.5.context"]  # the last residual block of each chosen stage
    assert [name for name, _ in model.context_blocks()] == placed
    assert model.c4[5].context.channels == 1024
    assert all(blk.context is None for blk in model.c3)

    every = build_model(ArchSpec(backbone="resnet50", block="gc", stages=("c3", "c4", "c5")), num_classes=1000)
    assert [len([b for b in getattr(every, s) if b.context is not None]) for s in ("c2", "c3", "c4", "c5")] == \
        [0, 4, 6, 3]
    assert [b.context.channels for b in every.c5] == [2048] * 3


@pytest.mark.parametrize("backbone", ["resnet50", "resnet18", "proxy", "proxy_bottleneck"])
@pytest.mark.parametrize("position", ["after_1x1", "after_3x3", "after_add"])
def test_block_channels_match_the_config(backbone: str, position: str) -> None:
    spec = ArchSpec(backbone=backbone, block="gc", stages=("c2", "c3", "c4", "c5"), position=position, ratio=4)
    model = build_model(spec)
    cfg = BACKBONES[spec.backbone]
    for name, block in model.context_blocks():
        stage = name.split(".")[0]
        assert block.channels == block_channels(cfg.kind, spec.width or cfg.width, stage, position)
    if backbone == "resnet50":
        expected = {"after_3x3": 128, "after_1x1": 512, "after_add": 512}[position]
        assert model.c3[0].context.channels == expected


def load_backbone_weights(model: nn.Module, baseline: nn.Module) -> None:
    missing, unexpected = model.load_state_dict(baseline.state_dict(), strict=False)
    assert not unexpected and missing and all(".context." in key for key in missing)


@pytest.mark.parametrize("backbone", ["proxy", "proxy_bottleneck"])
@pytest.mark.parametrize("position", ["after_1x1", "after_3x3", "after_add"])
@pytest.mark.parametrize("block", ["gc", "snl", "nl", "avg-add"])
def test_identity_at_init(backbone: str, position: str, block: str) -> None:
    """Add-fused blocks start as the identity: same output as block none with the same other weights."""
    extra = {"block": "custom", "context": "avg", "transform": "bottleneck", "fusion": "add", "norm": "none"} \
        if block == "avg-add" else {"block": block}
    spec = ArchSpec(backbone=backbone, width=8, depth=(1, 2, 1, 1), stages=("c2", "c3", "c4", "c5"),
                    position=position, ratio=4, **extra)
    torch.manual_seed(0)
    baseline = build_model(ArchSpec(backbone=backbone, width=8, depth=(1, 2, 1, 1), block="none"))
    model = build_model(spec)
    load_backbone_weights(model, baseline)
    x = torch.randn(2, 3, 32, 32)
    for train in (False, True):
        baseline.train(train)
        model.train(train)
        assert torch.allclose(model(x), baseline(x), atol=1e-6, rtol=0)


def test_identity_at_init_on_resnet50_with_gc() -> None:
    torch.manual_seed(0)
    baseline = build_model(ArchSpec(backbone="resnet50", block="none"), num_classes=1000).eval()
    model = build_model(ArchSpec(backbone="resnet50", block="gc", ratio=16), num_classes=1000).eval()
    load_backbone_weights(model, baseline)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), baseline(x), atol=1e-6, rtol=0)


def test_backbone_init_leaves_block_init_alone() -> None:
    model = build_model(ArchSpec(backbone="proxy", block="gc", ratio=4))
    for _, block in model.context_blocks():
        fc2 = block.fusion.add_transform.fc2
        assert torch.count_nonzero(fc2.weight) == 0 and torch.count_nonzero(fc2.bias) == 0
        assert torch.count_nonzero(block.pool.conv.bias) == 0
    nl = build_model(ArchSpec(backbone="proxy", block="nl"))
    norms = [block.norm for _, block in nl.context_blocks()]
    assert norms and all(isinstance(b, NonLocalBlock) for _, b in nl.context_blocks())
    assert all(torch.count_nonzero(n.weight) == 0 for n in norms)  # the backbone sets its own BNs to 1
    assert torch.equal(nl.c3[0].bn1.weight, torch.ones(32))
    # NL convs keep their small normal init, backbone convs get kaiming fan_out
    assert nl.c4[0].context.theta.weight.std().item() < 0.02
    assert nl.c4[0].conv1.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)


def test_proxy_width_depth_stem_and_io() -> None:
    spec = ArchSpec(backbone="proxy", width=8, depth=(1, 2, 3, 1), block="none")
    model = build_model(spec, num_classes=7, in_chans=1)
    assert [len(getattr(model, s)) for s in ("c2", "c3", "c4", "c5")] == [1, 2, 3, 1]
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.head.fc.in_features == 64
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    bottleneck = build_model(ArchSpec(backbone="proxy_bottleneck", width=4, depth=(1, 1, 1, 1), block="none"))
    assert bottleneck.head.fc.in_features == 4 * 8 * 4
    resnet = build_model(ArchSpec(backbone="resnet18", block="none"), in_chans=4)
    assert resnet.stem.conv.kernel_size == (7, 7) and isinstance(resnet.stem.pool, nn.MaxPool2d)
    assert resnet.stem.conv.in_channels == 4


@pytest.mark.parametrize("name, kwargs", [("num_classes", {"num_classes": 0}), ("in_chans", {"in_chans": -1}),
                                          ("num_classes", {"num_classes": 2.5})])
def test_build_model_rejects_bad_sizes(name: str, kwargs: dict) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        build_model(ArchSpec(block="none"), **kwargs)


def test_strided_downsample_is_a_strided_pointwise_conv_and_trains_on_one_thread() -> None:
    import subprocess
    import sys

    from gcsearch.model.resnet import StridedPointwise

    down = StridedPointwise(4, 8, 2)
    reference = nn.Conv2d(4, 8, 1, 2, bias=False)
    reference.weight.data.copy_(down.weight.data)
    x = torch.randn(2, 4, 9, 9)
    assert torch.equal(down(x), reference(x))
    # PyTorch 2.13's CPU backward of a strided 1x1 conv on channels_last input with 4 -> 8 channels, on one
    # thread, corrupted the heap and aborted the process; run it in a child so an abort fails only this test.
    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from gcsearch import ArchSpec, build_model\n"
        "m = build_model(ArchSpec(backbone='proxy', width=4, depth=(1, 1, 1, 1), block='none'), num_classes=5)\n"
        "m = m.to(memory_format=torch.channels_last)\n"
        "x = torch.randn(32, 3, 8, 8).contiguous(memory_format=torch.channels_last)\n"
        "for _ in range(300):\n"
        "    m(x).sum().backward()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
