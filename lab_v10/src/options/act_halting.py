"""Adaptive computation: Q-head halting over HRM segments, as in the original HRM, on plain tensors.

Steps. ``steps`` (B,) long counts the segments a sample has run, the current one included (1-based).

Halting (``halting_decision``). After a segment a sample halts when ``q_halt > q_continue`` (a tie
continues; the Q-head starts with zero weights, so an untrained model runs on) or when it reaches
``max_segments``. In training, exploration first draws a minimum number of segments per sample
(``sample_min_steps``: with probability ``halt_exploration_prob`` uniform in 2..max_segments, else 1) and
the learned halt is ignored before it. In evaluation ``eval_mode`` picks ``"learned"`` (the Q-head
decides) or ``"max"`` (always ``max_segments``). The Q-head reads only H, so a day's halting decisions
are fixed before its first minute (hrm_net.py).

"Good enough to halt" (``halt_correctness``). A segment's answer for a sample is correct when both
    Head A:  the Gaussian NLL of yA under N(mu, exp(log_var)) is <= ``nll_threshold``, and
    Head B:  the mean log loss of the minute logits over the day's labelled minutes is <= ``bce_threshold``.
A head without a label (yA NaN; no finite yB at a real minute) counts as correct. The defaults in
HRMConfig are the expected scores of uninformed forecasts: ``(1 + log 2 pi) / 2`` nats, the mean NLL of
N(0, 1) on a standardized target, and ``log 2`` nats, the log loss of p = 1/2. So "good enough" means
"beats an uninformed forecast on this day, on both books". The NLL threshold assumes yA is standardized
with a train-only scaler, as the trainer feeds it.

Q-learning (``q_learning_targets``). The Q-head outputs logits of the probability that the answer is
correct if the sample halts now (q_halt) or continues and then acts greedily (q_continue). Targets:
    halt     = correct(segment s)
    continue = sigmoid(v(s+1)) - ponder_cost, clipped at 0, with v(s+1) = q_halt(s+1) when segment s+1 is
               the last one allowed, else max(q_halt(s+1), q_continue(s+1)).
The continue target is defined for ``steps < max_segments``. ``ponder_cost`` is the probability of a
correct answer that one more segment must buy; ``ponder_cost(steps, c)`` reports the total charged. The
next segment's q values come from ``HRMNet.halting_q(new_carry, x_daily, symbol)`` under no_grad (exact and
cheap: it runs only H) or from the next segment itself; as in HRM there is no target network.
``segment_q_loss`` assembles targets and loss for one segment (the HRM trainer and TimeSeriesHRM use it).

The training loop that uses these (deep supervision, one backward per segment) is
:func:`~lab_v10.src.options.segment_loss.segment_losses` in ``HRMTrainer.train_batch``; the semantics are in
HRM27M.md, "Segment semantics". ``act_rollout`` runs that loop without losses for evaluation and inference: halted samples stop
changing (carry and outputs are frozen) and the segments used are reported per sample.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F

from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput

EvalMode = Literal["learned", "max"]
Frozen = TypeVar("Frozen", torch.Tensor, HRMCarry, HRMSegmentOutput)


def sample_min_steps(
    batch_size: int,
    max_segments: int,
    exploration_prob: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(B,) long: per sample, with probability ``exploration_prob`` a uniform draw in 2..max_segments, else 1.

    Draws on the CPU (from ``generator`` if given) and moves the result to ``device``.
    """
    if max_segments < 2:
        return torch.ones(batch_size, dtype=torch.long, device=device)
    explore = torch.rand(batch_size, generator=generator) < exploration_prob
    forced = torch.randint(2, max_segments + 1, (batch_size,), generator=generator)
    return torch.where(explore, forced, 1).to(device)


