"""Book B intraday short simulator: timing, exact P&L, stops, targets, SSR, LULD, validation, symbols."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.books.intraday import simulate_intraday_shorts
from lab_v10.src.config import BookBConfig

TZ = "America/New_York"
PLAIN = BookBConfig(ssr=False, luld=False)


def session(day: str, o, h, l, c, vwap, atr=0.5, pivot=np.nan) -> pd.DataFrame:
    """One session of minute bars from 09:30, with the feature columns the simulator reads."""
    o = np.asarray(o, dtype=float)
    n = o.size
    return pd.DataFrame(
        {
            "open": o,
            "high": np.asarray(h, dtype=float),
            "low": np.asarray(l, dtype=float),
            "close": np.asarray(c, dtype=float),
            "volume": np.full(n, 1000.0),
            "vwap": np.broadcast_to(np.asarray(vwap, dtype=float), n),
            "atr": np.broadcast_to(np.asarray(atr, dtype=float), n),
            "pivot_high": np.broadcast_to(np.asarray(pivot, dtype=float), n),
            "session": pd.Timestamp(day),
        },
        index=pd.date_range(f"{day} 09:30", periods=n, freq="min", tz=TZ),
    )


def flat_session(day: str, price: float, n: int = 8, changes: dict[int, tuple] | None = None) -> pd.DataFrame:
    """Flat bars at ``price`` (stop and target far away); ``changes`` = {bar: (o, h, l, c)}."""
    o, h, l, c = (np.full(n, price) for _ in range(4))
    for bar, (bo, bh, bl, bc) in (changes or {}).items():
        o[bar], h[bar], l[bar], c[bar] = bo, bh, bl, bc
    return session(day, o, h, l, c, vwap=price * 0.8, pivot=price * 1.2)


def signals_at(frame: pd.DataFrame, *bars: tuple[str, int]) -> np.ndarray:
    """Boolean signal array with True at (session day, bar number within that session)."""
    signal = np.zeros(len(frame), dtype=bool)
    starts = {d: np.flatnonzero(frame["session"].to_numpy() == np.datetime64(pd.Timestamp(d)))[0] for d, _ in bars}
    for day, bar in bars:
        signal[starts[day] + bar] = True
    return signal


def random_minutes(n_sessions: int, seed: int, symbol: str | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-04-01", periods=n_sessions)
    frames = []
    for day in days:
        c = 50 * np.exp(np.cumsum(rng.normal(0, 0.002, 90)))
        o = np.r_[c[0] * (1 + rng.normal(0, 0.003)), c[:-1]]
        h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.001, 90)))
        l = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.001, 90)))
        vwap = np.cumsum(c) / np.arange(1, 91)
        frames.append(session(str(day.date()), o, h, l, c, vwap=vwap, atr=c * 0.002, pivot=h * 1.002))
    frame = pd.concat(frames)
    if symbol is not None:
        frame["symbol"] = symbol
    return frame


def test_entry_is_the_open_of_the_bar_after_the_signal():
    minutes = random_minutes(4, seed=1)
    signal = np.random.default_rng(2).random(len(minutes)) < 0.08
    trades = simulate_intraday_shorts(minutes, signal, BookBConfig()).trades
    assert len(trades) > 5
    pos = minutes.index.get_indexer(trades["signal_time"])
    assert signal[pos].all()
    assert (trades["entry_time"] > trades["signal_time"]).all()
    np.testing.assert_array_equal(trades["entry_time"], minutes.index[pos + 1])
    np.testing.assert_array_equal(trades["entry_price"], minutes["open"].to_numpy()[pos + 1])
    assert (trades["session"].to_numpy() == minutes["session"].to_numpy()[pos + 1]).all()
    # one position at a time: the next short opens after the previous one is covered
    assert (trades["entry_time"].iloc[1:].to_numpy() > trades["exit_time"].iloc[:-1].to_numpy()).all()


def hand_session() -> pd.DataFrame:
    """Signal bar 1 (pivot 101, ATR 0.5 -> stop 101.05); entry bar 2 at 100.0; bar 3 reaches vwap[2] = 99.2."""
    return session(
        "2024-03-05",
        o=[100.0, 100.0, 100.0, 99.7, 99.2, 99.3],
        h=[100.2, 100.5, 100.3, 99.8, 99.4, 99.4],
        l=[99.8, 99.9, 99.6, 98.9, 99.1, 99.2],
        c=[100.0, 100.2, 99.7, 99.1, 99.3, 99.3],
        vwap=[99.5, 99.0, 99.2, 99.1, 99.1, 99.1],
        pivot=[np.nan, 101.0, np.nan, np.nan, np.nan, np.nan],
    )


def test_hand_computed_target_trade():
    minutes = hand_session()
    result = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 1)), BookBConfig())
    t = result.trades.iloc[0]
    assert t["exit_reason"] == "target" and t["exit_price"] == 99.2
    assert t["exit_time"] == minutes.index[3]
    gross = (100.0 - 99.2) / 100.0
    spread = 1e-4 * (100.0 + 99.2) / 100.0  # half of 2 bps on each side
    commission = 2 * 0.005 * 10_000 / 1_000_000  # 10,000 shares of a 1,000,000 book
    borrow = 0.01 * 120 / (360 * 86_400)  # 2 minutes (entry bar start to exit bar end), Actual/360
    assert t["shares"] == pytest.approx(10_000.0, rel=1e-15)
    assert abs(t["gross_return"] - gross) < 1e-12
    assert abs(t["spread_cost"] - spread) < 1e-12
    assert abs(t["commission"] - commission) < 1e-12
    assert abs(t["borrow_cost"] - borrow) < 1e-12
    assert abs(t["net_return"] - (gross - spread - commission - borrow)) < 1e-12
    day = result.daily.loc[pd.Timestamp("2024-03-05")]
    assert day["n_trades"] == 1 and abs(day["net_pnl"] - (gross - spread - commission - borrow)) < 1e-12


def test_hand_computed_stop_trade_with_half_capital():
    minutes = session(
        "2024-03-05",
        o=[50.2, 50.1, 50.0, 50.3, 50.5],
        h=[50.3, 50.4, 50.2, 50.6, 50.6],
        l=[50.0, 50.0, 49.9, 50.2, 50.4],
        c=[50.1, 50.0, 50.2, 50.5, 50.5],
        vwap=49.0,
        atr=0.4,
        pivot=50.5,
    )
    cfg = dataclasses.replace(BookBConfig(), capital_per_trade=0.5)
    t = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 1)), cfg).trades.iloc[0]
    stop = 50.5 + 0.1 * 0.4
    assert t["exit_reason"] == "stop" and t["exit_price"] == stop and t["exit_time"] == minutes.index[3]
    gross = 0.5 * (50.0 - stop) / 50.0
    costs = 0.5 * 1e-4 * (50.0 + stop) / 50.0 + 2 * 0.005 * (0.5 * 1e6 / 50.0) / 1e6 + 0.01 * 0.5 * 120 / (360 * 86_400)
    assert abs(t["net_return"] - (gross - costs)) < 1e-12 and abs(t["costs"] - costs) < 1e-12


def stop_target_session(bar3) -> pd.DataFrame:
    """Signal bar 0 with pivot 101, ATR 1 -> stop 101.1; entry bar 1 at 100; target vwap 98; bar 3 is given."""
    bars = [(100.0, 100.2, 99.8, 100.0), (100.0, 100.3, 99.7, 100.0), (100.0, 100.2, 99.8, 100.0), bar3]
    o, h, l, c = zip(*bars, (100.0, 100.0, 100.0, 100.0))
    return session("2024-03-05", o, h, l, c, vwap=98.0, atr=1.0, pivot=101.0)


@pytest.mark.parametrize(
    "bar3, reason, price",
    [
        ((102.0, 102.5, 101.5, 102.0), "stop", 102.0),  # gaps through the stop: filled at the open
        ((100.5, 101.3, 100.4, 100.9), "stop", 101.1),  # trades through the stop: filled at the stop
        ((100.0, 101.5, 97.0, 99.0), "stop", 101.1),  # stop and target in one bar: the stop (conservative)
        ((97.5, 98.0, 97.0, 97.5), "target", 97.5),  # gaps through the target: filled at the open
        ((99.0, 99.2, 97.9, 98.5), "target", 98.0),  # reaches the target: filled at the VWAP
        ((100.0, 100.5, 99.5, 100.2), "close", 100.0),  # neither: covered at the session's last close
    ],
)
def test_stop_target_and_close_fills(bar3, reason, price):
    minutes = stop_target_session(bar3)
    trades = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 0)), PLAIN).trades
    assert len(trades) == 1
    t = trades.iloc[0]
    assert (t["exit_reason"], t["exit_price"]) == (reason, price)
    assert t["exit_time"] == minutes.index[4 if reason == "close" else 3]


def test_vwap_target_is_the_vwap_known_at_the_bar_open():
    # bar 3's own VWAP (99.5) is touched by its low, but the VWAP known at its open (bar 2's, 99.0) is not
    minutes = session(
        "2024-03-05",
        o=[100.0, 100.0, 99.8, 99.8, 99.6, 99.4],
        h=[100.1, 100.1, 99.9, 99.9, 99.7, 99.5],
        l=[99.9, 99.9, 99.7, 99.4, 99.3, 99.2],
        c=[100.0, 99.8, 99.8, 99.6, 99.4, 99.3],
        vwap=[98.0, 98.5, 99.0, 99.5, 99.5, 99.5],
        pivot=101.0,
    )
    t = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 0)), PLAIN).trades.iloc[0]
    assert t["exit_time"] == minutes.index[4] and t["exit_price"] == 99.5 and t["exit_reason"] == "target"


def test_barrier_target_is_entry_minus_k_atr():
    minutes = session(
        "2024-03-05",
        o=[100.0, 100.0, 99.5, 99.5, 99.3],
        h=[100.1, 100.1, 99.6, 99.6, 99.4],
        l=[99.9, 99.5, 99.45, 99.2, 97.9],  # bar 3 reaches 100 - 1.5 * 0.4 but not 100 - 1.5 * 0.7
        c=[100.0, 99.5, 99.5, 99.3, 98.0],
        vwap=99.9,  # would exit at once with target="vwap"
        atr=[0.4, 0.7, 0.7, 0.7, 0.7],
        pivot=101.0,
    )
    cfg = dataclasses.replace(PLAIN, target="barrier", barrier_k_atr=1.5)
    t = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 0)), cfg).trades.iloc[0]
    assert t["exit_reason"] == "target" and t["exit_price"] == 100.0 - 1.5 * 0.4 and t["exit_time"] == minutes.index[3]


def test_signal_on_last_bar_or_while_short_does_not_trade_and_exit_bar_signal_does():
    minutes = pd.concat([flat_session("2024-03-04", 100.0), flat_session("2024-03-05", 100.0)])
    none = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-04", 7)), PLAIN)
    assert none.trades.empty and none.daily["n_trades"].tolist() == [0, 0]
    assert none.daily.index.tolist() == [pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-05")]
    # a short from bar 1 holds to the close, so the signal at bar 4 is ignored
    held = simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-04", 0), ("2024-03-04", 4)), PLAIN).trades
    assert len(held) == 1 and held["exit_reason"].iloc[0] == "close"
    # a stop in bar 2 frees the book; a signal on that same bar enters at bar 3
    stopped = flat_session("2024-03-04", 100.0, changes={2: (100.0, 125.0, 100.0, 100.0)})
    trades = simulate_intraday_shorts(stopped, signals_at(stopped, ("2024-03-04", 0), ("2024-03-04", 2)), PLAIN).trades
    assert trades["entry_time"].tolist() == [stopped.index[1], stopped.index[3]]


def ssr_week() -> pd.DataFrame:
    """Thu closes at 100; Fri's bar 3 trades 10.5% below it (SSR); Mon and Tue are quiet at 95."""
    downtick_entry = {3: (94.9, 95.0, 94.8, 95.0)}  # entry bar opens below the signal bar's close
    return pd.concat(
        [
            flat_session("2024-03-07", 100.0),
            flat_session("2024-03-08", 95.0, changes={3: (95.0, 95.0, 89.5, 95.0)}),
            flat_session("2024-03-11", 95.0, changes=downtick_entry),
            flat_session("2024-03-12", 95.0, changes=downtick_entry),
        ]
    )


