"""Market data loaders: CSV/Parquet files and the ``arch`` S&P 500 + VIX data -> validated bars.

Public functions (formats, time-zone rules and reports are described in ``data/README.md``):

- :func:`load_daily` -> :class:`DailyBars` (``date,open,high,low,close[,volume][,iv]``); its checks,
  :func:`check_daily_frame`, also serve in-memory bars
- :func:`load_iv` -> ``pd.Series`` of implied vol in vol points (Cboe ``VIX_History.csv`` or ``date,iv``)
- :func:`attach_iv` joins an IV series onto daily bars by date
- :func:`load_minutes` -> :class:`MinuteBars` (regular-session minutes in exchange time; coverage,
  trimming and filling in :mod:`lab_v10.src.data.sessions`)
- :func:`load_arch_spx_vix` -> :class:`DailyBars` of the S&P 500 with VIX as ``iv`` (no network)

Errors are :class:`~lab_v10.src.errors.DataValidationError` naming the file and the place (``line N`` in a
CSV file, ``row N`` in a Parquet file or an in-memory series; see :mod:`lab_v10.src.data.raw_table`).
Nothing is silently filled or dropped: ignored columns, rows outside the regular session, missing
minutes, fills and trims are logged on the ``lab.data`` logger. Every loader also runs the plausibility
checks of :mod:`lab_v10.src.data.plausibility` and :mod:`lab_v10.src.data.session_checks` with the given
:class:`CheckOptions` (default: every check, no repair); repairs and tolerated oddities go to ``report``.
Datetime indexes have microsecond resolution (pandas' default).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lab_v10.src.data.calendars import check_time_zone
from lab_v10.src.data.plausibility import (
    CheckOptions,
    CheckReport,
    check_bad_prints,
    check_iv_values,
    check_magnitudes,
    check_not_future,
)
from lab_v10.src.data.raw_table import (
    TIME_UNIT,
    Rows,
    check_columns,
    check_order,
    check_positive,
    has_utc_offsets,
    parse_dates,
    parse_numbers,
    parse_timestamps,
    read_table,
    schema_errors_at,
)
from lab_v10.src.data.schema import (
    DAILY_OPTIONAL,
    MINUTE_COLUMNS,
    PRICE_COLUMNS,
    DailyBars,
    MinuteBars,
    validate_ohlc,
)
from lab_v10.src.data.session_checks import check_daily_sessions, check_minute_clock
from lab_v10.src.data.sessions import (
    fill_missing_minutes,
    keep_regular_session,
    minute_coverage,
)
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")

_CBOE_UNUSED = ("open", "high", "low")  # Cboe VIX_History.csv columns besides DATE and CLOSE
_SHOWN_DATES = 5  # dates listed in an error about missing IV


# ----------------------------------------------------------------------------------------------
# Daily bars and implied vol


def load_daily(path: str | Path, checks: CheckOptions | None = None, report: CheckReport | None = None) -> DailyBars:
    """Daily bars from CSV or Parquet with columns ``date,open,high,low,close[,volume][,iv]``.

    Header names are trimmed and case-insensitive; other columns (e.g. ``Adj Close``) are ignored with a
    warning. Dates are ``YYYY-MM-DD`` or ``MM/DD/YYYY`` (the first row decides). Prices in price units,
    volume in shares/contracts, iv in vol points. Row *t* is known at the close of day *t*. Then
    :func:`check_daily_frame` runs with ``checks`` (default :class:`CheckOptions`).
    """
    raw = read_table(path)
    columns = check_columns(raw, ("date", *PRICE_COLUMNS), DAILY_OPTIONAL)
    dates = parse_dates(raw, "date")
    check_order(dates, raw.rows, "date")
    frame = pd.DataFrame({c: parse_numbers(raw, c) for c in columns if c != "date"}, index=dates)
    with schema_errors_at(raw.rows):
        bars = DailyBars(frame, source=raw.rows.source)
    bars = check_daily_frame(bars, raw.rows, checks or CheckOptions(), report or CheckReport())
    logger.info(
        "%s: %d daily bars %s..%s (columns %s)",
        raw.rows.source, len(bars), bars.dates[0].date(), bars.dates[-1].date(), ", ".join(bars.frame.columns),
    )
    return bars


def check_daily_frame(bars: DailyBars, rows: Rows, checks: CheckOptions, report: CheckReport) -> DailyBars:
    """Daily bars (row *i* = data row *i* of ``rows``) after the plausibility checks, in this order: no date
    after today, sessions of ``checks.calendar`` only and no long run of missing sessions, no bad print in
    the prices or iv, no absurd magnitude, iv in vol points. Rows dropped by a requested repair are reported."""
    frame, pos = bars.frame, np.arange(len(bars))
    check_not_future(frame.index, pos, rows, "date", checks)
    frame, pos = check_daily_sessions(frame, pos, rows, checks, report)
    frame, pos = check_bad_prints(frame, pos, rows, (*PRICE_COLUMNS, "iv"), checks, report)
    check_magnitudes(frame, pos, rows, PRICE_COLUMNS)
    if "iv" in frame.columns:
        check_iv_values(frame["iv"].to_numpy(), pos, rows, "iv", checks, report, index=frame.index)
    return bars if len(frame) == len(bars) else DailyBars(frame, source=bars.source)


def load_iv(path: str | Path, checks: CheckOptions | None = None, report: CheckReport | None = None) -> pd.Series:
    """Implied vol per date (Series ``iv``, index ``date``; annualized, in vol points, e.g. 18.5).

    Accepts the Cboe ``VIX_History.csv`` layout ``DATE,OPEN,HIGH,LOW,CLOSE`` (iv = CLOSE; OPEN/HIGH/LOW
    are not used) or ``date,iv``, as CSV or Parquet. Values must be finite and > 0, dates unique and
    ascending, none after today, no bad print (:func:`check_bad_prints`; dropped and reported with
    ``checks.drop_bad_prints``) and every value in vol points (:func:`check_iv_values`). Dates off the exchange
    calendar are allowed: :func:`attach_iv` uses only the daily bars' dates.
    """
    checks, report = checks or CheckOptions(), report or CheckReport()
    raw = read_table(path)
    if "iv" in raw.frame.columns:
        value_column, unused = "iv", ()
    elif "close" in raw.frame.columns:
        value_column, unused = "close", _CBOE_UNUSED
    else:
        raise DataValidationError(
            f"{raw.rows.source}: missing column 'iv' (expected date,iv or the Cboe layout DATE,OPEN,HIGH,LOW,CLOSE; "
            f"found {', '.join(raw.frame.columns)})"
        )
    check_columns(raw, ("date", value_column), (), unused)
    dates = parse_dates(raw, "date")
    check_order(dates, raw.rows, "date")
    values = parse_numbers(raw, value_column)
    check_positive(values, raw.rows, value_column)
    pos = np.arange(len(values))
    check_not_future(dates, pos, raw.rows, "date", checks)
    frame, pos = check_bad_prints(pd.DataFrame({value_column: values}, index=dates), pos, raw.rows, (value_column,),
                                  checks, report)
    check_iv_values(frame[value_column].to_numpy(), pos, raw.rows, value_column, checks, report, index=frame.index)
    logger.info("%s: %d IV values %s..%s (from column %r)", raw.rows.source, len(frame), frame.index[0].date(),
                frame.index[-1].date(), value_column)
    return pd.Series(frame[value_column].to_numpy(), index=frame.index, name="iv")


def _validated_iv(iv: pd.Series, source: str) -> pd.Series:
    """An in-memory IV series checked like a loaded one: tz-naive dates, ascending, unique, values > 0."""
    if not isinstance(iv, pd.Series) or not isinstance(iv.index, pd.DatetimeIndex):
        raise DataValidationError(f"{source}: expected a pandas Series indexed by date (a DatetimeIndex)")
    if iv.index.tz is not None or not (iv.index == iv.index.normalize()).all():
        raise DataValidationError(f"{source}: expected tz-naive dates without a time of day in the IV index")
    rows = Rows(source)
    check_order(iv.index, rows, "date")
    values = iv.to_numpy(dtype=float, na_value=np.nan)
    check_positive(values, rows, "iv")
    return pd.Series(values, index=pd.DatetimeIndex(iv.index, name="date").as_unit(TIME_UNIT), name="iv")


def attach_iv(daily: DailyBars, iv: pd.Series, *, source: str, drop_days_without_iv: bool = False,
              report: CheckReport | None = None) -> DailyBars:
    """Daily bars with an ``iv`` column taken from ``iv`` on the same date.

    Daily rows before the first or after the last IV date (outside the IV coverage) are trimmed and the
    trim is logged (row count and date range). A daily date inside the coverage without an IV value is an
    error listing the first such dates; with ``drop_days_without_iv`` those daily rows are dropped and the
    repair is reported. IV dates without a daily bar (e.g. exchange holidays) are unused.
    ``source`` names the IV origin (e.g. its path) in messages.
    """
    if daily.has_iv:
        raise DataValidationError(f"{daily.source}: daily bars already have an 'iv' column; not overwriting it with {source}")
    iv = _validated_iv(iv, source)
    dates = daily.dates
    first, last = iv.index[0], iv.index[-1]
    for outside, where in ((dates < first, f"before the first IV date {first.date()}"), (dates > last, f"after the last IV date {last.date()}")):
        if outside.any():
            cut = dates[outside]
            logger.warning(
                "%s: trimmed %d daily rows %s..%s %s in %s",
                daily.source, len(cut), cut[0].date(), cut[-1].date(), where, source,
            )
    kept = dates[(dates >= first) & (dates <= last)]
    if kept.empty:
        raise DataValidationError(
            f"{daily.source}: no daily date {dates[0].date()}..{dates[-1].date()} lies inside the IV coverage "
            f"{first.date()}..{last.date()} of {source}"
        )
    without_iv = kept[~kept.isin(iv.index)]
    if not without_iv.empty:
        shown = [str(d.date()) for d in without_iv]
        if not drop_days_without_iv:
            raise DataValidationError(
                f"{source}: no IV for {len(without_iv)} daily date(s) of {daily.source} inside its coverage "
                f"{first.date()}..{last.date()}: {', '.join(shown[:_SHOWN_DATES])}"
                f"{', ...' if len(without_iv) > _SHOWN_DATES else ''} (expected an IV value on every daily date; "
                "--iv-missing drop (data.iv_missing: drop) drops those daily rows)"
            )
        (report or CheckReport()).repaired(daily.source, f"dropped daily rows without IV in {source}",
                                           "--iv-missing drop", shown, without_iv)
        kept = kept[kept.isin(iv.index)]
    unused = int((~iv.index.isin(kept)).sum())
    if unused:
        logger.info("%s: %d IV dates have no daily bar and are unused", source, unused)
    frame = daily.frame.loc[kept].assign(iv=iv.reindex(kept).to_numpy())
    return DailyBars(frame, source=f"{daily.source} + {source}")


def load_arch_spx_vix(checks: CheckOptions | None = None, report: CheckReport | None = None) -> DailyBars:
    """S&P 500 daily bars (``arch.data.sp500``, 1999-01-04..2018-12-31) with the VIX close
    (``arch.data.vix``, 2014..2019) as ``iv``, over the dates both cover. Read from files installed with
    ``arch``; no network. Prices are the index ``Close`` (``Adj Close`` is not used); volume in shares.
    Both pass the same plausibility checks as files (rows named ``row N``)."""
    from arch.data import (  # imported here: importing arch takes seconds and only this needs it
        sp500,
        vix,
    )

    checks, report = checks or CheckOptions(), report or CheckReport()
    spx = sp500.load().rename(columns=str.lower)
    frame = spx[list(PRICE_COLUMNS) + ["volume"]].astype(float)
    frame.index = pd.DatetimeIndex(frame.index, name="date").as_unit(TIME_UNIT)
    daily = check_daily_frame(DailyBars(frame, source="arch.data.sp500"), Rows("arch.data.sp500"), checks, report)
    vix_close = vix.load()["vix"]
    no_value = vix_close.isna()
    if no_value.any():
        logger.info(
            "arch.data.vix: %d dates without a VIX value (exchange holidays in its weekday grid) are not used",
            int(no_value.sum()),
        )
    vix_close = _validated_iv(vix_close[~no_value], "arch.data.vix")
    check_iv_values(vix_close.to_numpy(), np.arange(len(vix_close)), Rows("arch.data.vix"), "vix", checks, report,
                    index=vix_close.index)
    bars = attach_iv(daily, vix_close, source="arch.data.vix")
    logger.info("arch S&P 500 + VIX: %d daily bars %s..%s", len(bars), bars.dates[0].date(), bars.dates[-1].date())
    return bars


# ----------------------------------------------------------------------------------------------
# Minute bars


def load_minutes(
    path: str | Path,
    tz: str = "America/New_York",
    source_tz: str | None = None,
    calendar: str = "XNYS",
    fill_missing: bool = False,
    checks: CheckOptions | None = None,
    report: CheckReport | None = None,
) -> MinuteBars:
    """Regular-session minute bars in exchange time ``tz`` from CSV or Parquet
    (``timestamp,open,high,low,close,volume``, header case-insensitive).

    Timestamps are minute **starts** in ISO 8601. Naive ones are wall-clock times in ``source_tz`` (in
    ``tz`` when ``source_tz`` is None); ones with a UTC offset keep their offset (offsets may change with
    DST); mixing naive and offset timestamps is an error. Rows must be unique and ascending, none after
    today. A file whose rows mostly miss the ``calendar``'s regular sessions stops with a hint on
    ``source_tz`` (:func:`check_minute_clock`); bad prints and absurd magnitudes are errors (bad prints are
    dropped and reported with ``checks.drop_bad_prints``). Only minutes of the regular sessions are kept
    (XNYS: 09:30..15:59, half days 09:30..12:59, none on holidays); dropped rows and missing minutes are
    logged (see :func:`minute_coverage`). With ``fill_missing`` the missing minutes after each session's
    first bar are filled with flat bars at the previous close of that session (volume 0), and the fill is
    logged; minutes before a session's first bar are never filled. Zero-volume bars are valid.
    """
    check_time_zone(tz)
    if source_tz is not None:
        check_time_zone(source_tz)
    checks = dataclasses.replace(checks or CheckOptions(), calendar=calendar)
    report = report or CheckReport()
    raw = read_table(path)
    check_columns(raw, ("timestamp", *MINUTE_COLUMNS), ())
    stamps = parse_timestamps(raw, "timestamp", tz, source_tz)
    check_order(stamps, raw.rows, "timestamp")
    frame = pd.DataFrame({c: parse_numbers(raw, c) for c in MINUTE_COLUMNS}, index=stamps)
    with schema_errors_at(raw.rows):
        validate_ohlc(frame, raw.rows.source, MINUTE_COLUMNS, ())
    pos = np.arange(len(frame))
    check_not_future(stamps, pos, raw.rows, "timestamp", checks)
    check_minute_clock(stamps, raw.rows, tz, source_tz, has_utc_offsets(raw, "timestamp"), checks, report)
    frame, pos = check_bad_prints(frame, pos, raw.rows, PRICE_COLUMNS, checks, report)
    check_magnitudes(frame, pos, raw.rows, PRICE_COLUMNS)
    bars = MinuteBars(keep_regular_session(frame, calendar, raw.rows.source), source=raw.rows.source)
    coverage = minute_coverage(bars, calendar)
    logger.info("%s: %s", bars.source, coverage.summary())
    if fill_missing and coverage.missing_total:
        bars = fill_missing_minutes(bars, calendar)
    return bars
