"""Synthetic market: daily bars with implied vol, regular-session minute bars, and their :class:`Oracle`.

:func:`generate_market` runs the process of :mod:`lab_v10.src.data.synthetic_process` (equations and
defaults in data/README.md, "Synthetic market") session by session:

- Sessions are business days (``pd.bdate_range``) from ``start``; each has ``minutes_per_day`` (1..390)
  minute bars from 09:30 America/New_York, labelled by the minute's start (tz-aware index).
- Daily bars are the aggregation of the session's minutes (open = first open, high = max, low = min,
  close = last close, volume = sum) plus ``iv``: annualized 30-day (21-session) implied vol in vol points,
  known at the close.
- The :class:`Oracle` keeps the latent paths and returns the true conditional label expectations.

Same seed -> identical output: all randomness comes from splitmix64 streams seeded by
``numpy.random.SeedSequence(seed)``. 1000 sessions x 390 minutes take well under a second after numba's
first compilation (cached on disk).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lab_v10.src.config import SyntheticConfig
from lab_v10.src.data.oracle import DailyLatent, Oracle
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.data.synthetic_params import ProcessParams, build_tables
from lab_v10.src.data.synthetic_process import simulate_market

EXCHANGE_TZ = "America/New_York"
SESSION_OPEN = pd.Timedelta(hours=9, minutes=30)
REGULAR_SESSION_MINUTES = 390
GENERATOR_STREAM = 0  # SeedSequence key of the generator's stream (the oracle uses 1 and 2)


def _minute_index(dates: pd.DatetimeIndex, minutes_per_day: int) -> pd.DatetimeIndex:
    offsets = SESSION_OPEN + pd.to_timedelta(np.arange(minutes_per_day), unit="min")  # (M,)
    naive = dates.to_numpy()[:, None] + offsets.to_numpy()[None, :]  # (N, M)
    return pd.DatetimeIndex(naive.ravel()).tz_localize(EXCHANGE_TZ).rename("timestamp")


def generate_market(
    seed: int,
    n_days: int,
    minutes_per_day: int = REGULAR_SESSION_MINUTES,
    start: str = "2015-01-02",
    initial_price: float = 100.0,
    params: ProcessParams = ProcessParams(),
) -> tuple[DailyBars, MinuteBars, Oracle]:
    """Generate ``n_days`` sessions; returns ``(daily, minutes, oracle)``. See the module docstring."""
    if n_days < 1:
        raise ValueError(f"n_days: expected an int >= 1, got {n_days!r}")
    if not 1 <= minutes_per_day <= REGULAR_SESSION_MINUTES:
        raise ValueError(
            f"minutes_per_day: expected 1..{REGULAR_SESSION_MINUTES} (the regular session), got {minutes_per_day!r}"
        )
    if not (initial_price > 0 and math.isfinite(initial_price)):
        raise ValueError(f"initial_price: expected a finite price > 0, got {initial_price!r}")
    tables = build_tables(params, minutes_per_day)
    stream_seed = np.random.SeedSequence([seed, GENERATOR_STREAM]).generate_state(1, np.uint64)[0]
    log_initial = math.log(initial_price)
    bars, minute_state, daily = simulate_market(n_days, log_initial, stream_seed, params, tables)
    short_log_vol, long_log_vol, sigma, drift, volume_level, regime, drawdown, iv, jump_return, jump_count = daily

    dates = pd.bdate_range(start, periods=n_days, name="date")
    minute_index = _minute_index(dates, minutes_per_day)
    open_, high, low, close = np.exp(bars[:4])  # each (N, M), price units
    volume = bars[4]  # (N, M), shares
    source = f"synthetic(seed={seed})"
    columns = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    minute_frame = pd.DataFrame({name: values.ravel() for name, values in columns.items()}, index=minute_index)
    daily_frame = pd.DataFrame(
        {
            "open": open_[:, 0],
            "high": high.max(axis=1),
            "low": low.min(axis=1),
            "close": close[:, -1],
            "volume": volume.sum(axis=1),
            "iv": iv,
        },
        index=dates,
    )
    latent = DailyLatent(
        short_log_vol=short_log_vol, long_log_vol=long_log_vol, sigma=sigma, drift=drift, volume_level=volume_level,
        regime=regime, drawdown=drawdown, jump_return=jump_return, jump_count=jump_count.astype(np.int64),
    )
    oracle = Oracle(
        dates=dates, minute_index=minute_index, params=params, tables=tables, seed=seed,
        log_initial_price=log_initial, log_close=bars[3, :, -1].copy(), iv=iv.copy(), daily=latent,
        minute_state=minute_state,
    )
    return DailyBars(daily_frame, source), MinuteBars(minute_frame, source), oracle


def generate_market_from_config(cfg: SyntheticConfig, seed: int) -> tuple[DailyBars, MinuteBars, Oracle]:
    """:func:`generate_market` with the sample shape of a :class:`SyntheticConfig`."""
    return generate_market(seed, cfg.n_days, cfg.minutes_per_day, cfg.start, cfg.initial_price)
