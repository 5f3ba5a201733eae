"""Market data loaders: CSV/Parquet files and the ``arch`` S&P 500 + VIX data -> validated bars.

Public functions (formats, time-zone rules and reports are described in ``data/README.md``):

- :func:`load_daily` -> :class:`DailyBars` (``date,open,high,low,close[,volume][,iv]``)
- :func:`load_iv` -> ``pd.Series`` of implied vol in vol points (Cboe ``VIX_History.csv`` or ``date,iv``)
- :func:`attach_iv` joins an IV series onto daily bars by date
- :func:`load_minutes` -> :class:`MinuteBars` (regular-session minutes in exchange time)
- :func:`minute_coverage` -> :class:`MinuteCoverage` (expected vs present minutes per session)
- :func:`load_arch_spx_vix` -> :class:`DailyBars` of the S&P 500 with VIX as ``iv`` (no network)

Errors are :class:`~lab_v10.src.errors.DataValidationError` naming the file and the place: ``line N`` in a
CSV file (the header is line 1, so data row *i*, counted from 0, is line *i* + 2), ``row N`` (0-based) in
a Parquet file or an in-memory series. Nothing is silently filled or dropped: ignored columns, rows
outside the regular session, missing minutes, fills and trims are logged on the ``lab.data`` logger.
Datetime indexes have microsecond resolution (pandas' default).
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

import numpy as np
import pandas as pd

from lab_v10.src.data.calendars import check_time_zone, regular_session_minutes
from lab_v10.src.data.schema import (
    DAILY_OPTIONAL,
    MINUTE_COLUMNS,
    PRICE_COLUMNS,
    DailyBars,
    MinuteBars,
    validate_ohlc,
)
from lab_v10.src.data.store import read_parquet
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
TIME_UNIT = "us"  # resolution of every datetime index the loaders return

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_US_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")
_UTC_OFFSET_SUFFIX = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"  # "Z", "+00:00", "-0400" at the end of a timestamp
_CBOE_UNUSED = ("open", "high", "low")  # Cboe VIX_History.csv columns besides DATE and CLOSE
_SHOWN_DATES = 5  # dates listed in an error about missing IV


# ----------------------------------------------------------------------------------------------
# Reading a file into raw cells


@dataclass(frozen=True)
class _Rows:
    """Names data rows in messages: CSV line numbers (header = line 1), otherwise 0-based row numbers."""

    source: str
    csv: bool = False

    def place(self, pos: int) -> str:
        return f"line {pos + 2}" if self.csv else f"row {pos}"

    def at(self, pos: int) -> str:
        return f"{self.source}: {self.place(pos)}"


@dataclass(frozen=True)
class _RawTable:
    """A file's cells as read: column names trimmed and lower-cased; CSV cells are strings."""

    frame: pd.DataFrame
    rows: _Rows


