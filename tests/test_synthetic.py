"""Synthetic market: determinism, bar layout, stylized facts and the oracle.

Every threshold was checked on seeds 0..11 (all pass); the tests use fixed seeds, so they are deterministic.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lab_v10.src.config import SyntheticConfig
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.data.synthetic import generate_market, generate_market_from_config

MINUTES = 390
HORIZON_DAYS = 21
HORIZON_MINUTES = 30


# ----------------------------------------------------------------------------------------------
# Statistics computed from the bars (independent of the generator's code)


def daily_log_returns(daily: DailyBars) -> np.ndarray:
    return np.diff(np.log(daily.frame["close"].to_numpy()))  # (N-1,)


def forward_gap(daily: DailyBars, horizon: int) -> np.ndarray:
    """yA(t) = 100 sqrt(252/h sum_{i=1..h} r_{t+i}^2) - IV(t) for t = 0..N-1-h, vol points. ``(N-h,)``"""
    r = daily_log_returns(daily)
    cum = np.r_[0.0, np.cumsum(r**2)]  # cum[i] = sum of r_1..r_i (r_i: close i-1 -> close i)
    t = np.arange(len(daily) - horizon)
    rv = 100.0 * np.sqrt(252.0 / horizon * (cum[t + horizon] - cum[t]))
    return rv - daily.frame["iv"].to_numpy()[t]


def autocorrelation(x: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(x[:-lag], x[lag:])[0, 1])


def minute_atr(minutes: MinuteBars, span: int = 30) -> np.ndarray:
    """Causal EWM (span 30) of minute true ranges; a session's first bar uses high - low. ``(n,)``
    Sessions of equal length (the generator's)."""
    frame = minutes.frame
    high, low, close = (frame[c].to_numpy() for c in ("high", "low", "close"))
    prev_close = np.r_[np.nan, close[:-1]]
    prev_close[:: len(frame) // len(minutes.session_dates)] = np.nan
    true_range = np.fmax(high, prev_close) - np.fmin(low, prev_close)
    return pd.Series(true_range).ewm(span=span).mean().to_numpy()


def downside_first(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, horizon: int, k_down: float, k_up: float
) -> np.ndarray:
    """yB for one session's minutes ``(M,)`` by the label definition; NaN where m + horizon > M - 1."""
    m = len(close)
    label = np.full(m, np.nan)
    rows = np.arange(m - horizon)  # minutes with a full window
    ahead = rows[:, None] + np.arange(1, horizon + 1)[None, :]  # (R, H) bar positions m+1..m+H
    down = low[ahead] <= (close[rows] - k_down * atr[rows])[:, None]  # (R, H)
    up = high[ahead] >= (close[rows] + k_up * atr[rows])[:, None]
    touched = down | up
    first = np.where(touched.any(axis=1), touched.argmax(axis=1), -1)  # (R,)
    hit = first >= 0
    label[rows] = 0.0
    label[rows[hit]] = (down[hit, first[hit]] & ~up[hit, first[hit]]).astype(float)
    return label


def calibration_bias(label: np.ndarray, proba: np.ndarray, selected: np.ndarray) -> tuple[float, float]:
    """Mean of label - proba over the selected minutes and its standard error clustered by session
    (minutes of one session share paths). ``selected``: ``(sessions, M)``; label, proba: ``(sessions*M,)``."""
    residual = np.where(selected.ravel(), label - proba, 0.0).reshape(selected.shape)  # (sessions, M)
    count = selected.sum()
    return residual.sum() / count, np.sqrt(np.sum(residual.sum(axis=1) ** 2)) / count


# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def market():
    """2000 sessions x 390 minutes (about 1 s after numba's first compilation)."""
    return generate_market(seed=3, n_days=2000)


@pytest.fixture(scope="module")
def daily_market():
    """6000 sessions of 78 minutes: a long daily sample (daily facts need many vol cycles) at low cost."""
    return generate_market(seed=11, n_days=6000, minutes_per_day=78)


@pytest.fixture(scope="module")
def gap_market():
    """1500 sessions of 78 minutes: a long daily sample for the yA oracle at a fraction of the cost."""
    return generate_market(seed=5, n_days=1500, minutes_per_day=78)


# ----------------------------------------------------------------------------------------------
# Determinism, layout, validation


def test_same_seed_gives_identical_output_and_other_seeds_differ():
    daily_a, minutes_a, oracle_a = generate_market(seed=42, n_days=15)
    daily_b, minutes_b, oracle_b = generate_market(seed=42, n_days=15)
    daily_c, minutes_c, _ = generate_market(seed=43, n_days=15)
    pd.testing.assert_frame_equal(daily_a.frame, daily_b.frame)
    pd.testing.assert_frame_equal(minutes_a.frame, minutes_b.frame)
    np.testing.assert_array_equal(oracle_a.minute_state, oracle_b.minute_state)
    assert not np.allclose(minutes_a.frame["close"].to_numpy(), minutes_c.frame["close"].to_numpy())
    assert not np.allclose(daily_a.frame["iv"].to_numpy(), daily_c.frame["iv"].to_numpy())


def test_sessions_are_business_days_of_regular_session_minutes():
    daily, minutes, _ = generate_market(seed=1, n_days=12, start="2021-03-05")
    expected_dates = pd.bdate_range("2021-03-05", periods=12)
    assert daily.dates.equals(expected_dates)
    index = minutes.frame.index
    assert len(index) == 12 * MINUTES
    assert str(index.tz) == "America/New_York"
    clock = index.hour * 60 + index.minute  # minutes since midnight, exchange time
    assert clock.min() == 9 * 60 + 30 and clock.max() == 15 * 60 + 59
    per_day = pd.Series(clock).groupby(np.asarray(index.tz_localize(None).normalize())).agg(["first", "last", "count"])
    assert (per_day["first"] == 570).all() and (per_day["last"] == 959).all() and (per_day["count"] == MINUTES).all()
    assert minutes.session_dates.equals(pd.DatetimeIndex(expected_dates, name="date"))
    assert index.is_monotonic_increasing and index.is_unique


def test_a_longer_sample_extends_a_shorter_one_and_oracle_rows_do_not_depend_on_it():
    short_daily, _, short_oracle = generate_market(seed=42, n_days=30, minutes_per_day=78)
    long_daily, _, long_oracle = generate_market(seed=42, n_days=40, minutes_per_day=78)
    pd.testing.assert_frame_equal(short_daily.frame, long_daily.frame.iloc[:30], check_freq=False)
    short_gap = short_oracle.expected_gap(5, n_paths=8)
    long_gap = long_oracle.expected_gap(5, n_paths=8)
    pd.testing.assert_series_equal(short_gap.iloc[:25], long_gap.iloc[:25], check_freq=False)
    pd.testing.assert_series_equal(long_gap, long_oracle.expected_gap(5, n_paths=8))


def test_shorter_sessions_and_invalid_arguments():
    daily, minutes, oracle = generate_market(seed=1, n_days=4, minutes_per_day=60)
    assert len(minutes) == 240 and oracle.minute_state.shape == (4, 60, oracle.minute_state.shape[2])
    assert minutes.frame.index[59].strftime("%H:%M") == "10:29"
    with pytest.raises(ValueError, match="minutes_per_day"):
        generate_market(seed=1, n_days=4, minutes_per_day=391)
    with pytest.raises(ValueError, match="n_days"):
        generate_market(seed=1, n_days=0)


def test_bars_pass_schema_validation_again(market):
    daily, minutes, _ = market
    revalidated_daily = DailyBars(daily.frame.copy(), "re-check")
    revalidated_minutes = MinuteBars(minutes.frame.copy(), "re-check")
    assert revalidated_daily.has_iv
    assert list(revalidated_daily.frame.columns) == ["open", "high", "low", "close", "volume", "iv"]
    assert list(revalidated_minutes.frame.columns) == ["open", "high", "low", "close", "volume"]
    volume = minutes.frame["volume"].to_numpy()
    assert (volume == np.round(volume)).all() and (volume > 0).mean() > 0.99


def test_daily_bars_are_the_aggregation_of_their_minutes(market):
    daily, minutes, _ = market
    frame = minutes.frame
    sessions = minutes.session_labels()
    aggregated = frame.groupby(sessions).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
        volume=("volume", "sum"),
    )
    aggregated.index = pd.DatetimeIndex(aggregated.index, name="date")
    pd.testing.assert_frame_equal(daily.frame.drop(columns="iv"), aggregated, check_exact=True, check_freq=False)
    opens = frame["open"].to_numpy().reshape(-1, MINUTES)
    closes = frame["close"].to_numpy().reshape(-1, MINUTES)
    np.testing.assert_array_equal(opens[:, 1:], closes[:, :-1])  # no gaps inside a session
    assert (opens[1:, 0] != closes[:-1, -1]).all()  # an overnight gap between sessions


def test_config_entry_point_uses_the_config_sample_shape():
    cfg = SyntheticConfig(n_days=3, minutes_per_day=30, start="2020-06-01", initial_price=50.0)
    daily, minutes, _ = generate_market_from_config(cfg, seed=9)
    assert len(daily) == 3 and len(minutes) == 90 and daily.dates[0] == pd.Timestamp("2020-06-01")
    assert abs(daily.frame["open"].iloc[0] / 50.0 - 1.0) < 0.1


def test_market_generation_is_fast():
    generate_market(seed=0, n_days=5)  # numba compilation is not what this measures
    started = time.perf_counter()
    generate_market(seed=0, n_days=1000)
    assert time.perf_counter() - started < 5.0


# ----------------------------------------------------------------------------------------------
# Stylized facts


def test_implied_vol_is_in_vol_points_and_above_realized_vol_on_average(daily_market):
    daily, _, _ = daily_market
    iv = daily.frame["iv"].to_numpy()
    assert 10.0 < np.median(iv) < 35.0 and iv.min() > 3.0
    realized = 100.0 * np.sqrt(252.0 * np.mean(daily_log_returns(daily) ** 2))
    assert 10.0 < realized < 35.0
    assert forward_gap(daily, HORIZON_DAYS).mean() < -2.0  # IV above subsequent RV: a variance risk premium


def test_volatility_clusters_with_short_and_long_memory(daily_market):
    daily, _, oracle = daily_market
    absolute = np.abs(daily_log_returns(daily))
    absolute = np.minimum(absolute, np.quantile(absolute, 0.995))  # winsorized: a few jumps do not drive the ACF
    acf = np.array([autocorrelation(absolute, lag) for lag in range(1, 61)])  # (60,) lags 1..60
    assert (acf[:20] > 0.0).all() and acf[:5].mean() > 0.1
    assert acf[40:60].mean() > 0.01  # still positive two to three months out: long memory
    latent = oracle.latent_daily()
    short, long_ = latent["short_log_vol"].to_numpy(), latent["long_log_vol"].to_numpy()
    assert autocorrelation(short, 1) < 0.95 < autocorrelation(long_, 1)  # two time scales of log-vol


def test_leverage_effect_returns_predict_vol_changes_with_negative_sign(daily_market):
    daily, _, _ = daily_market
    r = daily_log_returns(daily)
    window = 5
    cum = np.r_[0.0, np.cumsum(np.abs(r))]  # cum[i] = sum of |r[:i]|
    t = np.arange(len(r) - window)
    future_vol = cum[t + 1 + window] - cum[t + 1]  # |r| summed over the next 5 days
    assert np.corrcoef(r[t], future_vol)[0, 1] < -0.05
    iv_change = np.diff(np.log(daily.frame["iv"].to_numpy()))  # aligned with r: close t-1 -> close t
    assert np.corrcoef(r, iv_change)[0, 1] < -0.5


def test_jumps_fatten_tails_with_a_negative_mean(daily_market):
    daily, _, oracle = daily_market
    r = daily_log_returns(daily)
    assert kurtosis(r) > 1.5  # excess kurtosis
    latent = oracle.latent_daily()
    jumps = latent["jump_return"].to_numpy()[latent["jump_count"].to_numpy() > 0]
    assert len(jumps) >= 20 and jumps.mean() < 0.0
    standardized = np.sort(r / (latent["vol"].to_numpy()[1:] / 100.0 / np.sqrt(252.0)))  # by the day's latent vol
    assert -standardized[:10].mean() > 1.2 * standardized[-10:].mean()  # the ten worst days beat the ten best


def test_intraday_volatility_and_volume_are_u_shaped(market):
    _, minutes, _ = market
    frame = minutes.frame
    log_close = np.log(frame["close"].to_numpy()).reshape(-1, MINUTES)
    log_open = np.log(frame["open"].to_numpy()).reshape(-1, MINUTES)
    abs_return = np.abs(log_close - log_open).mean(axis=0)  # (390,) mean |minute return| by time of day
    volume = frame["volume"].to_numpy().reshape(-1, MINUTES).mean(axis=0)  # (390,)
    for profile in (abs_return, volume):
        first, midday, last = profile[:30].mean(), profile[150:240].mean(), profile[-30:].mean()
        assert first > 1.2 * midday and last > 1.1 * midday


def test_variance_risk_premium_is_larger_after_drawdowns_and_in_high_iv(daily_market):
    daily, _, oracle = daily_market
    gap = forward_gap(daily, HORIZON_DAYS)  # yA = RV - IV
    t = np.arange(len(gap))
    drawdown = oracle.latent_daily()["drawdown"].to_numpy()[t]  # observable: 1 - close / 63-day max close
    iv = daily.frame["iv"].to_numpy()[t]
    assert gap[drawdown > np.quantile(drawdown, 0.75)].mean() < gap[drawdown <= np.median(drawdown)].mean() - 0.5
    assert gap[iv > np.quantile(iv, 2 / 3)].mean() < gap[iv < np.quantile(iv, 1 / 3)].mean() - 2.0


def test_runups_accelerate_above_vwap_on_rising_volume(market):
    _, minutes, oracle = market
    latent = oracle.latent_minutes()
    frame = minutes.frame
    close = frame["close"].to_numpy()
    atr_before = np.r_[np.nan, minute_atr(minutes)[:-1] / close[:-1]]  # relative ATR known at the minute's start
    minute_return = np.log(close / frame["open"].to_numpy()) / atr_before  # in ATR units
    runup = (latent["phase"] == "runup").to_numpy()
    age = latent["phase_age"].to_numpy()  # minutes of the phase completed, this one included
    early, late = runup & (age <= 3), runup & (age >= 10)
    quiet = (latent["phase"] == "quiet").to_numpy() & np.isfinite(minute_return)
    assert minute_return[late].mean() > 2.0 * minute_return[early].mean()
    assert minute_return[early].mean() > 0.1 > abs(minute_return[quiet].mean())
    relative_volume = latent["relative_volume"].to_numpy()
    assert relative_volume[late].mean() > 1.5 * relative_volume[early].mean()
    stretch = latent["stretch"].to_numpy()  # log(close / VWAP) in minute-sigma units
    assert np.median(stretch[late]) > np.median(stretch[early]) + 2.0 and (stretch[late] > 0).mean() > 0.6


def _episode_outcomes(oracle) -> pd.DataFrame:
    """One row per session with a run-up: whether it reversed, and the previous close's IV."""
    phase = oracle.latent_minutes()["phase"].cat.codes.to_numpy().reshape(len(oracle.dates), -1)  # (N, M)
    had_runup = (phase == 1).any(axis=1)
    reversed_ = (phase == 2).any(axis=1)
    iv_prev = np.r_[np.nan, oracle.iv[:-1]]
    return pd.DataFrame({"reversed": reversed_, "iv_prev": iv_prev})[had_runup].dropna()


def test_reversal_hazard_is_a_logistic_function_of_stretch_volume_and_regime(market):
    """Minute by minute during run-ups, whether the next minute starts a reversal, regressed on the state
    at the close (stretch, log relative volume, the day's regime logit): the fit recovers the hazard."""
    _, _, oracle = market
    latent = oracle.latent_minutes()
    phase = latent["phase"].to_numpy()
    runup_now = phase[:-1] == "runup"
    regime = np.repeat(oracle.latent_daily()["regime_logit"].to_numpy(), MINUTES)[:-1]
    log_surge = np.log(latent["relative_volume"].to_numpy()[:-1])
    drivers = np.c_[latent["stretch"].to_numpy()[:-1], log_surge, regime][runup_now]  # (runup minutes, 3)
    reverses_next = (phase[1:] == "reversal")[runup_now]
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(drivers, reverses_next)
    p = oracle.params
    np.testing.assert_allclose(fit.coef_[0], [p.reversal_stretch, p.reversal_surge, 1.0], rtol=0.3)


def test_reversal_chance_depends_on_the_daily_regime(market):
    _, _, oracle = market
    episodes = _episode_outcomes(oracle)
    assert len(episodes) > 500
    low_iv = episodes["iv_prev"] < episodes["iv_prev"].quantile(1 / 3)
    high_iv = episodes["iv_prev"] > episodes["iv_prev"].quantile(2 / 3)
    assert episodes["reversed"][high_iv].mean() > episodes["reversed"][low_iv].mean() + 0.1


# ----------------------------------------------------------------------------------------------
# Oracle


def test_expected_gap_predicts_realized_gap_out_of_sample(gap_market):
    daily, _, oracle = gap_market
    realized = forward_gap(daily, HORIZON_DAYS)  # (N-h,)
    expected = oracle.expected_gap(HORIZON_DAYS, n_paths=32)
    assert expected.index.equals(daily.dates)
    assert expected.iloc[-HORIZON_DAYS:].isna().all() and expected.iloc[:-HORIZON_DAYS].notna().all()
    forecast = expected.to_numpy()[: len(realized)]
    half = len(realized) // 2
    train, test = slice(0, half - HORIZON_DAYS), slice(half, None)  # the train labels end before the test rows
    assert np.corrcoef(realized[test], forecast[test])[0, 1] > 0.2
    sse_oracle = np.sum((realized[test] - forecast[test]) ** 2)
    sse_mean = np.sum((realized[test] - realized[train].mean()) ** 2)
    assert 1.0 - sse_oracle / sse_mean > 0.05


def one_day_gap_check(daily: DailyBars, oracle, n_paths: int = 16) -> tuple[float, float]:
    """With h = 1, yA = 100 sqrt(252) |r_{t+1}| - IV_t is nearly independent across days. Returns the mean of
    realized minus expected in standard errors, and the spread of those errors over the paths' own spread
    (rms of stderr * sqrt(paths)): about 0 and 1 when the oracle's day sampler has the bars' law."""
    realized = forward_gap(daily, 1)
    table = oracle.expected_gap_table(1, n_paths=n_paths).iloc[:-1]
    error = realized - table["expected_gap"].to_numpy()
    path_sd = np.sqrt(np.mean(table["stderr"].to_numpy() ** 2 * n_paths))  # rms of the conditional sd
    return error.mean() / (error.std() / np.sqrt(len(error))), error.std() / path_sd


def test_expected_gap_matches_the_realized_mean_one_day_ahead(market):
    """The mean error is zero within a few standard errors and its spread matches the paths' spread."""
    daily, _, oracle = market
    mean_error_in_se, spread_ratio = one_day_gap_check(daily, oracle)
    assert abs(mean_error_in_se) < 4.0
    assert 0.85 < spread_ratio < 1.25


def _proba_and_label(minutes, oracle, positions, atr, n_paths):
    """Oracle probabilities and realized yB, concatenated over the sessions at ``positions``."""
    frame = minutes.frame
    per_day = oracle.tables.minutes_per_day
    probas, labels = [], []
    for position in positions:
        rows = slice(position * per_day, (position + 1) * per_day)
        day = oracle.dates[position]
        proba = oracle.downside_first_proba(day, atr[rows], HORIZON_MINUTES, 1.5, 1.5, n_paths=n_paths)
        assert proba.index.equals(frame.index[rows])
        probas.append(proba.to_numpy())
        high, low, close = (frame[c].to_numpy()[rows] for c in ("high", "low", "close"))
        labels.append(downside_first(high, low, close, atr[rows], HORIZON_MINUTES, 1.5, 1.5))
    return np.concatenate(probas), np.concatenate(labels)


def test_downside_first_proba_ranks_and_is_calibrated_in_episodes(market):
    _, minutes, oracle = market
    atr = minute_atr(minutes)
    phase = oracle.latent_minutes()["phase"].to_numpy()
    in_episode = np.isin(phase, ["runup", "reversal"]).reshape(-1, MINUTES)  # (N, M)
    # Sessions with an episode minute, then the minutes in an episode: a selection implied by the state at
    # each selected minute, so it does not bias the realized labels.
    days = np.flatnonzero(in_episode[:, : MINUTES - HORIZON_MINUTES].any(axis=1))[:40]
    proba, label = _proba_and_label(minutes, oracle, days, atr, n_paths=60)
    np.testing.assert_array_equal(np.isnan(proba), np.isnan(label))
    selected = in_episode[days].ravel() & ~np.isnan(label)
    assert selected.sum() > 300
    assert roc_auc_score(label[selected], proba[selected]) > 0.7
    bias, stderr = calibration_bias(label, proba, selected.reshape(len(days), MINUTES))
    assert stderr < 0.05 and abs(bias) < 4.0 * stderr


def ordinary_day_calibration(minutes: MinuteBars, oracle, days: np.ndarray, n_paths: int = 50) -> tuple[float, float]:
    """Mean of yB minus the oracle's probability over every labelled minute of the sessions at ``days`` and
    its standard error clustered by session (:func:`calibration_bias`)."""
    per_day = oracle.tables.minutes_per_day
    proba, label = _proba_and_label(minutes, oracle, days, minute_atr(minutes), n_paths)
    labelled = ~np.isnan(label)
    assert labelled.sum() == len(days) * (per_day - HORIZON_MINUTES)
    return calibration_bias(label, proba, labelled.reshape(len(days), per_day))


def test_downside_first_proba_is_calibrated_on_ordinary_days(market):
    _, minutes, oracle = market
    days = np.arange(50, 2000, 100)  # 20 sessions picked without looking at them
    bias, stderr = ordinary_day_calibration(minutes, oracle, days)
    assert stderr < 0.03 and abs(bias) < 4.0 * stderr


def test_oracle_calls_are_reproducible_and_check_their_inputs(market):
    _, minutes, oracle = market
    atr = minute_atr(minutes)[:MINUTES]
    first = oracle.downside_first_proba(oracle.dates[0], atr, n_paths=20)
    again = oracle.downside_first_proba(oracle.dates[0], atr, n_paths=20)
    np.testing.assert_array_equal(first.to_numpy(), again.to_numpy())
    assert first.iloc[-HORIZON_MINUTES:].isna().all() and first.iloc[: MINUTES - HORIZON_MINUTES].between(0, 1).all()
    with pytest.raises(ValueError, match="not a session"):
        oracle.downside_first_proba("2001-01-01", atr)
    with pytest.raises(ValueError, match="atr"):
        oracle.downside_first_proba(oracle.dates[0], atr[:-1])
