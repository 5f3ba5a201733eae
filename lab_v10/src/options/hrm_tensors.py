"""The HRM's samples as tensors: what the trainer fits, evaluates and predicts on."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor


@dataclass
class HRMTensors:
    """N samples (days) as CPU tensors.

    x_daily (N, T_H, F_d) float32: standardized daily feature windows ending at day d-1.
    x_minute (N, T_L, F_m) float32: standardized minute features of day d, padded at the END.
    minute_mask (N, T_L) bool: True = real minute.
    y_a (N,) float32: standardized yA; NaN = no label (Head-A loss masked).
    y_b (N, T_L) float32 in {0, 1} or NaN (masked).
    symbol (N,) int64, optional: each sample's symbol id (pooled multi-symbol samples, ``hrm.symbol_embedding``);
        None for single-symbol data.
    """

    x_daily: Tensor
    x_minute: Tensor
    minute_mask: Tensor
    y_a: Tensor
    y_b: Tensor
    symbol: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.x_daily.shape[0]
        for name, ndim in {"x_daily": 3, "x_minute": 3, "minute_mask": 2, "y_a": 1, "y_b": 2}.items():
            t = getattr(self, name)
            if t.dim() != ndim or t.shape[0] != n:
                raise ValueError(f"HRMTensors.{name}: expected {ndim} dims with N={n} rows, got {tuple(t.shape)}")
        t_l = self.x_minute.shape[1]
        if self.minute_mask.dtype != torch.bool:
            raise ValueError(f"HRMTensors.minute_mask: expected dtype bool, got {self.minute_mask.dtype}")
        if self.minute_mask.shape[1] != t_l or self.y_b.shape[1] != t_l:
            raise ValueError(
                f"HRMTensors: minute_mask {tuple(self.minute_mask.shape)} and y_b {tuple(self.y_b.shape)} must have "
                f"T_L={t_l} columns like x_minute"
            )
        for name in ("x_daily", "x_minute", "y_a", "y_b"):
            if getattr(self, name).dtype != torch.float32:
                raise ValueError(f"HRMTensors.{name}: expected dtype float32, got {getattr(self, name).dtype}")
        if self.symbol is not None and (self.symbol.shape != (n,) or self.symbol.dtype != torch.int64):
            raise ValueError(
                f"HRMTensors.symbol: expected shape ({n},) int64, got {tuple(self.symbol.shape)} {self.symbol.dtype}"
            )

    def __len__(self) -> int:
        return self.x_daily.shape[0]

    def subset(self, idx: Any) -> HRMTensors:
        """Rows ``idx`` (slice, index array/list/tensor or bool mask) of every tensor."""
        if not isinstance(idx, (slice, Tensor)):
            array = np.asarray(idx)
            idx = torch.as_tensor(array if array.size else array.astype(np.int64))  # [] is an empty index
        return HRMTensors(*(_apply(getattr(self, f.name), lambda t: t[idx]) for f in dataclasses.fields(self)))

    def to(self, device: torch.device | str) -> HRMTensors:
        """The same samples on ``device``."""
        return HRMTensors(*(_apply(getattr(self, f.name), lambda t: t.to(device)) for f in dataclasses.fields(self)))


def _apply(t: Tensor | None, fn: Callable[[Tensor], Tensor]) -> Tensor | None:
    """``fn(t)``, or None for an absent optional field."""
    return None if t is None else fn(t)
