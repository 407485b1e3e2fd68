"""The report's numbers on a hand-made study: rows, front, ranks, hypervolume, deltas, ablation.

The study (tests/report_study.py) has known values, so every expectation below is worked out by hand.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import shutil
import uuid

import numpy as np
import optuna
import pytest
from report_study import COSTS, SPECS, STUDY, build_hand_study, study_meta

from gcsearch.errors import InputError
from gcsearch.report.build import build_report, read_report
from gcsearch.report.labels import short_label
from gcsearch.storage.reader import list_studies, read_study
from gcsearch.storage.records import constraints_from_system_attrs


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    return build_hand_study(tmp_path_factory.mktemp("report") / "hand.db")


def by_key(report):
    keys = {SPECS[name].key: name for name in SPECS}
    return {keys[row.key]: row for row in report.candidates}


def test_repeats_pool_into_one_row_with_mean_std_and_n(storage):
    rows = by_key(read_report(storage, show_all=True))
    a = rows["A"]
    # Trials 1, 4, 8 (74, 75, 76); trial 10 repeats trial 1 ("reused_from") and is counted once.
    assert a.trials == [1, 4, 8]
    assert a.reused == [10]
    assert a.n == 3
    assert a.accuracy == pytest.approx(75.0)
    assert a.accuracy_std == pytest.approx(1.0)  # sample standard deviation of 74, 75, 76
    assert a.flops == COSTS["A"][0] and a.params == COSTS["A"][1]
    assert rows["B"].n == 1 and rows["B"].accuracy_std is None


def test_front_ranks_and_hypervolume_match_hand_computed_values(storage):
    rep = read_report(storage, show_all=True)
    rows = by_key(rep)
    # (accuracy, GFLOPs): B (70, 1.0), C (72, 1.5), A (75, 2.0) are non-dominated; D (71, 1.8) is dominated by C;
    # E (69, 3.0) by D. X (90, 0.5) would dominate everything but breaks max_flops.
    assert {n: r.rank for n, r in rows.items()} == {"B": 1, "C": 1, "A": 1, "D": 2, "E": 3, "X": None}
    assert [r.key for r in rep.front] == [SPECS[n].key for n in ("B", "C", "A")]  # cheapest first
    assert not rows["X"].feasible and rows["X"].violated == ["max_flops"] and not rows["X"].pareto
    # Reference point: worst ranked value moved by 10% of the spread: accuracy 69 - 0.6, GFLOPs 3.0 + 0.2.
    assert rep.reference == pytest.approx({"accuracy": 68.4, "flops": 3.2})
    # Dominated area, sliced along FLOPs: [1.0, 1.5) x (70 - 68.4) + [1.5, 2.0) x (72 - 68.4) + [2.0, 3.2] x 6.6
    assert rep.hypervolume == pytest.approx(0.5 * 1.6 + 0.5 * 3.6 + 1.2 * 6.6)
    assert rep.hypervolume == pytest.approx(10.52)
    assert rep.hypervolume_unit == "%·GFLOPs"


def test_failed_pruned_and_running_trials_never_make_a_row(storage):
    rep = read_report(storage, show_all=True)
    numbers = {n for row in rep.candidates for n in row.trials + row.reused}
    assert numbers == {0, 1, 2, 3, 4, 5, 8, 9, 10}
    assert 6 not in numbers and 7 not in numbers and 11 not in numbers
    assert rep.counts["COMPLETE"] == 9 and rep.counts["FAIL"] == 1
    assert rep.counts["PRUNED"] == 1 and rep.counts["RUNNING"] == 1
    assert max(r.accuracy for r in rep.front) == pytest.approx(75.0)  # not the failed 99 or the pruned 98


def test_deltas_to_the_baseline(storage):
    rep = read_report(storage, show_all=True)
    rows = by_key(rep)
    assert rep.baseline is rows["B"]
    a = rows["A"]
    assert a.delta_accuracy == pytest.approx(5.0)
    assert a.delta_flops_pct == pytest.approx(100.0)
    assert a.delta_params_pct == pytest.approx(20.0)
    assert rows["D"].delta_params_pct == pytest.approx(-10.0)
    assert rows["B"].delta_accuracy == 0.0


def test_three_objectives_front_and_hypervolume(storage):
    rep = read_report(storage, objectives="accuracy,flops,params", show_all=True)
    rows = by_key(rep)
    # D has the fewest params (9 M), so no row dominates it any more; E (69, 3.0, 13) is dominated by D.
    assert {n: r.rank for n, r in rows.items()} == {"B": 1, "C": 1, "A": 1, "D": 1, "E": 2, "X": None}
    assert rep.reference == pytest.approx({"accuracy": 68.4, "flops": 3.2, "params": 13.4})
    points = [(rows[n].accuracy, rows[n].flops / 1e9, rows[n].params / 1e6) for n in ("B", "C", "A", "D")]
    assert rep.hypervolume == pytest.approx(union_volume(points, (68.4, 3.2, 13.4)))


def union_volume(points, ref):
    """Volume of the union of boxes [ref acc, acc] x [x, ref x] x [y, ref y] by inclusion-exclusion."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            acc = min(p[0] for p in subset) - ref[0]
            x = ref[1] - max(p[1] for p in subset)
            y = ref[2] - max(p[2] for p in subset)
            total += (-1) ** (k + 1) * max(acc, 0) * max(x, 0) * max(y, 0)
    return total