def _read_table(path: str | Path) -> _RawTable:
    path = Path(path)
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        csv = True
    elif name.endswith(PARQUET_SUFFIXES):
        csv = False
    else:
        raise DataValidationError(
            f"{path}: unsupported file type (expected a name ending in {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})"
        )
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found")
    if csv:
        try:
            # Every cell as text, no NA guessing and no skipped lines, so data row i stays file line i + 2.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise DataValidationError(f"{path}: empty file (expected a header line and data rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise DataValidationError(f"{path}: not a readable CSV file ({exc})") from None
    else:
        frame = read_parquet(path)
        if not isinstance(frame.index, pd.RangeIndex):  # e.g. a frame stored with its date/timestamp index
            frame = frame.reset_index()
    columns = [str(c).strip().lower() for c in frame.columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataValidationError(f"{path}: column {repeated[0]!r} appears more than once (names compared case-insensitively)")
    frame.columns = columns
    if frame.empty:
        raise DataValidationError(f"{path}: no data rows (expected at least one row after the header)")
    return _RawTable(frame, _Rows(str(path), csv))


def _check_columns(raw: _RawTable, required: tuple[str, ...], optional: tuple[str, ...], unused: tuple[str, ...] = ()) -> list[str]:
    """Return the required and present optional columns; warn about the ones that will be ignored.

    ``unused`` names columns that belong to a known layout and are ignored without a warning.
    """
    present = list(raw.frame.columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise DataValidationError(
            f"{raw.rows.source}: missing column {missing[0]!r} (expected columns {', '.join(required)}"
            + (f" and optionally {', '.join(optional)}" if optional else "")
            + f"; found {', '.join(present)})"
        )
    ignored = [c for c in present if c not in required and c not in optional and c not in unused]
    if ignored:
        logger.warning("%s: ignoring columns not in the schema: %s", raw.rows.source, ", ".join(map(repr, ignored)))
    return [*required, *(c for c in optional if c in present)]


# ----------------------------------------------------------------------------------------------
# Parsing cells


def _raw_value(raw: _RawTable, column: str, pos: int) -> str:
    value = raw.frame[column].iloc[pos]
    return "a missing value" if pd.isna(value) or (isinstance(value, str) and not value.strip()) else repr(value)


def _parse_numbers(raw: _RawTable, column: str) -> np.ndarray:
    """Column as float64; DataValidationError at the first cell that is not a finite number."""
    cells = raw.frame[column]
    if pd.api.types.is_bool_dtype(cells):
        raise DataValidationError(f"{raw.rows.source}: column {column!r}: expected numbers, got booleans")
    if pd.api.types.is_numeric_dtype(cells):
        values = cells.to_numpy(dtype=float, na_value=np.nan)
    else:
        values = pd.to_numeric(cells.astype("str").str.strip(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        pos = int(bad[0])
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: expected a finite number, got {_raw_value(raw, column, pos)}"
        )
    return values


def _first_unparsed(parsed: pd.Series | pd.DatetimeIndex) -> int | None:
    bad = np.flatnonzero(np.asarray(pd.isna(parsed)))
    return int(bad[0]) if bad.size else None


def _parse_dates(raw: _RawTable, column: str) -> pd.DatetimeIndex:
    """Session dates (tz-naive, no time of day): ISO ``YYYY-MM-DD`` or ``MM/DD/YYYY`` text (the format of
    the first row applies to all rows) or a stored date/datetime column."""
    cells = raw.frame[column]
    if pd.api.types.is_datetime64_any_dtype(cells):
        parsed = pd.Series(cells)
    elif pd.api.types.is_string_dtype(cells):
        text = cells.astype("str").fillna("").str.strip()
        first = text.iloc[0]
        if _ISO_DATE.match(first):
            fmt, described = "ISO8601", "YYYY-MM-DD"
        elif _US_DATE.match(first):
            fmt, described = "%m/%d/%Y", "MM/DD/YYYY"
        else:
            raise DataValidationError(
                f"{raw.rows.at(0)}, column {column!r}: cannot read {first!r} as a date (expected YYYY-MM-DD or MM/DD/YYYY)"
            )
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        pos = _first_unparsed(parsed)
        if pos is not None:
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: cannot read {_raw_value(raw, column, pos)} as a date "
                f"(expected {described}, the format of the first data row)"
            )
    else:  # e.g. Parquet date32 cells (datetime.date objects)
        parsed = pd.to_datetime(cells, errors="coerce")
    pos = _first_unparsed(parsed)
    if pos is not None:
        raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: missing date")
    dates = pd.DatetimeIndex(parsed, name="date")
    if dates.tz is not None:
        raise DataValidationError(f"{raw.rows.source}: column {column!r}: expected dates without a time zone, got {dates.tz}")
    timed = np.flatnonzero(np.asarray(dates != dates.normalize()))
    if timed.size:
        pos = int(timed[0])
        raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: {dates[pos]} has a time of day (expected a date)")
    return dates.as_unit(TIME_UNIT)


def _localize(naive: pd.DatetimeIndex, zone: str, raw: _RawTable, column: str) -> pd.DatetimeIndex:
    """Interpret naive wall-clock times in ``zone``; times a DST change makes ambiguous or skips are errors."""
    aware = naive.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    pos = _first_unparsed(aware)
    if pos is not None:
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: {naive[pos]} is ambiguous or does not exist in {zone} "
            "(a daylight-saving change); store timestamps in UTC (source_tz='UTC') or with UTC offsets"
        )
    return aware


def _parse_timestamps(raw: _RawTable, column: str, tz: str, source_tz: str | None) -> pd.DatetimeIndex:
    """Minute start times converted to ``tz``. Text must be ISO 8601; naive times are read in ``source_tz``
    (``tz`` when None); times with a UTC offset keep it; a mix of both is an error."""
    cells = raw.frame[column]
    naive_zone = source_tz or tz
    if pd.api.types.is_datetime64_any_dtype(cells):
        stamps = pd.DatetimeIndex(cells)
        pos = _first_unparsed(stamps)
        if pos is not None:
            raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: missing timestamp")
        if stamps.tz is None:
            stamps = _localize(stamps, naive_zone, raw, column)
    else:
        text = cells.astype("str").fillna("").str.strip()
        has_offset = text.str.contains(_UTC_OFFSET_SUFFIX, regex=True).to_numpy(dtype=bool)
        odd = np.flatnonzero(has_offset != has_offset[0])
        if odd.size:
            pos = int(odd[0])
            kinds = ("with a UTC offset", "without a UTC offset")
            first_kind, odd_kind = (kinds if has_offset[0] else kinds[::-1])
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: mixed time zones: {text.iloc[pos]!r} is {odd_kind} "
                f"but the first row {text.iloc[0]!r} is {first_kind} (expected one convention for the whole file)"
            )
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(has_offset[0]))
        pos = _first_unparsed(parsed)
        if pos is not None:
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: cannot read {_raw_value(raw, column, pos)} as a timestamp "
                "(expected ISO 8601, e.g. 2024-03-08 09:30:00 or 2024-03-08T09:30:00-05:00)"
            )
        stamps = pd.DatetimeIndex(parsed)
        if stamps.tz is None:
            stamps = _localize(stamps, naive_zone, raw, column)
    stamps = pd.DatetimeIndex(stamps.tz_convert(tz), name="timestamp").as_unit(TIME_UNIT)
    off_minute = np.flatnonzero(np.asarray(stamps != stamps.floor("min")))
    if off_minute.size:
        pos = int(off_minute[0])
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: {stamps[pos]} is not on a whole minute (expected minute bar start times)"
        )
    return stamps