def test_ssr_carries_from_friday_to_monday_but_not_tuesday():
    minutes = ssr_week()
    signal = signals_at(minutes, ("2024-03-11", 2), ("2024-03-12", 2))
    result = simulate_intraday_shorts(minutes, signal, BookBConfig())
    assert result.trades["session"].tolist() == [pd.Timestamp("2024-03-12")]
    assert result.blocked_ssr == 1
    off = simulate_intraday_shorts(minutes, signal, dataclasses.replace(BookBConfig(), ssr=False))
    assert off.trades["session"].tolist() == [pd.Timestamp("2024-03-11"), pd.Timestamp("2024-03-12")]
    assert off.blocked_ssr == 0


def test_ssr_uses_the_given_prior_close():
    minutes = ssr_week()
    signal = signals_at(minutes, ("2024-03-11", 2))
    # with Friday's prior close at 99 instead of 100, the 89.5 low is only 9.6% down: no SSR on Monday
    days = pd.to_datetime(["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"])
    prior = pd.Series([99.0, 99.0, 95.0, 95.0], index=days)
    assert len(simulate_intraday_shorts(minutes, signal, BookBConfig(), prior_close=prior).trades) == 1
    prior.iloc[1] = 100.0
    assert simulate_intraday_shorts(minutes, signal, BookBConfig(), prior_close=prior).trades.empty
    with pytest.raises(ValueError, match="prior_close: session 2024-03-12"):
        simulate_intraday_shorts(minutes, signal, BookBConfig(), prior_close=prior.iloc[:3])


