"""Atomic, ``weights_only``-loadable training checkpoints for the HRM trainer.

A checkpoint is one ``torch.save`` file holding plain containers, tensors, numbers and strings only, so
``torch.load(path, weights_only=True)`` accepts it::

    {"format": CHECKPOINT_FORMAT, "model": ..., "optimizer": ..., "scheduler": ..., "loss_weighting": ...,
     "rng": {"trainer": uint8 tensor, "torch_cpu": uint8 tensor, "torch_cuda": [uint8 tensor, ...]},
     "step": int, "epoch": int, ... config dicts and trainer bookkeeping}

Writing goes to a temporary file in the destination folder, is flushed and fsynced, and then replaces
the destination with ``os.replace`` (atomic on POSIX and Windows), so a crash leaves either the old or
the new file, never a partial one. ``save_checkpoint`` refuses to write a model state with a non-finite
tensor: a corrupted checkpoint is never written.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from lab_v10.src.data.store import atomic_output

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written (non-finite state) or read (missing, corrupt, wrong format)."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then move it onto ``path`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def non_finite_entries(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold NaN or +-inf."""
    return [
        name for name, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (must hold "model", a state_dict); raise CheckpointError if it is non-finite."""
    bad = non_finite_entries(payload["model"])
    if bad:
        raise CheckpointError(f"{path}: refusing to write a checkpoint with non-finite weights in {', '.join(bad[:5])}")
    atomic_write(Path(path), lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle))


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; CheckpointError names the path on any failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: expected checkpoint format {CHECKPOINT_FORMAT}")
    return payload


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The trainer generator's state and the global torch CPU/CUDA RNG states, as uint8 tensors."""
    return {
        "trainer": generator.get_state(),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`rng_state` (CUDA states are restored when this process sees as many devices)."""
    generator.set_state(state["trainer"].cpu())
    torch.set_rng_state(state["torch_cpu"].cpu())
    cuda_states = state["torch_cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])

