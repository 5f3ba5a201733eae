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
(tests/test_hrm_stream.py checks fp32 to 1e-5 and bf16 against the fp32 forward to the tolerance stated there).

Segment cap (``max_segments_live``, config ``stream.max_segments_live``). Symbols the learned rule would run
longer than the cap stop at it: the stream then equals ``act_rollout`` of the net with ``hrm.max_segments``
set to the cap. ``capped`` (B,) names them; halting is fixed before the open, so the count holds for every
minute of the day (logged by ``start_day``). It bounds a minute's cost at cap x one segment.

Layout. At ``start_day`` the symbols are ordered by their number of segments, most first, so the n_s
symbols that run segment s are a prefix of that order and segment s owns one contiguous block of cache rows
(one row per (symbol, segment) the day runs, ``steps.sum()`` rows in all). There is one :class:`KVCache` per
(L-update, layer), where the L-updates of a segment are its ``H_cycles * L_cycles`` updates in order; keys
and values are stored (rows, heads, minutes, head width), so one symbol-head's cached minutes are contiguous
and attention reads them in place. The caches are allocated at construction for one segment per symbol and
reallocated at ``start_day`` only when a day runs more (symbol, segment) pairs than they hold; ``step`` and
``advance`` never allocate cache memory.
Cache memory: ``2 * rows * H_cycles * L_cycles * n_layers * max_minutes * d_L`` values of ``dtype``.

Work per minute and symbol: for each of its segments, ``H_cycles * L_cycles`` L-updates of one position
(FiLM with the day's precomputed scale and shift, then per layer a QKV projection, attention over the cached
positions, the output projection and the SwiGLU), then Head B at the halting segment. The H-module and the
FiLM projections run only in ``start_day``. In ``dtype`` bf16 the weights and cache stay bf16; the only
conversions are of the new positions' activations (RoPE and RMSNorm compute in fp32, as in the full forward),
never a copy of the cache (the compiled kernel converts each cached value in registers as it reads it). ``attention`` picks the kernel for the cached attention: ``sdpa``
(layers.attention: flash-attn or PyTorch SDPA), ``matmul`` (two batched matmuls, softmax in fp32) or
``compiled`` (a one-minute block update compiled by ``torch.compile``: the single query's scores and weighted
sum as fp32 reductions that read each cached bf16 key and value once, fused with RoPE, the norms and the
SwiGLU; several minutes at once use sdpa). In bf16 the eager kernels are several times slower on the strided
cache views of every minute but the day's last (measured: HRM27M.md, "Latency and throughput").
stream_dtype.py chooses the kernel, and the dtype, from measured throughput.

Time semantics: the probability returned for minute m uses daily rows <= d-1 (``x_daily`` of
``start_day``) and minutes <= m of day d.

Ensembles (``train.ensemble_size`` > 1): a streamer serves one network; stream an HRMAdapter's ensemble with
one streamer per ``adapter.trainers_[k].head_b_net`` (the network Head B is read from; the same as ``.net``
unless ``train.early_stopping`` is per_head) and average their probabilities, as the adapter does.
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from lab_v10.src.options.act_halting import halting_decision
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.layers import (
    Attention,
    RotaryEmbedding,
    attention,
    rotate_half,
)

logger = logging.getLogger("hrm.stream")
ATTENTION_KERNELS = ("sdpa", "matmul", "compiled")