def test_ssr_blocks_downtick_but_allows_uptick_within_the_triggering_session():
    day = "2024-03-08"
    changes = {
        2: (100.0, 100.0, 89.9, 100.0),  # trigger: 10.1% below the prior close of 100
        5: (99.9, 100.0, 99.8, 100.0),  # downtick entry for the signal at bar 4
        9: (100.1, 100.1, 100.0, 100.0),  # uptick entry for the signal at bar 8
    }
    minutes = pd.concat([flat_session("2024-03-07", 100.0), flat_session(day, 100.0, n=12, changes=changes)])
    result = simulate_intraday_shorts(minutes, signals_at(minutes, (day, 4), (day, 8)), BookBConfig())
    assert result.trades["entry_time"].tolist() == [minutes.index[8 + 9]] and result.blocked_ssr == 1


def test_ssr_trigger_inside_the_entry_bar_is_not_known_at_its_open():
    day = "2024-03-08"
    minutes = pd.concat(
        [flat_session("2024-03-07", 100.0), flat_session(day, 100.0, n=6, changes={2: (99.9, 100.0, 89.0, 99.0)})]
    )
    result = simulate_intraday_shorts(minutes, signals_at(minutes, (day, 1)), BookBConfig())
    assert len(result.trades) == 1 and result.blocked_ssr == 0


