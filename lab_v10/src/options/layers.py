"""Transformer building blocks for the HRM modules: RMSNorm, SwiGLU, RoPE, attention, post-norm block.

Layout: activations are ``(B, T, d)``; inside attention, queries, keys and values are ``(B, T, H, D)``
(batch, positions, heads, head width), the layout flash-attn takes. No layer has a bias.

Attention backend
    :func:`attention` runs flash-attn when it imports, the tensors are on CUDA with compute capability
    8.0 or newer, the dtype is fp16/bf16 and the head width is a multiple of 8 up to 256; otherwise it
    runs ``torch.nn.functional.scaled_dot_product_attention`` (SDPA) in its ``(B, H, T, D)`` layout.
    The choice is made per call from :func:`set_use_flash` (``True`` / ``False`` / ``None`` = auto) or,
    until that is called, the environment variable ``USE_FLASH`` (``1`` / ``0`` / ``auto``, default
    ``auto``). Asking for flash where it cannot run warns and falls back to SDPA. The logger ``hrm.attn``
    prints one line per distinct (request, device, dtype, head width) with the backend chosen, the device
    and its GPU capability. flash-attn is imported lazily, only for CUDA tensors.

Causal masks are aligned bottom-right: with ``Tq`` queries and ``Tk >= Tq`` keys, query ``i`` sees keys
``0 .. Tk - Tq + i``. For ``Tq == Tk`` this is the usual lower triangle; for ``Tq < Tk`` the queries are
the last ``Tq`` positions of the key sequence, which is what a KV cache feeds in (flash-attn >= 2.1 uses
the same convention).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lab_v10.src.errors import ConfigError

logger = logging.getLogger("hrm.attn")

_UNSET = object()
_flash_request: object = _UNSET  # set_use_flash value; _UNSET defers to the USE_FLASH variable
_USE_FLASH_VALUES = {"1": True, "0": False, "auto": None}
_FLASH_DTYPES = (torch.float16, torch.bfloat16)
_FLASH_MIN_CAPABILITY = (8, 0)  # flash-attn 2 kernels: Ampere and newer
_FLASH_MAX_HEAD_DIM = 256


# ----------------------------------------------------------------------------------------------
# Initialisation


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` in place from a normal truncated at +-2 sigma, rescaled so its std is ``std``.

    Inverse-CDF draw: u ~ U(-m, m) with m = 2 Phi(2) - 1 = erf(sqrt 2), then sqrt(2) erfinv(u) is N(0, 1)
    truncated at +-2, whose std is ``sqrt(1 - 4 phi(2) / m)``; the draw is divided by that factor.
    """
    mass = math.erf(math.sqrt(2.0))  # 2 Phi(2) - 1
    shrink = math.sqrt(1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / mass)
    with torch.no_grad():
        return tensor.uniform_(-mass, mass).erfinv_().mul_(math.sqrt(2.0) * std / shrink)


def lecun_linear(d_in: int, d_out: int) -> nn.Linear:
    """A bias-free ``nn.Linear(d_in, d_out)`` with truncated LeCun-normal weights (std 1/sqrt(d_in))."""
    linear = nn.Linear(d_in, d_out, bias=False)
    trunc_normal_(linear.weight, std=1.0 / math.sqrt(d_in))
    return linear


# ----------------------------------------------------------------------------------------------
# Norm and feed-forward


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension with a learnable gain (init 1), computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., d)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).type_as(x)


class SwiGLU(nn.Module):
    """Feed-forward ``down(silu(gate(x)) * up(x))`` with hidden width ``ffn_dim``; 3·d·ffn_dim weights."""

    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.gate_up_proj = lecun_linear(d_model, 2 * ffn_dim)
        self.down_proj = lecun_linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, ffn) each
        return self.down_proj(F.silu(gate) * up)


# ----------------------------------------------------------------------------------------------
# Rotary position embeddings


