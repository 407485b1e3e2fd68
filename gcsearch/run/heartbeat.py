"""A running trial's heartbeat, written from a daemon thread, so that a worker that dies is noticed."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import optuna


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Write the running trial's heartbeat every `interval` seconds from a daemon thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one may get through
                pass

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