def test_luld_bands_and_doubled_closing_band():
    # 60-bar sessions 09:30-10:29: the last 25 minutes start at 10:05 (bar 35)
    def jump(day, bar, open_, closes_before=None):
        frame = flat_session(day, 100.0, n=60, changes={bar: (open_, max(open_, 100.0), min(open_, 100.0), 100.0)})
        if closes_before is not None:
            frame.iloc[bar - 5 : bar, frame.columns.get_loc("close")] = closes_before
            frame.iloc[bar - 5 : bar, frame.columns.get_loc("high")] = np.maximum(100.0, closes_before)
        return frame, (day, bar - 1)

    cases = [
        jump("2024-03-04", 11, 107.0),  # +7% early: blocked
        jump("2024-03-05", 11, 104.0),  # +4% early: allowed
        jump("2024-03-06", 45, 107.0),  # +7% in the closing window (10% band): allowed
        jump("2024-03-07", 45, 112.0),  # +12% in the closing window: blocked
        jump("2024-03-08", 11, 93.0),  # -7% early: blocked
        jump("2024-03-11", 11, 106.5, np.array([100.0, 100.0, 100.0, 100.0, 106.0])),  # +5.2% vs the 5-bar mean
    ]
    minutes = pd.concat([frame for frame, _ in cases])
    signal = signals_at(minutes, *[where for _, where in cases])
    on = simulate_intraday_shorts(minutes, signal, BookBConfig())
    assert on.trades["session"].tolist() == [pd.Timestamp("2024-03-05"), pd.Timestamp("2024-03-06")]
    assert on.blocked_luld == 4 and on.blocked_ssr == 0
    off = simulate_intraday_shorts(minutes, signal, dataclasses.replace(BookBConfig(), luld=False))
    assert len(off.trades) == 6 and off.blocked_luld == 0


