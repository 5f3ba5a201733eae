"""H and L token builders of the HRM dual network (docs/design.md sections 3 and 4), on plain numpy arrays.

A sample of the network is keyed by a forecast date *t* (a daily row):

- **H tokens**: the ``window`` daily feature rows ending at *t* (inclusive), oldest first:
  :func:`daily_windows`, ``(N, window, F_d)``. Head A reads them to forecast ``yA(t)`` at the close of *t*.
- **L tokens**: the minutes of the next session *d* after *t* (:func:`next_session`), in time order and
  packed (a missing minute is skipped, not padded; ``session_time`` carries the clock), padded at the END
  to the longest session of the batch: :func:`minute_tokens`, ``(N, T_L, F_m)`` with a mask ``(N, T_L)``.

So the minute probabilities of day *d* use daily rows ``<= d-1`` and, the L-module being causal, minutes
``<= m`` of day *d*. The builders index arrays by position; :func:`daily_table` and :func:`minute_table`
first check the input tables and take their model columns, and the caller (the HRM adapter) standardizes
the values and converts them to tensors.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from lab_v10.src.dataset.samples import feature_frame
from lab_v10.src.dataset.windows_numpy import sliding_windows
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS


def daily_windows(values: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Rows ``ends[i]-window+1 .. ends[i]`` of ``values`` for every sample ``i``, oldest first.

    ``values`` ``(n, F)`` daily rows in date order, ``ends`` ``(N,)`` int row positions (the forecast dates),
    each ``>= window - 1`` -> ``(N, window, F)`` (a copy, same dtype).
    """
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and (ends.min() < window - 1 or ends.max() >= values.shape[0]):
        raise ValueError(
            f"daily_windows: row positions must lie in [{window - 1}, {values.shape[0] - 1}] for a "
            f"{window}-row window over {values.shape[0]} rows, got {ends.min()}..{ends.max()}"
        )
    return sliding_windows(values, ends - (window - 1), window)  # (N, window, F)