def test_a_reference_point_inside_the_front_is_refused(storage):
    # The ranks and the hypervolume themselves are checked point by point in test_pareto.py.
    with pytest.raises(InputError, match="reference: the reference point must be worse than every front point"):
        read_report(storage, reference={"accuracy": 75.0, "flops": 4.0})


def test_given_reference_point(storage):
    rep = read_report(storage, reference={"accuracy": 60.0, "flops": 4.0})
    # [1.0, 1.5) x 10 + [1.5, 2.0) x 12 + [2.0, 4.0] x 15
    assert rep.hypervolume == pytest.approx(5 + 6 + 30)
    assert rep.reference_rule == "given"


def test_ablation_view_is_chosen_when_one_dimension_varies(storage):
    rep = read_report(storage)  # only the stages differ between the non-baseline candidates
    assert rep.view == "ablation" and rep.by == "stages"
    assert rep.rows[0].baseline
    values = [tuple(r.value) for r in rep.rows[1:]]
    assert values == [("c2",), ("c3",), ("c4",), ("c5",), ("c3", "c4", "c5")]
    assert rep.rows[2].accuracy == pytest.approx(75.0) and rep.rows[2].n == 3


def test_by_pools_every_candidate_with_the_value(storage):
    rep = read_report(storage, by="block")
    assert [r.value for r in rep.rows] == [None, "gc"]  # baseline first, then block gc
    gc = rep.rows[1]
    # gc pools A (74, 75, 76), C (72), D (71), E (69), X (90): 7 trials.
    accs = [74, 75, 76, 72, 71, 69, 90]
    assert gc.n == 7 and gc.candidates == 5
    assert gc.accuracy == pytest.approx(sum(accs) / 7)
    assert gc.accuracy_std == pytest.approx(float(np.std(accs, ddof=1)))
    assert not gc.feasible  # X is among them


def test_front_view_sort_and_top(storage):
    rep = read_report(storage, sort="accuracy")  # the ablation view keeps the baseline first
    assert [r.value for r in rep.rows] == [None, ["c3", "c4", "c5"], ["c3"], ["c4"], ["c5"], ["c2"]]
    rep = read_report(storage, show_all=True, sort="accuracy", top=2)
    assert [round(r.accuracy) for r in rep.rows] == [90, 75]  # X (infeasible) is still a finished candidate
    rep = read_report(storage, show_all=True, sort="flops")
    assert [r.flops for r in rep.rows] == sorted(r.flops for r in rep.candidates)
    rep = read_report(storage, show_all=True)
    assert [r.rank for r in rep.rows] == [1, 1, 1, 2, 3, None]


def test_front_view_when_no_dimension_stands_out(tmp_path):
    url = build_hand_study(tmp_path / "two.db")
    study = optuna.load_study(study_name=STUDY, storage=url)
    from report_study import complete

    # A different position as well as different stages: no single varying dimension, so the front is shown.
    other = SPECS["A"].__class__(block="se", stages=["c3"], position="after_add")
    trial = complete("A", 73.0)
    trial.user_attrs.update(spec=other.to_dict(), key=other.key, label=other.label())
    study.add_trial(trial)
    rep = read_report(url)
    assert rep.view == "front" and [r.rank for r in rep.rows] == [1, 1, 1]


