"""HRM dual network (docs/design.md section 4): an H-module over daily rows, a causal L-module over the day's
minutes, FiLM from H to L, and three heads.

Inputs of one sample (day d)
    x_daily    (B, T_H, F_d) float: the ``daily_window`` daily feature rows ending at day d-1 (T_H <= window).
    x_minute   (B, T_L, F_m) float: day d's minute feature rows, minute 0 first (T_L <= minutes_per_day).
    minute_mask (B, T_L) bool, optional: True for real minutes. Short days and missing minutes are padded
               at the END; padded rows are zeroed before the projection (NaN there is harmless) and, the
               L-module being causal, never reach a real minute.
    symbol     (B,) int64, optional: each sample's symbol id in 0..n_symbols-1; required with
               ``hrm.symbol_embedding`` (ValueError naming ``symbol``), ignored without it.

Segment (``forward_segment``): ``x_H = daily_proj(x_daily)`` (+ the symbol's embedding at every daily token
    with ``hrm.symbol_embedding``), ``x_L = minute_proj(x_minute)``, then the loop of HRM27M.md, "Segment
    semantics" (cycles, one-step gradient, detached carry). ``h_c = norm_H(z_H[:, -1])`` is the last daily
    token, day d-1, which attends to the whole window: H attention is bidirectional because every daily row
    predates the day. With ``hrm.film`` false the L-update skips FiLM, so Head B never sees ``h_c``.

Outputs (``HRMSegmentOutput``, fp32)
    mu, log_var (B,): Head A, ``head_a(h)`` with h the summary of the final z_H: the yA forecast made at the
        close of day d-1, in the (standardized) units of the target it is trained on.
    logits_b (B, T_L): Head B, one logit per minute, ``head_b(norm_L(z_L))``; position m depends only on
        daily rows <= d-1 and minutes <= m. Values at padded minutes are meaningless; mask them.
    q_halt, q_continue (B,): Q-head on the same summary h (see act_halting.py).

Time semantics. Nothing flows from L to H, so z_H, Head A and the Q-head depend only on the daily rows
and the carry: a day's H trajectory, its FiLM conditioning and its halting decisions are fixed before
the first minute. A streamer computes ``h_c`` once per day and segment (``h_summaries``), then advances
the L-module minute by minute with a KV cache per (segment, cycle, layer), using ``Attention.qkv`` and
``Attention.attend`` from layers.py with ``position_ids`` = the minute index.

Initial states ``h_init`` (d_H,) and ``l_init`` (d_L,) are fixed buffers drawn from a truncated normal
(std 1), as in the original HRM; they are not parameters, so the core count is exactly docs/design.md's.
Initialisation: truncated LeCun-normal weights; FiLM weights zero (FiLM starts as the identity); Q-head
weights zero so q_halt == q_continue at start, and a tie means continue (act_halting.halting_decision
halts only on q_halt > q_continue) -- the bias-free counterpart of HRM's q bias of -5; the symbol embedding
zero (every symbol starts alike, as HRM's puzzle embeddings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from lab_v10.src.config import HRMConfig, ModuleConfig
from lab_v10.src.errors import ConfigError
from lab_v10.src.options.layers import RMSNorm, RotaryEmbedding, TransformerBlock, lecun_linear, trunc_normal_

# Top-level children per budget group (docs/design.md section 4 table); every parameter is in exactly one.
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "H-module": ("h_module",),
    "L-module": ("l_module",),
    "FiLM H->L": ("film",),
    "heads": ("head_a", "head_b", "q_head"),
    "final norms": ("norm_h", "norm_l"),
    "input projections": ("daily_proj", "minute_proj", "symbol_embedding"),
}  # FiLM (hrm.film false) and the symbol embedding (hrm.symbol_embedding false) may be absent


@dataclass
class HRMCarry:
    """Recurrent state between segments: z_H (B, T_H, d_H), z_L (B, T_L, d_L)."""

    z_H: torch.Tensor
    z_L: torch.Tensor


@dataclass
class HRMSegmentOutput:
    """One segment's predictions (fp32): mu, log_var, q_halt, q_continue (B,); logits_b (B, T_L)."""

    mu: torch.Tensor
    log_var: torch.Tensor
    logits_b: torch.Tensor
    q_halt: torch.Tensor
    q_continue: torch.Tensor