def halting_decision(
    q_halt: torch.Tensor,
    q_continue: torch.Tensor,
    steps: torch.Tensor,
    max_segments: int,
    *,
    training: bool,
    min_steps: torch.Tensor | None = None,
    eval_mode: EvalMode = "learned",
) -> torch.Tensor:
    """(B,) bool: halt after the segment just run (``steps`` includes it).

    Always at ``max_segments``. Otherwise, in training: ``q_halt > q_continue`` and ``steps >= min_steps``;
    in evaluation: ``q_halt > q_continue`` when ``eval_mode == "learned"``, never when ``"max"``.
    """
    if eval_mode not in ("learned", "max"):
        raise ValueError(f"eval_mode: expected 'learned' or 'max', got {eval_mode!r}")
    at_max = steps >= max_segments
    if not training and eval_mode == "max":
        return at_max
    learned = q_halt > q_continue
    if training and min_steps is not None:
        learned = learned & (steps >= min_steps)
    return at_max | learned


def gaussian_nll(mu: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample NLL in nats of y under N(mu, exp(log_var)), constant included: all (B,) -> (B,)."""
    return 0.5 * (log_var + (y - mu).pow(2) * torch.exp(-log_var) + math.log(2.0 * math.pi))


def minute_bce(logits_b: torch.Tensor, y_b: torch.Tensor, minute_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean log loss over labelled minutes: logits_b, y_b (B, T_L) -> (B,); 0 for a day with no label.

    A minute is labelled when y_b is finite (NaN: horizon past the close) and minute_mask is True. The
    gradient is clean: unlabelled minutes contribute exact zeros.
    """
    labelled = torch.isfinite(y_b)
    if minute_mask is not None:
        labelled = labelled & minute_mask
    per_minute = F.binary_cross_entropy_with_logits(logits_b, torch.where(labelled, y_b, 0.0), reduction="none")
    per_minute = torch.where(labelled, per_minute, 0.0)
    return per_minute.sum(-1) / labelled.sum(-1).clamp_min(1)


def halt_correctness(
    mu: torch.Tensor,
    log_var: torch.Tensor,
    logits_b: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    minute_mask: torch.Tensor | None = None,
    *,
    nll_threshold: float,
    bce_threshold: float,
) -> torch.Tensor:
    """(B,) bool: the segment's answer is good enough to halt on (module docstring). y_a (B,), y_b (B, T_L)."""
    with torch.no_grad():
        a_ok = torch.isnan(y_a) | (gaussian_nll(mu, log_var, y_a) <= nll_threshold)
        b_ok = minute_bce(logits_b, y_b, minute_mask) <= bce_threshold
        return a_ok & b_ok


@dataclass
class QTargets:
    """Q-learning targets (B,): halt in {0, 1}, cont in [0, 1], cont_valid where continuing was allowed."""

    halt: torch.Tensor
    cont: torch.Tensor
    cont_valid: torch.Tensor


def q_learning_targets(
    halt_correct: torch.Tensor,
    next_q_halt: torch.Tensor,
    next_q_continue: torch.Tensor,
    steps: torch.Tensor,
    max_segments: int,
    ponder_cost: float = 0.0,
) -> QTargets:
    """Targets for the Q-head after segment ``steps`` (module docstring); next_q_* are segment steps+1's."""
    with torch.no_grad():
        next_is_last = steps + 1 >= max_segments
        value = torch.where(next_is_last, next_q_halt, torch.maximum(next_q_halt, next_q_continue))
        cont = (torch.sigmoid(value.float()) - ponder_cost).clamp_min(0.0)
        return QTargets(halt=halt_correct.float(), cont=cont, cont_valid=steps < max_segments)


def q_learning_loss(
    q_halt: torch.Tensor, q_continue: torch.Tensor, targets: QTargets, active: torch.Tensor | None = None
) -> torch.Tensor:
    """Scalar: mean BCE of q_halt over active samples + mean BCE of q_continue where also cont_valid."""
    weight = torch.ones_like(q_halt) if active is None else active.float()
    cont_weight = weight * targets.cont_valid.float()
    halt = F.binary_cross_entropy_with_logits(q_halt, targets.halt, reduction="none")
    cont = F.binary_cross_entropy_with_logits(q_continue, targets.cont, reduction="none")
    halt_loss = (halt * weight).sum() / weight.sum().clamp_min(1)
    return halt_loss + (cont * cont_weight).sum() / cont_weight.sum().clamp_min(1)


def segment_q_loss(
    q_halt: torch.Tensor,
    q_continue: torch.Tensor,
    correct: torch.Tensor,
    next_q: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: torch.Tensor,
    active: torch.Tensor,
    segment: int,
    max_segments: int,
    ponder_cost: float = 0.0,
) -> torch.Tensor:
    """Scalar Q-learning loss of segment ``segment`` (1-based) over the ``active`` (B,) samples.

    q_halt, q_continue (B,): the segment's Q values; correct (B,) bool: its halt target
    (``halt_correctness`` or a model's own rule); ``next_q()``: the next segment's (q_halt, q_continue) (B,)
    for the continue target, called under no_grad (e.g. ``halting_q`` on the new carry). After the last
    allowed segment no continue target is valid for an active sample, so ``next_q`` is not run.
    """
    if segment < max_segments:
        with torch.no_grad():
            next_q_halt, next_q_continue = next_q()
    else:
        next_q_halt = next_q_continue = torch.zeros_like(q_halt)
    targets = q_learning_targets(correct, next_q_halt, next_q_continue, steps, max_segments, ponder_cost)
    return q_learning_loss(q_halt, q_continue, targets, active)


def ponder_cost(steps: torch.Tensor, cost_per_segment: float) -> torch.Tensor:
    """(B,) the total cost charged through the continue targets: one charge per extra segment."""
    return cost_per_segment * (steps - 1).clamp_min(0).float()


def freeze_halted(halted: torch.Tensor, previous: Frozen, current: Frozen) -> Frozen:
    """Keep ``previous`` for samples with ``halted`` (B,) True, take ``current`` for the others.

    Works on tensors (B, ...) and on HRMCarry / HRMSegmentOutput field by field.
    """
    if isinstance(current, torch.Tensor):
        return torch.where(halted.view(-1, *([1] * (current.dim() - 1))), previous, current)
    return type(current)(
        **{
            f.name: freeze_halted(halted, getattr(previous, f.name), getattr(current, f.name))
            for f in dataclasses.fields(current)
        }
    )


@dataclass
class ACTRollout:
    """Result of ``act_rollout``: each sample's output at its halting segment, steps (B,) long, final carry."""

    output: HRMSegmentOutput
    steps: torch.Tensor
    carry: HRMCarry


def act_rollout(
    net: HRMNet,
    x_daily: torch.Tensor,
    x_minute: torch.Tensor,
    minute_mask: torch.Tensor | None = None,
    *,
    training: bool = False,
    generator: torch.Generator | None = None,
    symbol: torch.Tensor | None = None,
) -> ACTRollout:
    """Run segments until every sample has halted (max_segments, halt_exploration_prob and eval_halting
    from ``net.cfg``). Halted samples stop changing. Meant for evaluation and inference (wrap it in
    ``torch.no_grad``); training backpropagates per segment (module docstring) to keep memory flat.
    ``symbol`` (B,) int64: the samples' symbol ids (hrm.symbol_embedding), passed to ``forward_segment`` only
    when given, so a net without symbol ids keeps the four-argument call.
    """
    cfg = net.cfg
    b, device = x_daily.shape[0], x_daily.device
    carry = net.initial_carry(b, x_daily.shape[1], x_minute.shape[1], device, x_daily.dtype)
    steps = torch.zeros(b, dtype=torch.long, device=device)
    halted = torch.zeros(b, dtype=torch.bool, device=device)
    min_steps = None
    if training:
        min_steps = sample_min_steps(b, cfg.max_segments, cfg.halt_exploration_prob, generator, device)
    ids = () if symbol is None else (symbol,)
    output: HRMSegmentOutput | None = None
    for _ in range(cfg.max_segments):
        new_carry, new_output = net.forward_segment(carry, x_daily, x_minute, minute_mask, *ids)
        carry = freeze_halted(halted, carry, new_carry)
        output = new_output if output is None else freeze_halted(halted, output, new_output)
        steps = steps + (~halted).long()
        halted = halted | halting_decision(
            new_output.q_halt, new_output.q_continue, steps, cfg.max_segments,
            training=training, min_steps=min_steps, eval_mode=cfg.eval_halting,
        )
        if bool(halted.all()):
            break
    return ACTRollout(output, steps, carry)
