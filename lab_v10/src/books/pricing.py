"""Black-Scholes-Merton prices and deltas of European options and ATM straddles.

Units, for every function here:

- ``spot``, ``strike``: price units (currency per share); must be > 0.
- ``t_years``: time to expiry in years (the books use calendar days / 365); must be >= 0.
- ``vol``: annualized volatility as a **decimal** (0.20 = 20 vol points; divide a VIX-style quote by 100).
- ``rate``, ``dividend_yield``: continuously compounded, per year, decimals.
- prices are per share (currency); deltas are d(price)/d(spot), per share.

All arguments broadcast as numpy arrays. When the total deviation ``vol * sqrt(t_years)`` is zero the
option is worth its discounted forward intrinsic value ``max(±(S e^{-qT} - K e^{-rT}), 0)``, so ``t_years = 0``
gives the intrinsic value exactly; the delta is then a step (``e^{-qT}`` in the money, 0 out of the money,
half of it exactly at the money, so an expiring ATM straddle has delta 0).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import ndtr

OptionKind = Literal["call", "put"]


def _sign_of_kind(kind: str) -> float:
    if kind == "call":
        return 1.0
    if kind == "put":
        return -1.0
    raise ValueError(f"option kind: expected 'call' or 'put', got {kind!r}")


def _checked_inputs(spot, strike, t_years, vol) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(x, dtype=float) for x in (spot, strike, t_years, vol))
    s, k, t, v = arrays
    for name, arr, ok, expect in (
        ("spot", s, s > 0, "> 0"),
        ("strike", k, k > 0, "> 0"),
        ("t_years", t, t >= 0, ">= 0"),
        ("vol", v, v >= 0, ">= 0 (a decimal, e.g. 0.2)"),
    ):
        if not np.all(ok):  # NaN fails too
            bad = arr.ravel()[np.flatnonzero(~ok.ravel())[0]]
            raise ValueError(f"{name}: expected finite values {expect}, got {bad}")
    return arrays


def _d1_and_discounts(spot, strike, t_years, vol, rate, dividend_yield):
    """d1, total deviation vol*sqrt(T), discounted spot S e^{-qT}, discounted strike K e^{-rT}."""
    s, k, t, v = _checked_inputs(spot, strike, t_years, vol)
    std = v * np.sqrt(t)
    disc_spot = s * np.exp(-dividend_yield * t)
    disc_strike = k * np.exp(-rate * t)
    safe_std = np.where(std > 0, std, 1.0)
    d1 = np.where(std > 0, (np.log(disc_spot / disc_strike) + 0.5 * std**2) / safe_std, 0.0)
    return d1, std, disc_spot, disc_strike


def bsm_price(spot, strike, t_years, vol, rate: float, dividend_yield: float, kind: OptionKind) -> np.ndarray:
    """European option price per share (currency). See the module docstring for units."""
    phi = _sign_of_kind(kind)
    d1, std, disc_spot, disc_strike = _d1_and_discounts(spot, strike, t_years, vol, rate, dividend_yield)
    d2 = d1 - std
    diffusive = phi * (disc_spot * ndtr(phi * d1) - disc_strike * ndtr(phi * d2))
    intrinsic = np.maximum(phi * (disc_spot - disc_strike), 0.0)
    return np.where(std > 0, diffusive, intrinsic)


def bsm_delta(spot, strike, t_years, vol, rate: float, dividend_yield: float, kind: OptionKind) -> np.ndarray:
    """d(price)/d(spot) per share: ``e^{-qT} N(d1)`` for a call, ``e^{-qT} (N(d1) - 1)`` for a put."""
    phi = _sign_of_kind(kind)
    d1, std, disc_spot, disc_strike = _d1_and_discounts(spot, strike, t_years, vol, rate, dividend_yield)
    carry = disc_spot / np.asarray(spot, dtype=float)  # e^{-qT}
    call_prob = np.where(std > 0, ndtr(d1), np.heaviside(disc_spot - disc_strike, 0.5))
    return carry * (call_prob if phi > 0 else call_prob - 1.0)


def straddle_price(spot, strike, t_years, vol, rate: float, dividend_yield: float) -> np.ndarray:
    """One call plus one put at the same strike and expiry, per share (currency).

    ``S e^{-qT} (2 N(d1) - 1) - K e^{-rT} (2 N(d2) - 1)``; ``|S e^{-qT} - K e^{-rT}|`` at zero deviation.
    """
    d1, std, disc_spot, disc_strike = _d1_and_discounts(spot, strike, t_years, vol, rate, dividend_yield)
    diffusive = disc_spot * (2.0 * ndtr(d1) - 1.0) - disc_strike * (2.0 * ndtr(d1 - std) - 1.0)
    return np.where(std > 0, diffusive, np.abs(disc_spot - disc_strike))


def straddle_delta(spot, strike, t_years, vol, rate: float, dividend_yield: float) -> np.ndarray:
    """Delta of one straddle per share: ``e^{-qT} (2 N(d1) - 1)``.

    At zero deviation: ``e^{-qT} sign(S e^{-qT} - K e^{-rT})``.
    """
    d1, std, disc_spot, disc_strike = _d1_and_discounts(spot, strike, t_years, vol, rate, dividend_yield)
    carry = disc_spot / np.asarray(spot, dtype=float)  # e^{-qT}
    return carry * np.where(std > 0, 2.0 * ndtr(d1) - 1.0, np.sign(disc_spot - disc_strike))