def test_no_look_ahead_changing_later_bars_keeps_earlier_trades():
    minutes = random_minutes(3, seed=5)
    signal = np.random.default_rng(6).random(len(minutes)) < 0.06
    base = simulate_intraday_shorts(minutes, signal, BookBConfig()).trades
    cut = minutes.index[150]
    changed = minutes.copy()
    later = changed.index > cut
    for col in ("open", "high", "low", "close", "vwap", "pivot_high"):
        changed.loc[later, col] *= 1.07
    after = simulate_intraday_shorts(changed, signal, BookBConfig()).trades
    done = base["exit_time"] <= cut
    assert done.sum() >= 2
    pd.testing.assert_frame_equal(base[done], after[after["exit_time"] <= cut])


def test_symbols_are_independent_and_order_does_not_matter():
    a, b = random_minutes(3, seed=11, symbol="AAA"), random_minutes(3, seed=12, symbol="BBB")
    rng = np.random.default_rng(13)
    sig_a, sig_b = rng.random(len(a)) < 0.06, rng.random(len(b)) < 0.06
    alone = [simulate_intraday_shorts(m, s, BookBConfig()).trades for m, s in ((a, sig_a), (b, sig_b))]
    alone = pd.concat(alone, ignore_index=True)
    both = pd.concat([a, b])
    interleaved = np.argsort(both.index.asi8, kind="stable")
    mixed = simulate_intraday_shorts(both.iloc[interleaved], np.r_[sig_a, sig_b][interleaved], BookBConfig())
    pd.testing.assert_frame_equal(mixed.trades, alone)
    assert mixed.daily["n_trades"].sum() == len(alone)
    assert mixed.daily["net_pnl"].sum() == pytest.approx(alone["net_return"].sum(), rel=1e-12)


def test_ssr_does_not_carry_from_one_symbol_to_the_next():
    a = flat_session("2024-03-07", 100.0)
    a = pd.concat([a, flat_session("2024-03-08", 95.0, changes={3: (95.0, 95.0, 89.5, 95.0)})])  # triggers SSR
    b = flat_session("2024-03-11", 95.0, changes={3: (94.9, 95.0, 94.8, 95.0)})  # downtick entry, first session
    a["symbol"], b["symbol"] = "AAA", "BBB"
    minutes = pd.concat([a, b])
    signal = np.zeros(len(minutes), dtype=bool)
    signal[len(a) + 2] = True
    result = simulate_intraday_shorts(minutes, signal, BookBConfig())
    assert result.trades["symbol"].tolist() == ["BBB"] and result.blocked_ssr == 0


def test_bad_input_raises_clear_errors():
    minutes = hand_session()
    signal = signals_at(minutes, ("2024-03-05", 1))
    with pytest.raises(ValueError, match="missing column 'pivot_high'"):
        simulate_intraday_shorts(minutes.drop(columns="pivot_high"), signal, BookBConfig())
    with pytest.raises(ValueError, match="pivot_high' on a signal bar"):
        simulate_intraday_shorts(minutes, signals_at(minutes, ("2024-03-05", 2)), BookBConfig())
    with pytest.raises(ValueError, match="signal: expected 6 values"):
        simulate_intraday_shorts(minutes, signal[:-1], BookBConfig())
    with pytest.raises(ValueError, match="signal: expected booleans"):
        simulate_intraday_shorts(minutes, signal.astype(float), BookBConfig())
    with pytest.raises(ValueError, match="tz-aware"):
        simulate_intraday_shorts(minutes.tz_localize(None), signal, BookBConfig())
    bad_vwap = minutes.copy()
    bad_vwap.iloc[2, bad_vwap.columns.get_loc("vwap")] = np.nan
    with pytest.raises(ValueError, match="'vwap'.*target"):
        simulate_intraday_shorts(bad_vwap, signal, BookBConfig())
    bad_price = minutes.copy()
    bad_price.iloc[4, bad_price.columns.get_loc("low")] = np.inf
    with pytest.raises(ValueError, match="row 4 .*'low'"):
        simulate_intraday_shorts(bad_price, signal, BookBConfig())
    with pytest.raises(ValueError, match="timestamp"):
        simulate_intraday_shorts(minutes.iloc[::-1], signal[::-1], BookBConfig())
