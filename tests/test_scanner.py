"""Backside-short setup: hand-made sessions where the firing minute is known, resets, and causality."""
from __future__ import annotations

import numpy as np
import pytest

from lab_v10.src.config import FeatureConfig
from lab_v10.src.features.scanner import SETUP_OUTPUTS, backside_short_setup

CFG = FeatureConfig(stretch_k_atr=2.0, stretch_volume_mult=1.5, pivot_lookback_minutes=3)

# One session, VWAP 100, ATR 1, rel_volume 2 (above 1.5). Columns: high, low, close.
PARABOLA = np.array(
    [
        (100.5, 99.5, 100.0),  # 0: close 0 ATR above VWAP
        (102.0, 100.5, 101.8),  # 1: 1.8 ATR, not stretched
        (103.0, 101.5, 102.5),  # 2: 2.5 ATR -> arms, top 103
        (104.0, 102.5, 103.5),  # 3: new top 104 at minute 3
        (103.8, 102.8, 103.0),  # 4: lower, but only 1 minute after the top
        (103.5, 102.6, 102.9),  # 5: 2 minutes after the top
        (103.6, 102.7, 103.2),  # 6: 3 minutes after -> lower high, break level 102.7
        (103.4, 102.8, 102.9),  # 7: below the candidate's high, close above 102.7
        (103.1, 102.5, 102.6),  # 8: close 102.6 < 102.7 -> signal
        (102.8, 101.9, 102.0),  # 9: disarmed, 2.0 ATR is not > 2
    ]
)


def run_setup(bars: np.ndarray, minutes=None, session=None, rel_volume=2.0, cfg=CFG) -> dict[str, np.ndarray]:
    n = len(bars)
    return backside_short_setup(
        close=bars[:, 2],
        high=bars[:, 0],
        low=bars[:, 1],
        vwap=np.full(n, 100.0),
        atr=np.ones(n),
        rel_volume=np.broadcast_to(np.asarray(rel_volume, dtype=float), (n,)),
        session_id=np.zeros(n, np.int64) if session is None else np.asarray(session),
        clock_minute=np.arange(n) if minutes is None else np.asarray(minutes),
        cfg=cfg,
    )


def test_lower_high_break_fires_at_the_hand_computed_minute():
    out = run_setup(PARABOLA)
    assert set(out) == set(SETUP_OUTPUTS)
    assert out["stretched"].tolist() == [False, False, True, True, True, True, True, True, True, False]
    assert out["armed"].tolist() == [False, False] + [True] * 7 + [False]
    pivot = [np.nan, np.nan, 103, 104, 104, 104, 104, 104, 104, np.nan]
    assert np.array_equal(out["pivot_high"], pivot, equal_nan=True)
    assert np.flatnonzero(out["signal"]).tolist() == [8]


def test_lookback_counts_clock_minutes_not_bars():
    # bars 4 and 5 of the parabola are missing: bar 6 (minute 6) is the first bar after the top and already
    # 3 minutes past it, so it is the lower high and bar 8 breaks it
    keep = [0, 1, 2, 3, 6, 7, 8]
    out = run_setup(PARABOLA[keep], minutes=np.array(keep))
    assert np.flatnonzero(out["signal"]).tolist() == [keep.index(8)]
    # the same bars on consecutive minutes: bar 6 is now only 1 minute after the top and bar 7 (minute 5)
    # 2 minutes, so bar 8 (minute 6) becomes the lower high and nothing is left to break it
    assert not run_setup(PARABOLA[keep])["signal"].any()


def test_a_new_top_forgets_the_lower_high():
    bars = PARABOLA.copy()
    bars[7] = (104.5, 102.8, 103.0)  # minute 7 makes a new top; bar 8's close 102.6 breaks nothing now
    out = run_setup(bars)
    assert not out["signal"].any()
    assert out["pivot_high"][7:9].tolist() == [104.5, 104.5]


def test_volume_below_the_multiple_never_stretches():
    out = run_setup(PARABOLA, rel_volume=1.5)  # not > 1.5
    assert not out["stretched"].any() and not out["armed"].any() and not out["signal"].any()


def test_state_resets_at_the_session_start():
    # session 0 arms and builds a lower high (bars 0..7); session 1 opens with bar 8's break, on volume too
    # low to stretch: the armed state and the break level did not carry over, so nothing fires
    session = np.array([0] * 8 + [1, 1])
    out = run_setup(PARABOLA, session=session, rel_volume=np.array([2.0] * 8 + [1.0, 1.0]))
    assert out["armed"][7] and not out["armed"][8:].any()
    assert not out["signal"].any() and np.isnan(out["pivot_high"][8:]).all()


def test_disarms_after_a_signal_and_can_arm_again():
    follow = np.array(
        [
            (102.7, 101.8, 101.9),  # 10: would break 102.7 again, but the setup is disarmed
            (104.5, 102.2, 104.0),  # 11: stretched 4 ATR -> arms anew, top 104.5
            (104.2, 103.4, 103.6),  # 12
            (104.0, 103.2, 103.5),  # 13
            (104.1, 103.3, 103.8),  # 14: 3 minutes after the top -> lower high, break level 103.3
            (103.9, 103.0, 103.1),  # 15: close 103.1 < 103.3 -> second signal
        ]
    )
    out = run_setup(np.vstack([PARABOLA, follow]))
    assert np.flatnonzero(out["signal"]).tolist() == [8, 15]
    assert not out["armed"][9:11].any() and out["armed"][11:].all()
    assert out["pivot_high"][11] == 104.5


def test_setup_is_causal_under_perturbation():
    rng = np.random.default_rng(0)
    n = 600
    close = 100 + np.cumsum(rng.normal(0, 0.3, n))
    high, low = close + rng.uniform(0, 0.4, n), close - rng.uniform(0, 0.4, n)
    inputs = dict(
        close=close,
        high=high,
        low=low,
        vwap=close - rng.normal(0.5, 1.0, n),
        atr=rng.uniform(0.2, 0.6, n),
        rel_volume=rng.uniform(0.5, 3.0, n),
        session_id=np.repeat(np.arange(4), n // 4),
        clock_minute=np.cumsum(rng.integers(1, 4, n)),
    )
    cfg = FeatureConfig(stretch_k_atr=1.0, stretch_volume_mult=1.2, pivot_lookback_minutes=3)
    full = backside_short_setup(**inputs, cfg=cfg)
    assert full["signal"].sum() >= 5  # the random path exercises the state machine
    for cut in rng.integers(10, n - 10, size=8):
        changed = {k: v.copy() for k, v in inputs.items()}
        for key in ("close", "high", "low", "vwap", "atr", "rel_volume"):
            changed[key][cut:] = rng.permutation(changed[key][cut:])
        perturbed = backside_short_setup(**changed, cfg=cfg)
        for key in SETUP_OUTPUTS:
            assert np.array_equal(perturbed[key][:cut], full[key][:cut], equal_nan=True), key


def test_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="aligned 1-D arrays"):
        backside_short_setup(
            np.ones(3), np.ones(3), np.ones(3), np.ones(3), np.ones(3), np.ones(2), np.zeros(3), np.arange(3), CFG
        )
