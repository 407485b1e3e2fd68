"""Pretrained ResNets from torchvision's and timm's layouts: key mapping, shape checks, the classifier, files.

The source state dicts are written here from the layouts' key names and shapes (no download, no torchvision):
torchvision's `resnet.py` and timm's `resnet.py` both name a plain ResNet `conv1`, `bn1`, `layer1`..`layer4`
(blocks `conv1/bn1/conv2/bn2[/conv3/bn3]`, shortcut `downsample.0` conv and `downsample.1` BN) and `fc`; timm's
checkpoints are often saved headless (`num_classes=0`, no `fc`) or from DDP (`module.` prefix). The reference
logits come from a functional forward over the source dict (F.conv2d, F.batch_norm, eval mode), so they do
not depend on gcsearch's modules at all.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gcsearch.errors import InputError
from gcsearch.model.pretrained import (
    PretrainedError,
    gcsearch_name,
    load_pretrained,
    map_pretrained,
    read_state_dict,
)
from gcsearch.model.resnet import build_model
from gcsearch.model.weights import load_shared
from gcsearch.space import ArchSpec

LAYOUTS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3))}
# torchvision's parameter counts with 1000 classes (its model docs): the layout written here has them too.
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160}


def _conv(sd: dict, key: str, out: int, inp: int, k: int, g: torch.Generator) -> None:
    sd[f"{key}.weight"] = torch.randn(out, inp, k, k, generator=g) * math.sqrt(2.0 / (inp * k * k))


def _bn(sd: dict, key: str, c: int, g: torch.Generator, counters: bool, gamma: float = 1.0) -> None:
    sd[f"{key}.weight"] = gamma * (0.5 + torch.rand(c, generator=g))
    sd[f"{key}.bias"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{key}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
    if counters:
        sd[f"{key}.num_batches_tracked"] = torch.tensor(1234)


def torchvision_layout(backbone: str, classes: int = 10, *, counters: bool = True, head: bool = True,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """A ResNet state dict in torchvision's names and shapes (timm's plain ResNet uses the same names)."""
    kind, depth = LAYOUTS[backbone]
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    _conv(sd, "conv1", 64, 3, 7, g)
    _bn(sd, "bn1", 64, g, counters)
    expansion = 4 if kind == "bottleneck" else 1
    inp = 64
    for stage, blocks in enumerate(depth):
        width = 64 * 2**stage
        for i in range(blocks):
            p = f"layer{stage + 1}.{i}"
            if kind == "basic":
                _conv(sd, f"{p}.conv1", width, inp, 3, g)
                _bn(sd, f"{p}.bn1", width, g, counters)
                _conv(sd, f"{p}.conv2", width, width, 3, g)
                _bn(sd, f"{p}.bn2", width, g, counters, gamma=0.3)
            else:
                _conv(sd, f"{p}.conv1", width, inp, 1, g)
                _bn(sd, f"{p}.bn1", width, g, counters)
                _conv(sd, f"{p}.conv2", width, width, 3, g)
                _bn(sd, f"{p}.bn2", width, g, counters)
                _conv(sd, f"{p}.conv3", width * 4, width, 1, g)
                _bn(sd, f"{p}.bn3", width * 4, g, counters, gamma=0.3)
            if i == 0 and (stage > 0 or inp != width * expansion):
                _conv(sd, f"{p}.downsample.0", width * expansion, inp, 1, g)
                _bn(sd, f"{p}.downsample.1", width * expansion, g, counters)
            inp = width * expansion
    if head:
        sd["fc.weight"] = torch.randn(classes, inp, generator=g) / math.sqrt(inp)
        sd["fc.bias"] = 0.1 * torch.randn(classes, generator=g)
    return sd


def timm_layout(backbone: str) -> dict[str, torch.Tensor]:
    """timm's checkpoint as a training script saves it: headless, without BN counters, from DDP."""
    sd = torchvision_layout(backbone, counters=False, head=False, seed=1)
    return {f"module.{k}": v for k, v in sd.items()}


