"""Daily and intraday features: hand-computed values, warm-up, session resets, thin data and causality."""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from bar_factories import (
    hand_minute_bars,
    random_daily_bars,
    random_minute_bars,
    random_minute_bars_on,
    session_minutes,
    splice_after,
)

from lab_v10.src.config import FeatureConfig
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.errors import DataValidationError
from lab_v10.src.features.daily import (
    DAILY_FEATURE_COLUMNS_WITH_IV,
    DAILY_FEATURE_COLUMNS_WITHOUT_IV,
    build_daily_features,
    daily_feature_columns,
    daily_warmup_rows,
)
from lab_v10.src.features.intraday import (
    INTRADAY_MODEL_COLUMNS,
    INTRADAY_STATE_COLUMNS,
    SessionLayout,
    build_intraday_features,
    minute_atr,
    relative_volume,
    session_vwap,
)

LN2 = math.log(2.0)


def daily_frame(closes, opens=None, highs=None, lows=None, iv=None, start="2024-01-01") -> DailyBars:
    """Daily bars from hand-picked values; open defaults to close, high/low to close -/+ 1%."""
    closes = np.asarray(closes, dtype=float)
    frame = pd.DataFrame(
        {
            "open": closes if opens is None else opens,
            "high": closes * 1.01 if highs is None else highs,
            "low": closes * 0.99 if lows is None else lows,
            "close": closes,
        },
        index=pd.bdate_range(start, periods=closes.size),
    )
    if iv is not None:
        frame["iv"] = iv
    return DailyBars(frame)


# ------------------------------------------------------------------------------------------------
# daily


def test_parkinson_and_garman_klass_on_one_bar():
    cfg = FeatureConfig(har_windows=[1, 2])
    bars = daily_frame([100, 101, 102], opens=[100, 101, 101], highs=[101, 102, 105], lows=[99, 100, 100])
    row = build_daily_features(bars, cfg).loc[bars.dates[2]]
    hl, co = math.log(105 / 100), math.log(102 / 101)
    assert row["parkinson_vol_1d"] == pytest.approx(100 * math.sqrt(252 * hl**2 / (4 * LN2)), rel=1e-12)
    assert row["parkinson_vol_1d"] == pytest.approx(46.515, abs=1e-3)  # ln(1.05)^2/(4 ln 2)*252 = 0.21637
    gk = 0.5 * hl**2 - (2 * LN2 - 1) * co**2
    assert row["garman_klass_vol_1d"] == pytest.approx(100 * math.sqrt(252 * gk), rel=1e-12)


def test_har_and_range_averages_by_hand():
    cfg = FeatureConfig(har_windows=[1, 2])
    closes = [100.0, 101.0, 99.0, 100.5]
    highs, lows = [101.0, 102.0, 100.0, 103.0], [99.0, 100.0, 97.0, 99.0]
    feats = build_daily_features(daily_frame(closes, highs=highs, lows=lows), cfg)
    r = np.diff(np.log(closes))  # r_1, r_2, r_3
    pk = np.log(np.array(highs) / np.array(lows)) ** 2 / (4 * LN2)
    assert list(feats.index) == list(pd.bdate_range("2024-01-01", periods=4)[2:])  # warm-up of 2 rows
    assert feats["ret_1d"].to_numpy() == pytest.approx(r[1:], rel=1e-12)
    assert feats["rv_1d"].to_numpy() == pytest.approx(100 * np.sqrt(252) * np.abs(r[1:]), rel=1e-12)
    rv2 = [100 * math.sqrt(252 / 2 * (r[0] ** 2 + r[1] ** 2)), 100 * math.sqrt(252 / 2 * (r[1] ** 2 + r[2] ** 2))]
    assert feats["rv_2d"].to_numpy() == pytest.approx(rv2, rel=1e-12)
    pk2 = [100 * math.sqrt(252 * (pk[1] + pk[2]) / 2), 100 * math.sqrt(252 * (pk[2] + pk[3]) / 2)]
    assert feats["parkinson_vol_2d"].to_numpy() == pytest.approx(pk2, rel=1e-12)