class KVCache(nn.Module):
    """Keys and values of one attention layer: buffers ``k``, ``v`` of shape (rows, H, T_max, D).

    ``update`` writes the keys and values of new positions into a block of rows and returns every cached key
    and value of those rows up to the last new position, as ``(n, H, T, D)`` views. Positions after the last
    write are never read, so nothing is cleared between days.
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
        """k, v (n, t, H, D) for positions start..start+t-1 of ``rows`` -> keys, values (n, H, start+t, D)."""
        end = start + k.shape[1]
        self.k[rows, :, start:end] = k.transpose(1, 2)  # (n, H, t, D)
        self.v[rows, :, start:end] = v.transpose(1, 2)
        return self.k[rows, :, :end], self.v[rows, :, :end]


def cached_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, kernel: str) -> torch.Tensor:
    """Attention of the t newest positions over the cache: q (n, t, H, D), keys/values (n, H, T, D) with the
    queries at positions T-t..T-1 (bottom-right causal mask when t > 1) -> (n, t, H, D).

    ``sdpa``: layers.attention (flash-attn or SDPA); ``matmul``: scores and output as batched matmuls in the
    input dtype, the softmax in fp32; ``compiled``: for one new position (t = 1), scores and output as fp32
    reductions over the head width and the cached positions (written for torch.compile, which fuses the
    conversions into the loops that read the cache; eager, they materialise fp32 copies), sdpa for t > 1.
    """
    t = q.shape[1]
    if kernel == "compiled" and t == 1:
        scores = (q.transpose(1, 2).float() * keys.float()).sum(-1) * (1.0 / math.sqrt(q.shape[-1]))  # (n, H, T)
        weights = torch.softmax(scores, dim=-1)  # (n, H, T) fp32
        return (weights.unsqueeze(-1) * values.float()).sum(-2).to(q.dtype).unsqueeze(1)  # (n, 1, H, D)
    if kernel in ("sdpa", "compiled"):
        return attention(q, keys.transpose(1, 2), values.transpose(1, 2), causal=t > 1)
    scores = torch.matmul(q.transpose(1, 2), keys.transpose(-1, -2))  # (n, H, t, T)
    scores = scores.float() * (1.0 / math.sqrt(q.shape[-1]))
    if t > 1:
        big = keys.shape[2]
        allowed = torch.ones(t, big, dtype=torch.bool, device=q.device).tril(diagonal=big - t)  # (t, T)
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(values.dtype)  # (n, H, t, T)
    return torch.matmul(weights, values).transpose(1, 2)  # (n, t, H, D)


def project_new_positions(
    block: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention.qkv of one TransformerBlock on the new positions only: x (n, t, d_L) and their RoPE rows
    cos, sin (t, 1, 1, D) fp32 -> q, k, v (n, t, H, D) in x's dtype (the rotation computed in fp32)."""
    attn: Attention = block.attn
    n, t, _ = x.shape
    shape = (n, t, attn.n_heads, attn.head_dim)
    if attn.fused_qkv:
        qkv = attn.qkv_proj(x).view(n, t, 3, *shape[2:])  # (n, t, 3, H, D)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]  # (n, t, 2, H, D), (n, t, H, D)
    else:
        qk = torch.stack((attn.q_proj(x).view(shape), attn.k_proj(x).view(shape)), dim=2)
        v = attn.v_proj(x).view(shape)
    qk = qk.float()  # a no-op in fp32
    q, k = (qk * cos + rotate_half(qk) * sin).to(x.dtype).unbind(2)  # (n, t, H, D) each
    return q, k, v


def finish_block(
    block: nn.Module, x: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, kernel: str
) -> torch.Tensor:
    """The rest of TransformerBlock.forward for the new positions: x (n, t, d_L), q (n, t, H, D), the cached
    keys/values (n, H, T, D) -> new x (n, t, d_L)."""
    n, t, _ = x.shape
    out = cached_attention(q, keys, values, kernel)  # (n, t, H, D)
    x = block.norm1(x + block.attn.o_proj(out.reshape(n, t, -1)))
    return block.norm2(x + block.mlp(x))


@functools.cache
def compiled_block_steps() -> tuple[Callable, Callable]:
    """torch.compile'd :func:`project_new_positions` and :func:`finish_block` (dynamic shapes: symbols and
    cached minutes vary; weights are inputs, so every block shares the compiled code), built once per process."""
    # finish_block needs up to 6 graphs per (dtype, device, widths): at dynamo's default limit of 8 a second
    # streamer in another dtype would silently run eagerly
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(project_new_positions, dynamic=True), torch.compile(finish_block, dynamic=True)