def reference_features(sd: dict[str, torch.Tensor], backbone: str, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward (v1.5, eval mode) written with functional ops over the source dict."""
    kind, depth = LAYOUTS[backbone]

    def bn(t: torch.Tensor, k: str) -> torch.Tensor:
        return F.batch_norm(t, sd[f"{k}.running_mean"], sd[f"{k}.running_var"], sd[f"{k}.weight"],
                            sd[f"{k}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage, blocks in enumerate(depth):
        for i in range(blocks):
            p = f"layer{stage + 1}.{i}"
            stride = 2 if stage > 0 and i == 0 else 1
            if kind == "basic":
                out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
                out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            else:
                out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
                out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
                out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + identity)
    return x.mean((2, 3))


def reference_logits(sd: dict[str, torch.Tensor], backbone: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(reference_features(sd, backbone, x), sd["fc.weight"], sd["fc.bias"])


def images(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_torchvision_layout_gives_the_source_logits(backbone: str) -> None:
    sd = torchvision_layout(backbone, classes=10)
    model = build_model(ArchSpec(backbone=backbone, block="none"), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pretrained = load_pretrained(model, sd)
    # Every tensor of the model came from the source (nothing missing), nothing of the source was left over.
    assert set(pretrained.state_dict) == set(model.state_dict())
    assert len(pretrained.state_dict) == len(sd)
    assert not pretrained.classifier_replaced and pretrained.message == ""
    assert pretrained.counters_filled == 0
    assert int(model.state_dict()["c2.0.bn1.num_batches_tracked"]) == 1234
    assert not torch.equal(before["stem.conv.weight"], model.state_dict()["stem.conv.weight"])
    torch.manual_seed(0)
    x = images()
    with torch.no_grad():
        got = model.eval()(x)
        want = reference_logits(sd, backbone, x)
    assert got.shape == (2, 10)
    assert want.abs().max() > 0.1  # logits of a real size, so the tolerance below means something
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_timm_layout_headless_ddp_checkpoint(backbone: str) -> None:
    sd = timm_layout(backbone)
    spec = ArchSpec(backbone=backbone, block="none")
    pretrained = map_pretrained(spec, sd, num_classes=5)
    assert pretrained.classifier_replaced and pretrained.source_classes is None
    assert pretrained.message == "the pretrained weights have no classifier: a new one for 5 classes"
    n_bn = sum(k.endswith("running_var") for k in sd)
    assert pretrained.counters_filled == n_bn
    model = build_model(spec, num_classes=5)
    new = load_shared(model, pretrained.state_dict)
    assert new == ["head.fc.weight", "head.fc.bias"]  # 0 missing apart from the classifier
    x = images()
    plain = {k[len("module."):]: v for k, v in sd.items()}
    with torch.no_grad():
        feats = model.eval().c5(model.c4(model.c3(model.c2(model.stem(x))))).mean((2, 3))
    torch.testing.assert_close(feats, reference_features(plain, backbone, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_every_layout_maps_without_missing_or_unexpected_keys(backbone: str) -> None:
    sd = torchvision_layout(backbone, classes=1000)
    params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert params == TORCHVISION_PARAMS[backbone]
    pretrained = map_pretrained(ArchSpec(backbone=backbone, block="none"), sd, num_classes=1000)
    assert len(pretrained.state_dict) == len(sd) and not pretrained.classifier_replaced
    assert all(torch.equal(pretrained.state_dict[gcsearch_name(k)], v) for k, v in sd.items())


def test_classifier_of_other_classes_is_replaced_once_and_seeded() -> None:
    sd = torchvision_layout("resnet18", classes=10)
    model = build_model(ArchSpec(backbone="resnet18", block="none"), num_classes=5)
    own_fc = model.state_dict()["head.fc.weight"].clone()
    pretrained = load_pretrained(model, sd)
    assert pretrained.classifier_replaced and pretrained.source_classes == 10
    assert pretrained.message == "the pretrained classifier (10 classes) is replaced by a new one for 5 classes"
    assert "head.fc.weight" not in pretrained.state_dict
    assert torch.equal(model.state_dict()["head.fc.weight"], own_fc)
    # With a seed, the new classifier is part of the start, so every candidate of that seed shares it.
    a = map_pretrained(ArchSpec(backbone="resnet18", block="none"), sd, num_classes=5, seed=3)
    b = map_pretrained(ArchSpec(backbone="resnet18", block="gc"), sd, num_classes=5, seed=3)
    assert a.state_dict["head.fc.weight"].shape == (5, 512)
    assert torch.equal(a.state_dict["head.fc.weight"], b.state_dict["head.fc.weight"])
    assert float(a.state_dict["head.fc.weight"].abs().max()) <= 1 / math.sqrt(512)


def test_a_missing_key_is_named() -> None:
    sd = torchvision_layout("resnet50")
    del sd["layer3.2.bn2.running_var"]
    with pytest.raises(PretrainedError) as err:
        map_pretrained(ArchSpec(backbone="resnet50", block="none"), sd, num_classes=10, name="r50.pth")
    assert isinstance(err.value, InputError)
    assert str(err.value) == ("r50.pth: does not fit resnet50: no tensor for 'layer3.2.bn2.running_var' "
                              "(gcsearch 'c4.2.bn2.running_var')")


def test_a_wrong_shape_is_named() -> None:
    sd = torchvision_layout("resnet18")  # resnet18's weights offered to resnet50: the first tensor differing
    with pytest.raises(PretrainedError, match=r"^r18.pth: does not fit resnet50: 'layer1.0.conv1.weight' "
                       r"\(gcsearch 'c2.0.conv1.weight'\) has shape \(64, 64, 3, 3\), the model's is "
                       r"\(64, 64, 1, 1\)$"):
        map_pretrained(ArchSpec(backbone="resnet50", block="none"), sd, num_classes=10, name="r18.pth")


def test_a_deeper_backbone_is_refused_by_its_extra_key() -> None:
    sd = torchvision_layout("resnet18")
    sd["layer4.2.conv1.weight"] = sd["layer4.1.conv1.weight"]
    with pytest.raises(PretrainedError, match=r"unexpected tensor 'layer4.2.conv1.weight' "
                       r"\(gcsearch 'c5.2.conv1.weight'\)$"):
        map_pretrained(ArchSpec(backbone="resnet18", block="none"), sd, num_classes=10)


def test_gc_candidate_on_top_is_the_pretrained_function_at_insertion() -> None:
    sd = torchvision_layout("resnet18", classes=10)
    plain = build_model(ArchSpec(backbone="resnet18", block="none"), num_classes=10)
    load_pretrained(plain, sd)
    gc = build_model(ArchSpec(backbone="resnet18", block="gc", stages=("c3", "c4", "c5")), num_classes=10)
    mapped = map_pretrained(gc, sd).state_dict
    new = load_shared(gc, mapped)
    assert new and all(".context." in n for n in new)  # only the blocks keep their own init
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(gc.eval()(x), plain.eval()(x), atol=0, rtol=0)


def test_gcsearch_names_pass_through() -> None:
    assert gcsearch_name("module.layer2.0.downsample.0.weight") == "c3.0.downsample.0.weight"
    assert gcsearch_name("c3.0.downsample.0.weight") == "c3.0.downsample.0.weight"
    model = build_model(ArchSpec(backbone="resnet18", block="none"), num_classes=10)
    again = map_pretrained(ArchSpec(backbone="resnet18", block="none"), model.state_dict(), num_classes=10)
    assert set(again.state_dict) == set(model.state_dict())


def test_files_bare_wrapped_and_refused(tmp_path: Path) -> None:
    sd = torchvision_layout("resnet18")
    torch.save(sd, tmp_path / "bare.pth")
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": sd}, tmp_path / "ckpt.pth.tar")
    torch.save({"model": sd}, tmp_path / "model.pth")
    for name in ("bare.pth", "ckpt.pth.tar", "model.pth"):
        assert torch.equal(read_state_dict(tmp_path / name)["fc.bias"], sd["fc.bias"])
    model = build_model(ArchSpec(backbone="resnet18", block="none"), num_classes=10)
    assert not load_pretrained(model, tmp_path / "ckpt.pth.tar").classifier_replaced

    (tmp_path / "cut.pth").write_bytes((tmp_path / "bare.pth").read_bytes()[:5000])
    (tmp_path / "text.pth").write_text("not weights")
    torch.save({"weights": [1, 2]}, tmp_path / "other.pth")
    torch.save({"layer": Path("x")}, tmp_path / "object.pth")  # an arbitrary object: never unpickled
    cases = {
        "missing.pth": r"missing.pth: no such file$",
        "cut.pth": r"cut.pth: not a readable PyTorch state dict \(damaged",
        "text.pth": r"text.pth: not a readable PyTorch state dict",
        "object.pth": r"object.pth: not a readable PyTorch state dict",
    }
    for name, message in cases.items():
        with pytest.raises(PretrainedError, match=message) as err:
            read_state_dict(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(PretrainedError, match=r"not a state dict: 'weights' holds list, not a tensor"):
        load_pretrained(model, tmp_path / "other.pth")
