"""`gcsearch analyze`: the paper's cosine distances between query positions, and what they say of known blocks."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

import gcsearch
from gcsearch.model.attention import analyze_model, mean_cosine_distance, nl_attention, relative_entropy
from gcsearch.model.blocks.context_block import ContextBlock
from gcsearch.model.blocks.non_local import NonLocalBlock
from gcsearch.space import ArchSpec
from tests.run_helpers import cli_output, run_cli, write_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def direct_distance(vectors: torch.Tensor) -> torch.Tensor:
    """The definition, pair by pair: mean over p != q of 1 - cos(v_p, v_q), per item."""
    out = []
    for item in vectors:
        pairs = [1 - torch.nn.functional.cosine_similarity(item[p], item[q], dim=0)
                 for p, q in itertools.permutations(range(item.shape[0]), 2)]
        out.append(torch.stack(pairs).mean())
    return torch.stack(out)


def random_nl(channels: int = 8, std: float = 1.0) -> NonLocalBlock:
    torch.manual_seed(0)
    block = NonLocalBlock(channels)
    for conv in (block.theta, block.phi, block.g, block.out):
        torch.nn.init.normal_(conv.weight, std=std)
    torch.nn.init.ones_(block.norm.weight)
    return block.eval()


def test_the_distance_agrees_with_the_pairwise_definition() -> None:
    torch.manual_seed(1)
    vectors = torch.randn(3, 7, 5)
    vectors[1, 2] = 0.0  # a zero vector: cosine 0 with every other one
    assert torch.allclose(mean_cosine_distance(vectors), direct_distance(vectors.double()).float(), atol=1e-6)


def test_the_block_figures_agree_with_a_direct_computation_on_a_small_case() -> None:
    block = random_nl()
    x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        stats = analyze_model(torch.nn.Sequential(block), x)[0].row()
        attn = nl_attention(block, x)
        out = block(x) - x
    assert stats["images"] == 2 and stats["positions"] == 9
    assert stats["input"] == pytest.approx(float(direct_distance(x.flatten(2).transpose(1, 2)).mean()), abs=1e-6)
    assert stats["attention"] == pytest.approx(float(direct_distance(attn).mean()), abs=1e-6)
    assert stats["output"] == pytest.approx(float(direct_distance(out.flatten(2).transpose(1, 2)).mean()), abs=1e-6)


def test_query_independent_nl_weights_give_attention_distance_zero() -> None:
    block = random_nl()
    torch.nn.init.zeros_(block.theta.weight)  # theta(x) is its bias at every position: one map for all queries
    torch.nn.init.normal_(block.theta.bias)
    x = torch.randn(4, 8, 6, 6)
    row = analyze_model(torch.nn.Sequential(block), x)[0].row()
    assert abs(row["attention"]) < 1e-6
    assert row["output"] < 1e-5  # every position adds the same vector
    assert row["input"] > 0.5


def test_random_nl_weights_give_a_clearly_positive_attention_distance() -> None:
    row = analyze_model(torch.nn.Sequential(random_nl()), torch.randn(4, 8, 6, 6))[0].row()
    assert row["attention"] > 0.3


def test_a_gc_block_reports_the_entropy_of_its_one_map_and_hooks_leave_no_trace() -> None:
    torch.manual_seed(0)
    block = ContextBlock(8, ratio=4).eval()
    for param in block.fusion.parameters():  # its last conv starts at zero: the block would add nothing
        torch.nn.init.normal_(param)
    x = torch.randn(2, 8, 4, 4)
    before = block(x)
    row = analyze_model(torch.nn.Sequential(block), x)[0].row()
    assert 0.0 < row["entropy"] < 1.0 and row["attention"] is None
    assert row["output"] == pytest.approx(0.0, abs=1e-6)  # add fusion: one vector added everywhere
    assert torch.equal(block(x), before) and not block._forward_hooks
    torch.nn.init.zeros_(block.pool.conv.weight)
    assert analyze_model(torch.nn.Sequential(block), x)[0].row()["entropy"] == pytest.approx(1.0)
    assert relative_entropy(torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-9)


def test_analyze_measures_every_block_of_a_trained_trial(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    grid = write_grid(tmp_path / "a.toml", "a", stages='["c4"]').read_text().replace('block = "gc"', 'block = "nl"')
    (tmp_path / "a.toml").write_text(grid.replace("ratio = 4\n", "ratio = 4\nblocks = \"all\"\n"))
    assert run_cli("--study", str(tmp_path / "a.toml"), "--storage", db, "-q", "--trials", "2") == 0
    code, stdout, _ = cli_output("analyze", "1", "--storage", db, "--json")
    assert code == 0
    result = json.loads(stdout)
    assert [b["block"] for b in result["blocks"]] == ["c4.0.context", "c4.1.context"]
    assert result["images"] == 64 and all(0.0 <= b["attention"] <= 1.0 for b in result["blocks"])
    assert result["stages"][0]["stage"] == "c4" and result["stages"][0]["blocks"] == 2
    code, stdout, _ = cli_output("analyze", "1", "--storage", db, "--plot", str(tmp_path / "maps.png"))
    assert code == 0 and "attention" in stdout and (tmp_path / "maps.png").stat().st_size > 1000
    for extra in ([], ["--plot", str(tmp_path / "none.png")], ["--json"]):  # trial 0: the block-less baseline
        code, stdout, stderr = cli_output("analyze", "0", "--storage", db, *extra)
        assert (code, stdout) == (2, "") and stderr.strip() == (
            "error: trial 0 (none (baseline)) has no context or NL block: nothing to analyze; pick a trial with "
            "one (gcsearch report -s a --all)")
    assert not (tmp_path / "none.png").exists()


def test_the_analyze_example_names_a_trial_with_a_block() -> None:
    from gcsearch.cli import app
    from gcsearch.study.parse import read_study_file

    help_text = next(c for c in app.registered_commands if c.name == "analyze").help
    example = next(line.split() for line in help_text.splitlines() if line.strip().startswith("gcsearch analyze"))
    number, study = int(example[2]), example[example.index("-s") + 1]
    candidate, _ = read_study_file(study).grid()[number]  # grid trials are numbered in queue order
    assert candidate.spec.block == "nl"


def test_analyze_normalizes_images_as_the_training_loop_does() -> None:
    from gcsearch.model.attention import normalized

    x = torch.tensor([[[[0, 255]], [[10, 20]]]], dtype=torch.uint8)
    out = normalized(x, (127.5, 15.0), (127.5, 5.0))
    assert out.tolist() == [[[[-1.0, 1.0]], [[-1.0, 1.0]]]]


def test_only_the_blocks_a_candidate_places_are_measured() -> None:
    spec = ArchSpec(backbone="proxy", width=8, block="nl", stages=("c4",), blocks="last")
    model = gcsearch.build_model(spec)
    stats = analyze_model(model, torch.randn(3, 3, 16, 16))
    assert [s.name for s in stats] == ["c4.1.context"] and stats[0].images == 3
