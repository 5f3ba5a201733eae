"""Shared pytest fixtures.

Real market data lives beside the project in ``../shared/data`` (never committed). Tests that need it use
the ``shared_data_dir`` fixture, which skips with a reason when the folder is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repository as ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_per_worker():
    """Tests run in parallel workers (pytest -n 2 on 2 cores): one intra-op thread each avoids oversubscription."""
    import torch

    torch.set_num_threads(1)