def test_iv_level_changes_and_spread_by_hand():
    cfg = FeatureConfig(har_windows=[1, 2], iv_change_days=[1, 3])
    closes, iv = [100.0, 101.0, 99.0, 100.5, 100.0], [20.0, 21.0, 19.5, 22.0, 23.5]
    feats = build_daily_features(daily_frame(closes, iv=iv), cfg)
    assert len(feats) == 2  # warm-up max(2, 3) = 3 rows
    last = feats.iloc[-1]
    assert last["iv"] == 23.5
    assert last["iv_change_1d"] == pytest.approx(1.5)
    assert last["iv_change_3d"] == pytest.approx(23.5 - 21.0)
    assert last["iv_rv_spread"] == pytest.approx(23.5 - last["rv_2d"], rel=1e-12)


def test_columns_with_and_without_iv_match_exports():
    with_iv = build_daily_features(random_daily_bars(80, seed=1, with_iv=True))
    without_iv = build_daily_features(random_daily_bars(80, seed=1, with_iv=False))
    assert tuple(with_iv.columns) == DAILY_FEATURE_COLUMNS_WITH_IV == tuple(daily_feature_columns(with_iv=True))
    assert tuple(without_iv.columns) == DAILY_FEATURE_COLUMNS_WITHOUT_IV
    assert not {"iv", "iv_change_1d", "iv_change_5d", "iv_rv_spread"} & set(without_iv.columns)
    assert len(DAILY_FEATURE_COLUMNS_WITH_IV) == len(DAILY_FEATURE_COLUMNS_WITHOUT_IV) + 4
    pd.testing.assert_frame_equal(with_iv[list(DAILY_FEATURE_COLUMNS_WITHOUT_IV)], without_iv)


def test_daily_warm_up_is_dropped_logged_and_leaves_no_nan(caplog):
    bars = random_daily_bars(60, seed=2)
    with caplog.at_level(logging.INFO, logger="lab.features"):
        feats = build_daily_features(bars)
    warmup = daily_warmup_rows(FeatureConfig(), with_iv=True)
    assert warmup == 22
    assert feats.index[0] == bars.dates[warmup] and len(feats) == 60 - warmup
    assert np.isfinite(feats.to_numpy()).all()
    assert any("dropped 22 warm-up rows" in r.getMessage() and r.name == "lab.features" for r in caplog.records)
    # one row fewer than the warm-up needs is an error that says so
    with pytest.raises(DataValidationError, match="22-row feature warm-up"):
        build_daily_features(DailyBars(bars.frame.iloc[:22]))


def test_calendar_features_follow_the_date_only():
    cfg = FeatureConfig(har_windows=[1])
    feats = build_daily_features(daily_frame(np.linspace(100, 110, 40), start="2024-01-01"), cfg)
    tuesday_jan = feats.loc["2024-01-02"]
    assert tuesday_jan["dow_sin"] == pytest.approx(math.sin(2 * math.pi / 7))
    assert tuesday_jan["month_sin"] == pytest.approx(0.0) and tuesday_jan["month_cos"] == pytest.approx(1.0)
    friday_feb = feats.loc["2024-02-02"]
    assert friday_feb["dow_cos"] == pytest.approx(math.cos(2 * math.pi * 4 / 7))
    assert friday_feb["month_cos"] == pytest.approx(math.cos(2 * math.pi / 12))
    other_prices = build_daily_features(daily_frame(np.linspace(50, 40, 40), start="2024-01-01"), cfg)
    calendar = ["dow_sin", "dow_cos", "month_sin", "month_cos"]
    pd.testing.assert_frame_equal(feats[calendar], other_prices[calendar])


