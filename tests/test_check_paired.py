"""`gcsearch check`'s two protocols: the paired studies it plans, and the figures and table from known numbers."""

from __future__ import annotations

import io
import statistics
from dataclasses import replace

import pytest
from rich.console import Console
from test_check import BLOCKS, blocks, labels

from gcsearch.commands.check import print_check
from gcsearch.errors import InputError
from gcsearch.report import noise
from gcsearch.report.check_figures import CheckRow, check_json, figures
from gcsearch.study.check_plan import derived_grid, plan_check
from gcsearch.study.parse import parse_study
from gcsearch.training.config import ProxyConfig

DEFAULT = ProxyConfig()


def test_the_paired_check_is_the_same_grid_fine_tuned_from_each_seeds_start() -> None:
    study = blocks()
    plan = plan_check(study, candidates=3, seeds=4, longer=4)
    paired, longer = plan.paired, plan.paired_longer
    assert (paired.name, longer.name) == ("blocks-check-paired", "blocks-check-paired-longer")
    assert labels(paired.candidates()) == labels(plan.proxy.candidates()) and paired.repeats == 4
    # A scratch study's paired check: its proxy with start = "baseline" and the default fine-tune.
    assert paired.proxy == replace(study.proxy, start="baseline")
    assert (paired.proxy.finetune_epochs, paired.proxy.finetune_lr) == (DEFAULT.finetune_epochs, DEFAULT.finetune_lr)
    # The longer paired check: 4 x the fine-tune on the check's own seeds, from the same starts.
    assert (longer.proxy.finetune_epochs, longer.repeats, longer.proxy.epochs) == (4 * DEFAULT.finetune_epochs, 4, 3)
    assert longer.proxy.start_proxy().fingerprint() == paired.proxy.start_proxy().fingerprint()
    assert plan.longer.repeats == 1 and plan.longer.proxy.epochs == 12
    assert [s.name for s in plan.to_train()] == ["blocks-check", "blocks-check-longer", "blocks-check-paired",
                                                 "blocks-check-paired-longer"]


def test_a_scratch_check_made_before_the_paired_protocol_is_derived_as_it_was() -> None:
    study = blocks()
    plan = plan_check(study, candidates=3, seeds=3)
    assert plan.proxy == derived_grid(study, "blocks-check", plan.candidates, repeats=3)
    assert plan.proxy.proxy.fingerprint() == study.proxy.fingerprint()


def test_a_paired_study_keeps_its_fine_tune_and_its_scratch_check_trains_from_scratch() -> None:
    paired_proxy = '\n[proxy]\nstart = "baseline"\nfinetune_epochs = 1.5\nfinetune_lr = 0.05\n'
    study = parse_study(BLOCKS.format(sampler="grid") + paired_proxy)
    plan = plan_check(study, candidates=2, seeds=2, longer=2, protocol="paired")
    assert plan.paired.proxy == study.proxy and plan.paired_longer.proxy.finetune_epochs == 3.0
    assert not plan.proxy.proxy.paired and plan.proxy.proxy.epochs == study.proxy.epochs
    assert [s.name for s in plan.to_train()] == ["blocks-check-paired", "blocks-check-paired-longer"]
    assert [s.name for s in plan_check(study, 2, 2, protocol="scratch").to_train()] == ["blocks-check"]


@pytest.mark.parametrize("protocol", ["", "Both", "paired,scratch", "baseline"])
def test_an_unknown_protocol_is_refused_by_name(protocol: str) -> None:
    with pytest.raises(InputError, match="^--protocol: expected one of both, scratch, paired, got"):
        plan_check(blocks(), protocol=protocol)


# The control and two candidates on three seeds: the seeds' starts differ by 10 points, the candidates by about
# one point from the control with a std of their differences of 0.2 and 0.1; the longer run keeps the order.
CONTROL = {0: 80.0, 1: 90.0, 2: 85.0}
BETTER = {0: 81.0, 1: 91.2, 2: 85.8}  # differences 1.0, 1.2, 0.8
WORSE = {0: 79.5, 1: 89.4, 2: 84.6}  # differences -0.5, -0.6, -0.4
LONGER = [{0: 90.0, 1: 92.0, 2: 91.0}, {0: 92.0, 1: 93.5, 2: 92.5}, {0: 89.0, 1: 91.5, 2: 90.0}]


def paired_rows() -> list[CheckRow]:
    return [CheckRow(key=f"k{i}", label=f"c{i}", candidate=name, baseline=i == 0, accuracies=list(v.values()),
                     by_seed=dict(v), longer_by_seed=dict(LONGER[i]))
            for i, (name, v) in enumerate([("baseline", CONTROL), ("better", BETTER), ("worse", WORSE)])]


