"""Labels yA and yB: hand-computed values, clock-time horizons, session closes and causality of spans."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from bar_factories import (
    TZ,
    hand_minute_bars,
    random_daily_bars,
    random_minute_bars,
    random_minute_bars_on,
    session_minutes,
    splice_after,
)

from lab_v10.src.config import LabelConfig
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.errors import DataValidationError
from lab_v10.src.features.intraday import SessionLayout, minute_atr
from lab_v10.src.features.labels import make_daily_labels, make_intraday_labels, make_labels

DAY = pd.Timestamp("2024-03-04")

# ------------------------------------------------------------------------------------------------
# yA


def test_yA_by_hand_on_a_tiny_series():
    closes = np.array([100.0, 101.0, 99.0, 100.0, 102.0])
    iv = np.array([20.0, 18.0, 25.0, 22.0, 21.0])
    dates = pd.bdate_range("2024-01-02", periods=5)
    frame = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "iv": iv}, index=dates)
    bars = DailyBars(frame)
    labels = make_daily_labels(bars, LabelConfig(horizon_days=2, annualization_days=252))
    r = np.log(closes[1:] / closes[:-1])  # r_1..r_4
    expected = [100 * math.sqrt(252 / 2 * (r[t] ** 2 + r[t + 1] ** 2)) - iv[t] for t in range(3)]
    assert labels["yA"].iloc[:3].to_numpy() == pytest.approx(expected, rel=1e-12)
    rv_day_1_2 = 100 * math.sqrt(126 * (math.log(1.01) ** 2 + math.log(99 / 101) ** 2))  # 25.08
    assert labels["yA"].iloc[0] == pytest.approx(rv_day_1_2 - 20)
    assert labels["yA"].iloc[0] == pytest.approx(5.08, abs=0.01)
    assert labels["yA"].iloc[3:].isna().all()
    assert list(labels["span_end"].iloc[:3]) == list(dates[2:])
    assert labels["span_end"].iloc[3:].isna().all()
    assert list(labels.columns) == ["yA", "span_end"] and labels.index.name == "date"


def test_yA_needs_iv():
    with pytest.raises(DataValidationError, match="'iv' is missing"):
        make_daily_labels(random_daily_bars(30, with_iv=False))


def test_yA_spans_are_causal_under_perturbation():
    bars, other = random_daily_bars(120, seed=1), random_daily_bars(120, seed=2)
    cfg = LabelConfig(horizon_days=10)
    full = make_daily_labels(bars, cfg)
    for cut in np.random.default_rng(3).integers(15, 110, size=6):
        perturbed = make_daily_labels(DailyBars(splice_after(bars.frame, other.frame, cut)), cfg)
        done = (full["span_end"] < bars.dates[cut]).to_numpy()
        assert done.sum() == cut - cfg.horizon_days  # rows t with t + h < cut
        pd.testing.assert_frame_equal(perturbed[done], full[done], check_exact=True)
        reaching = slice(cut - 1, -cfg.horizon_days)  # labelled rows whose span includes the changed bars
        assert not np.allclose(perturbed["yA"].iloc[reaching], full["yA"].iloc[reaching])


# ------------------------------------------------------------------------------------------------
# yB: one session per case, ATR 1, barriers close -/+ 1, horizon 3 minutes

CFG_B = LabelConfig(horizon_minutes=3, k_down=1.0, k_up=1.0)


def one_session(offsets, high_low, close0=100.0) -> MinuteBars:
    """Bars at 09:30 + offsets; bar 0 closes at ``close0``, later bars have the given (high, low)."""
    rows = [(close0, close0 + 0.1, close0 - 0.1, close0, 100.0)]
    rows += [(close0, max(h, close0), min(lo, close0), close0, 100.0) for h, lo in high_low]
    return hand_minute_bars(session_minutes(DAY, offsets), rows)


def yB_of(bars: MinuteBars, **kwargs) -> pd.DataFrame:
    return make_intraday_labels(bars, np.ones(len(bars)), CFG_B, **kwargs)


@pytest.mark.parametrize(
    ("case", "high_low", "expected"),
    [
        ("down first", [(100.5, 99.5), (100.2, 98.9), (101.5, 99.5)], 1.0),
        ("up first", [(100.5, 99.5), (101.0, 99.8), (100.0, 98.0)], 0.0),
        ("both in one bar", [(100.5, 99.5), (101.2, 98.7), (100.0, 99.5)], 0.0),
        ("neither", [(100.9, 99.1), (100.5, 99.5), (100.8, 99.2)], 0.0),
        ("down on the last minute", [(100.5, 99.5), (100.5, 99.5), (100.0, 99.0)], 1.0),
    ],
)
def test_yB_by_hand(case, high_low, expected):
    # bars at minutes 0..3 and one more at minute 4, so that minute 0's window (0, 3] ends before the close
    bars = one_session([0, 1, 2, 3, 4], [*high_low, (100.0, 100.0)])
    labels = yB_of(bars)
    assert labels["yB"].iloc[0] == expected, case
    assert labels["span_end"].iloc[0] == bars.frame.index[0] + pd.Timedelta(minutes=3)


def test_yB_is_nan_where_the_horizon_runs_past_the_close():
    bars = one_session([0, 1, 2, 3, 4], [(100.5, 99.5)] * 4)
    labels = yB_of(bars)
    # default close = end of the 09:34 bar (09:35): minute m needs m + 3 < 5, so only minutes 0 and 1
    assert labels["yB"].notna().tolist() == [True, True, False, False, False]
    assert labels["span_end"].isna().tolist() == [False, False, True, True, True]
    close = pd.Series([pd.Timestamp("2024-03-04 09:40", tz=TZ)], index=[DAY])
    extended = yB_of(bars, session_close=close)
    assert extended["yB"].tolist() == [0.0] * 5  # 09:34 + 3 < 09:40, no barrier touched
    with pytest.raises(DataValidationError, match="before the end of its last bar"):
        yB_of(bars, session_close=pd.Series([pd.Timestamp("2024-03-04 09:34", tz=TZ)], index=[DAY]))


def test_yB_counts_clock_minutes_when_minutes_are_missing():
    # bars at minutes 0, 1, 5, 6: the down move at minute 5 is outside minute 0's window (0, 3] although it is
    # only two bars later; minute 1's window (1, 4] holds no bar at all
    bars = one_session([0, 1, 5, 6], [(100.5, 99.5), (100.0, 98.0), (100.0, 100.0)])
    labels = yB_of(bars)
    assert labels["yB"].iloc[:2].tolist() == [0.0, 0.0]
    assert labels["yB"].iloc[2:].isna().all()  # 5 + 3 and 6 + 3 reach past the 09:37 close
    # with the same bars one minute apart the move is inside the window and counts
    assert yB_of(one_session([0, 1, 2, 3], [(100.5, 99.5), (100.0, 98.0), (100.0, 100.0)]))["yB"].iloc[0] == 1.0


def test_yB_barriers_scale_with_atr_and_missing_atr_gives_nan():
    bars = one_session([0, 1, 2, 3, 4], [(100.5, 99.5), (100.2, 98.9), (100.0, 100.0), (100.0, 100.0)])
    wide = make_intraday_labels(bars, np.full(5, 2.0), CFG_B)  # barriers at 98 and 102: neither touched
    assert wide["yB"].iloc[0] == 0.0
    atr = pd.Series(1.0, index=bars.frame.index[1:])  # a Series without minute 0 (e.g. after a warm-up)
    aligned = make_intraday_labels(bars, atr, CFG_B)
    assert np.isnan(aligned["yB"].iloc[0]) and pd.isna(aligned["span_end"].iloc[0])
    assert aligned["yB"].iloc[1] == 1.0  # minute 1: 98.9 <= 99 at minute 2
    with pytest.raises(ValueError, match="aligned with the minute bars"):
        make_intraday_labels(bars, np.ones(3), CFG_B)


def reference_yB(bars: MinuteBars, atr: np.ndarray, cfg: LabelConfig) -> np.ndarray:
    """Row-by-row transcription of the yB definition, to check the vectorized kernel."""
    frame = bars.frame
    sessions = SessionLayout.of(frame.index).date
    out = np.full(len(frame), np.nan)
    for m, t in enumerate(frame.index):
        same = sessions == sessions[m]
        close = frame.index[same][-1] + pd.Timedelta(minutes=1)
        end = t + pd.Timedelta(minutes=cfg.horizon_minutes)
        if end + pd.Timedelta(minutes=1) > close:
            continue
        window = frame[same & (frame.index > t) & (frame.index <= end)]
        down = window["low"].to_numpy() <= frame["close"].iloc[m] - cfg.k_down * atr[m]
        up = window["high"].to_numpy() >= frame["close"].iloc[m] + cfg.k_up * atr[m]
        hits = np.flatnonzero(down | up)
        out[m] = float(hits.size > 0 and down[hits[0]] and not up[hits[0]])
    return out


def test_yB_matches_the_definition_on_thin_sessions_and_half_days():
    bars = random_minute_bars([390, 210, 390], seed=5, keep_fraction=0.36)  # ~140 bars, a half day
    atr = minute_atr(bars.frame, 30)
    cfg = LabelConfig(horizon_minutes=20, k_down=1.0, k_up=1.0)
    labels = make_intraday_labels(bars, atr, cfg)
    expected = reference_yB(bars, atr, cfg)
    assert np.array_equal(labels["yB"].to_numpy(), expected, equal_nan=True)
    assert (labels["yB"] == 1.0).sum() > 10 and (labels["yB"] == 0.0).sum() > 10
    assert labels["yB"].isna().sum() > 0
    assert labels["span_end"].isna().equals(labels["yB"].isna())


def test_yB_spans_are_causal_under_perturbation():
    bars = random_minute_bars([150, 150, 150], seed=8, keep_fraction=0.7)
    other = random_minute_bars_on(bars.frame.index, seed=9).frame
    crash = other.assign(low=other["low"] * 0.9)  # every replaced bar hits any downside barrier
    cfg = LabelConfig(horizon_minutes=15, k_down=4.0, k_up=4.0)  # wide: few labels are decided before
    full = make_intraday_labels(bars, minute_atr(bars.frame, 30), cfg)
    for cut in np.random.default_rng(10).integers(20, len(bars) - 20, size=12):
        spliced = MinuteBars(splice_after(bars.frame, crash, cut))
        perturbed = make_intraday_labels(spliced, minute_atr(spliced.frame, 30), cfg)
        done = (full["span_end"] < bars.frame.index[cut]).to_numpy()
        assert done.sum() > 0
        pd.testing.assert_frame_equal(perturbed[done], full[done], check_exact=True)


def test_make_labels_wraps_both_tables():
    daily = random_daily_bars(40, seed=12)
    minutes = random_minute_bars([60, 60], seed=13)
    atr = minute_atr(minutes.frame, 10)
    both = make_labels(daily, minutes, atr, LabelConfig(horizon_days=5, horizon_minutes=10))
    pd.testing.assert_frame_equal(both.daily, make_daily_labels(daily, LabelConfig(horizon_days=5)))
    pd.testing.assert_frame_equal(both.intraday, make_intraday_labels(minutes, atr, LabelConfig(horizon_minutes=10)))
    assert make_labels(daily, cfg=LabelConfig(horizon_days=5)).intraday is None
    with pytest.raises(ValueError, match="atr is required"):
        make_labels(daily, minutes)
