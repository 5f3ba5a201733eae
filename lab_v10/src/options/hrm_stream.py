"""Per-minute Head-B probabilities of HRMNet with a KV cache, for a batch of symbols (docs/design.md section 6).

Why streaming is exact. Nothing flows from the L-module into H (hrm_net.py): ``halting_q`` and
``h_summaries`` read only the daily rows and the H carry, and the Q-head reads only the H summary. So a
day's whole H trajectory -- the FiLM summary ``h_{s,c}`` of every segment s and H cycle c, and the Q values
that decide how many segments each symbol runs -- is fixed before the first minute. ``start_day`` runs H
once, segment by segment, applies the evaluation halting rule (``act_halting.halting_decision`` with
``net.cfg.eval_halting``, as ``act_rollout`` does) and returns each symbol's number of segments. The
L-module is causal and the carry of segment s at minute m is segment s-1's final z_L at minute m (what
``forward_segment`` does), so a new minute needs only the new position, through every segment, L-update and
layer, attending to the keys and values cached for the earlier minutes of that (segment, L-update, layer).
``step`` then returns ``sigmoid(logits_b)`` at the new minute of each symbol's halting segment: the
probabilities ``act_rollout`` (evaluation) gives over the same minutes, up to float rounding
(tests/test_hrm_stream.py checks fp32 to 1e-5).

Layout. At ``start_day`` the symbols are ordered by their number of segments, most first, so the n_s
symbols that run segment s are a prefix of that order and segment s owns one contiguous block of cache rows
(one row per (symbol, segment) the day runs, ``steps.sum()`` rows in all). There is one :class:`KVCache` per
(L-update, layer), where the L-updates of a segment are its ``H_cycles * L_cycles`` updates in order. The
caches are allocated at construction for one segment per symbol and reallocated at ``start_day`` only when a
day runs more (symbol, segment) pairs than they hold; ``step`` and ``advance`` never allocate cache memory.
Cache memory: ``2 * rows * H_cycles * L_cycles * n_layers * max_minutes * d_L`` values of ``dtype``.

Work per minute and symbol: for each of its segments, ``H_cycles * L_cycles`` L-updates of one position
(FiLM, then per layer a QKV projection, attention over the cached positions, the output projection and the
SwiGLU), then Head B at the halting segment. The H-module runs only in ``start_day``.

Time semantics: the probability returned for minute m uses daily rows <= d-1 (``x_daily`` of
``start_day``) and minutes <= m of day d.

Ensembles (``train.ensemble_size`` > 1): a streamer serves one network; stream an HRMAdapter's ensemble with
one streamer per ``adapter.trainers_[k].head_b_net`` (the network Head B is read from; the same as ``.net``
unless ``train.early_stopping`` is per_head) and average their probabilities, as the adapter does.
"""
from __future__ import annotations

import torch
from torch import nn

from lab_v10.src.options.act_halting import halting_decision
from lab_v10.src.options.hrm_net import HRMNet


