"""Black-Scholes-Merton pricing: textbook values, parity, limits, monotonicity, straddle identities."""
from __future__ import annotations

import numpy as np
import pytest

from lab_v10.src.books.pricing import bsm_delta, bsm_price, straddle_delta, straddle_price


@pytest.mark.parametrize(
    "spot, strike, t_years, vol, rate, q, kind, expected",
    [
        (42.0, 40.0, 0.5, 0.20, 0.10, 0.0, "call", 4.76),  # Hull, Options Futures & Other Derivatives, BSM example
        (42.0, 40.0, 0.5, 0.20, 0.10, 0.0, "put", 0.81),  # same example, put
        (930.0, 900.0, 2 / 12, 0.20, 0.08, 0.03, "call", 51.83),  # Hull, European call on a stock index (q > 0)
        (49.0, 50.0, 20 / 52, 0.20, 0.05, 0.0, "call", 2.40),  # Hull, the "Greek letters" bank example
    ],
)
def test_textbook_prices(spot, strike, t_years, vol, rate, q, kind, expected):
    assert bsm_price(spot, strike, t_years, vol, rate, q, kind) == pytest.approx(expected, abs=0.005)


def test_textbook_delta():
    # Hull's Greek-letters example: delta of the 20-week call is 0.522
    assert bsm_delta(49.0, 50.0, 20 / 52, 0.20, 0.05, 0.0, "call") == pytest.approx(0.522, abs=0.0005)


def test_put_call_parity_over_a_grid():
    spot = np.linspace(50.0, 150.0, 21)[:, None]
    t = np.array([0.0, 1 / 365, 0.1, 0.5, 2.0])[None, :]
    strike, vol, rate, q = 100.0, 0.3, 0.04, 0.02
    call = bsm_price(spot, strike, t, vol, rate, q, "call")
    put = bsm_price(spot, strike, t, vol, rate, q, "put")
    np.testing.assert_allclose(call - put, spot * np.exp(-q * t) - strike * np.exp(-rate * t), atol=1e-10)
    # delta parity: call delta - put delta = e^{-qT}
    dc = bsm_delta(spot, strike, t, vol, rate, q, "call")
    dp = bsm_delta(spot, strike, t, vol, rate, q, "put")
    np.testing.assert_allclose(dc - dp, np.exp(-q * t) * np.ones_like(spot), atol=1e-12)


def test_zero_time_is_exact_intrinsic():
    spot = np.array([80.0, 99.5, 100.0, 100.5, 120.0])
    np.testing.assert_array_equal(bsm_price(spot, 100.0, 0.0, 0.25, 0.05, 0.01, "call"), np.maximum(spot - 100.0, 0))
    np.testing.assert_array_equal(bsm_price(spot, 100.0, 0.0, 0.25, 0.05, 0.01, "put"), np.maximum(100.0 - spot, 0))
    np.testing.assert_array_equal(straddle_price(spot, 100.0, 0.0, 0.25, 0.05, 0.01), np.abs(spot - 100.0))
    np.testing.assert_array_equal(straddle_delta(spot, 100.0, 0.0, 0.25, 0.05, 0.01), np.sign(spot - 100.0))


def test_prices_rise_with_vol():
    vols = np.linspace(0.05, 1.0, 40)
    for kind in ("call", "put"):
        p = bsm_price(100.0, 105.0, 0.25, vols, 0.03, 0.01, kind)
        assert np.all(np.diff(p) > 0)
    assert np.all(np.diff(straddle_price(100.0, 100.0, 30 / 365, vols, 0.03, 0.01)) > 0)


def test_straddle_is_call_plus_put_and_its_delta_too():
    spot = np.linspace(70.0, 130.0, 13)
    args = (100.0, 45 / 365, 0.22, 0.02, 0.015)
    call = bsm_price(spot, *args, "call")
    put = bsm_price(spot, *args, "put")
    np.testing.assert_allclose(straddle_price(spot, *args), call + put, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        straddle_delta(spot, *args), bsm_delta(spot, *args, "call") + bsm_delta(spot, *args, "put"), atol=1e-13
    )


def test_delta_matches_finite_difference():
    spot, h = np.array([90.0, 100.0, 112.0]), 1e-4
    for kind in ("call", "put"):
        args = (100.0, 0.3, 0.25, 0.03, 0.02, kind)
        fd = (bsm_price(spot + h, *args) - bsm_price(spot - h, *args)) / (2 * h)
        np.testing.assert_allclose(bsm_delta(spot, 100.0, 0.3, 0.25, 0.03, 0.02, kind), fd, atol=1e-7)


def test_straddle_log_symmetry_with_zero_carry():
    # With r = q = 0, put-call symmetry gives V(K e^{-u}) = e^{-u} V(K e^{u}) for a straddle struck at K.
    u = np.array([0.01, 0.05, 0.2])
    up = straddle_price(100.0 * np.exp(u), 100.0, 0.1, 0.3, 0.0, 0.0)
    down = straddle_price(100.0 * np.exp(-u), 100.0, 0.1, 0.3, 0.0, 0.0)
    np.testing.assert_allclose(down, np.exp(-u) * up, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spot=-1.0), "spot"),
        (dict(strike=0.0), "strike"),
        (dict(t_years=-0.1), "t_years"),
        (dict(vol=np.nan), "vol"),
        (dict(kind="straddle"), "kind"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    args = dict(spot=100.0, strike=100.0, t_years=0.1, vol=0.2, rate=0.0, dividend_yield=0.0, kind="call") | kwargs
    with pytest.raises(ValueError, match=match):
        bsm_price(**args)
