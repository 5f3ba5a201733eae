"""Synthetic market: daily bars with implied vol, regular-session minute bars, and their :class:`Oracle`;
one market (:func:`generate_market`) or a universe of symbols sharing a market factor
(:func:`generate_universe`).

:func:`generate_market` runs the process of :mod:`lab_v10.src.data.synthetic_process` (equations and
defaults in data/README.md, "Synthetic market") session by session:

- Sessions are business days (``pd.bdate_range``) from ``start``; each has ``minutes_per_day`` (1..390)
  minute bars from 09:30 America/New_York, labelled by the minute's start (tz-aware index).
- Daily bars are the aggregation of the session's minutes (open = first open, high = max, low = min,
  close = last close, volume = sum) plus ``iv``: annualized 30-day (21-session) implied vol in vol points,
  known at the close.
- The :class:`Oracle` keeps the latent paths and returns the true conditional label expectations.

:func:`generate_universe` gives every symbol the same calendar and minute timestamps. A common market factor
carries the share ``market_factor_share`` of the variance of every symbol's standardized diffusive shocks
(overnight gap and minutes) and log-vol innovations; the rest of each shock, the volume noise, jumps and
run-up episodes are the symbol's own. Cross-symbol correlation: the share for log-vol innovations, less for
daily returns and IV changes (jumps, run-ups and each symbol's vol level are its own; 0.37 and 0.45 at a
share of 0.5). Each mixed shock is still N(0, 1) and independent of the past, so every symbol follows the
single market's law and its own :class:`Oracle` (which conditions on the symbol's latent state) stays exact.

Same seed -> identical output: all randomness comes from splitmix64 streams seeded by
``numpy.random.SeedSequence(seed, ...)``. 1000 sessions x 390 minutes take well under a second per symbol
after numba's first compilation (cached on disk).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lab_v10.src.config import SyntheticConfig
from lab_v10.src.data.oracle import DailyLatent, Oracle, stream_seed
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.data.synthetic_params import ProcessParams, ProcessTables, build_tables
from lab_v10.src.data.synthetic_process import market_factor, simulate_market

EXCHANGE_TZ = "America/New_York"
SESSION_OPEN = pd.Timedelta(hours=9, minutes=30)
REGULAR_SESSION_MINUTES = 390
GENERATOR_STREAM = 0  # SeedSequence key of the generator's stream (the oracle uses 1 and 2)
FACTOR_STREAM = 3  # key of a universe's market factor stream
SYMBOL_STREAM = 4  # key of a universe symbol's own seed (its generator and oracle streams derive from it)


def _calendar(
    n_days: int, minutes_per_day: int, start: str, initial_price: float
) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """Checked sample shape -> ``(dates (N,), minute_index (N*M,))``; ValueError naming the bad argument."""
    if n_days < 1:
        raise ValueError(f"n_days: expected an int >= 1, got {n_days!r}")
    if not 1 <= minutes_per_day <= REGULAR_SESSION_MINUTES:
        raise ValueError(
            f"minutes_per_day: expected 1..{REGULAR_SESSION_MINUTES} (the regular session), got {minutes_per_day!r}"
        )
    if not (initial_price > 0 and math.isfinite(initial_price)):
        raise ValueError(f"initial_price: expected a finite price > 0, got {initial_price!r}")
    dates = pd.bdate_range(start, periods=n_days, name="date")
    offsets = SESSION_OPEN + pd.to_timedelta(np.arange(minutes_per_day), unit="min")  # (M,)
    naive = dates.to_numpy()[:, None] + offsets.to_numpy()[None, :]  # (N, M)
    return dates, pd.DatetimeIndex(naive.ravel()).tz_localize(EXCHANGE_TZ).rename("timestamp")


def _simulate_symbol(
    seed: int,
    source: str,
    calendar: tuple[pd.DatetimeIndex, pd.DatetimeIndex],
    initial_price: float,
    params: ProcessParams,
    tables: ProcessTables,
    factor: tuple[np.ndarray, np.ndarray],
    factor_share: float,
) -> tuple[DailyBars, MinuteBars, Oracle]:
    """One symbol's bars and oracle from its ``seed`` and the market ``factor`` (layout of
    :func:`~lab_v10.src.data.synthetic_process.market_factor`) loaded with ``factor_share``."""
    dates, minute_index = calendar
    log_initial = math.log(initial_price)
    bars, minute_state, daily = simulate_market(
        len(dates), log_initial, stream_seed(seed, GENERATOR_STREAM), params, tables, *factor, factor_share
    )
    short_log_vol, long_log_vol, sigma, drift, volume_level, regime, drawdown, iv, jump_return, jump_count = daily
    open_, high, low, close = np.exp(bars[:4])  # each (N, M), price units
    volume = bars[4]  # (N, M), shares
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


def generate_market(
    seed: int,
    n_days: int,
    minutes_per_day: int = REGULAR_SESSION_MINUTES,
    start: str = "2015-01-02",
    initial_price: float = 100.0,
    params: ProcessParams = ProcessParams(),
) -> tuple[DailyBars, MinuteBars, Oracle]:
    """Generate ``n_days`` sessions; returns ``(daily, minutes, oracle)``. See the module docstring."""
    calendar = _calendar(n_days, minutes_per_day, start, initial_price)
    no_factor = (np.zeros((n_days, minutes_per_day + 1)), np.zeros((n_days + 1, 2)))
    tables = build_tables(params, minutes_per_day)
    return _simulate_symbol(seed, f"synthetic(seed={seed})", calendar, initial_price, params, tables, no_factor, 0.0)


def generate_universe(
    seed: int,
    n_symbols: int,
    n_days: int,
    market_factor_share: float,
    minutes_per_day: int = REGULAR_SESSION_MINUTES,
    start: str = "2015-01-02",
    initial_price: float = 100.0,
    params: ProcessParams = ProcessParams(),
) -> dict[str, tuple[DailyBars, MinuteBars, Oracle]]:
    """``n_symbols`` markets ``{"SYN0": (daily, minutes, oracle), "SYN1": ...}`` in symbol order, sharing a
    market factor that carries ``market_factor_share`` (0..1) of each shock's variance (module docstring).

    Every symbol has the sample shape of :func:`generate_market` (same dates and minute timestamps), its own
    ``iv`` column and its own oracle. Symbol ``i`` draws its own part from the seed
    ``SeedSequence([seed, SYMBOL_STREAM, i])`` (kept as its oracle's ``seed``), the factor from
    ``[seed, FACTOR_STREAM]``. A universe of one symbol is :func:`generate_market` (``seed``), bit for bit: a
    lone symbol's law does not depend on the share. ValueError naming the bad argument.
    """
    if n_symbols < 1:
        raise ValueError(f"n_symbols: expected an int >= 1, got {n_symbols!r}")
    if not 0.0 <= market_factor_share <= 1.0:
        raise ValueError(f"market_factor_share: expected a share in [0, 1], got {market_factor_share!r}")
    if n_symbols == 1:
        return {"SYN0": generate_market(seed, n_days, minutes_per_day, start, initial_price, params)}
    calendar = _calendar(n_days, minutes_per_day, start, initial_price)
    factor = market_factor(n_days, minutes_per_day, stream_seed(seed, FACTOR_STREAM))
    tables = build_tables(params, minutes_per_day)
    universe = {}
    for i in range(n_symbols):
        symbol, symbol_seed = f"SYN{i}", int(stream_seed(seed, SYMBOL_STREAM, i))
        source = f"synthetic(seed={seed}, symbol={symbol})"
        universe[symbol] = _simulate_symbol(
            symbol_seed, source, calendar, initial_price, params, tables, factor, market_factor_share
        )
    return universe


def generate_market_from_config(cfg: SyntheticConfig, seed: int) -> tuple[DailyBars, MinuteBars, Oracle]:
    """:func:`generate_market` with the sample shape of a :class:`SyntheticConfig`; ValueError when
    ``cfg.n_symbols`` > 1 (a universe: :func:`generate_universe_from_config`)."""
    if cfg.n_symbols > 1:
        raise ValueError(
            f"data.synthetic.n_symbols is {cfg.n_symbols}: a universe, generate it with generate_universe_from_config"
        )
    return generate_market(seed, cfg.n_days, cfg.minutes_per_day, cfg.start, cfg.initial_price)


def generate_universe_from_config(cfg: SyntheticConfig, seed: int) -> dict[str, tuple[DailyBars, MinuteBars, Oracle]]:
    """:func:`generate_universe` with the symbols, factor share and sample shape of a :class:`SyntheticConfig`;
    with ``n_symbols`` = 1, ``{"SYN0": generate_market_from_config(cfg, seed)}`` bit for bit."""
    return generate_universe(
        seed, cfg.n_symbols, cfg.n_days, cfg.market_factor_share, cfg.minutes_per_day, cfg.start, cfg.initial_price
    )
