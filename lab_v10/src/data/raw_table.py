"""Reading a CSV or Parquet file into typed columns, with errors that name the file and the place.

:func:`read_table` returns the cells as read (:class:`RawTable`); ``parse_*`` turn one column into numbers,
session dates or minute timestamps; ``check_*`` test a parsed column. Every failure is a
:class:`~lab_v10.src.errors.DataValidationError` naming the file and the place (:class:`Rows`): ``line N``
in a CSV file (the header is line 1, so data row *i*, counted from 0, is line *i* + 2), ``row N``
(0-based) in a Parquet file or an in-memory series. Datetime results have microsecond resolution
(:data:`TIME_UNIT`).
"""
from __future__ import annotations

import contextlib
import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lab_v10.src.data.schema import first_true
from lab_v10.src.data.store import read_parquet
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
TIME_UNIT = "us"  # resolution of every datetime index the loaders return

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_US_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")
_TAIL_BYTES = 1 << 16  # bytes read from the end of a CSV file to count its trailing blank lines
_UTC_OFFSET_SUFFIX = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"  # "Z", "+00:00", "-0400" at the end of a timestamp


# ----------------------------------------------------------------------------------------------
# Reading a file into raw cells


@dataclass(frozen=True)
class Rows:
    """Names data rows in messages: CSV line numbers (header = line 1), otherwise 0-based row numbers."""

    source: str
    csv: bool = False

    def place(self, pos: int) -> str:
        return f"line {pos + 2}" if self.csv else f"row {pos}"

    def at(self, pos: int) -> str:
        return f"{self.source}: {self.place(pos)}"


@dataclass(frozen=True)
class RawTable:
    """A file's cells as read: column names trimmed and lower-cased; CSV cells are strings."""

    frame: pd.DataFrame
    rows: Rows


def read_table(path: str | Path) -> RawTable:
    """The cells of a ``.csv``/``.csv.gz`` (all text, no NA guessing, blank lines kept so that data row i
    is line i + 2) or ``.parquet``/``.pq`` file (a stored index becomes columns). Errors: unsupported
    suffix, file not found, empty or unreadable file, a column name repeated, no data rows."""
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
        frame = _without_trailing_blank_lines(frame, path)
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
    return RawTable(frame, Rows(str(path), csv))


def _trailing_blank_lines(path: Path) -> int:
    """Number of whitespace-only lines at the end of the text file ``path`` (gzip-compressed for .gz)."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            tail = handle.read()[-_TAIL_BYTES:]
    else:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - _TAIL_BYTES, 0))
            tail = handle.read()
    lines = tail.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    count = 0
    while count < len(lines) - 1 and not lines[len(lines) - 1 - count].strip():
        count += 1
    return count


def _without_trailing_blank_lines(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` less the empty rows that come from blank lines at the very end of the file (an editor's
    extra newline). A blank line between data rows stays and is reported by the parsers as a missing value."""
    empty_tail = 0
    while empty_tail < len(frame) and all(not str(cell).strip() for cell in frame.iloc[len(frame) - 1 - empty_tail]):
        empty_tail += 1
    drop = min(empty_tail, _trailing_blank_lines(path)) if empty_tail else 0
    if drop:
        logger.info("%s: ignored %d blank line(s) at the end of the file", path, drop)
    return frame.iloc[: len(frame) - drop]


def check_columns(raw: RawTable, required: tuple[str, ...], optional: tuple[str, ...], unused: tuple[str, ...] = ()) -> list[str]:
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


def _raw_value(raw: RawTable, column: str, pos: int) -> str:
    value = raw.frame[column].iloc[pos]
    return "a missing value" if pd.isna(value) or (isinstance(value, str) and not value.strip()) else repr(value)


def parse_numbers(raw: RawTable, column: str) -> np.ndarray:
    """Column as float64; DataValidationError at the first cell that is not a finite number."""
    cells = raw.frame[column]
    if pd.api.types.is_bool_dtype(cells):
        raise DataValidationError(f"{raw.rows.source}: column {column!r}: expected numbers, got booleans")
    if pd.api.types.is_numeric_dtype(cells):
        values = cells.to_numpy(dtype=float, na_value=np.nan)
    else:
        values = pd.to_numeric(cells.astype("str").str.strip(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    pos = first_true(~np.isfinite(values))
    if pos is not None:
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: expected a finite number, got {_raw_value(raw, column, pos)}"
        )
    return values


def parse_dates(raw: RawTable, column: str) -> pd.DatetimeIndex:
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
        pos = first_true(pd.isna(parsed))
        if pos is not None:
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: cannot read {_raw_value(raw, column, pos)} as a date "
                f"(expected {described}, the format of the first data row)"
            )
    else:  # e.g. Parquet date32 cells (datetime.date objects)
        parsed = pd.to_datetime(cells, errors="coerce")
    pos = first_true(pd.isna(parsed))
    if pos is not None:
        raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: missing date")
    dates = pd.DatetimeIndex(parsed, name="date")
    if dates.tz is not None:
        raise DataValidationError(f"{raw.rows.source}: column {column!r}: expected dates without a time zone, got {dates.tz}")
    pos = first_true(dates != dates.normalize())
    if pos is not None:
        raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: {dates[pos]} has a time of day (expected a date)")
    return dates.as_unit(TIME_UNIT)


