"""Synthetic universe (``data.synthetic.n_symbols``): identity with the single market for one symbol,
determinism, a shared calendar, cross-symbol correlation that follows the market factor share, one consistent
oracle per symbol, and the config keys.

Every statistical threshold was checked on seeds 0..11 (all pass); the tests use fixed seeds.
"""
from __future__ import annotations

import dataclasses
import re
import time

import numpy as np
import pandas as pd
import pytest
from test_synthetic import daily_log_returns, one_day_gap_check, ordinary_day_calibration

from lab_v10.src.config import LabConfig, SyntheticConfig, apply_overrides
from lab_v10.src.data.synthetic import (
    generate_market,
    generate_market_from_config,
    generate_universe,
    generate_universe_from_config,
)
from lab_v10.src.data.synthetic_process import LOG_CLOSE
from lab_v10.src.errors import ConfigError

SHARES = (0.0, 0.25, 0.5, 0.8)


def mean_pairwise_correlation(series: list[np.ndarray]) -> float:
    """Mean over symbol pairs of the correlation of equally long series."""
    corr = np.corrcoef(np.array(series))
    return float(corr[np.triu_indices(len(series), 1)].mean())


def log_vol_innovations(oracle) -> tuple[np.ndarray, np.ndarray]:
    """The daily innovations of the latent short and long log-vol components, ``(N-1,)`` each: what is left
    of ``s_{d+1}, l_{d+1}`` after the AR(1) persistence and the jump feedback (data/README.md)."""
    d, p = oracle.daily, oracle.params
    short = d.short_log_vol[1:] - p.short_persistence * d.short_log_vol[:-1] - p.jump_vol_feedback * d.jump_count[:-1]
    return short, d.long_log_vol[1:] - p.long_persistence * d.long_log_vol[:-1]


def cross_symbol_correlations(universe) -> dict[str, float]:
    """Mean pairwise correlation of daily log returns, daily changes of log IV (both observable), the
    innovations of the latent short and long log-vol components, and the latent log vol (the vol regime)."""
    dailies = [daily for daily, _, _ in universe.values()]
    oracles = [oracle for _, _, oracle in universe.values()]
    innovations = [log_vol_innovations(oracle) for oracle in oracles]
    return {
        "returns": mean_pairwise_correlation([daily_log_returns(daily) for daily in dailies]),
        "iv_changes": mean_pairwise_correlation([np.diff(np.log(daily.frame["iv"].to_numpy())) for daily in dailies]),
        "short_innovations": mean_pairwise_correlation([short for short, _ in innovations]),
        "long_innovations": mean_pairwise_correlation([long_ for _, long_ in innovations]),
        "vol_level": mean_pairwise_correlation([np.log(oracle.daily.sigma) for oracle in oracles]),
    }


@pytest.fixture(scope="module")
def correlations_by_share():
    """Three symbols, 1500 sessions of 30 minutes, for each share of SHARES (one seed)."""
    return {share: cross_symbol_correlations(generate_universe(4, 3, 1500, share, minutes_per_day=30))
            for share in SHARES}


@pytest.fixture(scope="module")
def oracle_universe():
    """Three symbols, 2000 sessions of 78 minutes, half of each shock from the market factor."""
    return generate_universe(8, 3, 2000, 0.5, minutes_per_day=78)


# ----------------------------------------------------------------------------------------------
# One symbol is the single market; determinism and layout


def test_a_universe_of_one_is_the_default_single_market_bit_for_bit():
    cfg = dataclasses.replace(SyntheticConfig(), market_factor_share=0.9)  # the share cannot matter alone
    universe = generate_universe_from_config(cfg, seed=0)
    assert list(universe) == ["SYN0"]
    daily, minutes, oracle = universe["SYN0"]
    single_daily, single_minutes, single_oracle = generate_market_from_config(SyntheticConfig(), seed=0)
    for got, expected in ((daily, single_daily), (minutes, single_minutes)):
        assert got.source == expected.source and got.frame.index.equals(expected.frame.index)
        np.testing.assert_array_equal(got.frame.to_numpy(), expected.frame.to_numpy())
    np.testing.assert_array_equal(oracle.minute_state, single_oracle.minute_state)
    assert oracle.seed == single_oracle.seed
    pd.testing.assert_series_equal(oracle.expected_gap(5, n_paths=4), single_oracle.expected_gap(5, n_paths=4))
    # The default job's market, pinned (values of the generator before the universe existed): change them
    # only when the generating process changes on purpose.
    np.testing.assert_allclose(
        [daily.frame["close"].iloc[-1], daily.frame["iv"].iloc[-1], minutes.frame["volume"].sum()],
        [169.6886353093038, 12.761402868494068, 888993944.0], rtol=1e-9,
    )


def test_universe_is_deterministic_and_symbols_share_the_calendar_but_differ():
    cfg = SyntheticConfig(n_days=40, minutes_per_day=60, start="2020-03-02", n_symbols=3)
    universe = generate_universe_from_config(cfg, seed=5)
    again = generate_universe_from_config(cfg, seed=5)
    other_seed = generate_universe_from_config(cfg, seed=6)
    assert list(universe) == ["SYN0", "SYN1", "SYN2"]
    single_daily, single_minutes, _ = generate_market(5, 40, 60, "2020-03-02")
    closes, ivs = [], []
    for name, (daily, minutes, oracle) in universe.items():
        pd.testing.assert_frame_equal(daily.frame, again[name][0].frame, check_exact=True)
        pd.testing.assert_frame_equal(minutes.frame, again[name][1].frame, check_exact=True)
        np.testing.assert_array_equal(oracle.minute_state, again[name][2].minute_state)
        assert not np.allclose(daily.frame["close"], other_seed[name][0].frame["close"])
        assert daily.dates.equals(single_daily.dates) and minutes.frame.index.equals(single_minutes.frame.index)
        assert daily.has_iv and name in daily.source and oracle.dates.equals(daily.dates)
        closes.append(minutes.frame["close"].to_numpy())
        ivs.append(daily.frame["iv"].to_numpy())
    assert len({oracle.seed for _, _, oracle in universe.values()}) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.allclose(closes[i], closes[j]) and not np.allclose(ivs[i], ivs[j])


