"""torch backend of :mod:`lab_v10.src.dataset.windows`: series held as a ``torch.Tensor`` on its device.

Every function mirrors one in :mod:`lab_v10.src.dataset.windows_numpy` with the same arguments, shapes and
float64 arithmetic, so both backends cut the same windows (tests/test_ts_windows.py); only the order
of the float64 sums in :func:`column_moments` may differ. Values are ``(T, F)`` float64 tensors on the
series' device (a CUDA series stays on the GPU), rows in time order.
"""
from __future__ import annotations

import numpy as np
import torch

NAME = "torch"


def as_values(series: torch.Tensor) -> torch.Tensor:
    """A tensor (T,) or (T, F) -> float64 tensor (T, F) on the same device; 1-D becomes one column."""
    values = series.detach().to(torch.float64)
    return values.unsqueeze(1) if values.dim() == 1 else values


def first_nonfinite(values: torch.Tensor) -> tuple[int, int] | None:
    """(row, column) of the first NaN/inf in row-major order of (T, F) ``values``, or None."""
    bad = torch.nonzero(~torch.isfinite(values))  # (K, 2), row-major order
    return None if bad.shape[0] == 0 else (int(bad[0, 0]), int(bad[0, 1]))


def column_moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and population std (ddof 0) of (T, F) ``values``: two (F,) float64 tensors."""
    return values.mean(dim=0), values.std(dim=0, correction=0)


def sliding_windows(values: torch.Tensor, starts: np.ndarray, length: int) -> torch.Tensor:
    """Rows ``starts[i] .. starts[i] + length - 1`` of (T, F) ``values`` for each i: (N, length, F)."""
    view = values.unfold(0, length, 1)  # (T - length + 1, F, length), a view
    index = torch.as_tensor(starts, dtype=torch.long, device=values.device)  # (N,)
    return view[index].transpose(1, 2).contiguous()  # (N, length, F)


def like(values: torch.Tensor, array: np.ndarray) -> torch.Tensor:
    """``array`` (a host numpy array) as a value of this backend next to ``values``: float64 on its device."""
    return torch.as_tensor(np.asarray(array, dtype=np.float64), device=values.device)


def to_tensor(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The same tensor cast to ``dtype``, on its device."""
    return values.to(dtype)