def test_the_paired_figures_of_known_numbers() -> None:
    plan = plan_check(blocks(), candidates=2, seeds=3, longer=4)
    result = figures(paired_rows(), plan, protocol="paired")
    assert [r.delta for r in result.rows] == pytest.approx([0.0, 1.0, -0.5])
    assert [r.delta_std for r in result.rows] == [None, pytest.approx(0.2), pytest.approx(0.1)]
    pooled = noise.paired_noise([BETTER, WORSE], CONTROL)
    assert result.paired == pooled and (result.noise_std, result.noise_df) == (pooled.std, 4)
    assert result.spread == pytest.approx(statistics.stdev([0.0, 1.0, -0.5]))
    table = [list(v.values()) for v in (CONTROL, BETTER, WORSE)]
    assert result.paired_icc == pytest.approx(noise.paired_icc(table)) and result.paired_icc > 0.9
    assert result.icc == pytest.approx(noise.icc(table)) and result.icc < 0  # the starts' 10 points
    # The grid's design: 1 seed a candidate, paired with the control's seed.
    assert result.detectable == pytest.approx(noise.paired_detectable(pooled.std, 4, 1))
    assert result.repeats_needed == noise.paired_repeats_needed(result.spread, pooled.std, candidates=6)
    # Longer deltas: 0, +1.67, -0.83: the same order, so Spearman 1.
    assert [r.longer_delta for r in result.rows] == pytest.approx([0.0, 5 / 3, -2.5 / 3])
    assert (result.spearman, result.kendall) == (pytest.approx(1.0), pytest.approx(1.0))
    assert result.longer_study == "blocks-check-paired-longer" and result.longer_epochs == 4 * DEFAULT.finetune_epochs
    assert result.verdict().startswith(f"the proxy ranks above its noise (paired ICC {result.paired_icc:.2f} >= 0.7)")


def test_the_same_numbers_from_scratch_are_decided_by_the_seeds() -> None:
    plan = plan_check(blocks(), candidates=2, seeds=3)
    result = figures(paired_rows(), plan, protocol="scratch")
    table = [list(v.values()) for v in (CONTROL, BETTER, WORSE)]
    assert result.noise == noise.pooled_noise(table) and result.noise_std == result.noise.std
    assert result.paired is None and result.paired_icc == pytest.approx(noise.paired_icc(table))
    assert result.verdict().startswith(f"seeds decide this ranking (ICC {result.icc:.2f} < 0.7)")


def test_a_row_with_a_failed_seed_leaves_the_paired_icc_table_not_the_seed() -> None:
    rows = paired_rows()
    rows[2].by_seed.pop(1)
    rows[2].accuracies = list(rows[2].by_seed.values())
    result = figures(rows, plan_check(blocks(), candidates=2, seeds=3), protocol="paired")
    assert result.paired_icc == pytest.approx(noise.paired_icc([list(CONTROL.values()), list(BETTER.values())]))
    assert result.missing == ["worse"] and result.rows[2].delta == pytest.approx(-0.45)


@pytest.mark.parametrize("width", [80, 120])
def test_the_side_by_side_table_fits_the_terminal(width: int) -> None:
    plan = plan_check(blocks(), candidates=2, seeds=3, longer=4)
    results = [figures(paired_rows(), plan, protocol=p) for p in ("scratch", "paired")]
    results[0].rows = paired_rows()  # each protocol reads its own rows
    for r in results:
        r.storage, r.trained = "sqlite:///gcsearch.db", 0
    out = Console(file=io.StringIO(), width=width, color_system=None)
    print_check(out, results, plan)
    text = out.file.getvalue()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    for row in results[1].rows:
        assert row.key in text and f"{row.delta:+.2f}" in text
    for figure in ("noise", "spread", "ICC", "paired ICC", "detectable", "repeats needed", "Spearman, Kendall"):
        assert figure in text
    assert f"±{results[0].noise_std:.2f} pts" in text and f"±{results[1].noise_std:.2f} pts" in text
    words = " ".join(text.split())
    assert f"verdict, scratch: {results[0].verdict()}" in words and f"verdict, paired: {results[1].verdict()}" in words


def test_the_json_keeps_the_scratch_figures_on_top_and_both_protocols_below() -> None:
    plan = plan_check(blocks(), candidates=2, seeds=3)
    results = [figures(paired_rows(), plan, protocol=p) for p in ("scratch", "paired")]
    document = check_json(results, "both", trained=5)
    assert document["pooled_std"] == results[0].noise.std and document["verdict"] == results[0].verdict()
    assert document["trained_this_run"] == 5 and list(document["protocols"]) == ["scratch", "paired"]
    paired = document["protocols"]["paired"]
    assert paired["noise_std"] == results[1].paired.std and paired["paired_icc"] == results[1].paired_icc
    assert paired["candidates"][1]["delta"] == pytest.approx(1.0) and paired["candidates"][1]["by_seed"]["2"] == 85.8
    alone = check_json(results[1:], "paired", trained=0)
    assert "pooled_std" not in alone and list(alone["protocols"]) == ["paired"] and alone["study"] == "blocks"
