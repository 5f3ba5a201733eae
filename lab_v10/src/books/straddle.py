"""Book A: ATM straddles traded on the forecast volatility gap (docs/design.md section 1).

Time semantics. Row *t* of the daily bars is known at the close of day *t*. A position decided with the
forecast made at close *t* opens a straddle at the close of the session ``cfg.entry_lag_days`` after *t*
(strike = that close, fixed until exit), priced with that close's spot and implied vol. ``entry_lag_days: 1``
(the default) is the fill a trader can get: the forecast needs close *t* and IV(*t*), and an index's IV
closes after the index does (the VIX 15 minutes after the S&P 500), so nobody can fill at the price the
signal was computed from. ``entry_lag_days: 0`` fills at close *t* itself: optimistic, for comparison. It is marked at each following close with that day's spot and IV and
exits at the close of ``t + holding_days`` trading days, or at the first close on or after expiry (``t`` plus
``tenor_days`` calendar days) at intrinsic value, whichever comes first. A straddle still open on the last
date is closed there (exit reason ``end``); no straddle is opened on the last date, since it could never be
marked.

Units.

- ``position`` / ``size``: 1 means straddles on an underlying notional of 1 unit of capital at entry, i.e.
  ``size / S_entry`` straddles per unit of capital (each straddle = one call + one put on one share), so
  every P&L here is a **fraction of capital**. Positive = long straddles (long vol), negative = short.
- IV in the bars is annualized 30-day ATM implied vol in **vol points** (18.5 = 18.5%); it is divided by 100
  for pricing. Time to expiry is calendar days / 365.
- Remaining-tenor IV: the quoted 30-day IV by default; with ``cfg.shift_iv_for_tenor`` a tau-day straddle
  is priced at ``IV30 * (tau / 30) ** cfg.iv_term_power`` (a power-law term structure anchored at the quote;
  ``iv_term_power > 0`` = upward-sloping, shorter tenors cheaper).
- Costs (fractions of capital, always >= 0):
  half-spread ``(bid_ask_base + bid_ask_iv_slope * IV points) * premium * |straddles|`` on entry (premium
  paid, IV of the entry close) and on exit (value received, IV of the exit close); commission
  ``2 legs * commission_per_contract * contracts / capital`` on entry and exit, with
  ``contracts = |size| * capital / (S_entry * contract_multiplier)`` per leg (fractional, so the commission
  fraction is ``2 * commission_per_contract * |size| / (S_entry * multiplier)``); a straddle held to expiry
  is cash-settled at intrinsic, with no spread or commission on that exit.
- Delta hedge (``cfg.delta_hedge``): at each close while the straddle is open, hold ``-delta`` shares per
  straddle (rebalanced at that close, unwound at the exit close); hedge P&L is the share position times the
  next close-to-close price change and each rebalance costs ``hedge_cost_bps`` of the notional traded.
- Financing of the premium and of the hedge, and dividends on the hedge, are not modelled (cash earns 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab_v10.src.books.pricing import straddle_delta, straddle_price
from lab_v10.src.config import BookAConfig
from lab_v10.src.data.schema import DailyBars

IV_QUOTE_DAYS = 30  # the tenor of the quoted IV column (schema: 30-day ATM implied vol)
DAYS_PER_YEAR = 365.0  # calendar-day year for option time to expiry


@dataclass(frozen=True)
class StraddleBookResult:
    """Daily book P&L and the trade list.

    ``daily`` (index ``date`` = every date of the bars): ``gross_pnl`` (option + hedge P&L), ``costs``,
    ``net_pnl`` (fractions of capital, booked at that close), ``exposure`` (signed underlying notional of
    the straddles open after that close, ``size * S_t / S_entry`` summed, fraction of capital), ``turnover``
    (underlying notional of straddles opened plus closed by a trade at that close, fraction of capital),
    ``hedge_turnover`` (underlying notional of hedge shares traded, fraction of capital).

    ``trades`` (one row per straddle): ``entry_date``, ``exit_date``, ``exit_reason`` (holding | expiry |
    end), ``strike`` (= the entry close, price), ``size`` (signed, capital units), ``contracts`` (per leg for
    ``cfg.capital``), ``entry_premium`` and ``exit_value`` (per straddle per share, currency), ``pnl_gross``
    (option + hedge), ``hedge_pnl``, ``costs``, ``pnl_net`` (fractions of capital).
    """

    daily: pd.DataFrame
    trades: pd.DataFrame


def positions_from_forecast(mu: pd.Series, sigma: pd.Series, cfg: BookAConfig) -> pd.Series:
    """Target straddle position per date from the vol-gap forecast ``(mu, sigma)`` made at that close.

    ``mu`` is the forecast of ``RV(t+1..t+h) - IV(t)`` and ``sigma`` its standard deviation, both in vol
    points on the same index. With ``z = mu / sigma``: ``position = clip(z, -size_cap, size_cap)`` where
    ``|z| > threshold`` and 0 elsewhere, i.e. one unit of capital per unit of z, long vol when the gap is
    confidently positive and short when confidently negative. Raises ValueError on mismatched indexes,
    non-finite values or ``sigma <= 0``.
    """
    if not mu.index.equals(sigma.index):
        raise ValueError("positions_from_forecast: mu and sigma must share the same index (forecast dates)")
    m = mu.to_numpy(dtype=float)
    s = sigma.to_numpy(dtype=float)
    checks = (("mu", m, np.isfinite(m), "finite"), ("sigma", s, np.isfinite(s) & (s > 0), "finite and > 0"))
    for name, arr, ok, expect in checks:
        if not ok.all():
            pos = int(np.flatnonzero(~ok)[0])
            raise ValueError(
                f"positions_from_forecast: {name} at {mu.index[pos]}: value {arr[pos]} (expected {expect})"
            )
    z = m / s
    size = np.where(np.abs(z) > cfg.threshold, np.clip(z, -cfg.size_cap, cfg.size_cap), 0.0)
    return pd.Series(size, index=mu.index, name="position")


def _position_on_bar_dates(position: pd.Series, dates: pd.DatetimeIndex) -> np.ndarray:
    """The position as an array aligned with ``dates`` (0 where absent); ValueError on unknown dates or NaN."""
    if not isinstance(position.index, pd.DatetimeIndex):
        raise ValueError(f"position: expected a Series indexed by dates, got index {type(position.index).__name__}")
    if position.index.has_duplicates:
        dup = position.index[position.index.duplicated()][0]
        raise ValueError(f"position: duplicate date {dup} (expected one target position per date)")
    unknown = position.index.difference(dates)
    if len(unknown):
        raise ValueError(
            f"position: {len(unknown)} date(s) not in the daily bars, first {unknown[0]} "
            f"(expected dates within the bars' {len(dates)} session dates {dates[0].date()}..{dates[-1].date()})"
        )
    values = position.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        pos = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"position at {position.index[pos]}: value {values[pos]} (expected a finite number)")
    return position.reindex(dates, fill_value=0.0).to_numpy(dtype=float)


def _entry_indices(target: np.ndarray, exit_index: np.ndarray, allow_overlap: bool) -> np.ndarray:
    """Dates (positions) where a straddle opens. Without overlap, the next entry waits for the last exit.

    A new straddle may open at the close where the previous one exits (a roll). One Python step per trade.
    """
    candidates = np.flatnonzero(target[:-1] != 0.0)  # never open on the last date
    if allow_overlap or candidates.size == 0:
        return candidates
    n = target.size
    next_candidate = np.full(n + 1, n)  # next_candidate[j] = first candidate >= j
    next_candidate[candidates] = candidates
    next_candidate = np.minimum.accumulate(next_candidate[::-1])[::-1]
    entries = []
    k = int(candidates[0])
    while k < n:
        entries.append(k)
        k = int(next_candidate[exit_index[k]])
    return np.asarray(entries, dtype=np.int64)


def _remaining_tenor_vol(iv_points: np.ndarray, tau_days: np.ndarray, cfg: BookAConfig) -> np.ndarray:
    """Decimal vol for a ``tau_days``-calendar-day straddle from the quoted 30-day IV (vol points).

    The quote itself, or ``IV30 * (tau / 30) ** iv_term_power`` with ``cfg.shift_iv_for_tenor``; at
    ``tau = 0`` the quote is returned unchanged (an expiring straddle is priced at intrinsic anyway).
    """
    vol = iv_points / 100.0
    if not cfg.shift_iv_for_tenor:
        return vol
    return vol * (np.where(tau_days > 0, tau_days, IV_QUOTE_DAYS) / IV_QUOTE_DAYS) ** cfg.iv_term_power


def _sum_by_date(values: np.ndarray, at: np.ndarray, n_dates: int) -> np.ndarray:
    """Sum ``values`` booked at bar positions ``at`` into an array over the ``n_dates`` bar dates."""
    return np.bincount(at, weights=values, minlength=n_dates)


def _exit_indices(day_number: np.ndarray, tenor_days: int, holding_days: int) -> np.ndarray:
    """For an entry at each date, the date of its exit: holding period, first close on/after expiry, or last date."""
    n = day_number.size
    at_expiry = np.searchsorted(day_number, day_number + tenor_days, side="left")
    return np.minimum(np.minimum(np.arange(n) + holding_days, at_expiry), n - 1)


def simulate_straddles(bars: DailyBars, position: pd.Series, cfg: BookAConfig) -> StraddleBookResult:
    """Simulate the straddle book for target positions decided at each close (see the module docstring).

    ``position``: target size per date (capital units, signed; e.g. from :func:`positions_from_forecast`),
    indexed by dates of ``bars``; dates absent from it mean no trade. A nonzero position decided at *t* opens
    a new straddle of that size at the close ``cfg.entry_lag_days`` sessions later (with ``allow_overlap=False``
    only when no straddle is open after that close's exits); a decision whose entry close lies past the bars
    is not traded. Raises ValueError if the bars have no ``iv`` column or the position is
    indexed by dates that are not in the bars.
    """
    if not bars.has_iv:
        raise ValueError(
            f"{bars.source}: daily bars without an 'iv' column (expected annualized 30-day ATM implied vol in "
            "vol points to price straddles)"
        )
    frame = bars.frame
    dates = frame.index
    n = len(dates)
    decided = _position_on_bar_dates(position, dates)  # (n,) by decision close
    lag = cfg.entry_lag_days
    target = np.concatenate([np.zeros(min(lag, n)), decided[: max(n - lag, 0)]])  # (n,) by entry close
    spot = frame["close"].to_numpy(dtype=float)
    iv_points = frame["iv"].to_numpy(dtype=float)
    day_number = dates.to_numpy().astype("datetime64[D]").astype(np.int64)  # calendar days

    exit_index = _exit_indices(day_number, cfg.tenor_days, cfg.holding_days)
    entry = _entry_indices(target, exit_index, cfg.allow_overlap)  # (T,)
    exit_ = exit_index[entry]  # (T,)
    size = target[entry]
    strike = spot[entry]
    straddles = size / strike  # signed straddles per unit of capital

    # Marks: one row per trade, one column per close from the entry (k=0) to the longest holding.
    steps = int((exit_ - entry).max()) + 1 if entry.size else 1
    k = np.arange(steps)
    last_step = (exit_ - entry)[:, None]  # (T, 1)
    bar = entry[:, None] + k  # (T, K) bar position of each step
    row = np.minimum(bar, exit_[:, None])  # (T, K) frozen after the exit, so later steps add no P&L
    held = k[None, :] <= last_step  # (T, K) closes where the trade is open or exits
    tau_days = np.maximum(day_number[entry][:, None] + cfg.tenor_days - day_number[row], 0)
    t_years = tau_days / DAYS_PER_YEAR
    vol = _remaining_tenor_vol(iv_points[row], tau_days, cfg)
    value = straddle_price(spot[row], strike[:, None], t_years, vol, cfg.rate, cfg.dividend_yield)  # (T, K)

    option_pnl = np.zeros_like(value)
    option_pnl[:, 1:] = straddles[:, None] * np.diff(value, axis=1)
    hedge_pnl = np.zeros_like(value)
    hedge_traded = np.zeros_like(value)  # underlying notional of hedge shares traded, fraction of capital
    if cfg.delta_hedge:
        delta = straddle_delta(spot[row], strike[:, None], t_years, vol, cfg.rate, cfg.dividend_yield)
        shares = np.where(k[None, :] < last_step, -straddles[:, None] * delta, 0.0)  # unwound at the exit
        hedge_pnl[:, 1:] = shares[:, :-1] * np.diff(spot[row], axis=1)
        hedge_traded = np.abs(np.diff(shares, axis=1, prepend=0.0)) * spot[row]
    hedge_cost = hedge_traded * cfg.hedge_cost_bps / 1e4

    # Entry and exit costs per trade.
    exit_value = value[np.arange(entry.size), exit_ - entry]
    expired = tau_days[np.arange(entry.size), exit_ - entry] == 0
    half_spread_in = cfg.bid_ask_base + cfg.bid_ask_iv_slope * iv_points[entry]
    half_spread_out = cfg.bid_ask_base + cfg.bid_ask_iv_slope * iv_points[exit_]
    commission = 2.0 * cfg.commission_per_contract * np.abs(size) / (strike * cfg.contract_multiplier)
    entry_cost = half_spread_in * value[:, 0] * np.abs(straddles) + commission
    exit_cost = np.where(expired, 0.0, half_spread_out * exit_value * np.abs(straddles) + commission)

    # Book everything on the close where it happens.
    gross = _sum_by_date((option_pnl + hedge_pnl)[held], bar[held], n)
    costs = (
        _sum_by_date(hedge_cost[held], bar[held], n)
        + _sum_by_date(entry_cost, entry, n)
        + _sum_by_date(exit_cost, exit_, n)
    )
    open_after_close = k[None, :] < last_step
    exposure = _sum_by_date((straddles[:, None] * spot[row])[open_after_close], bar[open_after_close], n)
    closed_by_trade = np.where(expired, 0.0, np.abs(straddles) * spot[exit_])  # expiry settles, no trade
    turnover = _sum_by_date(np.abs(size), entry, n) + _sum_by_date(closed_by_trade, exit_, n)
    daily = pd.DataFrame(
        {
            "gross_pnl": gross,
            "costs": costs,
            "net_pnl": gross - costs,
            "exposure": exposure,
            "turnover": turnover,
            "hedge_turnover": _sum_by_date(hedge_traded[held], bar[held], n),
        },
        index=dates,
    )

    trade_hedge_pnl = hedge_pnl.sum(axis=1)
    pnl_gross = option_pnl.sum(axis=1) + trade_hedge_pnl
    trade_costs = entry_cost + exit_cost + hedge_cost.sum(axis=1)
    reason = np.where(expired, "expiry", np.where(exit_ - entry == cfg.holding_days, "holding", "end"))
    trades = pd.DataFrame(
        {
            "entry_date": dates[entry],
            "exit_date": dates[exit_],
            "exit_reason": reason,
            "strike": strike,
            "size": size,
            "contracts": np.abs(size) * cfg.capital / (strike * cfg.contract_multiplier),
            "entry_premium": value[:, 0],
            "exit_value": exit_value,
            "pnl_gross": pnl_gross,
            "hedge_pnl": trade_hedge_pnl,
            "costs": trade_costs,
            "pnl_net": pnl_gross - trade_costs,
        }
    )
    return StraddleBookResult(daily=daily, trades=trades)