# ----------------------------------------------------------------------------------------------
# Checks


def _check_order(index: pd.DatetimeIndex, rows: _Rows, what: str) -> None:
    """Unique and strictly ascending (compared as instants for tz-aware times)."""
    values = index.asi8
    step = np.diff(values)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        pos = int(bad[0]) + 1
        problem = "repeats" if step[pos - 1] == 0 else "is earlier than"
        raise DataValidationError(
            f"{rows.at(pos)}: {what} {index[pos]} {problem} the one on {rows.place(pos - 1)} "
            f"(expected unique {what}s in ascending order)"
        )


def _check_positive(values: np.ndarray, rows: _Rows, column: str) -> None:
    bad = np.flatnonzero(~(values > 0))
    if bad.size:
        pos = int(bad[0])
        raise DataValidationError(f"{rows.at(pos)}, column {column!r}: value {values[pos]} (expected a finite number > 0)")


@contextlib.contextmanager
def _schema_errors_at(rows: _Rows) -> Iterator[None]:
    """Re-raise schema errors, which count rows by position, with the file's line (or row) number."""
    try:
        yield
    except DataValidationError as exc:
        message = re.sub(
            rf"^{re.escape(rows.source)}: row (\d+)", lambda m: rows.at(int(m.group(1))), str(exc), count=1
        )
        raise DataValidationError(message) from None


def _validated_iv(iv: pd.Series, source: str) -> pd.Series:
    """An in-memory IV series checked like a loaded one: tz-naive dates, ascending, unique, values > 0."""
    if not isinstance(iv, pd.Series) or not isinstance(iv.index, pd.DatetimeIndex):
        raise DataValidationError(f"{source}: expected a pandas Series indexed by date (a DatetimeIndex)")
    if iv.index.tz is not None or not (iv.index == iv.index.normalize()).all():
        raise DataValidationError(f"{source}: expected tz-naive dates without a time of day in the IV index")
    rows = _Rows(source)
    _check_order(iv.index, rows, "date")
    values = iv.to_numpy(dtype=float, na_value=np.nan)
    _check_positive(values, rows, "iv")
    return pd.Series(values, index=pd.DatetimeIndex(iv.index, name="date").as_unit(TIME_UNIT), name="iv")


