"""Atomic, ``weights_only``-loadable training checkpoints of the HRM trainer; resuming and warm-starting from them.

A checkpoint is one ``torch.save`` file holding plain containers, tensors, numbers and strings only, so
``torch.load(path, weights_only=True)`` accepts it::

    {"format": CHECKPOINT_FORMAT, "model": ..., "optimizer": ..., "scheduler": ..., "loss_weighting": ...,
     "rng": {"trainer": uint8 tensor, "torch_cpu": uint8 tensor, "torch_cuda": [uint8 tensor, ...]},
     "step": int, "epoch": int, ... config dicts and trainer bookkeeping}

A run folder holds ``last.pt`` (after every epoch, for resuming), ``best.pt`` (the best validation
criterion) and, under per-head early stopping, ``best_head_b.pt`` (Head B's best). Files are written with
data.store.atomic_output (a crash leaves the old file or the new one, never a partial one);
``save_checkpoint`` refuses a model state with a non-finite tensor, so a corrupted checkpoint is never
written. Resuming (:func:`resume_training`) checks that the checkpoint belongs to the same run (configs
and sample count) before it loads anything. Every failure is a :class:`CheckpointError` (a LabError: one
line naming the file and what was expected; the CLIs exit 2).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from lab_v10.src.config import HRMConfig, TrainConfig, config_to_dict
from lab_v10.src.data.store import atomic_output, write_bytes_atomic
from lab_v10.src.errors import LabError

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
HEAD_B_BEST_CHECKPOINT = "best_head_b.pt"  # per-head early stopping: the weights at Head B's best epoch


class CheckpointError(LabError, ValueError):
    """A checkpoint cannot be written (non-finite state) or read (missing, corrupt, wrong format, another run's)."""


class Stateful(Protocol):
    """A part of the training state: a module, optimizer or scheduler."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


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
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)


def read_weights_only(path: Path, what: str, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a one-line CheckpointError naming ``path`` and ``what`` it should
    be when the file is missing, truncated, damaged or not a torch file (torch's warnings are silenced)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types, with long multi-line messages, for foreign files
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:120]
        raise CheckpointError(f"{path}: not a readable {what} (truncated, damaged or not written by this lab: "
                              f"{type(exc).__name__}{': ' + first if first else ''})") from None


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; CheckpointError names the path on any failure."""
    payload = read_weights_only(path, "checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = f"format {payload.get('format')!r}" if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: expected a training checkpoint (last.pt, best.pt) of format "
                              f"{CHECKPOINT_FORMAT}, got {found}")
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


# ----------------------------------------------------------------------------------------------
# Training runs


def run_config(hrm_cfg: HRMConfig, train_cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The configs a checkpoint records and a resume must match; where and how a run executes
    (``train.device``, ``train.threads``) does not change what it computes, so it is left out."""
    train = config_to_dict(train_cfg)
    train.pop("device")
    train.pop("threads")
    return {"hrm": config_to_dict(hrm_cfg), "train": train}


def training_payload(parts: Mapping[str, Stateful], generator: torch.Generator, **fields: Any) -> dict[str, Any]:
    """A checkpoint payload: each part's state_dict under its name, the RNG states, then ``fields``."""
    return {**{name: part.state_dict() for name, part in parts.items()}, "rng": rng_state(generator), **fields}


def resume_training(
    path: Path,
    parts: Mapping[str, Stateful],
    generator: torch.Generator,
    config: dict[str, dict[str, Any]],
    n_train: int,
    device: torch.device,
) -> dict[str, Any]:
    """Load the checkpoint ``path`` into ``parts`` and the RNG states and return its payload.

    CheckpointError, before anything is loaded, when it is not a training checkpoint (no config, sample count,
    progress, RNG or part states), its :func:`run_config` differs from ``config`` (naming the keys) or it was
    trained on another number of samples than ``n_train``.
    """
    payload = load_checkpoint(path, device)
    missing = [key for key in ("config", "n_train", "progress", "rng", *parts) if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: expected a trainer's last.pt, got a checkpoint without {', '.join(missing)}")
    stored = {section: payload["config"].get(section, {}) for section in config}
    mismatched = [
        f"{section}.{key}"
        for section, values in config.items()
        for key in sorted(set(values) | set(stored[section]))
        if values.get(key) != stored[section].get(key)
    ]
    if mismatched:
        raise CheckpointError(f"{path}: checkpoint config differs from this trainer's in {', '.join(mismatched)} "
                              "(expected the same hrm and train settings; start a new run for changed ones)")
    if payload["n_train"] != n_train:
        raise CheckpointError(f"{path}: checkpoint trained on {payload['n_train']} samples, this fit has {n_train} "
                              "(expected the same data and split)")
    for name, part in parts.items():
        part.load_state_dict(payload[name])
    restore_rng_state(payload["rng"], generator)
    return payload


def copy_run(last: Path, out_dir: Path, best_names: list[str]) -> None:
    """Copy the checkpoint ``last`` and the run's best checkpoints ``best_names`` (expected beside it) into
    ``out_dir``, so out_dir can itself be resumed; files already there are left alone."""
    copies = [(last, out_dir / LAST_CHECKPOINT)]
    for name in best_names:
        source = last.parent / name
        if not source.is_file():
            raise CheckpointError(f"{last}: the run's best checkpoint {source} is missing (expected beside it)")
        copies.append((source, out_dir / name))
    for source, target in copies:
        if source.resolve() != target.resolve():
            write_bytes_atomic(source.read_bytes(), target)


def warm_start_weights(path: Path, hrm_cfg: HRMConfig) -> dict[str, torch.Tensor]:
    """The network weights (``model``) of the checkpoint ``path`` (a previous fold's best.pt) to start a new fit
    from (``train.warm_start``). CheckpointError naming ``path`` when it is missing or damaged, or was trained
    with other ``hrm`` settings (naming the keys; e.g. other widths or feature counts)."""
    payload = load_checkpoint(path)
    stored = payload.get("config", {}).get("hrm", {}) if isinstance(payload.get("config"), dict) else {}
    wanted = config_to_dict(hrm_cfg)
    mismatched = [f"hrm.{key}" for key in sorted(set(wanted) | set(stored)) if wanted.get(key) != stored.get(key)]
    if "model" not in payload or mismatched:
        problem = f"hrm settings differ in {', '.join(mismatched)}" if mismatched else "it holds no model weights"
        raise CheckpointError(f"{path}: cannot warm-start from this checkpoint: {problem} (expected the previous "
                              "fold's best.pt of the same run)")
    return payload["model"]


PRETRAIN_FREE_KEYS = ("n_symbols", "symbol_embedding")  # hrm keys a pretrained network may differ in
SYMBOL_WEIGHTS = "symbol_embedding.weight"


def pretrained_weights(path: Path, hrm_cfg: HRMConfig, member: int) -> dict[str, torch.Tensor]:
    """Ensemble member ``member``'s starting weights from the pretrained HRM adapter file ``path``
    (``train.init_from``, written by ``scripts/pretrain_hrm.py``): the stored network ``member`` modulo their
    number. The symbol embedding is dropped (the new network keeps its own, zero-initialised) because the
    symbols differ; every other ``hrm`` setting must match, else CheckpointError naming ``path`` and the keys."""
    state = read_weights_only(Path(path), "pretrained HRM (train.init_from)")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or not state.get("nets"):
        raise CheckpointError(f"{path}: train.init_from expects an HRM adapter file (scripts/pretrain_hrm.py --out, "
                              "or a run's saved adapter)")
    stored = state["config"].get("hrm", {})
    wanted = config_to_dict(hrm_cfg)
    mismatched = [f"hrm.{key}" for key in sorted(set(wanted) | set(stored))
                  if key not in PRETRAIN_FREE_KEYS and wanted.get(key) != stored.get(key)]
    if mismatched:
        raise CheckpointError(f"{path}: cannot start from this pretrained HRM: hrm settings differ in "
                              f"{', '.join(mismatched)} (pretrain with the same hrm section)")
    nets = state["nets"]
    return {k: v for k, v in nets[member % len(nets)].items() if k != SYMBOL_WEIGHTS}

