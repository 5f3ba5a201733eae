"""Forecasting windows ``(T_in -> T_out)`` cut from one long series, standardised with training rows only.

Time semantics. Row ``r`` of the series is what is known at the close of period ``r``. A window has an
*origin* ``r`` (the forecast is made at the close of row r):

    x         (T_in, F)           rows r - T_in + 1 .. r      (standardised features)
    y         (T_out, F_y)        rows r + 1 .. r + T_out     (standardised target columns)
    calendar  (T_in + T_out, C)   rows r - T_in + 1 .. r + T_out, from the optional calendar hook

Calendar features of the target rows are included: the dates of future periods are known in advance
(a trading calendar), and an autoregressive forecast needs them for the rows it appends.

Normalisation. Each column is standardised with the mean and population std of the first
``train_rows`` rows (the training split) and nothing after them; the calendar features are passed
through as the hook returns them. :meth:`TimeSeriesWindows.target_range` selects windows whose whole
target span lies in a row range, so ``target_range(0, train_rows)`` gives training windows that never
read a row at or after ``train_rows``, and ``target_range(train_rows, n_rows)`` gives out-of-sample
windows (their inputs may reach back into the training rows: those are known at the origin).

Backends. A ``torch.Tensor`` series is windowed by :mod:`.windows_torch` on its own device (a CUDA
series stays on the GPU); anything else (numpy array, list, pandas Series/DataFrame) by
:mod:`.windows_numpy`. Both cut the same rows; values agree up to the float64 rounding of the training
moments (numpy and torch sum in different orders). The outputs are torch tensors either way.

Calendar hook: a callable ``DatetimeIndex (T,) -> array (T, C)`` (or (T,) for one feature), e.g. a
day-of-week encoding. It needs the series' dates: the index of a pandas input, or ``index=``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from lab_v10.src.dataset import windows_numpy, windows_torch
from lab_v10.src.errors import DataValidationError

CalendarHook = Callable[[pd.DatetimeIndex], np.ndarray]


@dataclass
class TSBatch:
    """A batch of windows (module docstring for the rows each one covers).

    x (B, T_in, F), y (B, T_out, F_y), calendar (B, T_in + T_out, C) or None; all on one device.
    """

    x: torch.Tensor
    y: torch.Tensor
    calendar: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def select(self, indices: torch.Tensor) -> TSBatch:
        """The windows at ``indices`` (K,) long, in that order."""
        calendar = None if self.calendar is None else self.calendar[indices]
        return TSBatch(self.x[indices], self.y[indices], calendar)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TSBatch:
        """Every tensor on ``device`` as ``dtype``."""
        calendar = None if self.calendar is None else self.calendar.to(device=device, dtype=dtype)
        return TSBatch(self.x.to(device=device, dtype=dtype), self.y.to(device=device, dtype=dtype), calendar)


def select_backend(series: object) -> ModuleType:
    """The backend module for ``series``: :mod:`.windows_torch` for a torch tensor, else :mod:`.windows_numpy`."""
    return windows_torch if isinstance(series, torch.Tensor) else windows_numpy


def _target_positions(target_columns: Sequence[int | str] | None, columns: list, n_features: int) -> list[int]:
    """Column positions of the targets: all columns when None; ints are positions, strings column names."""
    if target_columns is None:
        return list(range(n_features))
    if len(target_columns) == 0:
        raise ValueError("target_columns: expected at least one column, got an empty list")
    positions = []
    for column in target_columns:
        if isinstance(column, str):
            if column not in columns:
                raise ValueError(f"target_columns: column {column!r} is not in the series columns {columns}")
            positions.append(columns.index(column))
        elif 0 <= int(column) < n_features:
            positions.append(int(column))
        else:
            raise ValueError(f"target_columns: position {column} is outside 0..{n_features - 1}")
    return positions


class TimeSeriesWindows:
    """All ``(T_in -> T_out)`` windows of a series, standardised with its first ``train_rows`` rows.

    Args:
        series: (T,) or (T, F) values in time order: a torch tensor (torch backend, keeps its device), a
            numpy array or list, or a pandas Series/DataFrame (numpy backend; a DatetimeIndex is used as
            ``index`` and DataFrame column names may name ``target_columns``). Every value must be finite.
        t_in, t_out: input rows and target rows per window.
        train_rows: rows ``0 .. train_rows - 1`` are the training split; the scaler sees only them.
        target_columns: the forecast columns (positions or DataFrame names), default all in order.
        index: (T,) DatetimeIndex of the rows, needed by ``calendar`` when the series has none.
        calendar: hook ``DatetimeIndex -> (T, C)`` features (module docstring), not standardised.
        stride: rows between consecutive origins (1 = every row).
        dtype: float dtype of the output tensors.

    Attributes: ``backend`` ('numpy' or 'torch'); ``mean``, ``std`` (F,) float64 torch tensors, the
    training moments, on the series' device (CPU for the numpy backend); ``origins`` (N,) long, the origin
    row of each window (CPU); ``target_positions``; ``n_calendar`` (C, 0 without a hook); ``index`` or None.
    """

    def __init__(
        self,
        series: object,
        t_in: int,
        t_out: int,
        train_rows: int,
        *,
        target_columns: Sequence[int | str] | None = None,
        index: pd.DatetimeIndex | None = None,
        calendar: CalendarHook | None = None,
        stride: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if t_in < 1 or t_out < 1 or stride < 1:
            raise ValueError(f"t_in, t_out and stride: expected >= 1, got {t_in}, {t_out} and {stride}")
        columns: list = []
        if isinstance(series, (pd.Series, pd.DataFrame)):
            frame = series.to_frame() if isinstance(series, pd.Series) else series
            columns = list(frame.columns)
            if index is None and isinstance(frame.index, pd.DatetimeIndex):
                index = frame.index
            series = frame.to_numpy(dtype=np.float64)
        backend = select_backend(series)
        values = backend.as_values(series)  # (T, F) float64
        if values.ndim != 2:
            raise ValueError(f"series: expected shape (T,) or (T, F), got {tuple(values.shape)}")
        n_rows, n_features = values.shape
        if not t_in + t_out <= train_rows <= n_rows:
            raise ValueError(
                f"train_rows: expected t_in + t_out = {t_in + t_out} <= train_rows <= {n_rows} rows, got {train_rows}"
            )
        bad = backend.first_nonfinite(values)
        if bad is not None:
            raise DataValidationError(f"series: non-finite value at row {bad[0]}, column {bad[1]}")
        if index is not None and (not isinstance(index, pd.DatetimeIndex) or len(index) != n_rows):
            raise ValueError(f"index: expected a DatetimeIndex of {n_rows} rows, got {type(index).__name__} "
                             f"of {len(index)}")
        self.backend: str = backend.NAME
        self.t_in, self.t_out, self.train_rows = t_in, t_out, train_rows
        self.n_rows, self.n_features = n_rows, n_features
        self.target_positions = _target_positions(target_columns, columns, n_features)
        self.index = index

        mean, std = backend.column_moments(values[:train_rows])  # (F,), (F,) from training rows only
        constant = [j for j in range(n_features) if float(std[j]) == 0.0]
        if constant:
            raise DataValidationError(
                f"series: column(s) {constant} are constant over the {train_rows} training rows; "
                "they cannot be standardised (drop them)"
            )
        self.mean = backend.to_tensor(mean, torch.float64)  # (F,) on the series' device
        self.std = backend.to_tensor(std, torch.float64)  # (F,)
        scaled = (values - mean) / std  # (T, F)

        origins = np.arange(t_in - 1, n_rows - t_out, stride)  # (N >= 1,) last input row of each window
        starts = origins - (t_in - 1)  # (N,) first input row
        self.origins = torch.from_numpy(origins)  # (N,) long
        span = backend.sliding_windows(scaled, starts, t_in + t_out)  # (N, T_in + T_out, F)
        x = span[:, :t_in]  # (N, T_in, F)
        y = span[:, t_in:][:, :, self.target_positions]  # (N, T_out, F_y)
        calendar_windows = None
        if calendar is not None:
            features = self._calendar_features(calendar, backend, values)  # (T, C)
            calendar_windows = backend.to_tensor(backend.sliding_windows(features, starts, t_in + t_out), dtype)
        self._all = TSBatch(backend.to_tensor(x, dtype), backend.to_tensor(y, dtype), calendar_windows)
        self.n_calendar = 0 if calendar_windows is None else calendar_windows.shape[-1]

    def _calendar_features(self, calendar: CalendarHook, backend: ModuleType, values: object) -> object:
        """The hook's (T, C) features, checked, as a float64 value of ``backend`` beside ``values``."""
        if self.index is None:
            raise ValueError(
                "calendar: the hook needs the rows' dates; pass index= or a pandas series with a DatetimeIndex"
            )
        features = windows_numpy.as_values(calendar(self.index))  # (T, C)
        if features.ndim != 2 or features.shape[0] != self.n_rows:
            raise ValueError(f"calendar hook: expected an array of shape ({self.n_rows}, C), got {features.shape}")
        bad = windows_numpy.first_nonfinite(features)
        if bad is not None:
            raise DataValidationError(f"calendar hook: non-finite value at row {bad[0]}, column {bad[1]}")
        return backend.like(values, features)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def n_targets(self) -> int:
        return len(self.target_positions)

    def batch(self, indices: torch.Tensor | None = None) -> TSBatch:
        """The windows at ``indices`` (K,) long (default all), tensors on the series' device."""
        return self._all if indices is None else self._all.select(indices)

    def target_range(self, start: int, stop: int) -> torch.Tensor:
        """(K,) long indices of the windows whose target rows r+1..r+T_out all lie in rows [start, stop)."""
        first_target = self.origins + 1  # (N,)
        last_target = self.origins + self.t_out  # (N,)
        return torch.nonzero((first_target >= start) & (last_target < stop)).squeeze(1)

    @property
    def target_mean(self) -> torch.Tensor:
        """(F_y,) float64 training mean of the target columns, in series units."""
        return self.mean[self.target_positions]

    @property
    def target_std(self) -> torch.Tensor:
        """(F_y,) float64 training std of the target columns; a standardised forecast scale times this is in
        series units."""
        return self.std[self.target_positions]

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        """Standardised targets or forecast means (..., F_y) -> series units, on y's device and dtype."""
        return y * self.target_std.to(y.device, y.dtype) + self.target_mean.to(y.device, y.dtype)