def block_update(
    block: nn.Module,
    cache: KVCache,
    rows: slice,
    position: int,
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    kernel: str,
) -> torch.Tensor:
    """One TransformerBlock on new positions ``position..position+t-1`` of ``rows``, appending their keys and
    values to ``cache``: x (n, t, d_L), rope (t, 1, 1, D) fp32 each -> new x (n, t, d_L). The ``compiled``
    kernel runs the compiled steps for one new position (t = 1) and the eager ones (sdpa) for more."""
    project, finish = compiled_block_steps() if kernel == "compiled" and x.shape[1] == 1 else (
        project_new_positions, finish_block)
    q, k, v = project(block, x, *rope)  # (n, t, H, D) each
    keys, values = cache.update(rows, position, k, v)  # (n, H, position + t, D)
    return finish(block, x, q, keys, values, kernel)


def _checked_input(x: torch.Tensor, shape: tuple[int | None, ...], name: str, meaning: str) -> None:
    """ValueError naming ``name`` unless ``x`` has ``shape`` (None = any size on that dimension)."""
    ok = x.dim() == len(shape) and all(want is None or got == want for got, want in zip(x.shape, shape))
    if not ok:
        dims = ", ".join("any" if s is None else str(s) for s in shape)
        raise ValueError(f"{name}: expected shape ({dims}) = {meaning}, got {tuple(x.shape)}")