def test_unknown_names_raise_input_errors(storage):
    data = read_study(storage)
    for kwargs, field in (({"objectives": "accuracy,size"}, "objectives"), ({"by": "colour"}, "by"),
                          ({"sort": "speed"}, "sort"), ({"top": 0}, "top"),
                          ({"objectives": "accuracy,accuracy"}, "objectives"),
                          ({"objectives": "accuracy,latency"}, "objectives")):
        with pytest.raises(InputError) as info:
            build_report(data, **kwargs)
        assert str(info.value).startswith(f"{field}:") and "\n" not in str(info.value)
    with pytest.raises(InputError, match="no study named 'nope'.*studies: hand"):
        read_report(storage, "nope")


def test_optuna_sees_the_same_trials_and_values(storage):
    rep = read_report(storage, show_all=True)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = {t.number: t for t in study.get_trials()}
    complete = {n for n, t in trials.items() if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete == {n for row in rep.candidates for n in row.trials + row.reused}
    for row in rep.candidates:
        values = [trials[n].values for n in row.trials]
        assert row.accuracy == pytest.approx(sum(v[0] for v in values) / len(values), abs=1e-12)
        assert row.flops == pytest.approx(values[0][1])
        assert row.feasible == all(c <= 0 for n in row.trials for c in trials[n].constraints.values())
        assert {trials[n].user_attrs["key"] for n in row.trials} == {row.key}
    # Optuna's own front is over single trials (constraints considered): here it is each front row's best seed.
    optuna_front = {t.number for t in study.best_trials}
    assert optuna_front == {max(row.trials, key=lambda n: trials[n].values[0]) for row in rep.front} == {0, 2, 8}


def test_reading_never_writes_and_works_on_a_copy(storage, tmp_path):
    path = storage.removeprefix("sqlite:///")
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    copy = tmp_path / "copied-from-elsewhere.db"
    shutil.copy(path, copy)
    rep = read_report(str(copy), show_all=True)  # a bare path works as well as a URL
    assert len(rep.candidates) == 6
    read_report(storage)
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before
    import sqlalchemy as sa

    from gcsearch.storage.reader import connect

    with connect(storage).connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly database"):
        conn.execute(sa.text("UPDATE studies SET study_name = 'x'"))  # the connection itself refuses to write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied-from-elsewhere.db"]  # no journal left behind


def test_wal_database_reads_and_stays_unchanged(storage, tmp_path):
    """Workers keep SQLite in WAL mode; the report reads such a file (and a copy of one) without changing it."""
    import sqlite3

    path = tmp_path / "wal.db"
    shutil.copy(storage.removeprefix("sqlite:///"), path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_report(str(path), show_all=True).hypervolume == pytest.approx(10.52)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_read_only_media_fall_back_to_immutable(storage, tmp_path, monkeypatch):
    """Where SQLite cannot create a WAL index next to the file (read-only mount), the file is read as immutable."""
    import sqlite3

    from gcsearch.storage import reader as storage_reader

    real_connect = sqlite3.connect
    opened = []

    def connect(database, *args, **kwargs):
        uri = str(database)
        opened.append(uri)
        conn = real_connect(database, *args, **kwargs)
        if "immutable=1" in uri:
            return conn

        class CannotOpen:  # what a read-only mount answers for a WAL database without its -shm file
            def execute(self, *a):
                raise sqlite3.OperationalError("unable to open database file")

            def close(self):
                conn.close()

        return CannotOpen()

    monkeypatch.setattr(storage_reader.sqlite3, "connect", connect)
    rep = read_report(storage, show_all=True)
    assert rep.hypervolume == pytest.approx(10.52)
    assert any(uri.endswith("?mode=ro&immutable=1") for uri in opened)


def test_missing_database_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(InputError, match="no such file"):
        read_report(f"sqlite:///{missing}")
    with pytest.raises(InputError, match="no such file"):
        list_studies(str(missing))
    assert not missing.exists()
    (tmp_path / "notes.txt").write_text("not a database, just long enough to have a header" * 20)
    with pytest.raises(InputError, match="not a SQLite database|not an Optuna database"):
        read_report(str(tmp_path / "notes.txt"))


def test_studies_listing(storage, tmp_path):
    summary = list_studies(storage)
    assert [s.name for s in summary] == [STUDY]
    assert summary[0].counts == {"COMPLETE": 9, "PRUNED": 1, "FAIL": 1, "RUNNING": 1, "WAITING": 0}
    assert summary[0].meta["proxy"]["dataset"] == "synthetic"
    assert summary[0].directions == ["MAXIMIZE", "MINIMIZE"]


def test_constraints_in_both_of_optunas_formats():
    assert constraints_from_system_attrs({"constraints": [0.5, -1.0]}) == {"0": 0.5, "1": -1.0}
    assert constraints_from_system_attrs({"constraints:max_flops": -2.0, "other": 1}) == {"max_flops": -2.0}


def test_short_labels():
    assert short_label(SPECS["B"].to_dict()) == "baseline"
    assert short_label(SPECS["X"].to_dict()) == "gc r16 c3-c5 1x1 all"
    custom = SPECS["A"].__class__(block="custom", context="avg", fusion="add", norm="none", ratio=8,
                                  stages=["c3", "c5"], position="after_add", blocks="last")
    assert short_label(custom.to_dict()) == "avg/add r8 noLN c3+c5 add last"
    assert short_label(None, fallback="trial 3") == "trial 3"


def test_study_without_gcsearch_attributes_reads_user_attrs(tmp_path):
    """A plain Optuna study (no "gcsearch" study attribute) still reports from the trials' user attributes."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(storage=url, study_name="plain", directions=["maximize", "minimize"])
    from report_study import complete

    study.add_trial(complete("B", 70.0))
    study.add_trial(complete("C", 72.0))
    rep = read_report(url)
    assert [r.accuracy for r in rep.front] == [70.0, 72.0]
    assert rep.meta == {} and math.isfinite(rep.hypervolume)
    assert study_meta()["objectives"][0]["name"] == "accuracy"


def test_postgresql_storage_reads_the_same_report():
    """The same study in PostgreSQL (the CI's server) gives the same rows and hypervolume as in SQLite."""
    url = os.environ.get("GCSEARCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("GCSEARCH_TEST_POSTGRES_URL is not set (the CI script sets it to its PostgreSQL server)")
    name = f"report-test-{uuid.uuid4().hex[:8]}"
    build_hand_study(url, name)
    try:
        rep = read_report(url, name, show_all=True)
        assert rep.hypervolume == pytest.approx(10.52)
        assert [r.rank for r in rep.rows] == [1, 1, 1, 2, 3, None]
        assert rep.counts["COMPLETE"] == 9 and rep.counts["RUNNING"] == 1
        assert name in [s.name for s in list_studies(url)]
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_latency_when_measured(tmp_path):
    """A study with a latency objective: the column, its delta and a front over accuracy and latency."""
    from report_study import attrs

    from gcsearch.report.formats import display_columns

    url = f"sqlite:///{tmp_path / 'latency.db'}"
    study = optuna.create_study(storage=url, study_name="lat", directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("gcsearch", study_meta(("accuracy", "flops", "latency")))
    for name, acc, ms in (("B", 70.0, 2.0), ("C", 72.0, 3.0), ("A", 73.0, 2.5)):
        latency = {"forward": ms, "forward_backward": 3 * ms}
        study.add_trial(optuna.trial.create_trial(
            values=[acc, attrs(name, acc)["flops"], ms], user_attrs=attrs(name, acc, latency_ms=latency)))
    rep = read_report(url, objectives="accuracy,latency", show_all=True)
    rows = {r.candidate: r for r in rep.rows}
    assert rows["gc r16 c4 1x1 all"].latency_ms == 3.0 and rows["gc r16 c4 1x1 all"].rank == 2  # A: better, faster
    assert rows["gc r16 c3 1x1 all"].delta_latency_pct == pytest.approx(25.0)
    assert rep.hypervolume_unit == "%·ms"
    titles = [title for title, _, _ in display_columns(rep)]
    assert "latency ms" in titles and "Δlatency" in titles


def test_every_delta_has_its_interval_and_a_holm_corrected_verdict(storage):
    """Only A has repeats (74, 75, 76): the study's noise is their std, 1 point with 2 df. A's +5 points over the
    one-seed baseline has p = 0.049 alone, which Holm's correction over the five judged candidates does not
    let through; X's +20 points does."""
    from scipy import stats

    report = read_report(storage, STUDY, show_all=True)
    assert (report.noise.std, report.noise.df, report.noise.groups) == (pytest.approx(1.0), 2, 1)
    rows = by_key(report)
    a = rows["A"]
    half = stats.t.ppf(0.975, 2) * math.sqrt(1 / 3 + 1)
    assert (a.delta_accuracy_low, a.delta_accuracy_high) == pytest.approx((5 - half, 5 + half))
    assert a.verdict == "within noise"
    assert rows["X"].verdict == "better"
    assert {r.verdict for r in report.candidates if not r.baseline} == {"within noise", "better"}
    assert report.baseline.verdict is None and report.baseline.delta_accuracy_low is None
    assert report.header()["noise"]["std"] == pytest.approx(1.0)


def test_no_repeats_means_every_verdict_is_unknown(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from report_study import complete

    study = optuna.create_study(storage=url, study_name="one", directions=["maximize", "minimize"])
    study.set_user_attr("gcsearch", study_meta())
    for name, accuracy in (("B", 70.0), ("C", 90.0)):
        study.add_trial(complete(name, accuracy))
    report = read_report(url, "one")
    assert report.noise.std is None
    c = next(r for r in report.candidates if not r.baseline)
    assert c.verdict == "unknown" and c.delta_accuracy == 20.0 and c.delta_accuracy_low is None


def test_front_members_within_noise_of_the_best_are_tied(storage):
    """The front is B (70), C (72) and A (75, its most accurate): against A, B's -5 has p = 0.049 and C's -3
    p = 0.12, and Holm over the two asks p <= 0.025 first, so no verdict separates them: all three are tied."""
    report = read_report(storage, STUDY)
    assert sorted(r.accuracy for r in report.front) == [70.0, 72.0, 75.0]
    assert all(r.tied for r in report.front)


def test_rows_off_the_front_within_noise_of_every_member_dominating_them_are_near_it(storage, tmp_path):
    """D (71, 1.8 GFLOPs) is kept off the front by C alone (72, 1.5 GFLOPs): -1 point on a noise of 1 with 2 df
    separates nothing, so D is near the front. E (69, 3 GFLOPs) is dominated by B, C and A; its -6 against A
    has p = 0.035, which Holm over its three dominators does not let through: near as well. With a noise of
    0.1 instead, both are separated from a member that dominates them and neither is near."""
    report = read_report(storage, STUDY, show_all=True)
    rows = by_key(report)
    assert rows["D"].near_front is True and rows["E"].near_front is True
    assert all(r.near_front is None for r in report.front)
    assert rows["X"].near_front is None  # infeasible: not ranked
    assert rows["D"].to_dict()["near_front"] is True
    from gcsearch.report.formats import front_marker, header_lines

    assert front_marker(rows["D"]) == "≈" and front_marker(rows["B"]) in ("*", "*≈")
    lines = header_lines(report)
    assert any(line.startswith("off the front: ≈ marks 2 candidates within seed noise") for line in lines)
    front_view = header_lines(read_report(storage, STUDY))
    assert any(line.startswith("near the front: ") and line.endswith("(--all marks them ≈)") for line in front_view)

    url = f"sqlite:///{tmp_path / 'tight.db'}"
    study = optuna.create_study(storage=url, study_name="tight", directions=["maximize", "minimize"])
    study.set_user_attr("gcsearch", study_meta())
    from report_study import complete

    for name, accuracies in (("B", (70.0, 70.1)), ("C", (72.0, 72.1)), ("A", (75.0, 75.1)), ("D", (71.0, 71.1)),
                             ("E", (69.0, 69.1))):
        for repeat, accuracy in enumerate(accuracies):
            study.add_trial(complete(name, accuracy, repeat))
    tight = by_key(read_report(url, "tight", show_all=True))
    assert tight["D"].near_front is False and tight["E"].near_front is False