def has_utc_offsets(raw: RawTable, column: str) -> bool:
    """True when the timestamps carry their own UTC offsets (text ending in an offset, or tz-aware stored
    times); :func:`parse_timestamps` has checked that all rows agree."""
    cells = raw.frame[column]
    if pd.api.types.is_datetime64_any_dtype(cells):
        return getattr(cells.dtype, "tz", None) is not None
    return bool(re.search(_UTC_OFFSET_SUFFIX, str(cells.iloc[0]).strip()))


def _localize(naive: pd.DatetimeIndex, zone: str, raw: RawTable, column: str) -> pd.DatetimeIndex:
    """Interpret naive wall-clock times in ``zone``; times a DST change makes ambiguous or skips are errors."""
    aware = naive.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    pos = first_true(pd.isna(aware))
    if pos is not None:
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: {naive[pos]} is ambiguous or does not exist in {zone} "
            "(a daylight-saving change); store timestamps in UTC (source_tz='UTC') or with UTC offsets"
        )
    return aware


def parse_timestamps(raw: RawTable, column: str, tz: str, source_tz: str | None) -> pd.DatetimeIndex:
    """Minute start times converted to ``tz``. Text must be ISO 8601; naive times are read in ``source_tz``
    (``tz`` when None); times with a UTC offset keep it; a mix of both is an error."""
    cells = raw.frame[column]
    naive_zone = source_tz or tz
    if pd.api.types.is_datetime64_any_dtype(cells):
        stamps = pd.DatetimeIndex(cells)
        pos = first_true(pd.isna(stamps))
        if pos is not None:
            raise DataValidationError(f"{raw.rows.at(pos)}, column {column!r}: missing timestamp")
        if stamps.tz is None:
            stamps = _localize(stamps, naive_zone, raw, column)
    else:
        text = cells.astype("str").fillna("").str.strip()
        has_offset = text.str.contains(_UTC_OFFSET_SUFFIX, regex=True).to_numpy(dtype=bool)
        pos = first_true(has_offset != has_offset[0])
        if pos is not None:
            kinds = ("with a UTC offset", "without a UTC offset")
            first_kind, odd_kind = (kinds if has_offset[0] else kinds[::-1])
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: mixed time zones: {text.iloc[pos]!r} is {odd_kind} "
                f"but the first row {text.iloc[0]!r} is {first_kind} (expected one convention for the whole file)"
            )
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(has_offset[0]))
        pos = first_true(pd.isna(parsed))
        if pos is not None:
            raise DataValidationError(
                f"{raw.rows.at(pos)}, column {column!r}: cannot read {_raw_value(raw, column, pos)} as a timestamp "
                "(expected ISO 8601, e.g. 2024-03-08 09:30:00 or 2024-03-08T09:30:00-05:00)"
            )
        stamps = pd.DatetimeIndex(parsed)
        if stamps.tz is None:
            stamps = _localize(stamps, naive_zone, raw, column)
    stamps = pd.DatetimeIndex(stamps.tz_convert(tz), name="timestamp").as_unit(TIME_UNIT)
    pos = first_true(stamps != stamps.floor("min"))
    if pos is not None:
        raise DataValidationError(
            f"{raw.rows.at(pos)}, column {column!r}: {stamps[pos]} is not on a whole minute (expected minute bar start times)"
        )
    return stamps


# ----------------------------------------------------------------------------------------------
# Checks


def check_order(index: pd.DatetimeIndex, rows: Rows, what: str) -> None:
    """Unique and strictly ascending (compared as instants for tz-aware times)."""
    values = index.asi8
    step = np.diff(values)
    first = first_true(step <= 0)
    if first is not None:
        pos = first + 1
        problem = "repeats" if step[pos - 1] == 0 else "is earlier than"
        raise DataValidationError(
            f"{rows.at(pos)}: {what} {index[pos]} {problem} the one on {rows.place(pos - 1)} "
            f"(expected unique {what}s in ascending order)"
        )


def check_positive(values: np.ndarray, rows: Rows, column: str) -> None:
    """Every value > 0 (NaN fails)."""
    pos = first_true(~(values > 0))
    if pos is not None:
        raise DataValidationError(f"{rows.at(pos)}, column {column!r}: value {values[pos]} (expected a finite number > 0)")


@contextlib.contextmanager
def schema_errors_at(rows: Rows) -> Iterator[None]:
    """Re-raise schema errors, which count rows by position, with the file's line (or row) number."""
    try:
        yield
    except DataValidationError as exc:
        message = re.sub(
            rf"^{re.escape(rows.source)}: row (\d+)", lambda m: rows.at(int(m.group(1))), str(exc), count=1
        )
        raise DataValidationError(message) from None