# ----------------------------------------------------------------------------------------------
# Daily bars and implied vol


def load_daily(path: str | Path) -> DailyBars:
    """Daily bars from CSV or Parquet with columns ``date,open,high,low,close[,volume][,iv]``.

    Header names are trimmed and case-insensitive; other columns (e.g. ``Adj Close``) are ignored with a
    warning. Dates are ``YYYY-MM-DD`` or ``MM/DD/YYYY`` (the first row decides). Prices in price units,
    volume in shares/contracts, iv in vol points. Row *t* is known at the close of day *t*.
    """
    raw = _read_table(path)
    columns = _check_columns(raw, ("date", *PRICE_COLUMNS), DAILY_OPTIONAL)
    dates = _parse_dates(raw, "date")
    _check_order(dates, raw.rows, "date")
    frame = pd.DataFrame({c: _parse_numbers(raw, c) for c in columns if c != "date"}, index=dates)
    with _schema_errors_at(raw.rows):
        bars = DailyBars(frame, source=raw.rows.source)
    logger.info(
        "%s: %d daily bars %s..%s (columns %s)",
        raw.rows.source, len(bars), dates[0].date(), dates[-1].date(), ", ".join(frame.columns),
    )
    return bars


def load_iv(path: str | Path) -> pd.Series:
    """Implied vol per date (Series ``iv``, index ``date``; annualized, in vol points, e.g. 18.5).

    Accepts the Cboe ``VIX_History.csv`` layout ``DATE,OPEN,HIGH,LOW,CLOSE`` (iv = CLOSE; OPEN/HIGH/LOW
    are not used) or ``date,iv``, as CSV or Parquet. Values must be finite and > 0, dates unique and
    ascending.
    """
    raw = _read_table(path)
    if "iv" in raw.frame.columns:
        value_column, unused = "iv", ()
    elif "close" in raw.frame.columns:
        value_column, unused = "close", _CBOE_UNUSED
    else:
        raise DataValidationError(
            f"{raw.rows.source}: missing column 'iv' (expected date,iv or the Cboe layout DATE,OPEN,HIGH,LOW,CLOSE; "
            f"found {', '.join(raw.frame.columns)})"
        )
    _check_columns(raw, ("date", value_column), (), unused)
    dates = _parse_dates(raw, "date")
    _check_order(dates, raw.rows, "date")
    values = _parse_numbers(raw, value_column)
    _check_positive(values, raw.rows, value_column)
    logger.info("%s: %d IV values %s..%s (from column %r)", raw.rows.source, len(values), dates[0].date(), dates[-1].date(), value_column)
    return pd.Series(values, index=dates, name="iv")


