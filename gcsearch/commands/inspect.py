"""`gcsearch inspect`: build one candidate and print its params and FLOPs per stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from gcsearch.commands import console
from gcsearch.errors import InputError, positive_int
from gcsearch.space import ArchSpec
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.space.vocabulary import (
    ACTS,
    BACKBONES,
    BLOCK_SETS,
    BLOCKS,
    CONTEXTS,
    FUSIONS,
    NORMS,
    POSITIONS,
    STAGES,
    TRANSFORMS,
)
from gcsearch.units import si


def _opt(name: str, help: str, metavar: str = "TEXT") -> Any:
    return typer.Option(f"--{name}", metavar=metavar, help=help, show_default=False)


def inspect(
    backbone: Annotated[str | None, _opt("backbone", f"Backbone: {', '.join(BACKBONES)}. (default: proxy)",
                                         "NAME")] = None,
    width: Annotated[int | None, _opt("width", "Base width of a proxy backbone (c2's channels). (default: 16)",
                                      "N")] = None,
    depth: Annotated[str | None, _opt("depth", "Residual blocks per stage c2..c5 of a proxy backbone, e.g. 2,2,2,2.",
                                      "N,N,N,N")] = None,
    block: Annotated[str | None, _opt("block", f"Block preset: {', '.join(BLOCKS)}. (default: gc)", "NAME")] = None,
    context: Annotated[str | None, _opt("context", f"Context modeling: {', '.join(CONTEXTS)}.", "KIND")] = None,
    transform: Annotated[str | None, _opt("transform", f"Transform: {', '.join(TRANSFORMS)}.", "KIND")] = None,
    norm: Annotated[str | None, _opt("norm", f"Norm inside the bottleneck: {', '.join(NORMS)}.", "KIND")] = None,
    act: Annotated[str | None, _opt("act", f"Activation inside the bottleneck: {', '.join(ACTS)}.", "KIND")] = None,
    fusion: Annotated[str | None, _opt("fusion", f"Fusion: {', '.join(FUSIONS)} (scale, then add).", "KIND")] = None,
    ratio: Annotated[int | None, _opt("ratio", "Bottleneck ratio r: C -> C/r -> C. (default: 16)", "R")] = None,
    stages: Annotated[str | None, _opt("stages", f"Stages that get blocks, from {','.join(STAGES)}. "
                                                 "(default: c3,c4,c5)", "LIST")] = None,
    position: Annotated[str | None, _opt("position", f"Where in a residual block: {', '.join(POSITIONS)}. "
                                                     "(default: after_1x1)", "WHERE")] = None,
    blocks: Annotated[str | None, _opt("blocks", f"Which residual blocks of a stage: {', '.join(BLOCK_SETS)} "
                                                 "(last: the paper's '+1 block'). (default: all)", "WHICH")] = None,
    spec_file: Annotated[Path | None, typer.Option(
        "--spec", metavar="FILE.json", show_default=False,
        help="Read the whole candidate from a JSON file instead of the options above: a spec object, or any "
             "object with one under 'spec' (what --json prints).")] = None,
    input_size: Annotated[str | None, typer.Option(
        "--input-size", metavar="SIZE", show_default=False,
        help="Image size: 224 means 3x224x224; also HxW or CxHxW. (default: 224, proxy backbones 32)")] = None,
    num_classes: Annotated[int | None, typer.Option(
        "--classes", "--num-classes", metavar="N", show_default=False,
        help="Classes of the head. (default: the dataset's: 1000 for ImageNet backbones, and for proxy backbones "
             "those of --dataset)")] = None,
    dataset: Annotated[str, typer.Option(
        "--dataset", metavar="NAME", show_default=False,
        help=f"Proxy backbones: the dataset whose classes the head has, {', '.join(DATASET_CLASSES)}. "
             "(default: synthetic, as the built-in studies)")] = "synthetic",
    latency: Annotated[bool, typer.Option(
        "--latency",
        help="Also time forward and forward+backward passes (batch of one, median after warm-up).")] = False,
    device: Annotated[str, typer.Option(
        "--device", metavar="DEVICE", help="Where --latency runs: cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
) -> None:
    """What does a candidate cost? Params and FLOPs per stage, and the blocks' share of them.

    A candidate is a backbone plus a context block (context modeling -> transform -> fusion) placed at some
    stages and positions. Give a preset (--block gc|se|snl|nl|none) and override any component, or give the
    components alone (--context att --transform full --fusion add is SNL). The candidate is built, its FLOPs
    counted with fvcore on one image in eval mode (one FLOP = one multiply-add, the paper's convention), and
    every number compared with the same backbone without blocks: that difference is the block's cost.

    [bold]Examples[/]

      [dim]# the paper's default: GC r16 in every block of c3-c5, 224 px images[/]
      gcsearch inspect --backbone resnet50 --block gc --stages c3,c4,c5
      [dim]# save a candidate as JSON, then price it on bigger images[/]
      gcsearch inspect --backbone resnet50 --block gc --ratio 4 --json > r4.json
      gcsearch inspect --spec r4.json --input-size 512
      [dim]# the paper's NL '+1 block'[/]
      gcsearch inspect --backbone resnet50 --block nl --stages c4 --blocks last
      [dim]# a custom point on the proxy backbone, timed too[/]
      gcsearch inspect --block gc --fusion scale --norm none --latency
    """
    given = {name: value for name, value in locals().items() if name in SPEC_FIELDS and value is not None}
    spec = _read_spec(spec_file, given) if spec_file is not None else ArchSpec(**given)
    small = BACKBONES[spec.backbone].stem == "small"
    size = _parse_input_size(input_size) if input_size is not None else (3, 32, 32) if small else (3, 224, 224)
    num_classes, classes_from = _classes(num_classes, dataset, small)
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(f"device: {device!r} is not one of cpu, cuda")

    from gcsearch.model.cost import measure  # torch and fvcore load here, not for `gcsearch --help`

    result = measure(spec, input_size=size, num_classes=num_classes, latency=latency, device=device)
    if as_json:
        out = {"key": spec.key, "label": spec.label(), **result.to_dict(),
               "block_flops_share": result.block_flops_share}
        typer.echo(json.dumps(out, indent=2))
        return
    _print_table(result, classes_from)


# The classes of the datasets a study can train on (a folder's are its subfolders: give --classes).
DATASET_CLASSES = {"synthetic": 5, "cifar10": 10, "cifar100": 100}


def _classes(given: int | None, dataset: str, small: bool) -> tuple[int, str]:
    """The head's classes and where they come from, said in the output so that counts can be compared."""
    if given is not None:
        return positive_int("classes", given), "--classes"
    if dataset not in DATASET_CLASSES:
        raise InputError(f"dataset: {dataset!r} is not one of {', '.join(DATASET_CLASSES)} (for an image folder "
                         "give --classes)")
    if not small:
        return 1000, "ImageNet's; --classes to change"
    return DATASET_CLASSES[dataset], f"the {dataset} dataset's; --classes or --dataset to change"


def _read_spec(path: Path, given: dict[str, Any]) -> ArchSpec:
    if given:
        names = ", ".join(f"--{name}" for name in given)
        raise InputError(f"spec: give either --spec FILE or the candidate's options ({names}), not both")
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"spec: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"spec: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        data = data["spec"]  # the whole output of `inspect --json`, or a trial's attributes
    return ArchSpec.from_dict(data)


def _parse_input_size(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = [3, dims[0], dims[0]]
    elif len(dims) == 2:
        dims = [3, *dims]
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"input-size: expected a size like 224, 64x48 or 1x28x28, got {text!r}")
    return tuple(dims)  # type: ignore[return-value]


def _human(n: float) -> str:
    return si(n, ".4g", kilo="K", small=",.0f")


def _print_table(result: Any, classes_from: str) -> None:
    spec = result.spec
    base_flops = result.flops - result.block_flops
    table = Table(box=box.SIMPLE_HEAD, title=f"{spec.backbone}: {spec.label()}", title_justify="left", pad_edge=False)
    for name in ("stage", "map", "blocks", "C", "params", "FLOPs", "+params", "+FLOPs", "share"):
        table.add_column(name, justify="left" if name == "stage" else "right", no_wrap=True)

    def share(flops: int) -> str:
        return f"{100 * flops / base_flops:.2f}%" if base_flops else "-"

    rest_params = result.params - sum(s["params"] for s in result.stages.values())
    rest_flops = result.flops - sum(s["flops"] for s in result.stages.values())
    table.add_row("stem+head", "", "", "", _human(rest_params), _human(rest_flops), "", "", "")
    for stage, s in result.stages.items():
        _, h, w = s["output_size"]
        row = [stage, f"{h}x{w}", f"{s['blocks']}/{s['depth']}", str(s["channels"] or ""), _human(s["params"]),
               _human(s["flops"])]
        if s["blocks"]:
            row += [_human(s["block_params"]), _human(s["block_flops"]), share(s["block_flops"])]
        table.add_row(*row)
    table.add_section()
    table.add_row("total", "", f"{sum(s['blocks'] for s in result.stages.values())}/"
                  f"{sum(s['depth'] for s in result.stages.values())}", "", _human(result.params), _human(result.flops),
                  _human(result.block_params), _human(result.block_flops), share(result.block_flops), style="bold")
    console.print(table)
    size = "x".join(str(d) for d in result.input_size)
    console.print(
        f"params {result.params:,} (blocks {result.block_params:+,}), FLOPs {result.flops:,} (blocks "
        f"{result.block_flops:+,}) on one {size} image, {result.num_classes} classes ({classes_from}).\n"
        "FLOPs count multiply-adds (fvcore, eval mode). blocks: context blocks placed / residual blocks; C: the "
        "channels they see; +params, +FLOPs: the blocks' cost against the same backbone with block none; share: "
        f"+FLOPs over that backbone's FLOPs. key {spec.key}", highlight=False)
    if result.latency_ms:
        lat = result.latency_ms
        console.print(f"latency on {result.device}, batch of one: forward {lat['forward']:.2f} ms, "
                      f"forward+backward {lat['forward_backward']:.2f} ms", highlight=False)