class HRMStreamer:
    """Stream Head-B probabilities minute by minute for ``batch_size`` symbols (module docstring).

    ``net`` must already be on ``device`` in ``dtype`` (``net.to(device, dtype)``; stream_dtype.build_streamer
    does it from the config); it is not modified. ``max_minutes`` (<= ``net.cfg.minutes_per_day``) bounds the
    minutes of a day; ``max_segments_live`` (None: ``hrm.max_segments``) caps the segments a symbol runs;
    ``attention`` is the cached-attention kernel (:func:`cached_attention`); ``compiled`` compiles its steps in
    the constructor (seconds; torch.compile's errors, e.g. no C++ compiler, are raised there).

    Per day: ``steps = start_day(x_daily)`` then ``step(x_minute)`` once per minute (or ``advance`` for
    several minutes at once, e.g. to catch up after a late start). After ``start_day``, ``steps`` (B,) long
    holds each symbol's number of segments, ``capped`` (B,) bool the symbols stopped by the cap and
    ``position`` the number of minutes streamed so far.
    """

    def __init__(
        self,
        net: HRMNet,
        batch_size: int,
        max_minutes: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
        *,
        max_segments_live: int | None = None,
        attention: str = "sdpa",
    ) -> None:
        cfg = net.cfg
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size}")
        if not 1 <= max_minutes <= cfg.minutes_per_day:
            raise ValueError(
                f"max_minutes: expected 1..{cfg.minutes_per_day} (hrm.minutes_per_day, the L RoPE table), "
                f"got {max_minutes}"
            )
        if max_segments_live is not None and max_segments_live < 1:
            raise ValueError(f"max_segments_live: expected an int >= 1 or None, got {max_segments_live}")
        if attention not in ATTENTION_KERNELS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTION_KERNELS)}, got {attention!r}")
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
        self.attention = attention
        self.segment_limit = min(cfg.max_segments, max_segments_live or cfg.max_segments)
        self.update_cycles = [c for c in range(cfg.H_cycles) for _ in range(cfg.L_cycles)]  # H cycle of each L-update
        self.l_init = net.l_init.to(device=device, dtype=dtype)  # (d_L,) the z_L of every minute before segment 0
        attn: Attention = net.l_module.layers[0].attn
        rope = RotaryEmbedding(attn.head_dim, cfg.minutes_per_day, cfg.rope_base).to(device)  # fp32 in every dtype
        self.rope_cos, self.rope_sin = rope.cos, rope.sin  # (P, D) each
        self.caches: list[list[KVCache]] = []
        self.film_scale = self.film_shift = torch.empty(0)
        self._allocate(batch_size)  # every symbol runs at least one segment
        self.steps: torch.Tensor | None = None  # (B,) long: segments per symbol today
        self.capped = torch.zeros(batch_size, dtype=torch.bool, device=device)  # (B,) stopped by the cap today
        self.position = 0  # minutes streamed today
        self._order = self._inverse = torch.empty(0, dtype=torch.long)  # (B,) symbols by segments, and back
        self._segments: list[tuple[slice, int, int]] = []  # per segment: cache rows, n_s, n_{s+1}
        if attention == "compiled":
            self._compile_now()

    @property
    def cache_rows(self) -> int:
        """Rows (symbol, segment pairs) the caches hold now."""
        return self.film_scale.shape[0]

    @torch.inference_mode()  # inference tensors whether called by __init__ or start_day (one kind for compile)
    def _allocate(self, rows: int) -> None:
        """(Re)allocate the caches and the FiLM scale and shift for ``rows`` (symbol, segment) pairs."""
        self.caches, self.film_scale, self.film_shift = [], torch.empty(0), torch.empty(0)  # free the old first
        cfg = self.net.cfg
        attn = self.net.l_module.layers[0].attn
        self.caches = [
            [
                KVCache(rows, self.max_minutes, attn.n_heads, attn.head_dim, self.device, self.dtype)
                for _ in range(cfg.l.n_layers)
            ]
            for _ in self.update_cycles
        ]
        shape = (rows, cfg.H_cycles, cfg.l.d_model)
        self.film_scale = torch.ones(shape, device=self.device, dtype=self.dtype)  # 1 + W_gamma h
        self.film_shift = torch.zeros(shape, device=self.device, dtype=self.dtype)  # W_beta h

    @torch.inference_mode()
    def start_day(self, x_daily: torch.Tensor, symbol: torch.Tensor | None = None) -> torch.Tensor:
        """Run H for the day and reset the caches: x_daily (B, T_H, F_d), symbol (B,) int64 -> steps (B,) long.

        ``x_daily``: the daily feature rows of the window ending at day d-1 (T_H <= hrm.daily_window), as
        ``act_rollout`` takes them; ``symbol``: each row's symbol id, required with hrm.symbol_embedding
        (ValueError naming ``symbol``, HRMNet.embed_daily). Returns the number of segments each symbol runs
        today (1..max_segments, at most the cap).
        """
        net, cfg = self.net, self.net.cfg
        b = self.batch_size
        _checked_input(x_daily, (b, None, cfg.daily_features), "x_daily", "(symbols, daily rows, daily features)")
        if not 1 <= x_daily.shape[1] <= cfg.daily_window:
            raise ValueError(
                f"x_daily: expected 1..{cfg.daily_window} daily rows (hrm.daily_window), got {x_daily.shape[1]}"
            )
        symbol = None if symbol is None else symbol.to(self.device)
        x_h = net.embed_daily(x_daily.to(device=self.device, dtype=self.dtype), symbol)  # (B, T_H, d_H)
        z_h = net.initial_carry(b, x_h.shape[1], 1, self.device, self.dtype).z_H  # (B, T_H, d_H)
        steps = torch.zeros(b, dtype=torch.long, device=self.device)
        capped = torch.zeros(b, dtype=torch.bool, device=self.device)
        active = torch.arange(b, device=self.device)  # symbols still running, in batch order
        summaries = []  # per segment (B, H_cycles, d_H); rows of symbols that halted before it are unused
        for s in range(self.segment_limit):
            h_cycles, z_h = net.h_summaries(z_h, x_h[active])  # H_cycles x (n, d_H), (n, T_H, d_H)
            segment = x_h.new_zeros(b, cfg.H_cycles, cfg.h.d_model)
            segment[active] = torch.stack(h_cycles, dim=1)
            summaries.append(segment)
            q_halt, q_continue = net.q_values(z_h)  # (n,) each, as readout
            steps[active] += 1
            halt = halting_decision(
                q_halt, q_continue, steps[active], cfg.max_segments, training=False, eval_mode=cfg.eval_halting
            )
            if s == self.segment_limit - 1:  # the cap: whoever would go on stops here
                capped[active[~halt]] = True
                halt = torch.ones_like(halt)
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
            h = segment[order[: counts[s]]]  # (n_s, H_cycles, d_H)
            if net.film is not None:  # FiLM's projections of the day's summaries, once: u * scale + shift
                self.film_scale[rows] = 1.0 + net.film.gamma(h)  # (n_s, H_cycles, d_L)
                self.film_shift[rows] = net.film.beta(h)
            self._segments.append((rows, counts[s], counts[s + 1]))
            offset += counts[s]
        self._order, self._inverse = order, torch.argsort(order)
        self.steps, self.capped, self.position = steps, capped, 0
        if bool(capped.any()):
            logger.info(
                "start_day: %d of %d symbols stopped at the cap of %d segments (stream.max_segments_live) for "
                "every minute of the day", int(capped.sum()), b, self.segment_limit,
            )
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
        rope = (  # the new positions' rotation, shared by every layer: (t, 1, 1, D) each, fp32
            self.rope_cos[start : start + t, None, None],
            self.rope_sin[start : start + t, None, None],
        )
        x_l = net.minute_proj(x_minutes.to(device=self.device, dtype=self.dtype)[self._order])  # (B, t, d_L)
        z = self.l_init.expand(b, t, -1)  # (B, t, d_L), the initial carry
        logits = torch.empty(b, t, device=self.device, dtype=torch.float32)  # (B, t), symbols in segment order
        film = net.film is not None
        for rows, n, n_next in self._segments:
            z = z[:n]  # the carry of the n symbols that run this segment: their z_L after the last one
            for u, c in enumerate(self.update_cycles):
                x = z + x_l[:n]  # (n, t, d_L)
                if film:
                    x = x * self.film_scale[rows, c, None] + self.film_shift[rows, c, None]
                z = self._l_update(u, rows, x, rope)
            logits[n_next:n] = net.head_b(net.norm_l(z[n_next:])).float().squeeze(-1)  # symbols halting here
        self.position = start + t
        return torch.sigmoid(logits[self._inverse])

    def step(self, x_minute: torch.Tensor) -> torch.Tensor:
        """Stream the next minute: x_minute (B, F_m) -> probability (B,) fp32 at that minute."""
        f_m = self.net.cfg.minute_features
        _checked_input(x_minute, (self.batch_size, f_m), "x_minute", "(symbols, minute features)")
        return self.advance(x_minute.unsqueeze(1))[:, 0]

    def _l_update(self, u: int, rows: slice, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The layers of L-update ``u`` on the new positions, with the caches of ``rows``: x (n, t, d_L), the
        update's input after FiLM -> new z (n, t, d_L) (:func:`block_update` per layer)."""
        for block, cache in zip(self.net.l_module.layers, self.caches[u]):
            x = block_update(block, cache, rows, self.position, x, rope, self.attention)
        return x

    def _compile_now(self) -> None:
        """Compile the ``compiled`` kernel's one-minute steps for the shapes a day meets (1 or more symbols in a
        segment, 1 or more cached minutes) at construction, not during the first minutes of the first day."""
        block = self.net.l_module.layers[0]
        attn: Attention = block.attn
        rope = (self.rope_cos[:1, None, None], self.rope_sin[:1, None, None])
        with torch.inference_mode():  # the caches are inference tensors (_allocate), and so are these
            scratch = KVCache(2, 3, attn.n_heads, attn.head_dim, self.device, self.dtype)
            for n in (1, 2):
                for position in range(3):  # the last one reads the whole (contiguous) cache, as minute max_minutes
                    x = torch.zeros(n, 1, self.net.cfg.l.d_model, device=self.device, dtype=self.dtype)
                    block_update(block, scratch, slice(0, n), position, x, rope, "compiled")
