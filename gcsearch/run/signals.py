"""Signals in a worker: SIGTERM handled like Ctrl-C, and both held back while a claimed trial gets its first
heartbeat or while an interrupted one is recorded, so that no trial is left RUNNING without a heartbeat."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def main_thread() -> bool:
    """Only the main thread may install handlers or block signals."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises `Interrupted` while the body runs; the previous handler is put back afterwards."""
    if not main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few storage calls; they are delivered right after."""
    held = {signal.SIGINT, signal.SIGTERM}
    active = main_thread() and hasattr(signal, "pthread_sigmask")
    if active:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if active:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C while the body runs (recording an interrupted trial) does nothing."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
