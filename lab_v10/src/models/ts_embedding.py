"""Token embedding for a window of a time series: feature projection + sinusoidal position + calendar.

``TimeSeriesEmbedding(x, calendar)``: x (B, T, F) standardised rows in time order and, optionally,
calendar (B, T, C) features of the same rows -> tokens (B, T, d)::

    token_t = W_x x_t + PE(t) [+ W_c calendar_t]

``PE`` is the fixed sinusoidal table of "Attention Is All You Need" (``PE[t, 2i] = sin(t / base^(2i/d))``,
``PE[t, 2i+1] = cos(...)``), with ``t`` the position inside the window (0 = oldest row). It marks where a
row sits relative to the window's end, i.e. how long before the forecast origin it was observed; the
attention layers add RoPE on top for relative positions. W_x and W_c are bias-free truncated
LeCun-normal projections (layers.lecun_linear), so standardised inputs give tokens of unit scale.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lab_v10.src.options.layers import lecun_linear


def sinusoidal_table(positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(positions, d_model) fp32 table: even columns sin, odd columns cos of ``t / base^(2i/d)``."""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)  # (P, d/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (P, d): sin, cos interleaved


class TimeSeriesEmbedding(nn.Module):
    """Rows (B, T, F) [+ calendar (B, T, C)] -> tokens (B, T, d) for windows of up to ``max_len`` rows."""

    def __init__(self, n_features: int, d_model: int, max_len: int, n_calendar: int = 0) -> None:
        super().__init__()
        self.value_proj = lecun_linear(n_features, d_model)
        self.calendar_proj = lecun_linear(n_calendar, d_model) if n_calendar > 0 else None
        self.register_buffer("position", sinusoidal_table(max_len, d_model), persistent=False)  # (max_len, d)

    def forward(self, x: torch.Tensor, calendar: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, F), calendar (B, T, C) or None -> (B, T, d); T <= max_len."""
        t = x.shape[1]
        if t > self.position.shape[0]:
            raise ValueError(f"window of {t} rows exceeds the embedding's max_len {self.position.shape[0]}")
        if (calendar is None) != (self.calendar_proj is None):
            expected = "no calendar" if self.calendar_proj is None else "a calendar (B, T, C)"
            raise ValueError(f"calendar: this embedding expects {expected}")
        tokens = self.value_proj(x) + self.position[:t].to(x.dtype)  # (B, T, d)
        if self.calendar_proj is not None:
            tokens = tokens + self.calendar_proj(calendar)  # (B, T, d)
        return tokens
