"""The streamer's dtype and cached-attention kernel, chosen from measured throughput (config ``stream``).

``build_streamer(net, batch, max_minutes, device, cfg.stream)`` returns an HRMStreamer in the chosen dtype
and kernel with ``stream.max_segments_live``. The choice (:func:`choose_stream`) follows a short probe
(:func:`probe_stream`) at the batch to be streamed, in each candidate dtype: the best of ``repeats`` timed
calls of one L block's update of a minute with ``max_minutes`` cached (hrm_stream.block_update: projections,
RoPE, the attention over a strided view of the cache, as every minute but the day's last reads, norms, SwiGLU) with each kernel of hrm_stream.ATTENTION_KERNELS
(``stream.attention: auto``) or the one the config names. In the order sdpa (the model's own), matmul,
compiled (which costs compile time at start-up), a kernel replaces the choice so far only when it is
KERNEL_MIN_SPEEDUP times faster; ``compiled`` is probed only where torch.compile builds it (its error is kept
as the reason otherwise). A minute's estimate is that block time x layers x L-updates.
``stream.dtype: auto`` takes bf16 only when its estimate beats fp32's by ``BF16_MIN_SPEEDUP`` (bf16 also costs
accuracy: tests/test_hrm_stream.py states the tolerance); ``fp32``/``bf16`` fix the dtype and probe only the
kernels. The reason (estimates, and whether the device has native bf16, which is reported but never assumed)
is logged (logger ``hrm.stream``) and kept in ``StreamChoice``.

:func:`minute_cost` counts the FLOPs and bytes of one segment's minute update (scripts/bench_stream.py
builds its roofline floor from it).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab_v10.src.config import HRMConfig, StreamConfig
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_stream import (
    ATTENTION_KERNELS,
    HRMStreamer,
    KVCache,
    block_update,
)
from lab_v10.src.options.layers import RotaryEmbedding

logger = logging.getLogger("hrm.stream")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BF16_MIN_SPEEDUP = 1.1  # auto: bf16's estimated minute must be at least this many times faster than fp32's
# a kernel replaces the one chosen before it (in ATTENTION_KERNELS' order: sdpa, the model's own, then matmul,
# then compiled, which costs compile time at start-up) only when this many times faster
KERNEL_MIN_SPEEDUP = 1.1
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 dot products


@dataclass(frozen=True)
class MinuteCost:
    """One segment's update of one new minute, per symbol, with ``keys`` cached positions (the new one included).

    FLOPs of the L-layer projections and of attention (everything else a minute computes -- the minute
    projection, norms, Head B -- is below 0.1% of them), and bytes: the keys and values read (and the new
    ones written), and the L-layer weights, read once per L-update and shared by the ``batch`` symbols.
    """

    batch: int
    keys: int
    element_size: int
    projection_flops: float
    attention_flops: float
    kv_bytes: float
    weight_bytes: float

    @property
    def flops(self) -> float:
        return self.projection_flops + self.attention_flops

    @property
    def bytes(self) -> float:
        return self.kv_bytes + self.weight_bytes


def minute_cost(cfg: HRMConfig, batch: int, keys: int, element_size: int) -> MinuteCost:
    """:class:`MinuteCost` of one segment at ``batch`` symbols, attending to ``keys`` positions, in a dtype of
    ``element_size`` bytes; ``updates`` = H_cycles x L_cycles L-updates of ``n_layers`` blocks each."""
    d, ffn = cfg.l.d_model, cfg.l.ffn_dim
    blocks = cfg.H_cycles * cfg.L_cycles * cfg.l.n_layers
    layer_weights = 4 * d * d + 3 * d * ffn  # QKV, output, SwiGLU gate/up and down
    return MinuteCost(
        batch=batch,
        keys=keys,
        element_size=element_size,
        projection_flops=float(blocks * 2 * layer_weights),
        attention_flops=float(blocks * 4 * d * keys),  # q.k and the weighted sum of v, all heads
        kv_bytes=float(blocks * 2 * d * (keys + 1) * element_size),
        weight_bytes=blocks * layer_weights * element_size / batch,
    )


def best_seconds(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] | None = None) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` after one untimed warm-up (``sync`` closes each)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


def device_sync(device: torch.device) -> Callable[[], None] | None:
    """torch.cuda.synchronize on a CUDA device, None on CPU (CPU kernels return when done)."""
    return torch.cuda.synchronize if device.type == "cuda" else None


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether ``device`` computes bf16 natively, the evidence): CUDA's ``is_bf16_supported``, or the CPU's
    /proc/cpuinfo flags (NATIVE_BF16_CPU_FLAGS) and ATen's CPU capability."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"torch.cuda.is_bf16_supported() is {ok} on {torch.cuda.get_device_name(device)}"
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False, f"CPU capability {capability}; /proc/cpuinfo unreadable, native bf16 unknown"
    found = [f for f in NATIVE_BF16_CPU_FLAGS if f in flags]
    listed = ", ".join(found) or "none of " + ", ".join(NATIVE_BF16_CPU_FLAGS)
    return bool(found), f"CPU capability {capability}; bf16 flags: {listed}"


def projection_seconds(
    layer: nn.Module, batch: int, dtype: torch.dtype, device: torch.device, repeats: int
) -> dict[str, float]:
    """Best seconds of each nn.Linear of ``layer`` (an L block) applied to (batch, in) rows in ``dtype``,
    keyed by ``"in x out"``."""
    sync = device_sync(device)
    g = torch.Generator().manual_seed(0)
    weights = [m.weight.detach().to(device, dtype) for m in layer.modules() if isinstance(m, nn.Linear)]
    inputs = [torch.randn(batch, w.shape[1], generator=g).to(device, dtype) for w in weights]  # (batch, in)
    result: dict[str, float] = {}
    with torch.inference_mode():
        for x, w in zip(inputs, weights):
            result[f"{w.shape[1]} x {w.shape[0]}"] = best_seconds(lambda x=x, w=w: F.linear(x, w), repeats, sync)
    return result


def block_seconds(
    block: nn.Module, batch: int, keys: int, dtype: torch.dtype, device: torch.device, kernel: str, repeats: int
) -> float:
    """Best seconds of hrm_stream.block_update of one new minute for ``batch`` symbols after ``keys - 1`` cached
    minutes, with ``block`` (an L block) cast to ``dtype``, and ``kernel``. The cache holds one minute more than
    that: every minute but the day's last reads a strided view of its cache, and the matmul kernel is several
    times slower on one than on the whole (contiguous) cache. The compiled kernel compiles here
    (torch._dynamo.exc.BackendCompilerFailed where it cannot)."""
    sync = device_sync(device)
    attn = block.attn
    block = copy.deepcopy(block).to(device, dtype)
    rope = RotaryEmbedding(attn.head_dim, keys, 10000.0).to(device)  # the base does not change the cost
    new_rows = (rope.cos[keys - 1 :, None, None], rope.sin[keys - 1 :, None, None])  # (1, 1, 1, D) each, fp32
    with torch.inference_mode():
        cache = KVCache(batch, keys + 1, attn.n_heads, attn.head_dim, device, dtype)
        x = torch.randn(batch, 1, attn.n_heads * attn.head_dim, generator=torch.Generator().manual_seed(0))
        x = x.to(device, dtype)  # (batch, 1, d_L)
        return best_seconds(lambda: block_update(block, cache, slice(0, batch), keys - 1, x, new_rows, kernel),
                            repeats, sync)


def probe_stream(
    net: HRMNet,
    batch: int,
    max_minutes: int,
    device: torch.device | str,
    dtypes: list[str],
    repeats: int = 3,
    kernels: tuple[str, ...] = ATTENTION_KERNELS,
) -> dict[str, dict[str, Any]]:
    """Per dtype name: ``block_ms`` (one L block's update of minute ``max_minutes`` for ``batch`` symbols, per
    kernel in ``kernels``), ``unavailable`` (kernel -> why torch.compile could not build it), ``attention``
    (the choice, module docstring; with one kernel, that one) and ``minute_ms``: the
    estimated one-segment update of that minute, block_ms x layers x L-updates."""
    device = torch.device(device)
    cfg = net.cfg
    block = net.l_module.layers[0]
    blocks = cfg.H_cycles * cfg.L_cycles * cfg.l.n_layers
    result = {}
    for name in dtypes:
        seconds, unavailable = {}, {}
        for kernel in kernels:
            try:
                seconds[kernel] = block_seconds(block, batch, max_minutes, DTYPES[name], device, kernel, repeats)
            except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. no C++ compiler, no Triton
                cause = error.inner_exception
                unavailable[kernel] = f"{type(cause).__name__}: {str(cause).strip()[:300]}"
        if not seconds:
            raise RuntimeError(f"stream.attention: no kernel of {', '.join(kernels)} runs here: {unavailable}")
        order = [k for k in ATTENTION_KERNELS if k in seconds]  # the order of preference
        kernel = order[0]
        for other in order[1:]:
            if seconds[other] * KERNEL_MIN_SPEEDUP <= seconds[kernel]:
                kernel = other
        result[name] = {
            "block_ms": {k: round(s * 1e3, 4) for k, s in seconds.items()},
            "unavailable": unavailable,
            "attention": kernel,
            "minute_ms": round(seconds[kernel] * blocks * 1e3, 3),
        }
    return result


@dataclass
class StreamChoice:
    """The streamer's dtype and attention kernel, why, and the probe behind them (module docstring)."""

    dtype_name: str
    attention: str
    reason: str
    native_bf16: bool
    native_evidence: str
    probe: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: dtype, attention, reason, native_bf16 (and its evidence) and the probe."""
        return {"dtype": self.dtype_name, "attention": self.attention, "reason": self.reason,
                "native_bf16": self.native_bf16, "native_evidence": self.native_evidence, "probe": self.probe}


def choose_stream(
    net: HRMNet,
    batch: int,
    max_minutes: int,
    device: torch.device | str,
    dtype: str = "auto",
    repeats: int = 3,
    attention: str = "auto",
) -> StreamChoice:
    """The dtype (``auto``: measured, module docstring; ``fp32``/``bf16``: as given) and the attention kernel
    in it (``auto``: measured; a name of hrm_stream.ATTENTION_KERNELS: that one) (:func:`probe_stream`), for
    streaming ``batch`` symbols over days of ``max_minutes``; logs the reason."""
    if dtype not in ("auto", *DTYPES):
        raise ValueError(f"stream.dtype: expected one of auto, {', '.join(DTYPES)}, got {dtype!r}")
    if attention not in ("auto", *ATTENTION_KERNELS):
        raise ValueError(f"stream.attention: expected one of auto, {', '.join(ATTENTION_KERNELS)}, got {attention!r}")
    device = torch.device(device)
    native, evidence = native_bf16(device)
    kernels = ATTENTION_KERNELS if attention == "auto" else (attention,)
    probe = probe_stream(
        net, batch, max_minutes, device, list(DTYPES) if dtype == "auto" else [dtype], repeats, kernels)
    if dtype == "auto":
        fp32, bf16 = probe["fp32"]["minute_ms"], probe["bf16"]["minute_ms"]
        chosen = "bf16" if bf16 * BF16_MIN_SPEEDUP <= fp32 else "fp32"
        verdict = "faster" if chosen == "bf16" else f"not {BF16_MIN_SPEEDUP}x faster"
        reason = (f"stream.dtype auto: {chosen}; a {batch}-symbol minute at minute {max_minutes} is estimated at "
                  f"{fp32:.2f} ms in fp32 and {bf16:.2f} ms in bf16 ({verdict}); native bf16: {native} ({evidence})")
    else:
        chosen = dtype
        reason = f"stream.dtype {dtype} (set in the config); native bf16: {native} ({evidence})"
    kernel = probe[chosen]["attention"]
    timed = ", ".join(f"{k} {ms:.3g} ms" for k, ms in probe[chosen]["block_ms"].items())
    missing = "".join(f"; {k} unavailable: {why}" for k, why in probe[chosen].get("unavailable", {}).items())
    how = "measured" if attention == "auto" else "set in the config"
    reason += f"; attention kernel {kernel} ({how}; one block's minute update: {timed}{missing})"
    logger.info(reason)
    return StreamChoice(chosen, kernel, reason, native, evidence, probe)


def build_streamer(
    net: HRMNet,
    batch_size: int,
    max_minutes: int,
    device: torch.device | str,
    stream: StreamConfig,
    repeats: int = 3,
) -> tuple[HRMStreamer, StreamChoice]:
    """An HRMStreamer for ``net`` (any dtype and device; not modified: a copy is cast when needed) in the dtype
    and kernel :func:`choose_stream` picks from ``stream.dtype``, capped at ``stream.max_segments_live``."""
    choice = choose_stream(net, batch_size, max_minutes, device, stream.dtype, repeats, stream.attention)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    param = next(net.parameters())
    if param.dtype != choice.dtype or param.device != device:
        net = copy.deepcopy(net).to(device, choice.dtype)
    streamer = HRMStreamer(
        net, batch_size, max_minutes, device, choice.dtype,
        max_segments_live=stream.max_segments_live, attention=choice.attention,
    )
    return streamer, choice
