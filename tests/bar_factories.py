"""Bar tables for the feature, label and scanner tests: random walks and hand-made minute sessions.

Random tables are reproducible from ``seed``. ``splice_after`` builds the perturbed copy the causality
tests need: the same index, with every row from ``cut`` on taken from a differently seeded table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lab_v10.src.data.schema import DailyBars, MinuteBars

TZ = "America/New_York"


def _ohlc_around(
    close: np.ndarray, open_: np.ndarray, rng: np.random.Generator, wick: float
) -> tuple[np.ndarray, np.ndarray]:
    """High and low that contain open and close, with random wicks of relative size ~``wick``."""
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, wick, close.size)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, wick, close.size)))
    return high, low


def random_daily_bars(n_days: int, seed: int = 0, with_iv: bool = True, start: str = "2020-01-02") -> DailyBars:
    """Business-day random walk around 100 with ~1% daily moves; iv in vol points (10..40)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_days, name="date")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n_days)))
    open_ = close * np.exp(rng.normal(0.0, 0.005, n_days))
    high, low = _ohlc_around(close, open_, rng, 0.006)
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=dates)
    frame["volume"] = rng.integers(100_000, 1_000_000, n_days).astype(float)
    if with_iv:
        frame["iv"] = rng.uniform(10.0, 40.0, n_days)
    return DailyBars(frame)


def session_minutes(day: pd.Timestamp, offsets: Sequence[int]) -> pd.DatetimeIndex:
    """Minute bar starts ``09:30 + offsets`` (minutes) on ``day`` in exchange time."""
    starts = day + pd.Timedelta(hours=9, minutes=30) + pd.to_timedelta(np.asarray(offsets), unit="min")
    return pd.DatetimeIndex(starts).tz_localize(TZ)


def random_minute_bars(
    session_lengths: Sequence[int], seed: int = 0, keep_fraction: float = 1.0, start: str = "2024-03-04"
) -> MinuteBars:
    """One session per business day from ``start``; session *i* spans ``session_lengths[i]`` minutes from
    09:30 (390 = full day, 210 = half day), of which a random ``keep_fraction`` have bars (thin trading)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, periods=len(session_lengths))
    pieces = []
    for day, length in zip(days, session_lengths):
        keep = max(1, round(keep_fraction * length))
        pieces.append(session_minutes(day, np.sort(rng.choice(length, size=keep, replace=False))))
    return random_minute_bars_on(pieces[0].append(pieces[1:]), seed)


def random_minute_bars_on(index: pd.DatetimeIndex, seed: int = 0) -> MinuteBars:
    """Random-walk minute bars around 50 (~0.1% per bar) with integer volumes 0..4999 on ``index``."""
    rng = np.random.default_rng(seed)
    n = index.size
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.0005, n))
    high, low = _ohlc_around(close, open_, rng, 0.0007)
    volume = rng.integers(0, 5_000, n).astype(float)
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    return MinuteBars(frame)


def hand_minute_bars(index: pd.DatetimeIndex, rows: Sequence[Sequence[float]]) -> MinuteBars:
    """Minute bars from ``(open, high, low, close, volume)`` rows on ``index``."""
    frame = pd.DataFrame(np.asarray(rows, dtype=float), columns=["open", "high", "low", "close", "volume"], index=index)
    return MinuteBars(frame)


def splice_after(original: pd.DataFrame, replacement: pd.DataFrame, cut: int) -> pd.DataFrame:
    """``original`` with rows ``cut:`` taken from ``replacement`` (same index and columns)."""
    spliced = original.copy()
    spliced.iloc[cut:] = replacement.iloc[cut:].to_numpy()
    return spliced
