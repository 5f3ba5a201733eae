"""The loss terms of one HRM deep-supervision segment: :func:`segment_losses`, the one place they are
assembled (HRMTrainer.train_batch, so the distributed trainer, and the memory rollouts of
scripts/bench_train.py call it).

Terms, over the samples still active in the segment (fp32, nats):
    head_a_nll  mean act_halting.gaussian_nll of yA over samples with a finite yA;
    head_b_bce  mean over days with at least one labelled minute of the day's mean minute log loss
                (act_halting.minute_bce); 0 with no gradient when no day has one (daily-only data);
    q           act_halting.segment_q_loss: halt target = halt_correctness of this segment, continue target
                bootstrapped from the next segment's Q values (HRMNet.halting_q on the new carry, no_grad)
                minus ``ponder_cost``. The ponder cost acts only through these targets (segment counts are
                discrete).
The caller weights them: the trainer's total is ``weighting([head_a_nll, head_b_bce], present) +
q_loss_weight * q`` (loss_weighting.py), where a task is present when the active samples carry a label for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lab_v10.src.errors import LabError
from lab_v10.src.options.act_halting import gaussian_nll, halt_correctness, minute_bce, segment_q_loss
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.hrm_tensors import HRMTensors

TASKS = ("head_a_nll", "head_b_bce")  # the weighted tasks, in this order everywhere


class NonFiniteLossError(LabError, RuntimeError):
    """A loss term or gradient became NaN or infinite; the message names where (HRMTrainer.fit adds the run
    folder and what to try). A LabError: the CLIs print it as one line and exit 2."""


def bf16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bf16 autocast on ``device`` (CPU or CUDA) when ``enabled`` (``train.autocast_bf16``)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def per_sample_task_losses(out: HRMSegmentOutput, batch: HRMTensors) -> tuple[Tensor, Tensor]:
    """(losses (B, K) fp32 nats, labelled (B, K) bool) for K = TASKS.

    Head A: Gaussian NLL of yA (unlabelled rows use y = 0 so their gradient stays finite). Head B: the day's
    mean minute log loss over labelled minutes (finite y_b at a real minute), 0 for a day without one.
    """
    has_a = torch.isfinite(batch.y_a)  # (B,)
    nll = gaussian_nll(out.mu, out.log_var, torch.where(has_a, batch.y_a, 0.0))  # (B,)
    has_b = (torch.isfinite(batch.y_b) & batch.minute_mask).any(-1)  # (B,)
    bce = minute_bce(out.logits_b, batch.y_b, batch.minute_mask)  # (B,)
    return torch.stack([nll, bce], -1), torch.stack([has_a, has_b], -1)


def masked_sums(losses: Tensor, labelled: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per task, the sum of losses (B, K) and the count over labelled rows among ``rows`` (B,): (K,), (K,)."""
    use = labelled & rows.unsqueeze(-1)  # (B, K)
    return torch.where(use, losses, 0.0).sum(0), use.sum(0)


@dataclass
class SegmentLosses:
    """One segment's terms: ``losses`` (B, K) and ``labelled`` (B, K) per sample and task; ``sums`` and
    ``counts`` (K,) over the labelled active samples; ``q`` () the Q-learning loss, mean over the active ones."""

    losses: Tensor
    labelled: Tensor
    sums: Tensor
    counts: Tensor
    q: Tensor

    def task_means(self) -> Tensor:
        """(K,) each task's mean over its labelled active samples (0 without any)."""
        return self.sums / self.counts.clamp_min(1)


def segment_losses(
    net: HRMNet,
    out: HRMSegmentOutput,
    new_carry: HRMCarry,
    batch: HRMTensors,
    steps: Tensor,
    active: Tensor,
    segment: int,
    ponder_cost: float = 0.0,
    bf16: bool = False,
) -> SegmentLosses:
    """The terms (module docstring) of segment ``segment`` (1-based) of ``net``: outputs ``out`` and the carry
    ``new_carry`` it returned on ``batch``; ``steps`` (B,) segments run, this one included; ``active`` (B,)
    the samples it supervises. ``bf16``: the next segment's Q values run under bf16 autocast."""
    cfg = net.cfg
    losses, labelled = per_sample_task_losses(out, batch)  # (B, K), (B, K)
    sums, counts = masked_sums(losses, labelled, active)  # (K,), (K,)
    correct = halt_correctness(
        out.mu, out.log_var, out.logits_b, batch.y_a, batch.y_b, batch.minute_mask,
        nll_threshold=cfg.halt_nll_threshold, bce_threshold=cfg.halt_bce_threshold,
    )  # (B,)

    def next_q() -> tuple[Tensor, Tensor]:
        with bf16_autocast(batch.x_daily.device, bf16):
            return net.halting_q(new_carry, batch.x_daily, batch.symbol)  # (B,), (B,)

    q = segment_q_loss(
        out.q_halt, out.q_continue, correct, next_q, steps, active, segment, cfg.max_segments, ponder_cost
    )
    return SegmentLosses(losses, labelled, sums, counts, q)
