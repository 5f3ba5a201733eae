"""TimeSeriesHRM: the HRM recurrent core (ts_hierarchical_core.py) as a generic (T_in -> T_out) forecaster.

Inputs of one window with origin r (dataset/windows.py)
    x         (B, T_in, F)          standardised rows r-T_in+1 .. r
    calendar  (B, T_in + T_out, C)  optional calendar features of rows r-T_in+1 .. r+T_out (``forward``);
                                    a segment reads the window's first T_in rows of it

Segment (``forward_segment``)
    fine tokens   x_L = TimeSeriesEmbedding(F -> d_L)(rows)                          (B, T_in, d_L)
    coarse tokens x_H = TimeSeriesEmbedding(P*F -> d_H)(patches of P = patch_len rows) (B, T_in/P, d_H)
    HierarchicalCore: H over the patches (bidirectional), L over the rows (causal), FiLM H->L, one-step
    gradient, detached carry. Everything in the window is known at the origin, so no attention here can
    leak; the forecast reads ``norm_L(z_L[:, -1])`` (row r, which attends to every row) and the Q-head
    reads the H summary, so halting depends on the coarse view only and ``halting_q`` runs H alone.

Outputs (``TSSegmentOutput``): ``forecast`` (ts_head.TSForecast, (B, S, F_y, K)) with S = T_out
(one_shot) or 1 (autoregressive), and q_halt, q_continue (B,) as in options/act_halting.py.

Forecast (``forward``): each window runs segments until it halts (``act_loop``, evaluation rule
``eval_halting``). One-shot mode answers all T_out steps from one rollout; autoregressive mode runs a
rollout per step on the window shifted by one row, fed its own previous mean (ts_head.roll_autoregressive).

Training (``ts_train_step``): deep supervision as in HRM: one backward and one optimizer step per segment,
the Q-learning loss of the HRM trainer (act_halting.segment_q_loss, the next segment's q from
``halting_q``), exploration of the minimum number of segments. A segment's answer is "good enough to halt"
when its loss is at most ``halt_threshold`` (default: the uninformed score on a standardised target: MSE 1,
or NLL of N(0, 1)).
In autoregressive mode the loss supervises the next row only (teacher forcing: every origin is a window,
so the k-step-ahead error of one window is the one-step error of a later one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from lab_v10.src.config import NON_NEGATIVE, POSITIVE, PROBABILITY, ModuleConfig, checked, validate_config
from lab_v10.src.dataset.windows import TSBatch
from lab_v10.src.errors import ConfigError
from lab_v10.src.options.layers import RMSNorm
from lab_v10.src.models.ts_embedding import TimeSeriesEmbedding
from lab_v10.src.models.ts_head import HeadMode, TSForecast, TSRegressionHead, roll_autoregressive
from lab_v10.src.models.ts_hierarchical_core import HierarchicalCore, act_loop
from lab_v10.src.options.act_halting import (
    ACTRollout,
    EvalMode,
    halting_decision,
    sample_min_steps,
    segment_q_loss,
)
from lab_v10.src.options.hrm_net import HRMCarry

NLL_UNINFORMED = 0.5 * (1.0 + math.log(2.0 * math.pi))  # nats: mean NLL of N(0, 1) on a standardised target
MSE_UNINFORMED = 1.0  # mean squared error of the forecast 0 on a standardised target


@dataclass
class TimeSeriesHRMConfig:
    """TimeSeriesHRM settings. Widths change between presets, never the code path."""

    n_features: int = checked(1, POSITIVE)  # F: columns of a window row
    n_targets: int = checked(1, POSITIVE)  # F_y: forecast columns (autoregressive: must equal F)
    t_in: int = checked(32, POSITIVE)  # rows per input window
    t_out: int = checked(1, POSITIVE)  # rows forecast after the origin
    n_calendar: int = checked(0, NON_NEGATIVE)  # C: calendar features per row (0 = none)
    patch_len: int = checked(4, POSITIVE)  # P: window rows per H token; divides t_in
    h: ModuleConfig = field(default_factory=lambda: ModuleConfig(n_layers=2, d_model=64, n_heads=4, ffn_dim=96))
    l: ModuleConfig = field(default_factory=lambda: ModuleConfig(n_layers=2, d_model=64, n_heads=4, ffn_dim=96))
    H_cycles: int = checked(2, POSITIVE)
    L_cycles: int = checked(2, POSITIVE)
    max_segments: int = checked(4, POSITIVE)
    halt_exploration_prob: float = checked(0.1, PROBABILITY)
    eval_halting: EvalMode = "learned"
    head_mode: HeadMode = "one_shot"
    probabilistic: bool = False  # Gaussian (mean, log variance) per step and target, trained by NLL
    halt_threshold: float | None = None  # loss that counts as good enough to halt; None = uninformed score
    ponder_cost: float = checked(0.01, NON_NEGATIVE)  # probability of a correct answer a segment must buy
    q_loss_weight: float = checked(0.5, NON_NEGATIVE)  # weight of the Q-halt + Q-continue losses (HRM: 0.5)
    rope_base: float = checked(10000.0, POSITIVE)
    norm_eps: float = checked(1e-5, POSITIVE)


def check_ts_config(cfg: TimeSeriesHRMConfig) -> TimeSeriesHRMConfig:
    """Field types and ranges (config.validate_config) plus the rules that tie fields together."""
    cfg = validate_config(cfg, "TimeSeriesHRMConfig")
    if cfg.t_in % cfg.patch_len:
        raise ConfigError(f"TimeSeriesHRMConfig: patch_len: expected a divisor of t_in={cfg.t_in}, got {cfg.patch_len}")
    if cfg.head_mode == "autoregressive" and cfg.n_targets != cfg.n_features:
        raise ConfigError(
            "TimeSeriesHRMConfig: n_targets: the autoregressive mode feeds forecasts back as input rows, so it "
            f"needs n_targets == n_features={cfg.n_features}, got {cfg.n_targets}"
        )
    for key, mc in (("h", cfg.h), ("l", cfg.l)):
        if mc.d_model % mc.n_heads or (mc.d_model // mc.n_heads) % 2:
            raise ConfigError(
                f"TimeSeriesHRMConfig: {key}.n_heads: expected a divisor of {key}.d_model={mc.d_model} giving an "
                f"even head width (RoPE pairs), got {mc.n_heads}"
            )
    return cfg


@dataclass
class TSSegmentOutput:
    """One segment: forecast (TSForecast, params (B, S, F_y, K)); q_halt, q_continue (B,) fp32."""

    forecast: TSForecast
    q_halt: torch.Tensor
    q_continue: torch.Tensor


class TimeSeriesHRM(nn.Module):
    """The HRM core as a window forecaster; see the module docstring."""

    def __init__(self, cfg: TimeSeriesHRMConfig) -> None:
        super().__init__()
        cfg = check_ts_config(cfg)
        self.cfg = cfg
        p, d_h, d_l = cfg.patch_len, cfg.h.d_model, cfg.l.d_model
        self.n_patches = cfg.t_in // p
        self.fine_embed = TimeSeriesEmbedding(cfg.n_features, d_l, cfg.t_in, cfg.n_calendar)
        self.coarse_embed = TimeSeriesEmbedding(p * cfg.n_features, d_h, self.n_patches, p * cfg.n_calendar)
        self.core = HierarchicalCore(
            cfg.h, cfg.l, self.n_patches, cfg.t_in, cfg.H_cycles, cfg.L_cycles, cfg.rope_base, cfg.norm_eps
        )
        self.norm_l = RMSNorm(d_l, cfg.norm_eps)
        self.head = TSRegressionHead(d_l, cfg.n_targets, cfg.t_out, cfg.head_mode, cfg.probabilistic)
        self.q_head = nn.Linear(d_h, 2, bias=False)  # (halt, continue); zero weights: a tie, i.e. continue
        nn.init.zeros_(self.q_head.weight)

    @property
    def halt_threshold(self) -> float:
        """Per-window loss at or below which a segment's answer counts as correct (module docstring)."""
        if self.cfg.halt_threshold is not None:
            return self.cfg.halt_threshold
        return NLL_UNINFORMED if self.cfg.probabilistic else MSE_UNINFORMED

    def initial_carry(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> HRMCarry:
        """z_H (B, T_in/P, d_H) and z_L (B, T_in, d_L) at their initial states."""
        return self.core.initial_carry(batch_size, self.n_patches, self.cfg.t_in, device, dtype)

    def _check_window(self, x: torch.Tensor, calendar: torch.Tensor | None) -> None:
        cfg = self.cfg
        if x.dim() != 3 or x.shape[1:] != (cfg.t_in, cfg.n_features):
            raise ValueError(f"x: expected (B, {cfg.t_in}, {cfg.n_features}), got {tuple(x.shape)}")
        if cfg.n_calendar == 0 and calendar is not None:
            raise ValueError("calendar: this model has n_calendar=0; pass no calendar")
        if cfg.n_calendar and (calendar is None or calendar.shape != (x.shape[0], cfg.t_in, cfg.n_calendar)):
            got = None if calendar is None else tuple(calendar.shape)
            raise ValueError(f"calendar: expected the window's (B, {cfg.t_in}, {cfg.n_calendar}), got {got}")

    def embed_coarse(self, x: torch.Tensor, calendar: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T_in, F), calendar (B, T_in, C) -> x_H (B, T_in/P, d_H): patch j = rows jP .. jP+P-1."""
        b, p = x.shape[0], self.cfg.patch_len
        patches = x.reshape(b, self.n_patches, p * x.shape[2])  # (B, T_in/P, P*F), rows of a patch in order
        patch_calendar = None if calendar is None else calendar.reshape(b, self.n_patches, p * calendar.shape[2])
        return self.coarse_embed(patches, patch_calendar)

    def halting_q(
        self, carry: HRMCarry, x: torch.Tensor, calendar: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_halt, q_continue) (B,) that ``forward_segment(carry, x, calendar)`` would return, from H alone."""
        z_h = self.core.run_h(carry.z_H, self.embed_coarse(x, calendar))  # (B, T_in/P, d_H)
        q_halt, q_continue = self.q_head(self.core.summary(z_h)).float().unbind(-1)
        return q_halt, q_continue

    def forward_segment(
        self, carry: HRMCarry, x: torch.Tensor, calendar: torch.Tensor | None = None
    ) -> tuple[HRMCarry, TSSegmentOutput]:
        """One segment on a window: x (B, T_in, F), calendar (B, T_in, C) -> (detached carry, outputs)."""
        self._check_window(x, calendar)
        x_h = self.embed_coarse(x, calendar)  # (B, T_in/P, d_H)
        x_l = self.fine_embed(x, calendar)  # (B, T_in, d_L)
        carry, z_h, z_l = self.core.segment(carry, x_h, x_l)
        forecast = self.head(self.norm_l(z_l[:, -1]))  # row r's state -> (B, S, F_y, K)
        q_halt, q_continue = self.q_head(self.core.summary(z_h)).float().unbind(-1)  # (B,), (B,)
        return carry, TSSegmentOutput(forecast, q_halt, q_continue)

    def rollout(self, x: torch.Tensor, calendar: torch.Tensor | None = None) -> ACTRollout:
        """Segments on a window until each sample halts by the evaluation rule ``eval_halting``:
        x (B, T_in, F), calendar (B, T_in, C) -> ACTRollout(TSSegmentOutput, steps (B,) long, carry)."""
        return act_loop(
            lambda carry: self.forward_segment(carry, x, calendar),
            self.initial_carry(x.shape[0], x.device, x.dtype),
            self.cfg.max_segments,
            eval_mode=self.cfg.eval_halting,
        )

    def forward(self, x: torch.Tensor, calendar: torch.Tensor | None = None) -> TSForecast:
        """Forecast rows r+1 .. r+T_out of each window (evaluation halting rule; wrap in torch.no_grad).

        x (B, T_in, F), calendar (B, T_in + T_out, C) or None -> TSForecast, params (B, T_out, F_y, K).
        """
        cfg = self.cfg
        if calendar is not None and calendar.shape[1] != cfg.t_in + cfg.t_out:
            raise ValueError(f"calendar: expected {cfg.t_in + cfg.t_out} rows (T_in + T_out), got {calendar.shape[1]}")
        if cfg.head_mode == "one_shot":
            return self.rollout(x, None if calendar is None else calendar[:, : cfg.t_in]).output.forecast

        def one_step(window: torch.Tensor, window_calendar: torch.Tensor | None) -> TSForecast:
            return self.rollout(window, window_calendar).output.forecast  # (B, 1, F, K)

        return roll_autoregressive(one_step, x, cfg.t_out, calendar)


@dataclass
class TSStepStats:
    """One ``ts_train_step``: mean task loss and Q loss over the segments run, mean segments per window."""

    loss: float
    q_loss: float
    segments: float


def ts_train_step(
    model: TimeSeriesHRM,
    batch: TSBatch,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    grad_clip: float = 1.0,
    generator: torch.Generator | None = None,
) -> TSStepStats:
    """Deep-supervised ACT training on one batch (module docstring), model and batch on ``device``/``dtype``.

    Moves the model (in place, so ``optimizer`` keeps its parameters) and the batch to ``device`` and
    ``dtype`` first. Runs up to ``max_segments`` segments; after each one: task loss on the windows not yet
    halted + ``q_loss_weight`` x Q-learning loss, backward, gradient clipping at ``grad_clip`` (global norm), optimizer step.
    ``generator`` (CPU) draws the exploration minimum of segments per window.
    """
    cfg = model.cfg
    model.to(device=device, dtype=dtype)
    model.train()
    batch = batch.to(device, dtype)
    x = batch.x  # (B, T_in, F)
    calendar = None if batch.calendar is None else batch.calendar[:, : cfg.t_in]  # (B, T_in, C)
    y = batch.y if cfg.head_mode == "one_shot" else batch.y[:, :1]  # (B, S, F_y)
    b = x.shape[0]
    carry = model.initial_carry(b, x.device, dtype)
    steps = torch.zeros(b, dtype=torch.long, device=x.device)  # (B,)
    halted = torch.zeros(b, dtype=torch.bool, device=x.device)  # (B,)
    min_steps = sample_min_steps(b, cfg.max_segments, cfg.halt_exploration_prob, generator, x.device)
    task_total, q_total, n_segments = 0.0, 0.0, 0
    for segment in range(1, cfg.max_segments + 1):
        carry, out = model.forward_segment(carry, x, calendar)
        steps = steps + (~halted).long()
        active = ~halted  # (B,) windows this segment supervises
        per_window = out.forecast.loss(y)  # (B,)
        q_loss = segment_q_loss(
            out.q_halt, out.q_continue, per_window.detach() <= model.halt_threshold,
            partial(model.halting_q, carry, x, calendar), steps, active, segment, cfg.max_segments, cfg.ponder_cost,
        )
        task = (per_window * active).sum() / active.sum()
        optimizer.zero_grad(set_to_none=True)
        (task + cfg.q_loss_weight * q_loss).backward()
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        task_total, q_total, n_segments = task_total + task.item(), q_total + q_loss.item(), n_segments + 1
        halted = halted | halting_decision(
            out.q_halt, out.q_continue, steps, cfg.max_segments, training=True, min_steps=min_steps
        )
        if bool(halted.all()):
            break
    return TSStepStats(task_total / n_segments, q_total / n_segments, steps.float().mean().item())
