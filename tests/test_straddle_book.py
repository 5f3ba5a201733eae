"""Book A straddle simulator: theta, move symmetry, fixed strike, exits, overlap, costs, hedge, causality."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.books.pricing import straddle_delta, straddle_price
from lab_v10.src.books.straddle import positions_from_forecast, simulate_straddles
from lab_v10.src.config import BookAConfig
from lab_v10.src.data.schema import DailyBars

FRICTIONLESS = BookAConfig(
    rate=0.0,
    dividend_yield=0.0,
    bid_ask_base=0.0,
    bid_ask_iv_slope=0.0,
    commission_per_contract=0.0,
    hedge_cost_bps=0.0,
    entry_lag_days=0,  # the mechanics below are stated for a fill at the decision close
)
SAME_CLOSE = BookAConfig(entry_lag_days=0)  # the default costs, filled at the decision close


def make_bars(close, iv, start="2021-03-01") -> DailyBars:
    close = np.asarray(close, dtype=float)
    iv = np.broadcast_to(np.asarray(iv, dtype=float), close.shape)
    dates = pd.bdate_range(start, periods=close.size)
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "iv": iv}, index=dates)
    return DailyBars(frame)


def enter_on(bars: DailyBars, positions: dict[int, float]) -> pd.Series:
    dates = bars.dates
    return pd.Series(list(positions.values()), index=dates[list(positions.keys())])


def calendar_days(bars: DailyBars, i: int, j: int) -> int:
    return int((bars.dates[j] - bars.dates[i]).days)


def test_flat_market_loses_theta_long_and_earns_it_short():
    bars = make_bars(np.full(12, 100.0), 20.0)
    cfg = dataclasses.replace(FRICTIONLESS, holding_days=5)
    long = simulate_straddles(bars, enter_on(bars, {0: 1.0}), cfg)
    short = simulate_straddles(bars, enter_on(bars, {0: -1.0}), cfg)
    tau_exit = 30 - calendar_days(bars, 0, 5)
    premium = straddle_price(100.0, 100.0, 30 / 365, 0.2, 0, 0)
    expected = (straddle_price(100.0, 100.0, tau_exit / 365, 0.2, 0, 0) - premium) / 100.0
    assert expected < 0
    assert long.trades["pnl_gross"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert short.trades["pnl_gross"].iloc[0] == pytest.approx(-expected, rel=1e-12)
    # daily theta bleed: every held day loses for the long (and gains for the short)
    held = long.daily["gross_pnl"].iloc[1:6]
    assert (held < 0).all() and np.allclose(short.daily["gross_pnl"].iloc[1:6], -held)
    assert long.daily["gross_pnl"].sum() == pytest.approx(expected, rel=1e-12)


def test_pnl_rises_with_move_size_and_is_symmetric_in_sign():
    cfg = dataclasses.replace(FRICTIONLESS, holding_days=3)
    premium = straddle_price(100.0, 100.0, 30 / 365, 0.2, 0, 0)

    def pnl_after_move_to(new_close: float) -> float:
        bars = make_bars(np.r_[100.0, np.full(5, new_close)], 20.0)
        return simulate_straddles(bars, enter_on(bars, {0: 1.0}), cfg).trades["pnl_gross"].iloc[0]

    sizes = np.array([0.0, 0.01, 0.03, 0.06, 0.12])
    up = np.array([pnl_after_move_to(100.0 * np.exp(u)) for u in sizes])
    down = np.array([pnl_after_move_to(100.0 * np.exp(-u)) for u in sizes])
    assert np.all(np.diff(up) > 0) and np.all(np.diff(down) > 0)
    # r = q = 0: exact lognormal symmetry V(K e^-u) = e^-u V(K e^u), so (pnl * S0 + premium) scales by e^-u
    np.testing.assert_allclose(down * 100.0 + premium, np.exp(-sizes) * (up * 100.0 + premium), rtol=1e-12)
    # up x% vs down x% (simple moves) differ by a few percent of the premium only
    up_simple = np.array([pnl_after_move_to(100.0 * (1 + x)) for x in sizes])
    down_simple = np.array([pnl_after_move_to(100.0 * (1 - x)) for x in sizes])
    assert np.all(np.abs(up_simple - down_simple) < 0.04 * premium / 100.0)


def test_strike_stays_at_the_entry_close():
    close = np.array([100.0, 104.0, 108.0, 112.0, 115.0, 118.0, 120.0, 121.0])
    iv = np.array([20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0])
    bars = make_bars(close, iv)
    cfg = dataclasses.replace(FRICTIONLESS, holding_days=3)
    result = simulate_straddles(bars, enter_on(bars, {0: 1.0, 3: -0.5}), cfg)
    trades = result.trades
    assert trades["strike"].tolist() == [100.0, 112.0]
    tau = 30 - calendar_days(bars, 0, 3)
    assert trades["exit_value"].iloc[0] == pytest.approx(straddle_price(112.0, 100.0, tau / 365, 0.23, 0, 0), rel=1e-13)
    second_premium = straddle_price(112.0, 112.0, 30 / 365, 0.23, 0, 0)
    assert trades["entry_premium"].iloc[1] == pytest.approx(second_premium, rel=1e-13)
    # day-1 mark of the first trade uses day-1 spot and IV with the entry strike
    tau1 = 30 - calendar_days(bars, 0, 1)
    expected_day1 = (straddle_price(104.0, 100.0, tau1 / 365, 0.21, 0, 0) - trades["entry_premium"].iloc[0]) / 100.0
    assert result.daily["gross_pnl"].iloc[1] == pytest.approx(expected_day1, rel=1e-12)


def test_holding_exit_and_expiry_exit():
    bars = make_bars(100.0 + np.arange(40.0), 25.0)
    held = simulate_straddles(bars, enter_on(bars, {2: 1.0}), dataclasses.replace(FRICTIONLESS, holding_days=4)).trades
    assert held["exit_date"].iloc[0] == bars.dates[6] and held["exit_reason"].iloc[0] == "holding"

    cfg = dataclasses.replace(SAME_CLOSE, holding_days=35)  # longer than the 30 calendar-day tenor
    expiring = simulate_straddles(bars, enter_on(bars, {2: 1.0}), cfg).trades.iloc[0]
    expiry = bars.dates[2] + pd.Timedelta(days=30)
    first_on_or_after = bars.dates[bars.dates >= expiry][0]
    assert expiring["exit_date"] == first_on_or_after and expiring["exit_reason"] == "expiry"
    spot_exit = bars.frame["close"].loc[first_on_or_after]
    assert expiring["exit_value"] == abs(spot_exit - 102.0)  # intrinsic, exactly
    # cash-settled at expiry: only entry costs are paid
    entry_cost = (cfg.bid_ask_base + cfg.bid_ask_iv_slope * 25.0) * expiring["entry_premium"] / 102.0
    entry_cost += 2 * cfg.commission_per_contract / (102.0 * cfg.contract_multiplier)
    assert expiring["costs"] == pytest.approx(entry_cost, rel=1e-12)


def test_open_trade_is_closed_on_the_last_date_and_no_entry_on_it():
    bars = make_bars(np.full(6, 100.0), 20.0)
    trades = simulate_straddles(bars, enter_on(bars, {3: 1.0, 5: 1.0}), FRICTIONLESS).trades
    assert len(trades) == 1
    assert trades["exit_date"].iloc[0] == bars.dates[5] and trades["exit_reason"].iloc[0] == "end"


def test_overlap_off_blocks_entries_until_exit():
    bars = make_bars(np.full(23, 100.0), 20.0)
    every_day = pd.Series(1.0, index=bars.dates)
    cfg = dataclasses.replace(SAME_CLOSE, holding_days=5)
    no_overlap = simulate_straddles(bars, every_day, cfg)
    assert list(no_overlap.trades["entry_date"]) == list(bars.dates[[0, 5, 10, 15, 20]])
    assert (no_overlap.daily["exposure"].abs() <= 1.0 + 1e-12).all()
    overlap = simulate_straddles(bars, every_day, dataclasses.replace(cfg, allow_overlap=True))
    assert len(overlap.trades) == 22  # every date but the last
    assert overlap.daily["exposure"].iloc[10] == pytest.approx(5.0)  # five straddles open after the close


def test_costs_match_formula_are_positive_and_widen_with_iv():
    cfg = BookAConfig(holding_days=3)

    def first_trade(iv_level: float) -> pd.Series:
        bars = make_bars(np.full(8, 100.0), iv_level)
        return simulate_straddles(bars, enter_on(bars, {0: -0.7}), cfg).trades.iloc[0]

    low, high = first_trade(15.0), first_trade(45.0)
    for trade, iv in ((low, 15.0), (high, 45.0)):
        half_spread = cfg.bid_ask_base + cfg.bid_ask_iv_slope * iv
        commission = 2 * cfg.commission_per_contract * 0.7 / (100.0 * cfg.contract_multiplier)
        expected = half_spread * 0.7 / 100.0 * (trade["entry_premium"] + trade["exit_value"]) + 2 * commission
        assert trade["costs"] == pytest.approx(expected, rel=1e-12)
        assert trade["costs"] > 0
        assert trade["contracts"] == pytest.approx(0.7 * cfg.capital / (100.0 * 100))
    per_premium = [t["costs"] / (t["entry_premium"] + t["exit_value"]) for t in (low, high)]
    assert per_premium[1] > per_premium[0]


def test_daily_book_adds_up_to_the_trades():
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.012, 120)))
    bars = make_bars(close, 18 + rng.gamma(2.0, 2.0, 120))
    pos = pd.Series(rng.choice([-1.0, 0.0, 0.0, 0.5], 120), index=bars.dates)
    result = simulate_straddles(bars, pos, BookAConfig(allow_overlap=True, delta_hedge=True))
    d, t = result.daily, result.trades
    assert np.isfinite(d.to_numpy()).all()
    np.testing.assert_allclose(d["net_pnl"], d["gross_pnl"] - d["costs"], atol=1e-15)
    assert d["gross_pnl"].sum() == pytest.approx(t["pnl_gross"].sum(), rel=1e-10)
    assert d["costs"].sum() == pytest.approx(t["costs"].sum(), rel=1e-10)
    assert (d["costs"] >= 0).all() and (d["turnover"] >= 0).all()


def test_delta_hedge_pnl_and_costs():
    bars = make_bars([100.0, 103.0, 103.0], 20.0)
    cfg = BookAConfig(holding_days=1, delta_hedge=True, hedge_cost_bps=2.0, entry_lag_days=0)
    trade = simulate_straddles(bars, enter_on(bars, {0: 1.0}), cfg).trades.iloc[0]
    delta0 = straddle_delta(100.0, 100.0, 30 / 365, 0.2, cfg.rate, cfg.dividend_yield)
    shares = -delta0 / 100.0  # per unit of capital
    assert trade["hedge_pnl"] == pytest.approx(shares * 3.0, rel=1e-12)
    unhedged_cfg = dataclasses.replace(cfg, delta_hedge=False)
    unhedged = simulate_straddles(bars, enter_on(bars, {0: 1.0}), unhedged_cfg).trades.iloc[0]
    assert trade["pnl_gross"] == pytest.approx(unhedged["pnl_gross"] + shares * 3.0, rel=1e-12)
    hedge_cost = 2e-4 * abs(shares) * (100.0 + 103.0)  # open at the entry close, unwind at the exit close
    assert trade["costs"] - unhedged["costs"] == pytest.approx(hedge_cost, rel=1e-10)


def test_term_structure_shift_prices_shorter_tenor_at_shifted_iv():
    bars = make_bars(np.full(6, 100.0), 20.0)
    cfg = dataclasses.replace(FRICTIONLESS, holding_days=3, shift_iv_for_tenor=True, iv_term_power=0.1)
    trade = simulate_straddles(bars, enter_on(bars, {0: 1.0}), cfg).trades.iloc[0]
    assert trade["entry_premium"] == pytest.approx(straddle_price(100.0, 100.0, 30 / 365, 0.2, 0, 0), rel=1e-13)
    tau = 30 - calendar_days(bars, 0, 3)
    shifted = 0.2 * (tau / 30) ** 0.1
    assert trade["exit_value"] == pytest.approx(straddle_price(100.0, 100.0, tau / 365, shifted, 0, 0), rel=1e-13)


def test_no_look_ahead_changing_later_bars_keeps_earlier_pnl():
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    iv = 20 + rng.normal(0, 1, 60)
    pos = pd.Series(rng.choice([-1.0, 0.0, 1.0], 60), index=pd.bdate_range("2021-03-01", periods=60))
    cfg = BookAConfig(allow_overlap=True, delta_hedge=True)
    base = simulate_straddles(make_bars(close, iv), pos, cfg).daily
    cut = 35
    close2, iv2 = close.copy(), iv.copy()
    close2[cut + 1 :] *= 1.3
    iv2[cut + 1 :] += 10
    changed = simulate_straddles(make_bars(close2, iv2), pos, cfg).daily
    pd.testing.assert_frame_equal(base.iloc[: cut + 1], changed.iloc[: cut + 1])
    assert not np.allclose(base["net_pnl"].iloc[cut + 1 :], changed["net_pnl"].iloc[cut + 1 :])


def test_bad_inputs_raise_clear_errors():
    bars = make_bars(np.full(5, 100.0), 20.0)
    alien = pd.Series([1.0], index=[pd.Timestamp("2021-03-06")])  # a Saturday, not a bar date
    with pytest.raises(ValueError, match="not in the daily bars.*2021-03-06"):
        simulate_straddles(bars, alien, BookAConfig())
    with pytest.raises(ValueError, match="finite"):
        simulate_straddles(bars, pd.Series([np.nan], index=bars.dates[:1]), BookAConfig())
    no_iv = DailyBars(bars.frame.drop(columns="iv"), source="spx.csv")
    with pytest.raises(ValueError, match="spx.csv.*'iv'"):
        simulate_straddles(no_iv, enter_on(bars, {0: 1.0}), BookAConfig())


def test_positions_from_forecast_threshold_sign_and_cap():
    idx = pd.bdate_range("2021-01-04", periods=7)
    mu = pd.Series([1.0, -1.0, 0.4, -0.4, 6.0, -6.0, 0.0], index=idx)
    sigma = pd.Series([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0], index=idx)
    pos = positions_from_forecast(mu, sigma, BookAConfig(threshold=0.5, size_cap=2.0))
    assert pos.tolist() == [1.0, -1.0, 0.0, 0.0, 2.0, -2.0, 0.0]
    with pytest.raises(ValueError, match="sigma.*> 0"):
        positions_from_forecast(mu, sigma * 0.0, BookAConfig())
    with pytest.raises(ValueError, match="same index"):
        positions_from_forecast(mu, sigma.iloc[1:], BookAConfig())


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_entry_lag_fills_at_a_later_close_with_that_days_spot_and_iv(lag):
    close = 100.0 + np.arange(12.0)
    iv = 15.0 + np.arange(12.0)
    bars = make_bars(close, iv)
    cfg = dataclasses.replace(FRICTIONLESS, entry_lag_days=lag, holding_days=2)
    trades = simulate_straddles(bars, enter_on(bars, {2: 1.0}), cfg).trades
    assert len(trades) == 1
    entry = trades.iloc[0]
    assert entry["entry_date"] == bars.dates[2 + lag]
    assert entry["strike"] == close[2 + lag]
    expected = straddle_price(close[2 + lag], close[2 + lag], 30 / 365.0, iv[2 + lag] / 100.0, 0.0, 0.0)
    assert entry["entry_premium"] == pytest.approx(expected)


def test_a_decision_whose_entry_close_lies_past_the_bars_is_not_traded():
    bars = make_bars(np.full(6, 100.0), 20.0)
    cfg = dataclasses.replace(FRICTIONLESS, entry_lag_days=1)
    result = simulate_straddles(bars, enter_on(bars, {5: 1.0}), cfg)
    assert result.trades.empty and (result.daily["net_pnl"] == 0).all()


def test_the_default_fill_is_the_next_close():
    assert BookAConfig().entry_lag_days == 1