@pytest.mark.parametrize("with_iv", [True, False])
def test_daily_features_are_causal_under_perturbation_and_truncation(with_iv):
    bars = random_daily_bars(150, seed=3, with_iv=with_iv)
    other = random_daily_bars(150, seed=4, with_iv=with_iv)
    full = build_daily_features(bars)
    rng = np.random.default_rng(5)
    for cut in rng.integers(30, 140, size=6):
        perturbed = build_daily_features(DailyBars(splice_after(bars.frame, other.frame, cut)))
        before = full.index < bars.dates[cut]
        pd.testing.assert_frame_equal(perturbed.loc[before], full.loc[before], check_exact=True)
        assert not np.allclose(perturbed.loc[~before, "rv_22d"], full.loc[~before, "rv_22d"])  # the change bites
        truncated = build_daily_features(DailyBars(bars.frame.iloc[: cut + 1]))
        pd.testing.assert_frame_equal(truncated, full.loc[: bars.dates[cut]], check_exact=True)


# ------------------------------------------------------------------------------------------------
# intraday

DAY0, DAY1 = pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-05")


def test_vwap_on_a_three_bar_session_and_reset_per_session():
    index = session_minutes(DAY0, [0, 1, 2]).append(session_minutes(DAY1, [0, 1, 2]))
    high = np.array([11.0, 12.0, 13.0, 21.0, 23.0, 24.0])
    low = np.array([9.0, 10.0, 11.0, 19.0, 21.0, 22.0])
    close = np.array([10.0, 11.0, 12.0, 20.0, 22.0, 23.0])  # typical prices 10, 11, 12 | 20, 22, 23
    volume = np.array([100.0, 300.0, 100.0, 0.0, 0.0, 10.0])
    vwap = session_vwap(high, low, close, volume, SessionLayout.of(index))
    # session 1: (10*100)/100, (1000 + 11*300)/400, (4300 + 12*100)/500; session 2 starts afresh and trades
    # no volume on its first two bars, so their VWAP is the plain mean of typical prices (20, 21)
    assert vwap == pytest.approx([10.0, 10.75, 11.0, 20.0, 21.0, 23.0], rel=1e-12)


def test_minute_atr_uses_high_low_on_a_session_first_bar():
    index = session_minutes(DAY0, [0, 1]).append(session_minutes(DAY1, [0]))
    frame = pd.DataFrame(
        {"high": [10.5, 10.8, 20.5], "low": [9.5, 10.2, 19.5], "close": [10.0, 10.6, 20.0]}, index=index
    )
    # true ranges 1.0, max(10.8, 10) - min(10.2, 10) = 0.8, then 1.0 (not 20.5 - 10.6: no overnight gap);
    # EWM span 3 (alpha 1/2, adjust=True): weights 1, 1/2, 1/4 on the newest, older, oldest value
    atr = minute_atr(frame, span=3)
    assert atr == pytest.approx([1.0, (0.8 + 0.5) / 1.5, (1.0 + 0.4 + 0.25) / 1.75], rel=1e-12)


def test_relative_volume_time_of_day_norm_and_fallbacks():
    days = pd.bdate_range("2024-03-04", periods=3)
    index = session_minutes(days[0], [0, 1]).append(
        [session_minutes(days[1], [0, 2]), session_minutes(days[2], [0, 1, 2, 3])]
    )
    volume = np.array([100.0, 300.0, 200.0, 50.0, 300.0, 600.0, 100.0, 700.0])
    minute_of_day = index.hour.to_numpy() * 60 + index.minute.to_numpy()
    layout = SessionLayout.of(index)
    rel = relative_volume(volume, minute_of_day, layout, lookback=2)
    assert np.isnan(rel[:2]).all()  # first session: no past
    # session 2: 09:30 vs 100; 09:32 unseen before -> mean per bar of session 1 = 200
    assert rel[2:4] == pytest.approx([2.0, 0.25])
    # session 3: 09:30 vs mean(100, 200); 09:31 vs 300; 09:32 vs 50; 09:33 unseen -> (100+300+200+50)/4
    assert rel[4:] == pytest.approx([2.0, 2.0, 2.0, 700 / 162.5])
    # a one-session lookback sees only session 2, which has no 09:31 bar -> its mean per bar (125)
    assert relative_volume(volume, minute_of_day, layout, lookback=1)[5] == pytest.approx(600 / 125)
    # past sessions without volume give the neutral 1.0; a zero time-of-day norm falls back to per bar
    quiet = volume.copy()
    quiet[:2] = 0.0
    assert relative_volume(quiet, minute_of_day, layout, lookback=1)[2:4] == pytest.approx([1.0, 1.0])
    assert relative_volume(quiet, minute_of_day, layout, lookback=2)[5] == pytest.approx(600 / 62.5)  # 09:31 norm 0


