"""Shared by every test: the `cuda` marker, the `one_thread` fixture, and a folder cache of the test run.

Tests marked `cuda` need a GPU and are skipped without one, so the suite passes on a CPU-only machine and
`python -m pytest -m cuda` runs exactly the GPU checks where one exists (benchmarks/gpu_check.py does).

`one_thread` gives a test one intra-op torch thread; a file that trains or traces tiny models asks for it with
`pytestmark = pytest.mark.usefixtures("one_thread")`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped when torch sees none")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("cuda") is not None for item in items):
        return  # torch is imported only where a test needs it: torch-free tests run without it
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread while the test runs. Tiny models and batch-of-one traces gain nothing from a second, and
    on a busy machine (2 shared cores here) an OpenMP worker spins while its partner waits for a core, which
    makes each trial or trace many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def folder_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Decoded image folders are cached in a folder of the test (one each), never in the user's ~/.cache."""
    where = tmp_path_factory.mktemp("folder-cache")
    monkeypatch.setenv("GCSEARCH_FOLDER_CACHE", str(where))
    return where