class KVCache(nn.Module):
    """Keys and values of one attention layer: buffers ``k``, ``v`` of shape (rows, H, T_max, D).

    ``update`` writes the keys and values of new positions into a block of rows and returns every cached key
    and value of those rows up to the last new position, as ``(n, T, H, D)`` views (Attention.attend's
    layout). Positions after the last write are never read, so nothing is cleared between days.
    """

    def __init__(
        self, rows: int, max_positions: int, n_heads: int, head_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__()
        shape = (rows, n_heads, max_positions, head_dim)
        # zeros, not empty: the pages are touched here, once, not by the first minutes of the first day
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(
        self, rows: slice, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v (n, t, H, D) for positions start..start+t-1 of ``rows`` -> keys, values (n, start+t, H, D)."""
        end = start + k.shape[1]
        self.k[rows, :, start:end] = k.transpose(1, 2)  # (n, H, t, D)
        self.v[rows, :, start:end] = v.transpose(1, 2)
        return self.k[rows, :, :end].transpose(1, 2), self.v[rows, :, :end].transpose(1, 2)


def _checked_input(x: torch.Tensor, shape: tuple[int | None, ...], name: str, meaning: str) -> None:
    """ValueError naming ``name`` unless ``x`` has ``shape`` (None = any size on that dimension)."""
    ok = x.dim() == len(shape) and all(want is None or got == want for got, want in zip(x.shape, shape))
    if not ok:
        dims = ", ".join("any" if s is None else str(s) for s in shape)
        raise ValueError(f"{name}: expected shape ({dims}) = {meaning}, got {tuple(x.shape)}")


class HRMStreamer:
    """Stream Head-B probabilities minute by minute for ``batch_size`` symbols (module docstring).

    ``net`` must already be on ``device`` in ``dtype`` (``net.to(device, dtype)``); it is not modified.
    ``max_minutes`` (<= ``net.cfg.minutes_per_day``) bounds the minutes of a day.

    Per day: ``steps = start_day(x_daily)`` then ``step(x_minute)`` once per minute (or ``advance`` for
    several minutes at once, e.g. to catch up after a late start). After ``start_day``, ``steps`` (B,) long
    holds each symbol's number of segments and ``position`` the number of minutes streamed so far.
    """

    def __init__(
        self,
        net: HRMNet,
        batch_size: int,
        max_minutes: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        cfg = net.cfg
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size}")
        if not 1 <= max_minutes <= cfg.minutes_per_day:
            raise ValueError(
                f"max_minutes: expected 1..{cfg.minutes_per_day} (hrm.minutes_per_day, the L RoPE table), "
                f"got {max_minutes}"
            )
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        param = next(net.parameters())
        if param.device != device or param.dtype != dtype:
            raise ValueError(
                f"net: parameters are {param.dtype} on {param.device}, expected {dtype} on {device} "
                "(move it first with net.to(device, dtype))"
            )
        self.net = net
        self.batch_size = batch_size
        self.max_minutes = max_minutes
        self.device = device
        self.dtype = dtype
        self.update_cycles = [c for c in range(cfg.H_cycles) for _ in range(cfg.L_cycles)]  # H cycle of each L-update
        self.l_init = net.l_init.to(device=device, dtype=dtype)  # (d_L,) the z_L of every minute before segment 0
        self.caches: list[list[KVCache]] = []
        self.film_h = torch.empty(0)
        self._allocate(batch_size)  # every symbol runs at least one segment
        self.steps: torch.Tensor | None = None  # (B,) long: segments per symbol today
        self.position = 0  # minutes streamed today
        self._order = self._inverse = torch.empty(0, dtype=torch.long)  # (B,) symbols by segments, and back
        self._segments: list[tuple[slice, int, int]] = []  # per segment: cache rows, n_s, n_{s+1}

    @property
    def cache_rows(self) -> int:
        """Rows (symbol, segment pairs) the caches hold now."""
        return self.film_h.shape[0]

    def _allocate(self, rows: int) -> None:
        """(Re)allocate the caches and the FiLM summaries for ``rows`` (symbol, segment) pairs."""
        self.caches, self.film_h = [], torch.empty(0)  # free the old buffers before allocating the new ones
        cfg = self.net.cfg
        attn = self.net.l_module.layers[0].attn
        self.caches = [
            [
                KVCache(rows, self.max_minutes, attn.n_heads, attn.head_dim, self.device, self.dtype)
                for _ in range(cfg.l.n_layers)
            ]
            for _ in self.update_cycles
        ]
        self.film_h = torch.zeros(rows, cfg.H_cycles, cfg.h.d_model, device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def start_day(self, x_daily: torch.Tensor) -> torch.Tensor:
        """Run H for the day and reset the caches: x_daily (B, T_H, F_d) -> steps (B,) long.

        ``x_daily``: the daily feature rows of the window ending at day d-1 (T_H <= hrm.daily_window), as
        ``act_rollout`` takes them. Returns the number of segments each symbol runs today (1..max_segments).
        """
        net, cfg = self.net, self.net.cfg
        b = self.batch_size
        _checked_input(x_daily, (b, None, cfg.daily_features), "x_daily", "(symbols, daily rows, daily features)")
        if not 1 <= x_daily.shape[1] <= cfg.daily_window:
            raise ValueError(
                f"x_daily: expected 1..{cfg.daily_window} daily rows (hrm.daily_window), got {x_daily.shape[1]}"
            )
        x_h = net.daily_proj(x_daily.to(device=self.device, dtype=self.dtype))  # (B, T_H, d_H)
        z_h = net.initial_carry(b, x_h.shape[1], 1, self.device, self.dtype).z_H  # (B, T_H, d_H)
        steps = torch.zeros(b, dtype=torch.long, device=self.device)
        active = torch.arange(b, device=self.device)  # symbols still running, in batch order
        summaries = []  # per segment (B, H_cycles, d_H); rows of symbols that halted before it are unused
        for _ in range(cfg.max_segments):
            h_cycles, z_h = net.h_summaries(z_h, x_h[active])  # H_cycles x (n, d_H), (n, T_H, d_H)
            segment = x_h.new_zeros(b, cfg.H_cycles, cfg.h.d_model)
            segment[active] = torch.stack(h_cycles, dim=1)
            summaries.append(segment)
            q_halt, q_continue = net.q_values(z_h)  # (n,) each, as readout
            steps[active] += 1
            halt = halting_decision(
                q_halt, q_continue, steps[active], cfg.max_segments, training=False, eval_mode=cfg.eval_halting
            )
            active, z_h = active[~halt], z_h[~halt]
            if active.numel() == 0:
                break

        order = torch.argsort(steps, descending=True, stable=True)  # (B,)
        counts = [int((steps > s).sum()) for s in range(len(summaries))] + [0]  # n_s, then 0 after the last
        if sum(counts) > self.cache_rows:
            self._allocate(sum(counts))
        self._segments = []
        offset = 0
        for s, segment in enumerate(summaries):
            rows = slice(offset, offset + counts[s])
            self.film_h[rows] = segment[order[: counts[s]]]
            self._segments.append((rows, counts[s], counts[s + 1]))
            offset += counts[s]
        self._order, self._inverse = order, torch.argsort(order)
        self.steps, self.position = steps, 0
        return steps.clone()

    @torch.inference_mode()
    def advance(self, x_minutes: torch.Tensor) -> torch.Tensor:
        """Stream t new minutes at once: x_minutes (B, t, F_m) -> probabilities (B, t) fp32.

        Row j is the minute at position ``position + j`` of the day; the result equals t calls of ``step``.
        """
        if self.steps is None:
            raise RuntimeError("HRMStreamer: call start_day(x_daily) before streaming minutes")
        net, b = self.net, self.batch_size
        f_m = net.cfg.minute_features
        _checked_input(x_minutes, (b, None, f_m), "x_minutes", "(symbols, minutes, minute features)")
        start, t = self.position, x_minutes.shape[1]
        if start + t > self.max_minutes:
            raise ValueError(
                f"x_minutes: {t} minute(s) after minute {start} exceed max_minutes={self.max_minutes} of the day"
            )
        cos, sin = net.l_module.rotary()
        positions = torch.arange(start, start + t, device=self.device)  # (t,) minute index of each new row
        x_l = net.minute_proj(x_minutes.to(device=self.device, dtype=self.dtype)[self._order])  # (B, t, d_L)
        z = self.l_init.expand(b, t, -1)  # (B, t, d_L), the initial carry
        logits = torch.empty(b, t, device=self.device, dtype=torch.float32)  # (B, t), symbols in segment order
        for rows, n, n_next in self._segments:
            z = z[:n]  # the carry of the n symbols that run this segment: their z_L after the last one
            for u, c in enumerate(self.update_cycles):
                z = self._l_update(u, rows, z, x_l[:n], self.film_h[rows, c], cos, sin, positions)
            logits[n_next:n] = net.head_b(net.norm_l(z[n_next:])).float().squeeze(-1)  # symbols halting here
        self.position = start + t
        return torch.sigmoid(logits[self._inverse])

    def step(self, x_minute: torch.Tensor) -> torch.Tensor:
        """Stream the next minute: x_minute (B, F_m) -> probability (B,) fp32 at that minute."""
        f_m = self.net.cfg.minute_features
        _checked_input(x_minute, (self.batch_size, f_m), "x_minute", "(symbols, minute features)")
        return self.advance(x_minute.unsqueeze(1))[:, 0]

    def _l_update(
        self,
        u: int,
        rows: slice,
        z: torch.Tensor,
        x_l: torch.Tensor,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """L-update ``u`` of a segment on the new positions only: ``net.l_update`` with the caches of ``rows``.

        z, x_l (n, t, d_L), h (n, d_H) -> new z (n, t, d_L). Each block is TransformerBlock.forward with
        its attention split into ``qkv`` on the new positions and ``attend`` over every cached position.
        """
        x = self.net.film(z + x_l, h)  # (n, t, d_L)
        for block, cache in zip(self.net.l_module.layers, self.caches[u]):
            q, k, v = block.attn.qkv(x, cos, sin, positions)  # (n, t, H, D) each
            keys, values = cache.update(rows, self.position, k, v)  # (n, position + t, H, D)
            # one new query sees every cached key; several need the bottom-right causal mask among themselves
            x = block.norm1(x + block.attn.attend(q, keys, values, causal=q.shape[1] > 1))
            x = block.norm2(x + block.mlp(x))
        return x