def test_intraday_features_by_hand_on_two_sessions(caplog):
    index = session_minutes(DAY0, [0, 1, 2]).append(session_minutes(DAY1, [0, 1, 3]))
    rows = [
        (10.0, 10.5, 9.5, 10.0, 100),
        (10.3, 10.8, 10.2, 10.6, 100),
        (10.6, 10.9, 10.4, 10.5, 100),
        (20.0, 20.5, 19.8, 20.2, 200),
        (20.2, 20.6, 20.0, 20.4, 100),
        (20.4, 20.7, 20.1, 20.3, 100),
    ]
    bars = hand_minute_bars(index, rows)
    with caplog.at_level(logging.INFO, logger="lab.features"):
        feats = build_intraday_features(bars, FeatureConfig(atr_minutes=3))
    assert list(feats.columns) == [*INTRADAY_MODEL_COLUMNS, *INTRADAY_STATE_COLUMNS]
    assert list(feats.index) == list(index[3:])  # first session is the warm-up
    assert any("dropped 3 warm-up rows" in r.getMessage() for r in caplog.records)
    typical = [(20.5 + 19.8 + 20.2) / 3, (20.6 + 20.0 + 20.4) / 3, (20.7 + 20.1 + 20.3) / 3]
    vwap = np.array(
        [typical[0], (200 * typical[0] + 100 * typical[1]) / 300, (200 * typical[0] + 100 * sum(typical[1:])) / 400]
    )
    assert feats["vwap"].to_numpy() == pytest.approx(vwap, rel=1e-12)
    assert feats["ret_1m"].to_numpy() == pytest.approx(np.log([20.2 / 20.0, 20.4 / 20.2, 20.3 / 20.4]), rel=1e-12)
    closes = np.array([20.2, 20.4, 20.3])
    assert feats["session_return"].to_numpy() == pytest.approx(np.log(closes / 20.0), rel=1e-12)
    assert feats["session_time"].to_numpy() == pytest.approx([0.0, 1 / 390, 3 / 390])  # clock, not bar count
    atr = feats["atr"].to_numpy()
    assert feats["session_range_atr"].to_numpy() == pytest.approx(np.array([0.7, 0.8, 0.9]) / atr, rel=1e-12)
    assert feats["vwap_distance_atr"].to_numpy() == pytest.approx((closes - vwap) / atr, rel=1e-12)
    assert (feats["session"] == DAY1).all()
    # rel_volume at 09:30 / 09:31: vs session 1's 100 at the same minute; 09:33 unseen -> 100 per bar
    assert feats["rel_volume"].to_numpy() == pytest.approx([2.0, 1.0, 1.0])


def test_one_session_is_too_short_and_flat_bars_are_rejected():
    one_day = random_minute_bars([30], seed=0)
    with pytest.raises(DataValidationError, match="1 session"):
        build_intraday_features(one_day)
    index = session_minutes(DAY0, [0, 1]).append(session_minutes(DAY1, [0]))
    flat = hand_minute_bars(index, [(10.0, 10.0, 10.0, 10.0, 5.0)] * 3)
    with pytest.raises(DataValidationError, match="minute ATR is 0"):
        build_intraday_features(flat)


