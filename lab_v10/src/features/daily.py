"""Causal daily features ``X_daily`` from :class:`~lab_v10.src.data.schema.DailyBars`.

Time semantics (docs/design.md section 3): row *t* is known at the close of day *t* and uses daily bars with
dates ``<= t`` only. Every window below is trailing and counts trading days (rows), not calendar days.

Columns, in the order of :func:`daily_feature_columns` (``A`` = ``cfg.annualization_days``):

- ``ret_1d``: log close-to-close return ``ln(C_t / C_{t-1})`` (a fraction, not %).
- ``parkinson_vol_{w}d``: Parkinson range vol, annualized %, ``100*sqrt(A * mean(P))`` with the daily
  variance ``P = ln(H/L)^2 / (4 ln 2)`` averaged over days ``t-w+1..t``; ``w`` runs over 1 (the day's own
  bar) and every ``cfg.har_windows``.
- ``garman_klass_vol_{w}d``: Garman-Klass vol, the same with ``GK = 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2``
  (``GK >= 0.114 ln(H/L)^2 >= 0`` for valid bars because ``|ln(C/O)| <= ln(H/L)``).
- ``rv_{w}d``: HAR realized-vol components, close-to-close, annualized %,
  ``100*sqrt(A/w * sum_{i=0}^{w-1} r_{t-i}^2)`` for ``w`` in ``cfg.har_windows``.
- only when the bars carry ``iv``: ``iv`` (level, vol points), ``iv_change_{k}d = iv_t - iv_{t-k}`` for
  ``k`` in ``cfg.iv_change_days`` and ``iv_rv_spread = iv_t - rv_{W}d`` with ``W = max(cfg.har_windows)``
  (the implied-minus-realized gap of the longest HAR window). Without ``iv`` these columns are absent and
  the table is narrower: use :func:`daily_feature_columns` for the network's input width.
- calendar, a deterministic function of the date: ``dow_sin, dow_cos`` (weekday on a 7-day circle),
  ``month_sin, month_cos`` (month on a 12-month circle).

Warm-up: the first :func:`daily_warmup_rows` rows lack a full window (``rv_{W}d`` needs ``W`` returns, an
IV change needs ``k`` earlier rows); they are dropped and the count is logged on logger ``lab.features``.
Every remaining value is finite, which is checked (inputs are validated finite and positive, so a failure
names the row and column).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from lab_v10.src.config import FeatureConfig
from lab_v10.src.data.schema import DailyBars
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.features")

CALENDAR_COLUMNS = ("dow_sin", "dow_cos", "month_sin", "month_cos")
_LOG2 = np.log(2.0)


def har_windows(cfg: FeatureConfig) -> list[int]:
    """The HAR windows (trading days), sorted and unique."""
    return sorted(set(cfg.har_windows))


def range_vol_windows(cfg: FeatureConfig) -> list[int]:
    """Windows of the range-based vols: the day itself (1) and every HAR window, sorted and unique."""
    return sorted({1, *cfg.har_windows})


def daily_feature_columns(cfg: FeatureConfig = FeatureConfig(), with_iv: bool = True) -> list[str]:
    """Column names of :func:`build_daily_features`, in order; ``len()`` is the network's daily input width."""
    columns = ["ret_1d"]
    columns += [f"parkinson_vol_{w}d" for w in range_vol_windows(cfg)]
    columns += [f"garman_klass_vol_{w}d" for w in range_vol_windows(cfg)]
    columns += [f"rv_{w}d" for w in har_windows(cfg)]
    if with_iv:
        columns += ["iv", *(f"iv_change_{k}d" for k in sorted(set(cfg.iv_change_days))), "iv_rv_spread"]
    columns += list(CALENDAR_COLUMNS)
    return columns


DAILY_FEATURE_COLUMNS_WITH_IV: tuple[str, ...] = tuple(daily_feature_columns(FeatureConfig(), with_iv=True))
DAILY_FEATURE_COLUMNS_WITHOUT_IV: tuple[str, ...] = tuple(daily_feature_columns(FeatureConfig(), with_iv=False))


def daily_warmup_rows(cfg: FeatureConfig = FeatureConfig(), with_iv: bool = True) -> int:
    """Leading rows without a full window: ``rv_{W}d`` needs returns ``t-W+1..t`` (the first return is at
    row 1), an IV change ``iv_{t-k}``; range vols need fewer rows."""
    longest = max(har_windows(cfg))
    return max(longest, max(cfg.iv_change_days)) if with_iv else longest


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``values[t-window+1..t]`` for each row ``t``; NaN where the window is incomplete or holds NaN.

    Each window is summed on its own (no running sums), so row ``t`` depends on rows ``<= t`` only and is
    bit-identical whatever follows it. ``(n,) -> (n,)``.
    """
    out = np.full(values.shape, np.nan)
    if values.shape[0] >= window:
        out[window - 1 :] = sliding_window_view(values, window).mean(axis=1)
    return out


def lagged(values: np.ndarray, k: int) -> np.ndarray:
    """``values[t-k]`` for each row ``t``; NaN for the first ``k`` rows. ``(n,) -> (n,)``."""
    out = np.full(values.shape, np.nan)
    out[k:] = values[: max(values.shape[0] - k, 0)]
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close log returns ``ln(C_t / C_{t-1})``; NaN for the first row. ``(n,) -> (n,)``."""
    log_close = np.log(close)
    return log_close - lagged(log_close, 1)