def test_a_longer_universe_extends_a_shorter_one():
    short = generate_universe(2, 2, 30, 0.6, minutes_per_day=20)
    long_ = generate_universe(2, 2, 45, 0.6, minutes_per_day=20)
    for name in short:
        pd.testing.assert_frame_equal(short[name][0].frame, long_[name][0].frame.iloc[:30], check_freq=False)
        np.testing.assert_array_equal(short[name][2].minute_state, long_[name][2].minute_state[:30])


def test_universe_generation_is_fast():
    generate_universe(0, 2, 5, 0.5)  # numba compilation is not what this measures
    started = time.perf_counter()
    generate_universe(0, 4, 1000, 0.5)
    assert time.perf_counter() - started < 12.0  # four single markets (each < 5 s in test_synthetic) and slack


# ----------------------------------------------------------------------------------------------
# Cross-symbol correlation


def test_without_the_factor_symbols_are_independent(correlations_by_share):
    independent = correlations_by_share[0.0]
    for name in ("returns", "iv_changes", "short_innovations", "long_innovations"):
        assert abs(independent[name]) < 0.06, name


def test_log_vol_innovations_are_correlated_by_the_factor_share(correlations_by_share):
    """Both log-vol innovations mix the day's diffusive shock (leverage) and their own noise, each with the
    share from the factor: their cross-symbol correlation is the share (standard error about 0.025)."""
    for name in ("short_innovations", "long_innovations"):
        observed = [correlations_by_share[share][name] for share in SHARES]
        np.testing.assert_allclose(observed, SHARES, atol=0.07, err_msg=name)


def test_return_iv_and_vol_regime_correlation_grow_with_the_factor_share(correlations_by_share):
    for name in ("returns", "iv_changes"):
        observed = [correlations_by_share[share][name] for share in SHARES]
        assert (np.diff(observed) > 0.08).all() and observed[-1] < SHARES[-1], name  # jumps, run-ups are own
    levels = [correlations_by_share[share]["vol_level"] for share in SHARES]
    assert levels[-1] > 0.5 and levels[-1] > levels[0] + 0.4  # persistent regimes: a noisy level statistic


# ----------------------------------------------------------------------------------------------
# One oracle per symbol


def test_each_oracle_holds_its_own_symbols_path(oracle_universe):
    for daily, minutes, oracle in oracle_universe.values():
        np.testing.assert_allclose(np.exp(oracle.log_close), daily.frame["close"].to_numpy(), rtol=1e-12)
        np.testing.assert_array_equal(oracle.iv, daily.frame["iv"].to_numpy())
        log_close = oracle.minute_state[:, :, LOG_CLOSE].ravel()
        np.testing.assert_allclose(np.exp(log_close), minutes.frame["close"].to_numpy(), rtol=1e-12)


def test_each_expected_gap_matches_its_own_symbol_one_day_ahead(oracle_universe):
    """The one-day-ahead check of test_synthetic on every symbol: the oracle (which simulates the lone
    market's law) agrees with bars whose shocks are half market factor."""
    for daily, _, oracle in oracle_universe.values():
        mean_error_in_se, spread_ratio = one_day_gap_check(daily, oracle)
        assert abs(mean_error_in_se) < 4.0 and 0.85 < spread_ratio < 1.25


def test_each_downside_first_proba_is_calibrated_on_its_own_symbol(oracle_universe):
    days = np.arange(25, 2000, 50)  # 40 sessions picked without looking at them
    for _, minutes, oracle in oracle_universe.values():
        bias, stderr = ordinary_day_calibration(minutes, oracle, days)
        assert stderr < 0.05 and abs(bias) < 4.0 * stderr


# ----------------------------------------------------------------------------------------------
# Config and argument checks


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.synthetic.n_symbols=0", "data.synthetic.n_symbols: expected int >= 1, got 0"),
        ("data.synthetic.n_symbols=two", "data.synthetic.n_symbols: expected int"),
        ("data.synthetic.market_factor_share=1.5", "data.synthetic.market_factor_share: expected float in [0, 1]"),
        ("data.synthetic.market_factor_share=-0.1", "data.synthetic.market_factor_share: expected float in [0, 1]"),
    ],
)
def test_config_rejects_bad_universe_keys_naming_them(override, message):
    with pytest.raises(ConfigError, match=f"^test: {re.escape(message)}"):
        apply_overrides(LabConfig(), [override], "test")


def test_config_accepts_a_universe_and_the_single_market_entry_point_refuses_it():
    cfg = apply_overrides(LabConfig(), ["data.synthetic.n_symbols=4", "data.synthetic.market_factor_share=1"])
    assert cfg.data.synthetic.n_symbols == 4 and cfg.data.synthetic.market_factor_share == 1.0
    assert SyntheticConfig().n_symbols == 1
    with pytest.raises(ValueError, match="n_symbols is 4: a universe, generate it with generate_universe_from_config"):
        generate_market_from_config(cfg.data.synthetic, seed=0)
    with pytest.raises(ValueError, match="n_symbols"):
        generate_universe(0, 0, 10, 0.5)
    with pytest.raises(ValueError, match="market_factor_share"):
        generate_universe(0, 2, 10, 1.1)