def test_thin_sessions_and_half_days():
    # ~140 of 390 minutes per session, a half day (210) among full days
    bars = random_minute_bars([390, 390, 210, 390, 210], seed=7, keep_fraction=0.36)
    feats = build_intraday_features(bars, FeatureConfig(volume_lookback_days=2))
    layout = SessionLayout.of(bars.frame.index)
    assert len(feats) == int((layout.code >= 1).sum())
    assert np.isfinite(feats[list(INTRADAY_MODEL_COLUMNS)].to_numpy()).all()
    assert (feats["atr"] > 0).all()
    frame = bars.frame.loc[feats.index]
    running_high = frame["high"].groupby(feats["session"]).cummax()
    running_low = frame["low"].groupby(feats["session"]).cummin()
    assert ((feats["vwap"] <= running_high + 1e-9) & (feats["vwap"] >= running_low - 1e-9)).all()
    firsts = feats.groupby("session").head(1)
    assert (firsts["session_time"] == 0).all()
    first_bars = frame.loc[firsts.index]
    assert firsts["ret_1m"].to_numpy() == pytest.approx(np.log(first_bars["close"] / first_bars["open"]).to_numpy())
    assert firsts["session_return"].to_numpy() == pytest.approx(firsts["ret_1m"].to_numpy())
    assert feats.groupby("session")["session_time"].max().max() < 1.0
    half_day = feats[feats["session"] == pd.Timestamp("2024-03-06")]
    assert half_day["session_time"].max() < 210 / 390


def test_setup_columns_agree_with_the_scanner_state():
    bars = random_minute_bars([390] * 4, seed=11, keep_fraction=0.5)
    loose = FeatureConfig(stretch_k_atr=1.0, stretch_volume_mult=1.0, pivot_lookback_minutes=2)
    feats = build_intraday_features(bars, loose)
    armed = feats["setup_armed"] == 1.0
    assert armed.any() and (feats["setup_signal"] == 1.0).any()  # the loose thresholds make the setup occur
    assert feats.loc[~armed, "pivot_high"].isna().all() and (feats.loc[~armed, "setup_pivot_distance_atr"] == 0).all()
    close = bars.frame.loc[feats.index, "close"]
    expected = (feats["pivot_high"] - close) / feats["atr"]
    assert np.allclose(feats.loc[armed, "setup_pivot_distance_atr"], expected[armed], rtol=1e-12)
    assert (feats.loc[feats["setup_signal"] == 1.0, "setup_armed"] == 1.0).all()


def test_intraday_features_are_causal_under_perturbation_and_truncation():
    lengths = [120, 90, 120, 60]
    bars = random_minute_bars(lengths, seed=21, keep_fraction=0.6)
    other = random_minute_bars_on(bars.frame.index, seed=22)
    cfg = FeatureConfig(stretch_k_atr=1.0, stretch_volume_mult=1.0, pivot_lookback_minutes=2, volume_lookback_days=2)
    full = build_intraday_features(bars, cfg)
    rng = np.random.default_rng(23)
    first_kept = len(bars) - len(full)
    for cut in rng.integers(first_kept + 1, len(bars) - 1, size=6):
        cut_time = bars.frame.index[cut]
        perturbed = build_intraday_features(MinuteBars(splice_after(bars.frame, other.frame, cut)), cfg)
        before = full.index < cut_time
        pd.testing.assert_frame_equal(perturbed.loc[before], full.loc[before], check_exact=True)
        assert not np.allclose(perturbed.loc[~before, "vwap"], full.loc[~before, "vwap"])
        truncated = build_intraday_features(MinuteBars(bars.frame.iloc[: cut + 1]), cfg)
        pd.testing.assert_frame_equal(truncated, full.loc[:cut_time], check_exact=True)
