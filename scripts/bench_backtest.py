"""Simulator throughput: Book B on 1,000,000 minute bars x 10 symbols, Book A on 20 years of daily bars.

    python scripts/bench_backtest.py [--bars 1000000] [--symbols 10] [--days 5040] [--repeats 3] [--quick] [--out FILE]

Book B (``simulate_intraday_shorts``, default BookBConfig: VWAP target, SSR and LULD on): ``--bars`` one-minute
bars per symbol (390-minute sessions on business days, the last one cut short) for ``--symbols`` symbols in one
frame with a categorical ``symbol`` column, random-walk prices, session VWAP, an EWM range as ATR, the
5-bar high as pivot, and random signals on ``--signal-rate`` of the bars. The one-off numba compile is measured
first, on two sessions of one symbol, with a fresh on-disk numba cache so it is a real compile, and is excluded
from the timed runs; each timed run is the whole public call (validation, kernel, trade and daily tables).
Throughput = bars x symbols / median seconds. Target: above 20 million bar-symbols per second.

Book A (``simulate_straddles``, default BookAConfig, and with ``delta_hedge``): ``--days`` business days of a
random-walk close with a mean-reverting IV, positions from ``positions_from_forecast`` on random (mu, sigma).
Throughput = days / median seconds. No target.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
from bench_common import bench_parser, json_settings, load_average, machine_info, summarize_ms, time_calls, write_json

from lab_v10.src.config import BookAConfig, BookBConfig
from lab_v10.src.data.schema import DailyBars
from lab_v10.src.books.straddle import positions_from_forecast, simulate_straddles

TZ = "America/New_York"
SESSION_MINUTES = 390
TARGET_BOOK_B_BAR_SYMBOLS_PER_S = 20e6


def minute_frame(bars: int, symbols: int, signal_rate: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Minute bars of ``symbols`` symbols, ``bars`` each, grouped by symbol, and a signal per bar (rows,)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2010-01-04", periods=-(-bars // SESSION_MINUTES))
    session = days.repeat(SESSION_MINUTES)[:bars]  # (bars,) tz-naive session dates
    start = (session + pd.to_timedelta(np.tile(np.arange(SESSION_MINUTES), days.size)[:bars], unit="min"))
    start = (start + pd.Timedelta(hours=9, minutes=30)).tz_localize(TZ)  # (bars,) bar starts
    first_of_session = np.r_[True, session[1:] != session[:-1]]
    pieces = []
    for s in range(symbols):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0003, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.0005, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.0005, bars)))
        volume = rng.integers(100, 5_000, bars).astype(float)
        vwap = session_vwap((high + low + close) / 3.0, volume, first_of_session)
        pieces.append(
            pd.DataFrame(
                {
                    "open": open_, "high": high, "low": low, "close": close, "vwap": vwap,
                    "atr": pd.Series(high - low).ewm(span=30).mean().to_numpy(),
                    "pivot_high": pd.Series(high).rolling(5, min_periods=1).max().to_numpy(),
                    "session": session,
                },
                index=start,
            )
        )  # fmt: skip
    frame = pd.concat(pieces)
    names = [f"SYM{s:02d}" for s in range(symbols)]
    frame["symbol"] = pd.Categorical.from_codes(np.repeat(np.arange(symbols), bars), categories=names)
    return frame, rng.random(len(frame)) < signal_rate


def session_vwap(price: np.ndarray, volume: np.ndarray, first_of_session: np.ndarray) -> np.ndarray:
    """Cumulative volume-weighted price since each session's first bar (all arrays (bars,))."""
    starts = np.flatnonzero(first_of_session)
    lengths = np.diff(np.r_[starts, price.size])
    pv, v = np.cumsum(price * volume), np.cumsum(volume)
    before_pv = np.repeat(np.r_[0.0, pv[starts[1:] - 1]], lengths)
    before_v = np.repeat(np.r_[0.0, v[starts[1:] - 1]], lengths)
    return (pv - before_pv) / (v - before_v)