class ReasoningModule(nn.Module):
    """A stack of post-norm transformer blocks with its own RoPE table; causal or bidirectional."""

    def __init__(self, mc: ModuleConfig, max_positions: int, rope_base: float, norm_eps: float, causal: bool):
        super().__init__()
        self.causal = causal
        self.rotary = RotaryEmbedding(mc.d_model // mc.n_heads, max_positions, rope_base)
        self.layers = nn.ModuleList(
            TransformerBlock(mc.d_model, mc.n_heads, mc.ffn_dim, norm_eps, mc.fused_qkv) for _ in range(mc.n_layers)
        )

    def forward(self, u: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """u (B, T, d): the injected input of one update -> new state (B, T, d)."""
        cos, sin = self.rotary()
        for layer in self.layers:
            u = layer(u, cos, sin, position_ids, self.causal)
        return u


class FiLM(nn.Module):
    """``u -> u * (1 + W_gamma h) + W_beta h``: h (B, d_H) conditions every position of u (B, T, d_L)."""

    def __init__(self, d_h: int, d_l: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(d_h, d_l, bias=False)
        self.beta = nn.Linear(d_h, d_l, bias=False)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # (B, T, d_L), (B, d_H)
        return u * (1.0 + self.gamma(h).unsqueeze(1)) + self.beta(h).unsqueeze(1)  # (B, T, d_L)


class SegmentUpdates(Protocol):
    """The three operations of a segment (HRMNet and models/ts_hierarchical_core.HierarchicalCore)."""

    def summary(self, z_h: torch.Tensor) -> torch.Tensor: ...  # (B, T_H, d_H) -> (B, d_H)
    def h_update(self, z_h: torch.Tensor, x_h: torch.Tensor) -> torch.Tensor: ...  # -> (B, T_H, d_H)
    def l_update(self, z_l: torch.Tensor, x_l: torch.Tensor, h: torch.Tensor) -> torch.Tensor: ...  # -> (B, T_L, d_L)


def one_step_segment(
    net: SegmentUpdates,
    carry: HRMCarry,
    x_h: torch.Tensor,
    x_l: torch.Tensor,
    h_cycles: int,
    l_cycles: int,
    context_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The update schedule of one segment with the one-step gradient -> final z_H (B, T_H, d_H), z_L (B, T_L, d_L).

    ``h_cycles`` cycles; cycle c runs ``l_cycles`` L-updates conditioned on ``h_c = summary(z_H)`` at its
    start, then one H-update. On the autograd graph: the last L-update and the last H-update (from a
    detached z_H) and, with ``context_grad`` and ``h_cycles`` >= 2, the H-update that produces the last
    cycle's context ``h_{h_cycles}`` (from a detached z_H), so the L side's loss reaches the H-module through
    FiLM. Every other update runs under no_grad (memory flat in cycles and segments). Values do not depend
    on ``context_grad``.
    """
    z_h, z_l = carry.z_H, carry.z_L
    with torch.no_grad():
        for c in range(h_cycles - 1):
            h = net.summary(z_h)
            for _ in range(l_cycles):
                z_l = net.l_update(z_l, x_l, h)
            if c < h_cycles - 2 or not context_grad:
                z_h = net.h_update(z_h, x_h)
    if context_grad and h_cycles > 1:
        z_h = net.h_update(z_h, x_h)  # one H step on the graph: its output is the last cycle's FiLM context
    h = net.summary(z_h)  # (B, d_H)
    with torch.no_grad():
        for _ in range(l_cycles - 1):
            z_l = net.l_update(z_l, x_l, h)
    z_l = net.l_update(z_l, x_l, h)  # the last L-update, conditioned on the last cycle's context
    z_h = net.h_update(z_h.detach(), x_h)  # the last H-update: one H step for Head A and the Q-head
    return z_h, z_l


def _check_module(mc: ModuleConfig, key: str) -> None:
    if mc.d_model % mc.n_heads:
        raise ConfigError(f"hrm.{key}.n_heads: expected a divisor of hrm.{key}.d_model={mc.d_model}, got {mc.n_heads}")
    if (mc.d_model // mc.n_heads) % 2:
        raise ConfigError(
            f"hrm.{key}.n_heads: expected an even head width d_model/n_heads for RoPE, got "
            f"{mc.d_model}/{mc.n_heads}={mc.d_model // mc.n_heads}"
        )


class HRMNet(nn.Module):
    """The HRM dual network; see the module docstring for inputs, segment semantics and outputs."""

    def __init__(self, cfg: HRMConfig) -> None:
        super().__init__()
        _check_module(cfg.h, "h")
        _check_module(cfg.l, "l")
        self.cfg = cfg
        d_h, d_l = cfg.h.d_model, cfg.l.d_model
        self.daily_proj = lecun_linear(cfg.daily_features, d_h)
        self.minute_proj = lecun_linear(cfg.minute_features, d_l)
        self.h_module = ReasoningModule(cfg.h, cfg.daily_window, cfg.rope_base, cfg.norm_eps, causal=False)
        self.l_module = ReasoningModule(cfg.l, cfg.minutes_per_day, cfg.rope_base, cfg.norm_eps, causal=True)
        self.film = FiLM(d_h, d_l) if cfg.film else None
        self.head_a = lecun_linear(d_h, 2)  # (mu, log sigma^2)
        self.head_b = lecun_linear(d_l, 1)  # one logit per minute
        self.q_head = nn.Linear(d_h, 2, bias=False)  # (halt, continue)
        nn.init.zeros_(self.q_head.weight)
        self.norm_h = RMSNorm(d_h, cfg.norm_eps)
        self.norm_l = RMSNorm(d_l, cfg.norm_eps)
        self.register_buffer("h_init", trunc_normal_(torch.empty(d_h), std=1.0))
        self.register_buffer("l_init", trunc_normal_(torch.empty(d_l), std=1.0))
        self.symbol_embedding: nn.Embedding | None = None
        if cfg.symbol_embedding:
            if cfg.n_symbols < 1:
                raise ConfigError(
                    f"hrm.n_symbols: expected int >= 1 with hrm.symbol_embedding true (the number of symbols, set "
                    f"at fit time), got {cfg.n_symbols}"
                )
            self.symbol_embedding = nn.Embedding(cfg.n_symbols, d_h)
            nn.init.zeros_(self.symbol_embedding.weight)

    # ------------------------------------------------------------------------------------------
    # Bookkeeping

    def param_counts(self) -> dict[str, int]:
        """Parameters per budget group (PARAM_GROUPS), then 'core total' (all but inputs) and 'total'."""
        children = dict(self.named_children())
        counts = {
            group: sum(p.numel() for name in names if name in children for p in children[name].parameters())
            for group, names in PARAM_GROUPS.items()
        }
        counts["core total"] = sum(v for k, v in counts.items() if k != "input projections")
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def initial_carry(
        self, batch_size: int, t_h: int, t_l: int, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> HRMCarry:
        """The start state of every sample: h_init at each of t_h positions, l_init at each of t_l."""
        z_h = self.h_init.to(device=device, dtype=dtype).expand(batch_size, t_h, -1).clone()  # (B, T_H, d_H)
        z_l = self.l_init.to(device=device, dtype=dtype).expand(batch_size, t_l, -1).clone()  # (B, T_L, d_L)
        return HRMCarry(z_h, z_l)

    def reset_carry(self, carry: HRMCarry, reset: torch.Tensor) -> HRMCarry:
        """Put samples with ``reset`` (B,) True back to the initial state (e.g. new data in a batch slot)."""
        r = reset.view(-1, 1, 1)
        return HRMCarry(
            torch.where(r, self.h_init.to(carry.z_H.dtype), carry.z_H),
            torch.where(r, self.l_init.to(carry.z_L.dtype), carry.z_L),
        )

    # ------------------------------------------------------------------------------------------
    # Pieces of a segment (public so a trainer, a test or a streamer can recombine them)

    def embed_inputs(
        self,
        x_daily: torch.Tensor,
        x_minute: torch.Tensor,
        minute_mask: torch.Tensor | None = None,
        symbol: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_daily (B, T_H, F_d), x_minute (B, T_L, F_m) -> injections x_H (B, T_H, d_H), x_L (B, T_L, d_L).

        Padded minutes (minute_mask False) are zeroed first, so non-finite padding cannot leak. ``symbol``:
        see :meth:`embed_daily`.
        """
        if minute_mask is not None:
            if bool((minute_mask[:, 1:] & ~minute_mask[:, :-1]).any()):
                raise ValueError("minute_mask: padded minutes must come after all real minutes of a day")
            x_minute = x_minute.masked_fill(~minute_mask.unsqueeze(-1), 0.0)
        return self.embed_daily(x_daily, symbol), self.minute_proj(x_minute)

    def embed_daily(self, x_daily: torch.Tensor, symbol: torch.Tensor | None = None) -> torch.Tensor:
        """x_daily (B, T_H, F_d) -> x_H (B, T_H, d_H): ``daily_proj``, plus with ``hrm.symbol_embedding`` the
        embedding of each sample's ``symbol`` (B,) int64 id at every daily token.

        ValueError naming ``symbol`` when the embedding is on and ``symbol`` is None, not (B,) int64 or outside
        0..n_symbols-1; ``symbol`` is ignored when the embedding is off.
        """
        x_h = self.daily_proj(x_daily)  # (B, T_H, d_H)
        if self.symbol_embedding is None:
            return x_h
        n = self.cfg.n_symbols
        if symbol is None:
            raise ValueError("symbol: hrm.symbol_embedding is true, so each sample needs its symbol id (B,) int64")
        if symbol.shape != (x_daily.shape[0],) or symbol.dtype != torch.int64:
            raise ValueError(
                f"symbol: expected shape ({x_daily.shape[0]},) int64 (one id per sample), got "
                f"{tuple(symbol.shape)} {symbol.dtype}"
            )
        if symbol.numel() and not 0 <= int(symbol.min()) <= int(symbol.max()) < n:
            raise ValueError(f"symbol: expected ids in 0..{n - 1} (hrm.n_symbols={n}), got {symbol.tolist()}")
        return x_h + self.symbol_embedding(symbol).to(x_h.dtype).unsqueeze(1)  # (B, T_H, d_H)

    def summary(self, z_h: torch.Tensor) -> torch.Tensor:
        """h = norm_H(z_H[:, -1]): (B, T_H, d_H) -> (B, d_H), read by FiLM, Head A and the Q-head."""
        return self.norm_h(z_h[:, -1])

    def h_update(self, z_h: torch.Tensor, x_h: torch.Tensor) -> torch.Tensor:
        """z_H <- H(z_H + x_H): (B, T_H, d_H) -> (B, T_H, d_H), bidirectional over the daily window."""
        return self.h_module(z_h + x_h)

    def condition(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """FiLM(u; h), or u itself with ``hrm.film`` false: u (B, T, d_L), h (B, d_H) -> (B, T, d_L)."""
        return u if self.film is None else self.film(u, h)

    def l_update(
        self, z_l: torch.Tensor, x_l: torch.Tensor, h: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z_L <- L(FiLM(z_L + x_L; h)): (B, T_L, d_L) -> (B, T_L, d_L), causal over minutes (no FiLM with
        ``hrm.film`` false)."""
        return self.l_module(self.condition(z_l + x_l, h), position_ids)

    def readout(self, z_h: torch.Tensor, z_l: torch.Tensor) -> HRMSegmentOutput:
        """Heads on the final states of a segment (fp32 outputs; see :meth:`_head`)."""
        h = self.summary(z_h)  # (B, d_H)
        mu, log_var = self._head(self.head_a, h).unbind(-1)  # (B,), (B,)
        logits_b = self._head(self.head_b, self.norm_l(z_l)).squeeze(-1)  # (B, T_L)
        q_halt, q_continue = self.q_values(z_h)  # (B,), (B,)
        return HRMSegmentOutput(mu, log_var, logits_b, q_halt, q_continue)

    def h_summaries(self, z_h: torch.Tensor, x_h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The H side of one segment without L: (h_c for each cycle c (B, d_H), final z_H (B, T_H, d_H)).

        Exactly the summaries ``forward_segment`` feeds to FiLM, because L never feeds H.
        """
        summaries = []
        for _ in range(self.cfg.H_cycles):
            summaries.append(self.summary(z_h))
            z_h = self.h_update(z_h, x_h)
        return summaries, z_h

    def halting_q(
        self, carry: HRMCarry, x_daily: torch.Tensor, symbol: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_halt, q_continue) (B,) that ``forward_segment(carry, x_daily, ..., symbol)`` would return, from H
        alone.

        A cheap, exact bootstrap for the Q-learning target of the previous segment (run it under no_grad).
        """
        _, z_h = self.h_summaries(carry.z_H, self.embed_daily(x_daily, symbol))
        return self.q_values(z_h)

    def q_values(self, z_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_halt, q_continue) (B,) fp32 from the final H state of a segment (the only input of the Q head)."""
        return self._head(self.q_head, self.summary(z_h)).unbind(-1)

    @staticmethod
    def _head(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``head(x)`` in the head's own weight dtype with autocast off, returned as fp32.

        Under bf16 autocast with fp32 master weights the heads therefore run in full fp32 precision; a net
        cast to bf16 as a whole runs them in bf16.
        """
        with torch.autocast(x.device.type, enabled=False):
            return head(x.to(head.weight.dtype)).float()

    # ------------------------------------------------------------------------------------------
    # One segment

    def forward_segment(
        self,
        carry: HRMCarry,
        x_daily: torch.Tensor,
        x_minute: torch.Tensor,
        minute_mask: torch.Tensor | None = None,
        symbol: torch.Tensor | None = None,
    ) -> tuple[HRMCarry, HRMSegmentOutput]:
        """One segment from ``carry``; returns (detached new carry, outputs). See the module docstring.

        The FiLM context of the last cycle keeps its graph (``one_step_segment`` with ``context_grad``), so
        Head B's loss reaches the H-module and ``daily_proj`` when FiLM is on and H_cycles >= 2.
        """
        x_h, x_l = self.embed_inputs(x_daily, x_minute, minute_mask, symbol)  # (B, T_H, d_H), (B, T_L, d_L)
        z_h, z_l = one_step_segment(
            self, carry, x_h, x_l, self.cfg.H_cycles, self.cfg.L_cycles, context_grad=self.film is not None
        )
        return HRMCarry(z_h.detach(), z_l.detach()), self.readout(z_h, z_l)

    def forward(
        self,
        carry: HRMCarry,
        x_daily: torch.Tensor,
        x_minute: torch.Tensor,
        minute_mask: torch.Tensor | None = None,
        symbol: torch.Tensor | None = None,
    ) -> tuple[HRMCarry, HRMSegmentOutput]:
        """``forward_segment`` under ``nn.Module.__call__``, so DDP and module hooks see it."""
        return self.forward_segment(carry, x_daily, x_minute, minute_mask, symbol)
