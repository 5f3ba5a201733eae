"""Where a training run executes: the device named by ``train.device`` and deterministic algorithms."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from lab_v10.src.errors import ConfigError

CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"  # cuBLAS setting torch requires for deterministic matmuls


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' or 'cuda:N' (ConfigError when CUDA is missing)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"train.device: {name!r} requested but CUDA is not available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use 'auto' or 'cpu'"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """Turn on torch.use_deterministic_algorithms (warn-only) inside the block; restore the previous mode."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
