"""numpy backend of :mod:`lab_v10.src.dataset.windows`: series held as ``np.ndarray`` on the host.

Every function mirrors one in :mod:`lab_v10.src.dataset.windows_torch` with the same arguments, shapes and
float64 arithmetic, so both backends cut the same windows (tests/test_ts_windows.py); only the order
of the float64 sums in :func:`column_moments` may differ. Values are ``(T, F)`` float64 arrays, rows
in time order; results become torch tensors only in :func:`to_tensor`.
"""
from __future__ import annotations

import numpy as np
import torch

NAME = "numpy"


def as_values(series: object) -> np.ndarray:
    """Any array-like (T,) or (T, F) -> float64 array (T, F); a 1-D series becomes one column."""
    values = np.asarray(series, dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def first_nonfinite(values: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN/inf in row-major order of (T, F) ``values``, or None."""
    bad = np.argwhere(~np.isfinite(values))  # (K, 2), row-major order
    return None if bad.size == 0 else (int(bad[0, 0]), int(bad[0, 1]))


def column_moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population std (ddof 0) of (T, F) ``values``: two (F,) float64 arrays."""
    return values.mean(axis=0), values.std(axis=0)


def sliding_windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows ``starts[i] .. starts[i] + length - 1`` of (T, F) ``values`` for each i: (N, length, F)."""
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)  # (T - length + 1, F, length)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1))  # (N, length, F)


def like(values: np.ndarray, array: np.ndarray) -> np.ndarray:
    """``array`` (a host numpy array) as a value of this backend next to ``values``: float64 numpy."""
    return np.asarray(array, dtype=np.float64)


def to_tensor(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A CPU torch tensor of ``dtype`` with the same shape and values."""
    return torch.from_numpy(values).to(dtype)