def daily_frame(days: int, seed: int) -> pd.DataFrame:
    """``days`` business days: random-walk OHLC around 100 and an AR(1) IV around 20 vol points."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2005-01-03", periods=days, name="date")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, days)))
    open_ = close * np.exp(rng.normal(0.0, 0.004, days))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.005, days)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.005, days)))
    iv = np.empty(days)
    iv[0] = 20.0
    shocks = rng.normal(0.0, 1.0, days)
    for t in range(1, days):  # data generation only, outside every timed region
        iv[t] = max(8.0, 20.0 + 0.97 * (iv[t - 1] - 20.0) + shocks[t])
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "iv": iv}, index=dates)


def bench_book_b(args) -> dict[str, Any]:
    # imported here, after main() points NUMBA_CACHE_DIR at a fresh folder, so the first call compiles
    from lab_v10.src.books.intraday import simulate_intraday_shorts

    cfg = BookBConfig()
    small, small_signal = minute_frame(2 * SESSION_MINUTES, 1, 0.02, args.seed)
    (compile_s,) = time_calls(lambda: simulate_intraday_shorts(small, small_signal, cfg), 1)

    started = time.perf_counter()
    frame, signal = minute_frame(args.bars, args.symbols, args.signal_rate, args.seed)
    build_s = time.perf_counter() - started
    results = []
    seconds = time_calls(lambda: results.append(simulate_intraday_shorts(frame, signal, cfg)), args.repeats)
    rows = len(frame)
    rate = rows / float(np.median(seconds))
    target = TARGET_BOOK_B_BAR_SYMBOLS_PER_S
    last = results[-1]
    return {
        "bars_per_symbol": args.bars,
        "symbols": args.symbols,
        "bar_symbols": rows,
        "signals": int(signal.sum()),
        "trades": len(last.trades),
        "blocked_ssr": last.blocked_ssr,
        "blocked_luld": last.blocked_luld,
        "numba_compile_s": round(compile_s, 3),
        "frame_build_s": round(build_s, 2),
        "run": summarize_ms(seconds),
        "bar_symbols_per_s": round(rate),
        "target": {"bar_symbols_per_s_above": target, "met": rate > target},
    }


def bench_book_a(args) -> dict[str, Any]:
    bars = DailyBars(daily_frame(args.days, args.seed))
    rng = np.random.default_rng(args.seed + 1)
    mu = pd.Series(rng.normal(0.0, 3.0, args.days), index=bars.dates)
    sigma = pd.Series(rng.uniform(2.0, 6.0, args.days), index=bars.dates)
    result = {"days": args.days}
    for name, cfg in (("default", BookAConfig()), ("delta_hedge", BookAConfig(delta_hedge=True))):
        position = positions_from_forecast(mu, sigma, cfg)
        runs = []
        seconds = time_calls(lambda: runs.append(simulate_straddles(bars, position, cfg)), args.repeats_a)
        result[name] = {
            "trades": len(runs[-1].trades),
            "run": summarize_ms(seconds),
            "days_per_s": round(args.days / float(np.median(seconds))),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, help="minute bars per symbol (default 1,000,000; quick 100,000)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--signal-rate", type=float, default=0.005, help="fraction of bars with a signal")
    parser.add_argument("--days", type=int, default=5040, help="daily bars for Book A (20 years)")
    parser.add_argument("--repeats", type=int, help="timed Book B runs (default 3, quick 1)")
    parser.add_argument("--repeats-a", type=int, help="timed Book A runs (default 10, quick 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.bars = args.bars or (100_000 if args.quick else 1_000_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.repeats_a = args.repeats_a or (3 if args.quick else 10)

    # A fresh numba cache, set before numba is first imported, so the compile measured is a real compile.
    cache_dir = tempfile.mkdtemp(prefix="bench_backtest_numba_")
    os.environ["NUMBA_CACHE_DIR"] = cache_dir
    try:
        document = {"benchmark": "bench_backtest", "machine": machine_info(), "settings": json_settings(args)}
        document["book_b"] = bench_book_b(args)
        document["load_average_after_book_b"] = load_average()
        document["book_a"] = bench_book_a(args)
        document["load_average_end"] = load_average()
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    write_json(document, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