class RotaryEmbedding(nn.Module):
    """cos/sin tables ``(max_positions, head_dim)`` for RoPE (rotate-half convention), fp32 buffers.

    Frequencies ``base ** (-2i / head_dim)`` for ``i < head_dim / 2``, each used by the two halves of the
    head width. The tables are not saved in checkpoints (they are a function of the config).
    """

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head width, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)  # (P, D/2)
        angles = torch.cat((angles, angles), dim=-1)  # (P, D)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    @property
    def max_positions(self) -> int:
        return self.cos.shape[0]

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:  # (P, D), (P, D)
        return self.cos, self.sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x1, x2) -> (-x2, x1)`` over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys by their positions.

    q, k: ``(B, T, H, D)``. cos, sin: tables ``(P, D)`` with ``P`` larger than every position used.
    position_ids: ``None`` for positions ``0 .. T-1`` (a window shorter than the table uses its first
    ``T`` rows); ``(T,)`` shared by the batch, or ``(B, T)`` per sample (e.g. the minute index of a
    streamed token). The rotation runs in fp32 and returns q, k in their input dtype.
    """
    t = q.shape[1]
    if position_ids is None:
        if t > cos.shape[0]:
            raise ValueError(f"sequence of {t} positions exceeds the RoPE table of {cos.shape[0]}")
        cos_t, sin_t = cos[:t], sin[:t]  # (T, D)
    else:
        cos_t, sin_t = cos[position_ids], sin[position_ids]  # (T, D) or (B, T, D)
    cos_t = cos_t.float().unsqueeze(-2)  # (T, 1, D) or (B, T, 1, D): broadcast over heads (and batch)
    sin_t = sin_t.float().unsqueeze(-2)
    qf, kf = q.float(), k.float()
    q_rot = qf * cos_t + rotate_half(qf) * sin_t
    k_rot = kf * cos_t + rotate_half(kf) * sin_t
    return q_rot.type_as(q), k_rot.type_as(k)


# ----------------------------------------------------------------------------------------------
# Attention backend


def set_use_flash(value: bool | None) -> None:
    """Choose the attention backend at run time: True (flash, else warn and SDPA), False (SDPA), None (auto).

    Once called, this overrides the ``USE_FLASH`` environment variable for the rest of the process.
    """
    global _flash_request
    if value not in (True, False, None):
        raise ValueError(f"set_use_flash: expected True, False or None, got {value!r}")
    _flash_request = value
    _select_backend.cache_clear()


def flash_request() -> bool | None:
    """The current request: True, False or None (auto), from set_use_flash or else ``USE_FLASH``."""
    if _flash_request is not _UNSET:
        return _flash_request  # type: ignore[return-value]
    raw = os.environ.get("USE_FLASH", "auto").strip().lower()
    if raw not in _USE_FLASH_VALUES:
        raise ConfigError(f"USE_FLASH: expected one of 1, 0, auto, got {raw!r}")
    return _USE_FLASH_VALUES[raw]


@functools.cache
def _flash_attn_func() -> Callable | None:
    """flash-attn's ``flash_attn_func`` if the package imports, else None (imported on first CUDA use)."""
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


def flash_unavailable_reason(
    device_type: str, capability: tuple[int, int] | None, dtype: torch.dtype, head_dim: int
) -> str | None:
    """Why flash-attn cannot run these tensors, or None when it can."""
    if device_type != "cuda":
        return f"device is {device_type}, flash-attn needs CUDA"
    if dtype not in _FLASH_DTYPES:
        return f"dtype is {dtype}, flash-attn needs float16 or bfloat16"
    if capability is None or capability < _FLASH_MIN_CAPABILITY:
        return f"GPU capability {capability} is below {_FLASH_MIN_CAPABILITY}"
    if head_dim % 8 or head_dim > _FLASH_MAX_HEAD_DIM:
        return f"head width {head_dim} is not a multiple of 8 up to {_FLASH_MAX_HEAD_DIM}"
    if _flash_attn_func() is None:
        return "flash_attn is not installed"
    return None


