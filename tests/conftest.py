"""Shared pytest fixtures.

Real market data lives beside the project in ``../shared/data`` (never committed). Tests that need it use
the ``shared_data_dir`` fixture, which skips with a reason when the folder is absent.
"""
from __future__ import annotations

import importlib.util
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


@pytest.fixture(autouse=True)
def _no_tracking_store_from_the_environment(monkeypatch):
    """A developer's MLFLOW_TRACKING_URI must not receive the tests' runs (tests that track set their own)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_per_worker():
    """Tests run in parallel workers (pytest -n 2 on 2 cores): one intra-op thread each avoids oversubscription."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def main_v3():
    """main_v3.py imported as a module (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("main_v3", REPO_ROOT / "main_v3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def captured_run(monkeypatch) -> dict:
    """main_v3.py's pipeline.run replaced by a recorder of what it would run: ``cfg``, ``out``, ``preset``."""
    import lab_v10.src.pipeline as pipeline

    seen: dict = {}
    monkeypatch.setattr(pipeline, "run",
                        lambda cfg, out_dir, **kw: seen.update(cfg=cfg, out=out_dir, preset=kw.get("preset")))
    return seen
