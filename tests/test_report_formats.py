"""Every output format of the report: CSV/JSON round-trip, Markdown and LaTeX well-formed, the plot valid."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from report_study import build_hand_study

from gcsearch.report.build import read_report
from gcsearch.report.formats import display_columns, export_columns, header_lines, render
from gcsearch.report.plot import draw_plot, write_plot
from gcsearch.report.table import text_table

NUMERIC = ("accuracy", "accuracy_std", "flops", "params", "block_flops", "block_params", "train_seconds",
           "delta_accuracy", "delta_flops_pct", "delta_params_pct")


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return build_hand_study(tmp_path_factory.mktemp("formats") / "hand.db")


@pytest.fixture(scope="module", params=["all", "front", "ablation"])
def report(request, storage):
    rep = read_report(storage, show_all=request.param == "all", by="stages" if request.param == "ablation" else None)
    if request.param == "front":
        rep = read_report(storage, objectives="accuracy,flops,params", by=None, show_all=False)
        rep.view, rep.by = "front", None  # the plain front view, whichever view was picked automatically
        rep.rows = list(rep.front)
    return rep


def test_csv_round_trips_every_number(report):
    text = render(report, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == export_columns(report)
    assert len(parsed) == len(report.rows)
    for line, row in zip(parsed, report.rows, strict=True):
        for column in NUMERIC:
            value = getattr(row, column)
            assert (float(line[column]) if line[column] else None) == value, column  # exact, not rounded
        assert [int(n) for n in line["trials"].split(";")] == row.trials
        assert line["key"] == row.key and line["candidate"] == row.candidate
        assert (int(line["rank"]) if line["rank"] else None) == row.rank
        assert line["pareto"] == ("true" if row.pareto else "false")


def test_json_round_trips_every_number(report):
    payload = json.loads(render(report, "json"))
    assert payload["study"]["hypervolume"] == report.hypervolume
    assert payload["study"]["reference_point"] == report.reference
    assert payload["study"]["counts"]["complete"] == report.counts["COMPLETE"]
    assert len(payload["rows"]) == len(report.rows)
    for record, row in zip(payload["rows"], report.rows, strict=True):
        for column in NUMERIC:
            assert record[column] == getattr(row, column), column
        assert record["trials"] == row.trials and record["reused"] == row.reused
        assert record["rank"] == row.rank and record["feasible"] == row.feasible
        assert record["stages"] == (row.spec or {}).get("stages")


def _cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return re.split(r"(?<!\\)\|", line[1:-1])


def test_markdown_table_is_well_formed(report):
    text = render(report, "markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    header, rule, *body = table
    width = len(display_columns(report))
    assert len(_cells(header)) == width
    assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in _cells(rule)) and len(_cells(rule)) == width
    assert len(body) == len(report.rows)
    assert all(len(_cells(line)) == width for line in body)
    # Every non-table line is a list item of the header facts, and the hypervolume is among them.
    facts = [line for line in text.splitlines() if line and not line.startswith("|")]
    assert all(line.startswith("- ") for line in facts)
    assert any("hypervolume" in line for line in facts)


def test_latex_tabular_is_well_formed(report):
    text = render(report, "latex")
    lines = [line for line in text.splitlines() if not line.startswith("%")]
    assert lines[0].startswith(r"\begin{tabular}{") and lines[-1] == r"\end{tabular}"
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lr]+)\}", lines[0]).group(1)
    assert len(spec) == len(display_columns(report))
    rows = [line for line in lines[1:-1] if line != r"\hline"]
    assert len(rows) == len(report.rows) + 1  # the header row
    for line in rows:
        assert line.endswith(r" \\")
        assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1
        assert not re.search(r"(?<!\\)[%_#]", line), line  # specials escaped
        assert line.count("{") == line.count("}")
        assert line.count("$") % 2 == 0
    assert text.count(r"\begin{") == text.count(r"\end{")


def test_unknown_format_is_one_line(report):
    with pytest.raises(ValueError, match=r"^format: unknown format 'xml' \(choose from table, csv"):
        render(report, "xml")


def test_png_plot_is_a_real_image(storage, tmp_path):
    import matplotlib.image

    rep = read_report(storage, show_all=True)
    path = write_plot(rep, tmp_path / "front.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank canvas
    # The front's color (tab:blue) and the baseline's (tab:red) are both drawn.
    rgb = (pixels[..., :3] * 255).round()
    assert np.any(np.all(np.abs(rgb - [31, 119, 180]) < 8, axis=-1))
    assert np.any(np.all(np.abs(rgb - [214, 39, 40]) < 8, axis=-1))


def test_plot_axes_fit_the_trials_and_a_far_limit_is_marked_at_the_edge(storage):
    import matplotlib.pyplot as plt

    rep = read_report(storage, show_all=True)
    assert rep.meta["constraints"]["max_flops"] == 4e9  # the trials cost 0.5 to 3 GFLOPs
    fig = draw_plot(rep)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.5 - 0.08 * 2.5, 3.0 + 0.08 * 2.5))
    assert [t.get_text() for t in ax.texts if "limit" in t.get_text()] == ["FLOPs limit 4 GFLOPs →"]
    assert not [line for line in ax.get_lines() if line.get_linestyle() == ":"]  # no line beyond the axis
    plt.close(fig)


def test_plot_draws_a_limit_inside_the_trials_as_a_line(storage):
    import matplotlib.pyplot as plt

    rep = read_report(storage, show_all=True)
    rep.meta["constraints"]["max_flops"] = 2.5e9
    fig = draw_plot(rep)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.3, 3.2))
    limit = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in limit] == [2.5] and limit[0].get_label() == "FLOPs limit 2.5 GFLOPs"
    assert not [t for t in ax.texts if "limit" in t.get_text()]
    plt.close(fig)


def test_svg_plot_parses_as_xml(storage, tmp_path):
    rep = read_report(storage, show_all=True)
    path = write_plot(rep, tmp_path / "front.svg")
    assert path.stat().st_size > 20_000
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 100


def test_plot_rejects_other_suffixes(storage, tmp_path):
    rep = read_report(storage)
    with pytest.raises(ValueError, match=r"^plot: front.jpg: the file name must end in .png or .svg$"):
        write_plot(rep, tmp_path / "front.jpg")
    assert not (tmp_path / "front.jpg").exists()


@pytest.mark.parametrize("fmt", ["table", "markdown", "latex", "csv", "json"])
def test_every_format_carries_the_noise_the_intervals_and_the_verdicts(report, fmt):
    if fmt == "table":  # what `gcsearch report` prints: the header lines, then the table
        header, _, lines = text_table(report, display_columns(report))
        text = "\n".join([*header_lines(report), header, *lines])
    else:
        text = render(report, fmt)
    judged = [r for r in report.rows if r.verdict is not None]
    assert judged
    if fmt in ("csv", "json"):
        records = (list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)["rows"])
        for record, row in zip(records, report.rows, strict=True):
            assert {"delta_accuracy_low", "delta_accuracy_high", "verdict"} <= set(record)
            assert (record["verdict"] or None) == row.verdict  # CSV writes None as an empty cell
        if fmt == "json":
            assert json.loads(text)["study"]["noise"]["std"] == pytest.approx(1.0)
        return
    assert "seed noise ±1.00 pts" in text
    for row in judged:
        assert row.verdict in text
    low, high = judged[0].delta_accuracy_low, judged[0].delta_accuracy_high
    assert f"[{low:+.2f}, {high:+.2f}]" in text
