"""Shared by every test: the `cuda` marker.

Tests marked `cuda` need a GPU and are skipped without one, so the suite passes on a CPU-only machine and
`python -m pytest -m cuda` runs exactly the GPU checks where one exists (benchmarks/gpu_check.py does).
"""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped when torch sees none")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
