"""PostgreSQL goes away in the middle of a study: the worker stops with one clear line and exit code 1, and
a later run completes the study with nothing lost.

The worker reaches the server through a TCP forwarder started here (tcp_proxy.TcpProxy); cutting it breaks
every open connection and refuses new ones, as a stopped server or a lost network does. The cut happens at a
chosen moment: while a trial trains (its per-epoch writes fail), or between trials (the worker's poll fails).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from reliability_helpers import FIGURES, by_state, finished, grid_size, lost, trials_of, write_grid
from run_helpers import postgres_url_or_skip, run_cli
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from gcsearch.run.functions import default_functions
from gcsearch.storage.urls import mask_url


@pytest.fixture
def postgres_url() -> str:
    return postgres_url_or_skip()


@pytest.fixture
def study_name(postgres_url: str) -> Iterator[str]:
    name = f"outage-{uuid.uuid4().hex[:12]}"
    yield name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            optuna.delete_study(study_name=name, storage=postgres_url)
        except KeyError:
            pass


def _through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.mark.parametrize("moment", ["training", "between trials"])
def test_a_lost_server_stops_the_worker_with_exit_1_and_a_later_run_completes(
        moment: str, postgres_url: str, study_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = make_url(postgres_url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
    via_proxy = _through(proxy, postgres_url)
    path = write_grid(tmp_path / "pg.toml", study_name, stage_sets=2, positions=2, epochs=2)
    n = grid_size(2, 2)
    cut_at = 3  # the third trial's training, or the worker's third look at the study (after two trials)
    calls = {"n": 0}

    def cut_then(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == cut_at:
                proxy.cut()
            return original(*args, **kwargs)
        return wrapper

    functions = default_functions()
    with monkeypatch.context() as patch:
        if moment == "training":
            functions = replace(functions, train=cut_then(functions.train))
        else:
            patch.setattr(optuna.storages, "fail_stale_trials", cut_then(optuna.storages.fail_stale_trials))
        try:
            code = run_cli("--study", str(path), "--storage", via_proxy, "--quiet", "--heartbeat", "1",
                           functions=functions)
        finally:
            proxy.cut()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: --storage:"), err
    assert mask_url(via_proxy) in lines[0] and "Traceback" not in err
    assert "connection" in lines[0].lower() or "server" in lines[0].lower(), lines[0]  # the driver's reason

    trials = trials_of(postgres_url, study_name)
    assert by_state(trials).get("COMPLETE") == 2, by_state(trials)
    before = finished(postgres_url, study_name)

    # The server is back (here: the direct URL); the same command completes the study.
    assert run_cli("--study", str(path), "--storage", postgres_url, "--quiet", "--heartbeat", "1") == 0
    trials = trials_of(postgres_url, study_name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n == len({t.user_attrs["key"] for t in complete}), by_state(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    missing = lost(before, finished(postgres_url, study_name))
    FIGURES["lost"] += len(missing)
    assert missing == []
    FIGURES["storage_faults"] += 1
