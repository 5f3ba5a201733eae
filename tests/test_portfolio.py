"""Portfolio combination: weights use only past returns; fixed, vol-target and drawdown-guard rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.books.portfolio import combine_books
from lab_v10.src.config import PortfolioConfig

CAL = pd.bdate_range("2020-01-01", periods=300)


def _books(seed=0):
    rng = np.random.default_rng(seed)
    a = pd.Series(rng.normal(0, 0.01, len(CAL)), index=CAL)
    b = pd.Series(rng.normal(0, 0.002, len(CAL)), index=CAL)
    return {"a": a, "b": b}


def test_fixed_weights_are_the_weighted_sum():
    cfg = PortfolioConfig(method="fixed", weight_a=0.3, weight_b=0.7, drawdown_guard=0.99)
    books = _books()
    res = combine_books(books, CAL, cfg)
    np.testing.assert_allclose(res.returns.to_numpy(), 0.3 * books["a"] + 0.7 * books["b"])


def test_vol_target_weights_are_inverse_to_past_vol():
    cfg = PortfolioConfig(method="vol_target", weight_a=1.0, weight_b=1.0, target_vol=0.1, max_leverage=100.0,
                          vol_lookback_days=63, drawdown_guard=0.99)
    res = combine_books(_books(), CAL, cfg).daily
    assert (res["w_a"].iloc[:63] == 0).all() and (res["w_b"].iloc[:63] == 0).all()
    later = res.iloc[100:]
    # Book b is 5x less volatile, so it gets about 5x the weight.
    ratio = (later["w_b"] / later["w_a"]).median()
    assert 3.5 < ratio < 7.0
    realized = (later["w_a"] * later["ret_a"]).std() * np.sqrt(252)
    assert 0.07 < realized < 0.13


def test_leverage_cap():
    cfg = PortfolioConfig(method="vol_target", target_vol=0.5, max_leverage=2.0, drawdown_guard=0.99)
    res = combine_books(_books(), CAL, cfg).daily
    assert res[["w_a", "w_b"]].to_numpy().max() <= 2.0


@pytest.mark.parametrize("method", ["fixed", "vol_target"])
def test_weights_use_only_past_returns(method):
    cfg = PortfolioConfig(method=method, drawdown_guard=0.05)
    books = _books(1)
    base = combine_books(books, CAL, cfg).daily
    for cut in (70, 150, 260):
        perturbed = {k: v.copy() for k, v in books.items()}
        perturbed["a"].iloc[cut:] *= -7.0
        perturbed["b"].iloc[cut:] += 0.05
        other = combine_books(perturbed, CAL, cfg).daily
        # Weights of day `cut` are decided at the close of cut-1: they must not move.
        pd.testing.assert_frame_equal(base[["w_a", "w_b", "guard_on"]].iloc[: cut + 1],
                                      other[["w_a", "w_b", "guard_on"]].iloc[: cut + 1])
        pd.testing.assert_series_equal(base["portfolio"].iloc[:cut], other["portfolio"].iloc[:cut])


def test_drawdown_guard_halves_exposure_after_losses():
    losses = pd.Series(np.r_[np.full(10, -0.03), np.full(10, 0.001)], index=CAL[:20])
    cfg = PortfolioConfig(method="fixed", weight_a=1.0, drawdown_guard=0.1)
    res = combine_books({"a": losses}, CAL[:20], cfg).daily
    # Drawdown passes 0.1 after the 4th loss (0.12 > 0.1), so the guard is on from day 4 (0-based) onwards.
    assert not res["guard_on"].iloc[:4].any()
    assert res["guard_on"].iloc[4:].all()
    np.testing.assert_allclose(res["portfolio"].iloc[4], -0.015)


def test_book_dates_outside_calendar_and_nan_are_errors():
    cfg = PortfolioConfig()
    bad = pd.Series([0.01], index=[pd.Timestamp("2030-01-01")])
    with pytest.raises(ValueError, match="book 'a': 1 dates not in the portfolio calendar, first 2030-01-01"):
        combine_books({"a": bad}, CAL, cfg)
    nan = pd.Series([0.01, np.nan], index=CAL[:2])
    with pytest.raises(ValueError, match="book 'b': non-finite return on 2020-01-02"):
        combine_books({"b": nan}, CAL, cfg)


def test_missing_trading_days_earn_zero():
    sparse = pd.Series([0.02], index=[CAL[5]])
    res = combine_books({"a": sparse}, CAL[:10], dataclasses.replace(PortfolioConfig(), method="fixed", weight_a=1.0))
    assert res.returns.sum() == pytest.approx(0.02)
    assert (res.returns.drop(CAL[5]) == 0).all()