class Sessions(NamedTuple):
    """Where the sessions of a minute table lie: ``dates`` ``(S,)`` ascending session dates (tz-naive
    datetime64[ns]); ``starts``, ``stops`` ``(S,)`` row positions (``stops`` exclusive) of each session."""

    dates: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Minutes per session ``(S,)``."""
        return self.stops - self.starts


def session_layout(session: pd.DatetimeIndex) -> Sessions:
    """Sessions of minute rows whose session dates ``session`` ``(n,)`` are in time order (each session's
    rows contiguous). Raises ValueError naming the first row where the session date goes back in time."""
    dates = session.as_unit("ns").to_numpy()
    back = np.flatnonzero(dates[1:] < dates[:-1])
    if back.size:
        row = back[0] + 1
        raise ValueError(
            f"X_intraday: session {pd.Timestamp(dates[row]).date()} at row {row} follows session "
            f"{pd.Timestamp(dates[row - 1]).date()} (expected minutes in time order, each session contiguous)"
        )
    starts = np.flatnonzero(np.r_[True, dates[1:] != dates[:-1]]) if dates.size else np.zeros(0, np.int64)
    stops = np.append(starts[1:], dates.size) if dates.size else starts
    return Sessions(dates[starts], starts, stops)


def next_session(daily_dates: np.ndarray, session_dates: np.ndarray) -> np.ndarray:
    """For each daily row *t*, the position of the session whose L tokens pair with it, or -1.

    The pair is the first session strictly after *t*, provided no daily row lies between *t* and that session
    (so *t* is the last daily row before it, the row a prediction for that session ends its window at). Each
    row pairs with at most one session and each session with at most one row; *t* has no pair at the end of
    the minute data, or where the minute data has no session between *t* and the next daily row.
    ``daily_dates`` ``(n,)``, ``session_dates`` ``(S,)``, both ascending datetime64 -> ``(n,)`` int64.
    """
    if session_dates.size == 0:
        return np.full(daily_dates.shape, -1, dtype=np.int64)
    first_after = np.searchsorted(session_dates, daily_dates, side="right")  # (n,) first session > t
    has_session = first_after < session_dates.size
    candidate = session_dates[np.minimum(first_after, session_dates.size - 1)]  # (n,)
    next_daily = np.r_[daily_dates[1:], np.datetime64("NaT")]  # (n,) the following daily row
    no_row_between = np.isnat(next_daily) | (next_daily >= candidate)
    return np.where(has_session & no_row_between, first_after, -1).astype(np.int64)


class MinuteTokens(NamedTuple):
    """L tokens of N samples: ``x`` ``(N, T_L, F)`` (0 at padding), ``mask`` ``(N, T_L)`` bool (True = a real
    minute), ``y`` ``(N, T_L)`` (NaN at padding and where the label is NaN)."""

    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray


def minute_tokens(
    values: np.ndarray, labels: np.ndarray | None, sessions: Sessions, session_of_sample: np.ndarray
) -> MinuteTokens:
    """Pack the minutes of each sample's session, padded at the end to the longest selected session.

    ``values`` ``(n, F)`` minute rows, ``labels`` ``(n,)`` or None (all NaN), ``session_of_sample`` ``(N,)``
    session positions, -1 for a sample without minutes (an all-False mask row). ``T_L`` is the longest
    selected session, at least 1 (so a batch without any minute is ``(N, 1, F)``, fully masked).
    """
    session_of_sample = np.asarray(session_of_sample, dtype=np.int64)
    has = session_of_sample >= 0  # (N,)
    lengths = np.zeros(session_of_sample.shape, dtype=np.int64)
    starts = np.zeros(session_of_sample.shape, dtype=np.int64)
    lengths[has] = sessions.lengths[session_of_sample[has]]
    starts[has] = sessions.starts[session_of_sample[has]]
    t_l = max(int(lengths.max(initial=0)), 1)
    offsets = np.arange(t_l)  # (T_L,)
    mask = offsets[None, :] < lengths[:, None]  # (N, T_L)
    rows = (starts[:, None] + offsets[None, :])[mask]  # (n_real,) row positions of the real minutes
    x = np.zeros((*mask.shape, values.shape[1]), dtype=values.dtype)  # (N, T_L, F)
    x[mask] = values[rows]
    y = np.full(mask.shape, np.nan)  # (N, T_L)
    if labels is not None:
        y[mask] = labels[rows]
    return MinuteTokens(x, mask, y)


# ----------------------------------------------------------------------------------------------
# Checked input tables


class MinuteTable(NamedTuple):
    """A checked minute feature table: ``values`` ``(n, F_m)`` float64 model columns in row order,
    ``sessions`` (contiguous, ascending) and ``index`` ``(n,)`` the minute timestamps."""

    values: np.ndarray
    sessions: Sessions
    index: pd.DatetimeIndex


def _require_increasing(index: pd.DatetimeIndex, what: str, plural: str, show: Callable = str) -> None:
    """ValueError "``what`` <entry> follows <previous> (expected ``plural`` in increasing order)" at the first
    entry of ``index`` that does not come after the one before it (``show`` formats the entries)."""
    back = np.flatnonzero(np.diff(index.asi8) <= 0)
    if back.size:
        row = back[0] + 1
        raise ValueError(
            f"{what} {show(index[row])} follows {show(index[row - 1])} (expected {plural} in increasing order)"
        )


def daily_table(X_daily: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``X_daily[columns]`` as float64 ``(n, F_d)``, checked: a DatetimeIndex of strictly increasing session
    dates, every column present, every value finite (ValueError naming the date or column)."""
    if not isinstance(X_daily, pd.DataFrame) or not isinstance(X_daily.index, pd.DatetimeIndex):
        raise ValueError("X_daily: expected a DataFrame indexed by session date (DatetimeIndex)")
    values = feature_frame(X_daily, columns, "X_daily").to_numpy()  # (n, F_d)
    _require_increasing(X_daily.index, "X_daily: date", "dates", lambda t: t.date())
    return values


def minute_table(X_intraday: pd.DataFrame, max_minutes: int) -> MinuteTable:
    """The checked model columns (INTRADAY_MODEL_COLUMNS) and session layout of ``X_intraday``.

    Raises ValueError when the table is not a DataFrame with a ``session`` column and a time-ordered,
    unique DatetimeIndex, has no rows, misses a model column or holds a non-finite value, or when a session
    has more than ``max_minutes`` minutes (``hrm.minutes_per_day``, the L-module's positions).
    """
    if not isinstance(X_intraday, pd.DataFrame) or "session" not in X_intraday.columns:
        raise ValueError("X_intraday: expected a DataFrame with a 'session' column (session date of each minute)")
    if not isinstance(X_intraday.index, pd.DatetimeIndex) or len(X_intraday) == 0:
        raise ValueError("X_intraday: expected minute rows indexed by timestamp (a non-empty DatetimeIndex)")
    values = feature_frame(X_intraday, INTRADAY_MODEL_COLUMNS, "X_intraday").to_numpy()  # (n, F_m)
    _require_increasing(X_intraday.index, "X_intraday: minute", "timestamps")
    sessions = session_layout(pd.DatetimeIndex(X_intraday["session"]))
    long = np.flatnonzero(sessions.lengths > max_minutes)
    if long.size:
        s = long[0]
        raise ValueError(
            f"X_intraday: session {pd.Timestamp(sessions.dates[s]).date()} has {sessions.lengths[s]} minutes "
            f"(expected at most hrm.minutes_per_day={max_minutes})"
        )
    return MinuteTable(values, sessions, X_intraday.index)