def attach_iv(daily: DailyBars, iv: pd.Series, *, source: str) -> DailyBars:
    """Daily bars with an ``iv`` column taken from ``iv`` on the same date.

    Daily rows before the first or after the last IV date (outside the IV coverage) are trimmed and the
    trim is logged (row count and date range). A daily date inside the coverage without an IV value is an
    error listing the first such dates. IV dates without a daily bar (e.g. exchange holidays) are unused.
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
        shown = ", ".join(str(d.date()) for d in without_iv[:_SHOWN_DATES])
        raise DataValidationError(
            f"{source}: no IV for {len(without_iv)} daily date(s) inside its coverage {first.date()}..{last.date()}: "
            f"{shown}{', ...' if len(without_iv) > _SHOWN_DATES else ''} (expected an IV value on every daily date)"
        )
    unused = int((~iv.index.isin(kept)).sum())
    if unused:
        logger.info("%s: %d IV dates have no daily bar and are unused", source, unused)
    frame = daily.frame.loc[kept].assign(iv=iv.reindex(kept).to_numpy())
    return DailyBars(frame, source=f"{daily.source} + {source}")


def load_arch_spx_vix() -> DailyBars:
    """S&P 500 daily bars (``arch.data.sp500``, 1999-01-04..2018-12-31) with the VIX close
    (``arch.data.vix``, 2014..2019) as ``iv``, over the dates both cover. Read from files installed with
    ``arch``; no network. Prices are the index ``Close`` (``Adj Close`` is not used); volume in shares."""
    from arch.data import sp500, vix  # imported here: importing arch takes seconds and only this needs it

    spx = sp500.load().rename(columns=str.lower)
    frame = spx[list(PRICE_COLUMNS) + ["volume"]].astype(float)
    frame.index = pd.DatetimeIndex(frame.index, name="date").as_unit(TIME_UNIT)
    daily = DailyBars(frame, source="arch.data.sp500")
    vix_close = vix.load()["vix"]
    no_value = vix_close.isna()
    if no_value.any():
        logger.info(
            "arch.data.vix: %d dates without a VIX value (exchange holidays in its weekday grid) are not used",
            int(no_value.sum()),
        )
    bars = attach_iv(daily, vix_close[~no_value], source="arch.data.vix")
    logger.info("arch S&P 500 + VIX: %d daily bars %s..%s", len(bars), bars.dates[0].date(), bars.dates[-1].date())
    return bars


# ----------------------------------------------------------------------------------------------
# Minute bars


@dataclass(frozen=True)
class MinuteCoverage:
    """Regular-session minutes expected by the exchange calendar vs present in the bars.

    ``per_session``: index ``date`` (session dates from the first to the last session with a bar, each
    calendar session in between included even when it has no bar); int columns ``expected``, ``present``,
    ``missing``. ``outside_session``: bars not on a regular-session minute (0 for loader output).
    """

    per_session: pd.DataFrame
    outside_session: int

    @property
    def sessions(self) -> int:
        return len(self.per_session)

    @property
    def expected_total(self) -> int:
        return int(self.per_session["expected"].sum())

    @property
    def present_total(self) -> int:
        return int(self.per_session["present"].sum())

    @property
    def missing_total(self) -> int:
        return int(self.per_session["missing"].sum())

    @property
    def sessions_with_gaps(self) -> pd.DatetimeIndex:
        return self.per_session.index[self.per_session["missing"] > 0]

    @property
    def median_bars_per_session(self) -> float:
        return float(self.per_session["present"].median())

    def summary(self) -> str:
        return (
            f"{self.present_total} of {self.expected_total} regular-session minutes present in {self.sessions} sessions; "
            f"{self.missing_total} missing in {len(self.sessions_with_gaps)} sessions; "
            f"median {self.median_bars_per_session:g} bars per session"
            + (f"; {self.outside_session} bars outside the regular session" if self.outside_session else "")
        )


def _local_dates(index: pd.DatetimeIndex) -> np.ndarray:
    """Session date (local calendar date in the index's time zone) per timestamp, as datetime64."""
    return index.tz_localize(None).normalize().to_numpy()


def _session_grid(calendar: str, dates: np.ndarray, tz: str | tzinfo, source: str) -> pd.DatetimeIndex:
    """Regular-session minutes of the sessions from the first to the last of ``dates``."""
    try:
        return regular_session_minutes(calendar, dates.min(), dates.max(), tz).as_unit(TIME_UNIT)
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: {exc}") from None


def minute_coverage(bars: MinuteBars, calendar: str = "XNYS") -> MinuteCoverage:
    """Per-session count of regular-session minutes expected by ``calendar`` and present in ``bars``."""
    labels = bars.session_labels()
    grid = _session_grid(calendar, labels, bars.tz, bars.source)
    on_grid = bars.frame.index.isin(grid)
    expected = pd.Series(_local_dates(grid)).value_counts().sort_index()
    present = pd.Series(labels[on_grid]).value_counts().reindex(expected.index, fill_value=0)
    per_session = pd.DataFrame({"expected": expected, "present": present}).astype("int64")
    per_session["missing"] = per_session["expected"] - per_session["present"]
    per_session.index = pd.DatetimeIndex(per_session.index, name="date")
    return MinuteCoverage(per_session=per_session, outside_session=int((~on_grid).sum()))


def _keep_regular_session(frame: pd.DataFrame, calendar: str, source: str) -> pd.DataFrame:
    """Rows on regular-session minutes; the dropped rows are counted per category in a log line."""
    dates = _local_dates(frame.index)
    grid = _session_grid(calendar, dates, frame.index.tz, source)
    regular = frame.index.isin(grid)
    if not regular.any():
        raise DataValidationError(
            f"{source}: none of the {len(frame)} rows falls on a regular-session minute of calendar {calendar!r} "
            f"in time zone {frame.index.tz} (check tz/source_tz)"
        )
    dropped = ~regular
    if dropped.any():
        on_session_day = np.isin(dates, _local_dates(grid))
        logger.info(
            "%s: dropped %d of %d rows outside the regular session: %d outside regular hours on session days "
            "(pre-/post-market, after a half-day close), %d on non-session days (weekends, holidays)",
            source, int(dropped.sum()), len(frame), int((dropped & on_session_day).sum()), int((dropped & ~on_session_day).sum()),
        )
    return frame.loc[regular]


def _fill_missing_minutes(bars: MinuteBars, calendar: str) -> MinuteBars:
    """Fill each session's missing minutes after its first bar with a flat bar at the previous close of
    the same session (volume 0). Minutes before a session's first bar stay missing: filling them would
    need a later price (look-ahead) or another session's close, so they are left out and reported."""
    labels_of_bars = bars.session_labels()
    grid = _session_grid(calendar, labels_of_bars, bars.tz, bars.source)
    grid_sessions = _local_dates(grid)
    full = bars.frame.reindex(grid)
    missing = full["close"].isna().to_numpy()
    previous_close = full["close"].groupby(grid_sessions).ffill()
    fillable = missing & previous_close.notna().to_numpy()
    leading = missing & ~fillable
    for column in PRICE_COLUMNS:
        full[column] = full[column].where(~fillable, previous_close)
    full["volume"] = full["volume"].where(~fillable, 0.0)
    without_bars = np.setdiff1d(np.unique(grid_sessions), np.unique(labels_of_bars)).size
    logger.info(
        "%s: filled %d missing minutes in %d sessions with flat bars at the previous close (volume 0); "
        "left %d minutes before the first bar of %d sessions unfilled (%d of those sessions have no bar at all)",
        bars.source, int(fillable.sum()), np.unique(grid_sessions[fillable]).size,
        int(leading.sum()), np.unique(grid_sessions[leading]).size, without_bars,
    )
    return MinuteBars(full.loc[~leading], source=bars.source)


def load_minutes(
    path: str | Path,
    tz: str = "America/New_York",
    source_tz: str | None = None,
    calendar: str = "XNYS",
    fill_missing: bool = False,
) -> MinuteBars:
    """Regular-session minute bars in exchange time ``tz`` from CSV or Parquet
    (``timestamp,open,high,low,close,volume``, header case-insensitive).

    Timestamps are minute **starts** in ISO 8601. Naive ones are wall-clock times in ``source_tz`` (in
    ``tz`` when ``source_tz`` is None); ones with a UTC offset keep their offset (offsets may change with
    DST); mixing naive and offset timestamps is an error. Rows must be unique and ascending. Only minutes
    of the ``calendar``'s regular sessions are kept (XNYS: 09:30..15:59, half days 09:30..12:59, none on
    holidays); dropped rows and missing minutes are logged (see :func:`minute_coverage`). With
    ``fill_missing`` the missing minutes after each session's first bar are filled with flat bars at the
    previous close of that session (volume 0), and the fill is logged; minutes before a session's first
    bar are never filled. Zero-volume bars are valid.
    """
    check_time_zone(tz)
    if source_tz is not None:
        check_time_zone(source_tz)
    raw = _read_table(path)
    _check_columns(raw, ("timestamp", *MINUTE_COLUMNS), ())
    stamps = _parse_timestamps(raw, "timestamp", tz, source_tz)
    _check_order(stamps, raw.rows, "timestamp")
    frame = pd.DataFrame({c: _parse_numbers(raw, c) for c in MINUTE_COLUMNS}, index=stamps)
    with _schema_errors_at(raw.rows):
        validate_ohlc(frame, raw.rows.source, MINUTE_COLUMNS, ())
    bars = MinuteBars(_keep_regular_session(frame, calendar, raw.rows.source), source=raw.rows.source)
    coverage = minute_coverage(bars, calendar)
    logger.info("%s: %s", bars.source, coverage.summary())
    if fill_missing and coverage.missing_total:
        bars = _fill_missing_minutes(bars, calendar)
    return bars
