"""Labels ``yA`` (daily vol gap, Book A) and ``yB`` (per-minute downside-first barrier, Book B).

Each label row carries ``span_end``, the last time its label looks at; a label is unchanged by any bar
after its ``span_end`` (docs/design.md section 3), and the walk-forward purging drops training rows whose span
reaches into a test block. ``span_end`` is NaT exactly where the label is NaN.

- ``yA(t) = RV(t+1..t+h) - IV(t)`` in vol points (annualized %), ``h = cfg.horizon_days``,
  ``RV = 100*sqrt(A/h * sum_{i=1..h} r_{t+i}^2)`` with close-to-close log returns ``r`` and
  ``A = cfg.annualization_days``. ``span_end`` is the date of row ``t+h``; the last ``h`` rows are NaN.
- ``yB(m)``, for minute *m* (bar start ``t_m``), looks at the bars of the same session whose start lies in
  the clock window ``(t_m, t_m + H]``, ``H = cfg.horizon_minutes`` (clock time, so missing minutes shorten
  the bar count, never stretch the window). With ``down = close_m - k_down*ATR_m`` and
  ``up = close_m + k_up*ATR_m``, yB = 1 if the first bar in the window that touches a barrier has
  ``low <= down`` and not ``high >= up``; 0 if the upside is touched first, both in the same bar, or
  neither. NaN when the window runs past the session close (``t_m + H + 1 minute > close``, i.e. minute
  ``m+H`` would end after the close) or ``ATR_m`` is not a positive number. ``span_end = t_m + H``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from lab_v10.src.config import LabelConfig
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.errors import DataValidationError
from lab_v10.src.features.daily import log_returns, realized_vol
from lab_v10.src.features.intraday import NS_PER_MINUTE, SessionLayout


def make_daily_labels(bars: DailyBars, cfg: LabelConfig = LabelConfig()) -> pd.DataFrame:
    """``yA`` and ``span_end`` indexed by ``date`` (module docstring). DataValidationError without ``iv``."""
    if not bars.has_iv:
        raise DataValidationError(
            f"{bars.source}: column 'iv' is missing (expected implied vol to build yA = RV(t+1..t+h) - IV(t))"
        )
    h, n = cfg.horizon_days, len(bars)
    labelled = max(n - h, 0)  # rows t with a full horizon t+1..t+h
    trailing = realized_vol(log_returns(bars.frame["close"].to_numpy(dtype=float)), h, cfg.annualization_days)
    forward = np.full(n, np.nan)
    forward[:labelled] = trailing[h:]  # (n,) RV over t+1..t+h
    dates = bars.dates.to_numpy()
    span_end = np.full(n, np.datetime64("NaT"), dtype=dates.dtype)
    span_end[:labelled] = dates[h:]
    y = forward - bars.frame["iv"].to_numpy(dtype=float)
    return pd.DataFrame({"yA": y, "span_end": span_end}, index=bars.dates.rename("date"))


@njit(cache=True)
def _downside_first_kernel(epoch_ns, session, high, low, close, atr, close_ns, horizon_ns, k_down, k_up):
    n = close.shape[0]
    label = np.full(n, np.nan)
    for m in range(n):
        window_end = epoch_ns[m] + horizon_ns
        if not (atr[m] > 0.0 and np.isfinite(atr[m])) or window_end >= close_ns[m]:
            continue
        down = close[m] - k_down * atr[m]
        up = close[m] + k_up * atr[m]
        label[m] = 0.0
        j = m + 1
        while j < n and session[j] == session[m] and epoch_ns[j] <= window_end:
            hit_down = low[j] <= down
            hit_up = high[j] >= up
            if hit_down or hit_up:
                label[m] = 1.0 if hit_down and not hit_up else 0.0
                break
            j += 1
    return label


def session_close_ns(bars: MinuteBars, layout: SessionLayout, session_close: pd.Series | None) -> np.ndarray:
    """Per-row session close in ns since the epoch: the end of the session's last bar (start + 1 minute),
    or ``session_close[date]`` where given (tz-aware timestamps indexed by session date). ``(n,)``."""
    last_bar = np.r_[np.flatnonzero(np.diff(layout.code)), len(layout.code) - 1]  # (S,)
    closes = layout.epoch_ns[last_bar] + NS_PER_MINUTE  # (S,)
    if session_close is not None:
        stamps = pd.DatetimeIndex(session_close)
        if stamps.tz is None:
            raise DataValidationError("session_close: expected tz-aware close timestamps, got naive ones")
        dates = pd.DatetimeIndex(session_close.index).normalize().as_unit("ns")
        session_dates = layout.date[last_bar]  # (S,)
        given = pd.DatetimeIndex(pd.Series(stamps.as_unit("ns"), index=dates).reindex(session_dates))  # NaT: none
        overridden = ~given.isna()
        given_ns = given.as_unit("ns").asi8
        early = np.flatnonzero(overridden & (given_ns < closes))
        if early.size:
            s = early[0]
            raise DataValidationError(
                f"{bars.source}: session_close for {pd.Timestamp(session_dates[s]).date()} is "
                f"{given[s].tz_convert(bars.tz)}, before the end of its last bar "
                f"{pd.Timestamp(closes[s], tz='UTC').tz_convert(bars.tz)} (expected a close at or after the last bar)"
            )
        closes = np.where(overridden, given_ns, closes)
    return closes[layout.code]


def make_intraday_labels(
    bars: MinuteBars,
    atr: np.ndarray | pd.Series,
    cfg: LabelConfig = LabelConfig(),
    session_close: pd.Series | None = None,
) -> pd.DataFrame:
    """``yB`` (0/1/NaN) and ``span_end`` (tz-aware, NaT where yB is NaN) indexed like ``bars.frame``.

    ``atr``: minute ATR in price units at each bar's close, either aligned with ``bars.frame`` (array of
    length n) or a Series indexed by timestamp (reindexed; missing rows get NaN labels), e.g. the ``atr``
    state column of the intraday features. ``session_close``: optional per-session close times (tz-aware,
    indexed by session date) that override the default end of the last bar.
    """
    frame = bars.frame
    if isinstance(atr, pd.Series):
        atr_values = atr.reindex(frame.index).to_numpy(dtype=float)
    else:
        atr_values = np.asarray(atr, dtype=float)
        if atr_values.shape != (len(frame),):
            raise ValueError(
                f"atr: expected shape ({len(frame)},) aligned with the minute bars, got {atr_values.shape}"
            )
    layout = SessionLayout.of(frame.index)
    horizon_ns = cfg.horizon_minutes * NS_PER_MINUTE
    label = _downside_first_kernel(
        layout.epoch_ns,
        layout.code,
        frame["high"].to_numpy(dtype=float),
        frame["low"].to_numpy(dtype=float),
        frame["close"].to_numpy(dtype=float),
        np.ascontiguousarray(atr_values),
        session_close_ns(bars, layout, session_close),
        horizon_ns,
        float(cfg.k_down),
        float(cfg.k_up),
    )
    span_end = pd.Series(frame.index + pd.Timedelta(minutes=cfg.horizon_minutes), index=frame.index)
    span_end = span_end.where(~np.isnan(label))
    return pd.DataFrame({"yB": label, "span_end": span_end}, index=frame.index)


class Labels(NamedTuple):
    """Both label tables: ``daily`` (yA, span_end) and ``intraday`` (yB, span_end; None without minutes)."""

    daily: pd.DataFrame
    intraday: pd.DataFrame | None


def make_labels(
    daily: DailyBars,
    minutes: MinuteBars | None = None,
    atr: np.ndarray | pd.Series | None = None,
    cfg: LabelConfig = LabelConfig(),
    session_close: pd.Series | None = None,
) -> Labels:
    """:func:`make_daily_labels` and, when ``minutes`` is given, :func:`make_intraday_labels` (which needs ``atr``)."""
    if minutes is None:
        return Labels(make_daily_labels(daily, cfg), None)
    if atr is None:
        raise ValueError("make_labels: atr is required with minutes (e.g. the 'atr' column of the intraday features)")
    return Labels(make_daily_labels(daily, cfg), make_intraday_labels(minutes, atr, cfg, session_close))