def realized_vol(returns: np.ndarray, window: int, annualization_days: int) -> np.ndarray:
    """Trailing close-to-close realized vol, annualized %: ``100*sqrt(A/w * sum_{i=0}^{w-1} r_{t-i}^2)``.

    ``returns[t]`` is the log return from ``t-1`` to ``t``; NaN where the window is incomplete. ``(n,) -> (n,)``.
    """
    return annualized_vol(trailing_mean(returns**2, window), annualization_days)


def annualized_vol(daily_variance: np.ndarray, annualization_days: int) -> np.ndarray:
    """Daily variance (log-return units squared) to annualized volatility in %: ``100*sqrt(A * var)``."""
    return 100.0 * np.sqrt(annualization_days * daily_variance)


def parkinson_variance(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Parkinson daily variance ``ln(H/L)^2 / (4 ln 2)`` per bar. ``(n,) -> (n,)``."""
    return np.log(high / low) ** 2 / (4.0 * _LOG2)


def garman_klass_variance(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Garman-Klass daily variance ``0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2`` per bar. ``(n,) -> (n,)``."""
    return 0.5 * np.log(high / low) ** 2 - (2.0 * _LOG2 - 1.0) * np.log(close / open_) ** 2


def calendar_features(dates: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Cyclical weekday (7-day circle, Monday = 0) and month (12-month circle, January = 0) encodings."""
    weekday = 2.0 * np.pi * dates.day_of_week.to_numpy() / 7.0
    month = 2.0 * np.pi * (dates.month.to_numpy() - 1) / 12.0
    return {
        "dow_sin": np.sin(weekday),
        "dow_cos": np.cos(weekday),
        "month_sin": np.sin(month),
        "month_cos": np.cos(month),
    }


def build_daily_features(bars: DailyBars, cfg: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """Causal daily feature table indexed by ``date``; columns as in :func:`daily_feature_columns`.

    Rows start at the first date where every feature is defined (``daily_warmup_rows`` dropped and logged).
    Raises DataValidationError when the bars are too few for the warm-up or a value is not finite.
    """
    frame = bars.frame
    open_, high, low, close = (frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close"))
    annual = cfg.annualization_days
    ret = log_returns(close)  # (n,)

    features: dict[str, np.ndarray] = {"ret_1d": ret}
    pk, gk = parkinson_variance(high, low), garman_klass_variance(open_, high, low, close)
    for w in range_vol_windows(cfg):
        features[f"parkinson_vol_{w}d"] = annualized_vol(trailing_mean(pk, w), annual)
    for w in range_vol_windows(cfg):
        features[f"garman_klass_vol_{w}d"] = annualized_vol(trailing_mean(gk, w), annual)
    for w in har_windows(cfg):
        features[f"rv_{w}d"] = realized_vol(ret, w, annual)
    if bars.has_iv:
        iv = frame["iv"].to_numpy(dtype=float)
        features["iv"] = iv
        for k in sorted(set(cfg.iv_change_days)):
            features[f"iv_change_{k}d"] = iv - lagged(iv, k)
        features["iv_rv_spread"] = iv - features[f"rv_{max(har_windows(cfg))}d"]
    features.update(calendar_features(bars.dates))

    columns = daily_feature_columns(cfg, with_iv=bars.has_iv)
    table = pd.DataFrame({c: features[c] for c in columns}, index=bars.dates.rename("date"))

    warmup = daily_warmup_rows(cfg, with_iv=bars.has_iv)
    if len(table) <= warmup:
        raise DataValidationError(
            f"{bars.source}: {len(table)} daily rows, expected more than the {warmup}-row feature warm-up "
            f"(har_windows={cfg.har_windows}" + (f", iv_change_days={cfg.iv_change_days})" if bars.has_iv else ")")
        )
    table = table.iloc[warmup:]
    require_finite(table, bars.source)
    logger.info("daily features: dropped %d warm-up rows of %d (%s)", warmup, len(frame), bars.source)
    return table


def require_finite(table: pd.DataFrame, source: str) -> None:
    """Raise DataValidationError naming the first row and column that is NaN or infinite."""
    values = table.to_numpy(dtype=float)  # (n, F)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataValidationError(
            f"{source}: feature {table.columns[col]!r} at row {row} ({table.index[row]}) is {values[row, col]} "
            "(expected a finite number)"
        )