@functools.cache
def _select_backend(
    request: bool | None, device_type: str, device_index: int | None, dtype: torch.dtype, head_dim: int
) -> str:
    """'flash' or 'sdpa' for one (request, device, dtype, head width); logs the choice once."""
    capability = torch.cuda.get_device_capability(device_index) if device_type == "cuda" else None
    backend = "sdpa"
    if request is not False:
        reason = flash_unavailable_reason(device_type, capability, dtype, head_dim)
        if reason is None:
            backend = "flash"
        elif request is True:
            warnings.warn(f"flash attention requested but unavailable ({reason}); using SDPA", RuntimeWarning)
    device = device_type if device_index is None else f"{device_type}:{device_index}"
    mode = {True: "flash", False: "sdpa", None: "auto"}[request]
    logger.info(
        "attention backend=%s (requested %s) device=%s capability=%s dtype=%s head_dim=%d",
        backend, mode, device, "n/a" if capability is None else f"{capability[0]}.{capability[1]}",
        str(dtype).removeprefix("torch."), head_dim,
    )
    return backend


def attention_backend(q: torch.Tensor) -> str:
    """The backend :func:`attention` uses for query tensors like ``q`` (B, T, H, D): 'flash' or 'sdpa'."""
    return _select_backend(flash_request(), q.device.type, q.device.index, q.dtype, q.shape[-1])


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """SDPA on ``(B, T, H, D)`` tensors: q (B, Tq, H, D), k/v (B, Tk, H, D) -> (B, Tq, H, D)."""
    tq, tk = q.shape[1], k.shape[1]
    mask = None
    if causal and tq != tk:
        if tq > tk:
            raise ValueError(f"causal attention needs at least as many keys as queries, got {tk} < {tq}")
        mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)  # bottom-right
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # (B, H, T, D)
        attn_mask=mask, is_causal=causal and tq == tk,
    )
    return out.transpose(1, 2)  # (B, Tq, H, D)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Softmax attention with scale 1/sqrt(D): q (B, Tq, H, D), k/v (B, Tk, H, D) -> (B, Tq, H, D)."""
    if attention_backend(q) == "flash":
        return _flash_attn_func()(q, k, v, causal=causal)
    return sdpa_attention(q, k, v, causal)


# ----------------------------------------------------------------------------------------------
# Attention module and block


class Attention(nn.Module):
    """Multi-head self-attention with RoPE, no biases, fused or separate Q/K/V projections.

    ``forward = attend(*qkv(...))``. The two halves are public so a KV cache can project and rotate only
    the new positions with :meth:`qkv`, append k and v to its cache, and call :meth:`attend` with all
    cached keys (``causal=True`` aligns the new queries with the end of the cache).
    """

    def __init__(self, d_model: int, n_heads: int, fused_qkv: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.fused_qkv = fused_qkv
        if fused_qkv:
            self.qkv_proj = lecun_linear(d_model, 3 * d_model)
        else:
            self.q_proj = lecun_linear(d_model, d_model)
            self.k_proj = lecun_linear(d_model, d_model)
            self.v_proj = lecun_linear(d_model, d_model)
        self.o_proj = lecun_linear(d_model, d_model)

    def qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, d) -> q, k, v (B, T, H, D) with q and k rotated to ``position_ids`` (default 0..T-1)."""
        b, t, _ = x.shape
        if self.fused_qkv:
            q, k, v = self.qkv_proj(x).view(b, t, 3, self.n_heads, self.head_dim).unbind(2)
        else:
            q, k, v = (p(x).view(b, t, self.n_heads, self.head_dim) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = apply_rotary_pos_emb(q, k, cos, sin, position_ids)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        """q (B, Tq, H, D), k/v (B, Tk, H, D) -> output projection of the attention (B, Tq, d)."""
        out = attention(q, k, v, causal)  # (B, Tq, H, D)
        return self.o_proj(out.reshape(q.shape[0], q.shape[1], -1))

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.attend(*self.qkv(x, cos, sin, position_ids), causal=causal)


class TransformerBlock(nn.Module):
    """Post-norm block: ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``. 4d² + 3·d·ffn + 2d weights."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, norm_eps: float, fused_qkv: bool = True) -> None:
        super().__init__()
        self.attn = Attention(d_model, n_heads, fused_qkv)
        self.norm1 = RMSNorm(d_model, norm_eps)
        self.mlp = SwiGLU(d_model, ffn_dim)
        self.norm2 = RMSNorm(d_model, norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        x = self.norm1(x + self.attn(x, cos, sin, position_ids, causal))
        return self.norm2(x + self.mlp(x))
