"""Evaluation-mode HRM outputs: validation metrics (the early-stopping criterion) and predictions.

Every output is the sample's output at its halting segment under ``hrm_cfg.eval_halting``
(act_halting.act_rollout), in eval mode, under no_grad and, with ``bf16``, bf16 autocast.

Validation loss: ``head_a_nll + head_b_bce``, un-weighted, each the mean over the whole set (samples with a
label for that head; 0 without any). The Q losses and the task weights are excluded, so the criterion does
not move when the weighting does. A non-finite validation loss raises NonFiniteLossError.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lab_v10.src.options.act_halting import ACTRollout, act_rollout
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.segment_loss import (
    TASKS,
    NonFiniteLossError,
    bf16_autocast,
    masked_sums,
    per_sample_task_losses,
)


@dataclass
class HRMPredictions:
    """Per-sample outputs at each sample's halting segment (eval halting).

    mu, log_var (N,) float32: Head A in standardized yA units; proba_b (N, T_L) float32: Head-B probability
    per minute, NaN where minute_mask is False; steps (N,) int64: segments ``net`` used (Head A);
    steps_b (N,) int64: segments ``head_b_net`` used (Head B; equal to steps under joint early stopping).
    """

    mu: np.ndarray
    log_var: np.ndarray
    proba_b: np.ndarray
    steps: np.ndarray
    steps_b: np.ndarray


def rollouts(
    net: HRMNet, data: HRMTensors, batch_size: int, device: torch.device, bf16: bool
) -> Iterator[tuple[int, HRMTensors, ACTRollout]]:
    """(first row, batch on ``device``, act_rollout of ``net``) per batch of ``batch_size`` rows, in data
    order; eval mode and no_grad inside, ``net``'s mode restored after."""
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(data), batch_size):
            batch = data.subset(slice(start, start + batch_size)).to(device)
            with torch.no_grad(), bf16_autocast(device, bf16):
                rollout = act_rollout(
                    net, batch.x_daily, batch.x_minute, batch.minute_mask, training=False, symbol=batch.symbol
                )
            yield start, batch, rollout
    finally:
        net.train(was_training)


@torch.no_grad()
def validation_metrics(
    net: HRMNet, data: HRMTensors, batch_size: int, device: torch.device, bf16: bool
) -> dict[str, float]:
    """Metrics of ``net`` on ``data`` (nats): head_a_nll, head_b_bce, loss = their un-weighted sum, and
    segments = mean segments used (module docstring)."""
    if len(data) == 0:
        raise ValueError("evaluate needs at least one sample")
    sums = torch.zeros(len(TASKS), dtype=torch.float64)
    counts = torch.zeros(len(TASKS), dtype=torch.long)
    steps_total = 0
    for start, batch, rollout in rollouts(net, data, batch_size, device, bf16):
        losses, labelled = per_sample_task_losses(rollout.output, batch)  # (B, K), (B, K)
        bad = (labelled & ~torch.isfinite(losses)).any(-1)  # (B,)
        if bool(bad.any()):
            rows = (start + torch.nonzero(bad).flatten()).tolist()
            raise NonFiniteLossError(f"non-finite validation loss at validation samples {rows}")
        s, c = masked_sums(losses, labelled, torch.ones_like(bad))
        sums += s.double().cpu()
        counts += c.cpu()
        steps_total += int(rollout.steps.sum())
    means = (sums / counts.clamp_min(1)).tolist()
    metrics = dict(zip(TASKS, means))
    metrics["loss"] = sum(means)
    metrics["segments"] = steps_total / len(data)
    return metrics


@torch.no_grad()
def network_predictions(
    net: HRMNet, data: HRMTensors, batch_size: int, device: torch.device, bf16: bool
) -> HRMPredictions:
    """Every output of the one network ``net`` on ``data`` (see HRMPredictions); ``steps_b`` equals ``steps``."""
    if len(data) == 0:
        empty = np.zeros(0, dtype=np.float32)
        t_l = data.x_minute.shape[1]
        no_steps = np.zeros(0, np.int64)
        return HRMPredictions(empty, empty.copy(), np.zeros((0, t_l), np.float32), no_steps, no_steps.copy())
    mu, log_var, proba, steps = [], [], [], []
    for _, batch, rollout in rollouts(net, data, batch_size, device, bf16):
        out = rollout.output
        mu.append(out.mu.float().cpu())
        log_var.append(out.log_var.float().cpu())
        p = torch.sigmoid(out.logits_b.float()).masked_fill(~batch.minute_mask, float("nan"))  # (B, T_L)
        proba.append(p.cpu())
        steps.append(rollout.steps.cpu())
    counts = torch.cat(steps).numpy().astype(np.int64)
    return HRMPredictions(
        mu=torch.cat(mu).numpy(),
        log_var=torch.cat(log_var).numpy(),
        proba_b=torch.cat(proba).numpy(),
        steps=counts,
        steps_b=counts.copy(),
    )
