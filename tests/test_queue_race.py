"""Machines that resume a grid at the same moment queue each missing point once."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from run_helpers import postgres_url_or_skip, write_grid

from gcsearch.contract import point_of
from gcsearch.storage.writer import open_storage
from gcsearch.study import lifecycle
from gcsearch.study.lifecycle import open_study
from gcsearch.study.parse import read_study_file
from gcsearch.study.spec import StudySpec


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return postgres_url_or_skip()


def _open(spec: StudySpec, url: str) -> None:
    open_study(spec, open_storage(url), spec.metadata((3, 16, 16), 5))


def test_machines_resuming_a_grid_at_once_queue_each_missing_point_once(url: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    small = read_study_file(str(write_grid(tmp_path / "small.toml", name, stages='["c4"]')))
    big = read_study_file(str(write_grid(tmp_path / "big.toml", name, stages='["c3", "c4", "c5"]')))
    _open(small, url)  # the first run: 3 points

    # Each resumer has read what is there and waits before queueing what it found missing: without a lock all
    # four would find the same 4 new points missing and queue them four times.
    queue_points = lifecycle.queue_points

    def slow(study: optuna.Study, *points: object) -> int:
        time.sleep(0.5)
        return queue_points(study, *points)

    monkeypatch.setattr(lifecycle, "queue_points", slow)
    errors: list[BaseException] = []

    def resume() -> None:
        try:
            _open(big, url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=resume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    points = [point_of(t) for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)]
    assert len(points) == len(set(points)) == len(big.grid()) == 7
