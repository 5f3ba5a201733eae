"""Book B: meta-labelled backside shorts on minute bars (docs/design.md section 1).

Inputs. ``minutes`` is indexed by tz-aware bar-start timestamps (one-minute bars; bars may be missing) and
carries ``open high low close`` (price), ``vwap`` (session VWAP at the bar's close), ``atr`` (price units),
``pivot_high`` (price, the setup's top; finite on signal bars), ``session`` (tz-naive session date) and
optionally ``symbol``. Row *m* is known at the close of minute *m*. ``signal[m]`` is True when the setup
fired at the close of *m* and the model's probability cleared the threshold (the caller meta-labels).

Rules, per symbol, one position at a time:

- **Entry**: short at the *open* of the bar after the signal bar, in the same session (a signal on a
  session's last bar is dropped). Signals while a short is open at that open are ignored.
- **Stop**: ``pivot_high[m] + stop_buffer_atr * atr[m]`` from the signal bar *m*, fixed for the trade.
- **Target**: ``"vwap"``: the session VWAP known at the bar's open, i.e. ``vwap`` of the previous bar
  (using the bar's own VWAP would read its close, a look-ahead); ``"barrier"``:
  ``entry - barrier_k_atr * atr[m]``, fixed.
- **Fills in a bar** (checked from the entry bar on): an open at or below the target exits there at the open
  (target), an open at or above the stop exits at the open (stop, a gap through); else a high at or above
  the stop exits at the stop, even if the low also reached the target (conservative); else a low at or
  below the target exits at the target; else the short is covered at the session's last close (close).
- **SSR** (``cfg.ssr``, Reg SHO Rule 201): triggered once a session's low is at least 10% below the prior
  session's close; active for the rest of that session and all of the symbol's next session in the data
  (Friday carries to Monday). A trigger in bar *j* is known at its close, so it applies from bar *j+1* on.
  While active, "short only above the bid" is approximated as: no entry when the entry bar's open is below
  the previous bar's close (a downtick). A session without a prior close (the first one of a symbol, by
  default) never triggers.
- **LULD** (``cfg.luld``, a halt proxy): reference = mean close of the same session's bars that start in
  the 5 minutes before the entry bar (the previous bar's close if there are none); no entry when the
  entry bar's open lies outside ``reference * (1 ± luld_band)``, the band doubled for bars that start in
  the session's last 25 minutes (session end = last bar's start + 1 minute). SSR is checked first; a
  signal blocked by both counts as SSR-blocked.

Units and costs, per trade, as **fractions of capital**: the short's notional at entry is
``capital_per_trade``; ``shares = capital_per_trade * capital / entry_price`` for a book of ``cfg.capital``
currency. ``gross_return = capital_per_trade * (entry - exit) / entry``; ``spread_cost`` = half of
``spread_bps`` of the price on entry and on exit; ``commission = 2 * commission_per_share * shares /
capital``; ``borrow_cost = borrow_fee_annual * capital_per_trade * holding time / 360 days`` (Actual/360,
the securities-lending convention), holding from the entry bar's start to the exit bar's end (the fill
time within a bar is unknown, so this is conservative). ``net_return = gross_return - costs``.

The path logic is one numba pass over flat arrays with session and symbol boundaries; input with a
``symbol`` column that is not grouped by symbol is reordered (stable) first, which costs a copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from lab_v10.src.config import BookBConfig
from lab_v10.src.data.schema import first_true

REQUIRED_COLUMNS = ("open", "high", "low", "close", "vwap", "atr", "pivot_high", "session")
EXIT_REASONS = ("stop", "target", "close")  # kernel codes 0, 1, 2
SSR_TRIGGER_DROP = 0.10  # Rule 201: a 10% decline from the prior close
LULD_REFERENCE_NS = 5 * 60 * 10**9  # reference window: 5 minutes before the entry bar
LULD_CLOSING_NS = 25 * 60 * 10**9  # doubled bands in the session's last 25 minutes
BAR_NS = 60 * 10**9  # one-minute bars
BORROW_YEAR_NS = 360 * 86_400 * 10**9  # Actual/360


@dataclass(frozen=True)
class IntradayBookResult:
    """Trades and per-session P&L of the short book, plus how many entries the rules blocked.

    ``trades`` (one row per short, ordered by symbol in order of first appearance, then time; ``symbol``
    first when the input has one): ``session``, ``signal_time``,
    ``entry_time``, ``exit_time`` (bar-start timestamps), ``entry_price``, ``exit_price`` (price),
    ``exit_reason`` (stop | target | close), ``shares`` (for ``cfg.capital``), ``notional`` (fraction of
    capital), ``gross_return``, ``spread_cost``, ``commission``, ``borrow_cost``, ``costs``, ``net_return``
    (fractions of capital).

    ``daily`` (index ``session``: every session date in the input, ascending): ``gross_pnl``, ``costs``,
    ``net_pnl`` (sums over the session's trades of all symbols, fractions of capital) and ``n_trades``.
    """

    trades: pd.DataFrame
    daily: pd.DataFrame
    blocked_ssr: int  # entries refused by the SSR downtick rule
    blocked_luld: int  # entries refused by the LULD band


@njit(cache=True)
def _short_book_kernel(
    ts, open_, high, low, close, vwap, atr, pivot_high, signal,
    session_start, session_end_ns, prior_close, continues_symbol,
    use_vwap_target, barrier_k_atr, stop_buffer_atr, ssr, luld, luld_band,
    max_trades,
):  # fmt: skip
    """One pass over bars grouped by symbol then time. Returns trade rows (signal, entry, exit bar, exit
    price, reason code), the number of trades, the SSR- and LULD-blocked counts, and the first bar whose
    VWAP target was not finite (-1 if none)."""
    n = ts.shape[0]
    signal_row = np.empty(max_trades, np.int64)
    entry_row = np.empty(max_trades, np.int64)
    exit_row = np.empty(max_trades, np.int64)
    exit_price = np.empty(max_trades, np.float64)
    reason = np.empty(max_trades, np.int8)
    n_trades = 0
    blocked_ssr = 0
    blocked_luld = 0

    s = -1
    first_bar = 0
    closing_from = 0
    trigger_level = np.nan
    ssr_carry = False
    ssr_today = False
    session_low = np.inf
    in_short = False
    stop = 0.0
    barrier = 0.0
    for i in range(n):
        if session_start[i]:
            s += 1
            ssr_carry = ssr_today and continues_symbol[s]
            ssr_today = False
            session_low = np.inf
            first_bar = i
            closing_from = session_end_ns[s] - LULD_CLOSING_NS
            trigger_level = prior_close[s] * (1.0 - SSR_TRIGGER_DROP)  # NaN never triggers
        elif signal[i - 1] and not in_short:
            allowed = True
            if ssr and (ssr_carry or ssr_today) and open_[i] < close[i - 1]:
                blocked_ssr += 1
                allowed = False
            if allowed and luld:
                total = 0.0
                count = 0
                j = i - 1
                while j >= first_bar and ts[j] >= ts[i] - LULD_REFERENCE_NS:
                    total += close[j]
                    count += 1
                    j -= 1
                reference = total / count if count > 0 else close[i - 1]
                band = luld_band * (2.0 if ts[i] >= closing_from else 1.0)
                if open_[i] < reference * (1.0 - band) or open_[i] > reference * (1.0 + band):
                    blocked_luld += 1
                    allowed = False
            if allowed:
                in_short = True
                signal_row[n_trades] = i - 1
                entry_row[n_trades] = i
                stop = pivot_high[i - 1] + stop_buffer_atr * atr[i - 1]
                barrier = open_[i] - barrier_k_atr * atr[i - 1]
        if in_short:
            target = vwap[i - 1] if use_vwap_target else barrier
            if not np.isfinite(target):
                return signal_row, entry_row, exit_row, exit_price, reason, n_trades, blocked_ssr, blocked_luld, i - 1
            code = -1
            price = 0.0
            if open_[i] <= target:
                code, price = 1, open_[i]
            elif open_[i] >= stop:
                code, price = 0, open_[i]
            elif high[i] >= stop:
                code, price = 0, stop
            elif low[i] <= target:
                code, price = 1, target
            elif i + 1 == n or session_start[i + 1]:
                code, price = 2, close[i]
            if code >= 0:
                exit_row[n_trades] = i
                exit_price[n_trades] = price
                reason[n_trades] = code
                n_trades += 1
                in_short = False
        session_low = min(session_low, low[i])
        if session_low <= trigger_level:
            ssr_today = True
    return signal_row, entry_row, exit_row, exit_price, reason, n_trades, blocked_ssr, blocked_luld, -1


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only, C-contiguous view (a copy only if not contiguous): pandas hands out read-only arrays,
    reordered or computed ones are writable, and numba compiles one kernel per flag, so pin it."""
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view


def _day_numbers(values, what: str) -> np.ndarray:
    """Calendar-day numbers (days since 1970-01-01) of tz-naive dates; ValueError naming ``what``."""
    try:
        index = pd.DatetimeIndex(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: expected tz-naive session dates ({exc})") from None
    if index.tz is not None:
        raise ValueError(f"{what}: expected tz-naive session dates, got time zone {index.tz}")
    if index.hasnans:
        raise ValueError(f"{what}: missing session date (expected a date on every row)")
    return index.to_numpy().astype("datetime64[D]").view(np.int64)


def _require(ok, index: pd.Index, what: str, values, expect: str, row_numbers: np.ndarray | None = None) -> None:
    """ValueError naming the first bar where ``ok`` is False: its row in the input (``row_numbers`` maps
    positions back when the bars were reordered), timestamp, ``what`` and its value, and the expectation."""
    pos = first_true(~ok)
    if pos is not None:
        row = pos if row_numbers is None else int(row_numbers[pos])
        raise ValueError(f"minutes: row {row} ({index[pos]}), {what}: value {values[pos]} (expected {expect})")


def _validated_arrays(minutes: pd.DataFrame, signal, cfg: BookBConfig) -> dict[str, np.ndarray]:
    """Columns as flat arrays in input order, with every check the simulator relies on."""
    required = REQUIRED_COLUMNS if cfg.target == "vwap" else tuple(c for c in REQUIRED_COLUMNS if c != "vwap")
    missing = [c for c in required if c not in minutes.columns]
    if missing:
        raise ValueError(
            f"minutes: missing column {missing[0]!r} (expected columns {', '.join(required)}, optionally symbol; "
            f"got {', '.join(map(str, minutes.columns))})"
        )
    index = minutes.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        naive = " without a time zone" if isinstance(index, pd.DatetimeIndex) else ""
        raise ValueError(f"minutes: expected a tz-aware DatetimeIndex of bar starts, got {type(index).__name__}{naive}")
    if index.hasnans:
        raise ValueError(f"minutes: row {first_true(index.isna())}: missing timestamp")
    n = len(minutes)

    if isinstance(signal, pd.Series):
        if not signal.index.equals(index):
            raise ValueError("signal: a Series must be indexed exactly like minutes (same timestamps, same order)")
        signal = signal.to_numpy()
    signal = np.asarray(signal)
    if signal.shape != (n,):
        raise ValueError(f"signal: expected {n} values (one per minute bar), got shape {signal.shape}")
    if signal.dtype != np.bool_:
        raise ValueError(f"signal: expected booleans (setup fired and probability cleared), got dtype {signal.dtype}")

    arrays = {"ts": index.as_unit("ns").asi8, "signal": signal}
    for col in required[:-1]:  # all but session
        if not pd.api.types.is_numeric_dtype(minutes[col]) or pd.api.types.is_bool_dtype(minutes[col]):
            raise ValueError(f"minutes: column {col!r}: expected numbers, got dtype {minutes[col].dtype}")
        arrays[col] = minutes[col].to_numpy(dtype=np.float64)
    for col in ("open", "high", "low", "close"):
        values = arrays[col]
        _require(np.isfinite(values) & (values > 0), index, f"column {col!r}", values, "a finite price > 0")
    at_signal = np.flatnonzero(signal)
    pivot, atr = arrays["pivot_high"][at_signal], arrays["atr"][at_signal]
    _require(np.isfinite(pivot), index[at_signal], "column 'pivot_high' on a signal bar", pivot, "a finite price")
    _require(np.isfinite(atr) & (atr >= 0), index[at_signal], "column 'atr' on a signal bar", atr, "finite and >= 0")
    if "vwap" not in arrays:
        arrays["vwap"] = arrays["close"]  # never read with target="barrier"; keeps the kernel signature fixed
    arrays["session_day"] = _day_numbers(minutes["session"], "minutes: column 'session'")
    return arrays


def _symbol_codes(minutes: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Integer symbol codes in order of first appearance, the symbols they stand for (None, None without a
    ``symbol`` column), and the stable permutation that groups rows by symbol (None when they already are)."""
    if "symbol" not in minutes.columns:
        return None, None, None
    codes, uniques = pd.factorize(minutes["symbol"], sort=False)
    if (codes < 0).any():
        raise ValueError(f"minutes: row {first_true(codes < 0)}, column 'symbol': missing symbol")
    grouped = codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1]))
    return codes, np.asarray(uniques, dtype=object), None if grouped else np.argsort(codes, kind="stable")


def _session_layout(
    ts: np.ndarray, session_day: np.ndarray, symbol: np.ndarray | None, index: pd.Index, order: np.ndarray | None
):
    """Session starts (bool per bar), session first rows, and whether each session follows one of the
    same symbol. Checks time order within each symbol and session order (``order``: the input row of each
    bar when the bars were regrouped by symbol)."""
    n = ts.size
    new_symbol = np.zeros(n, bool)
    new_symbol[0] = True
    if symbol is not None:
        new_symbol[1:] = symbol[1:] != symbol[:-1]
    step_back = np.r_[False, (np.diff(ts) <= 0) & ~new_symbol[1:]]
    _require(~step_back, index, "timestamp", index, "later than the previous bar of the same symbol", order)
    session_back = np.r_[False, (np.diff(session_day) < 0) & ~new_symbol[1:]]
    days = session_day.view("datetime64[D]")
    _require(~session_back, index, "column 'session'", days, "non-decreasing in time", order)
    session_start = new_symbol.copy()
    session_start[1:] |= session_day[1:] != session_day[:-1]
    first_rows = np.flatnonzero(session_start)
    return session_start, first_rows, ~new_symbol[first_rows]


def _prior_close_per_session(
    prior_close: pd.Series | None,
    close: np.ndarray,
    first_rows: np.ndarray,
    continues_symbol: np.ndarray,
    session_days: np.ndarray,
    session_symbol: np.ndarray | None,
) -> np.ndarray:
    """Prior close of each session (sessions start at bars ``first_rows``, dated ``session_days``, of
    ``session_symbol``); by default the previous session's last close, NaN for a symbol's first session."""
    if prior_close is None:
        return np.where(continues_symbol, close[np.maximum(first_rows - 1, 0)], np.nan)
    if session_symbol is None:
        days = _day_numbers(prior_close.index, "prior_close index")
        lookup = pd.Series(prior_close.to_numpy(dtype=float), index=days)
        keys = pd.Index(session_days)
    else:
        if prior_close.index.nlevels != 2:
            raise ValueError("prior_close: with a symbol column, expected a (symbol, session) MultiIndex")
        level_days = _day_numbers(prior_close.index.get_level_values(1), "prior_close index level 1")
        lookup = pd.Series(
            prior_close.to_numpy(dtype=float),
            index=pd.MultiIndex.from_arrays([prior_close.index.get_level_values(0), level_days]),
        )
        keys = pd.MultiIndex.from_arrays([session_symbol, session_days])
    if lookup.index.has_duplicates:
        raise ValueError(f"prior_close: duplicate session {lookup.index[lookup.index.duplicated()][0]}")
    values = lookup.reindex(keys).to_numpy(dtype=float)
    bad = first_true(~(np.isfinite(values) & (values > 0)))
    if bad is not None:
        who = "" if session_symbol is None else f"symbol {session_symbol[bad]!r}, "
        raise ValueError(
            f"prior_close: {who}session {np.datetime64(int(session_days[bad]), 'D')}: value {values[bad]} "
            "(expected a finite price > 0 for every session in minutes)"
        )
    return values


def simulate_intraday_shorts(
    minutes: pd.DataFrame,
    signal: np.ndarray | pd.Series,
    cfg: BookBConfig,
    prior_close: pd.Series | None = None,
) -> IntradayBookResult:
    """Simulate the backside-short book (rules and units in the module docstring).

    ``prior_close``: the previous session's close for every session in ``minutes``, indexed by session
    date (by ``(symbol, session)`` when ``minutes`` has a ``symbol`` column); by default each session's
    prior close is the last close of the symbol's previous session in ``minutes``. Raises ValueError on a
    missing column, a non-finite price, a signal bar without a finite ``pivot_high``/``atr``, a non-finite
    VWAP where it is a target, unsorted timestamps, or a signal that does not match the bars.
    """
    arrays = _validated_arrays(minutes, signal, cfg)
    index = minutes.index
    symbol_codes, symbols, order = _symbol_codes(minutes)
    if order is not None:
        arrays = {k: v[order] for k, v in arrays.items()}
        index = index[order]
        symbol_codes = symbol_codes[order]
    ts, session_day = arrays["ts"], arrays["session_day"]
    session_start, first_rows, continues_symbol = _session_layout(ts, session_day, symbol_codes, index, order)
    last_rows = np.r_[first_rows[1:], ts.size] - 1
    session_symbol = None if symbols is None else symbols[symbol_codes[first_rows]]
    prior = _prior_close_per_session(
        prior_close, arrays["close"], first_rows, continues_symbol, session_day[first_rows], session_symbol
    )

    kernel_arrays = [
        _read_only(a)
        for a in (
            ts, arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["vwap"], arrays["atr"],
            arrays["pivot_high"], arrays["signal"], session_start, ts[last_rows] + BAR_NS, prior, continues_symbol,
        )
    ]  # fmt: skip
    kernel_out = _short_book_kernel(
        *kernel_arrays, cfg.target == "vwap", cfg.barrier_k_atr, cfg.stop_buffer_atr, cfg.ssr, cfg.luld,
        cfg.luld_band, int(np.count_nonzero(arrays["signal"])),
    )  # fmt: skip
    sig_row, entry_row, exit_row, exit_price, reason, n_trades, blocked_ssr, blocked_luld, bad_vwap = kernel_out
    if bad_vwap >= 0:
        raise ValueError(
            f"minutes: row at {index[bad_vwap]}, column 'vwap': value {arrays['vwap'][bad_vwap]} "
            "(expected a finite price where it is the target of an open short)"
        )
    sig_row, entry_row, exit_row = sig_row[:n_trades], entry_row[:n_trades], exit_row[:n_trades]
    exit_price, reason = exit_price[:n_trades], reason[:n_trades]

    entry_price = arrays["open"][entry_row]
    notional = cfg.capital_per_trade
    shares = notional * cfg.capital / entry_price
    gross = notional * (entry_price - exit_price) / entry_price
    spread_cost = notional * (cfg.spread_bps / 2e4) * (entry_price + exit_price) / entry_price
    commission = 2.0 * cfg.commission_per_share * shares / cfg.capital
    held_ns = ts[exit_row] + BAR_NS - ts[entry_row]
    borrow_cost = cfg.borrow_fee_annual * notional * held_ns / BORROW_YEAR_NS
    costs = spread_cost + commission + borrow_cost

    trade_day = session_day[entry_row]
    columns = {} if symbols is None else {"symbol": symbols[symbol_codes[entry_row]]}
    columns |= {
        "session": pd.DatetimeIndex(trade_day.astype("datetime64[D]")).as_unit("ns"),
        "signal_time": index[sig_row],
        "entry_time": index[entry_row],
        "exit_time": index[exit_row],
        "entry_price": entry_price,
        "exit_price": exit_price,
        "exit_reason": np.asarray(EXIT_REASONS, dtype=object)[reason],
        "shares": shares,
        "notional": np.full(n_trades, notional),
        "gross_return": gross,
        "spread_cost": spread_cost,
        "commission": commission,
        "borrow_cost": borrow_cost,
        "costs": costs,
        "net_return": gross - costs,
    }
    trades = pd.DataFrame(columns)

    sessions = np.unique(session_day[first_rows])
    at = np.searchsorted(sessions, trade_day)
    gross_by_day = np.bincount(at, weights=gross, minlength=sessions.size)
    costs_by_day = np.bincount(at, weights=costs, minlength=sessions.size)
    daily = pd.DataFrame(
        {
            "gross_pnl": gross_by_day,
            "costs": costs_by_day,
            "net_pnl": gross_by_day - costs_by_day,
            "n_trades": np.bincount(at, minlength=sessions.size),
        },
        index=pd.DatetimeIndex(sessions.astype("datetime64[D]"), name="session").as_unit("ns"),
    )
    return IntradayBookResult(trades, daily, blocked_ssr=int(blocked_ssr), blocked_luld=int(blocked_luld))
