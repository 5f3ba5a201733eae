"""Validated bar tables: :class:`DailyBars` and :class:`MinuteBars`.

Both wrap a pandas DataFrame and validate it on construction; every downstream stage takes these types and
never re-reads raw files.

- ``DailyBars.frame``: index ``date`` (tz-naive, normalized session dates, sorted, unique); float columns
  ``open high low close`` (price units), optional ``volume`` (shares/contracts, >= 0) and optional ``iv``
  (annualized 30-day ATM implied vol in vol points, e.g. VIX 18.5 = 18.5%). Row *t* is known at the close
  of day *t*.
- ``MinuteBars.frame``: index ``timestamp`` (tz-aware exchange time, sorted, unique, one time zone); float
  columns ``open high low close volume``. The timestamp labels the *start* of the minute; row *m* is known
  at the close of that minute. Only regular-session minutes are kept after loading.

Validation errors are :class:`~lab_v10.src.errors.DataValidationError` and name the source, the row
(position and index label) and the column, and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab_v10.src.errors import DataValidationError

PRICE_COLUMNS = ("open", "high", "low", "close")
DAILY_OPTIONAL = ("volume", "iv")
MINUTE_COLUMNS = (*PRICE_COLUMNS, "volume")


def _row_ref(frame: pd.DataFrame, pos: int) -> str:
    return f"row {pos} ({frame.index[pos]})"


def local_dates(index: pd.DatetimeIndex) -> np.ndarray:
    """Session date of each timestamp: its local calendar date in the index's time zone, as tz-naive
    datetime64 in the index's resolution, aligned with ``index``."""
    return index.tz_localize(None).normalize().to_numpy()


def first_true(mask) -> int | None:
    """Position of the first True in a boolean array, Series or index; None when there is none."""
    idx = np.flatnonzero(np.asarray(mask))
    return int(idx[0]) if idx.size else None


def validate_ohlc(frame: pd.DataFrame, source: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """Check columns, index order/uniqueness, finite positive prices, OHLC consistency, volume >= 0.

    Raises DataValidationError naming ``source``, the row and the column. ``frame`` is not modified.
    """
    if len(frame) == 0:
        raise DataValidationError(f"{source}: no rows (expected at least one bar)")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column {missing[0]!r} (expected columns {', '.join(required)}"
            + (f" and optionally {', '.join(optional)}" if optional else "")
            + f"; got {', '.join(map(str, frame.columns))})"
        )
    extra = [c for c in frame.columns if c not in required and c not in optional]
    if extra:
        raise DataValidationError(f"{source}: unexpected column {extra[0]!r} (expected {', '.join(required + optional)})")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataValidationError(f"{source}: index must be a DatetimeIndex, got {type(index).__name__}")
    if index.hasnans:
        pos = first_true(np.asarray(index.isna()))
        raise DataValidationError(f"{source}: row {pos}: missing timestamp (expected a date/time)")
    values = index.asi8
    dup = first_true(np.r_[False, values[1:] == values[:-1]])
    if dup is not None:
        raise DataValidationError(f"{source}: {_row_ref(frame, dup)}: duplicate timestamp (expected unique timestamps)")
    back = first_true(np.r_[False, values[1:] < values[:-1]])
    if back is not None:
        raise DataValidationError(
            f"{source}: {_row_ref(frame, back)}: timestamp earlier than the row before "
            f"({index[back - 1]}) (expected sorted ascending)"
        )
    for col in (*required, *optional):
        if col not in frame.columns:
            continue
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            raise DataValidationError(f"{source}: column {col!r}: expected numbers, got dtype {frame[col].dtype}")
        arr = frame[col].to_numpy(dtype=float)
        bad = first_true(~np.isfinite(arr))
        if bad is not None:
            raise DataValidationError(
                f"{source}: {_row_ref(frame, bad)}, column {col!r}: value {arr[bad]} (expected a finite number)"
            )
        is_price = col in PRICE_COLUMNS or col == "iv"
        bad = first_true(arr <= 0) if is_price else first_true(arr < 0)
        if bad is not None:
            expect = "> 0" if is_price else ">= 0"
            raise DataValidationError(f"{source}: {_row_ref(frame, bad)}, column {col!r}: value {arr[bad]} (expected {expect})")
    o, h, lo, c = (frame[k].to_numpy(dtype=float) for k in PRICE_COLUMNS)
    bad = first_true(h < lo)
    if bad is not None:
        raise DataValidationError(f"{source}: {_row_ref(frame, bad)}: high {h[bad]} < low {lo[bad]} (expected high >= low)")
    bad = first_true(lo > np.minimum(o, c))
    if bad is not None:
        raise DataValidationError(
            f"{source}: {_row_ref(frame, bad)}, column 'low': {lo[bad]} above min(open, close) "
            f"{min(o[bad], c[bad])} (expected low <= min(open, close))"
        )
    bad = first_true(h < np.maximum(o, c))
    if bad is not None:
        raise DataValidationError(
            f"{source}: {_row_ref(frame, bad)}, column 'high': {h[bad]} below max(open, close) "
            f"{max(o[bad], c[bad])} (expected high >= max(open, close))"
        )


@dataclass(frozen=True)
class DailyBars:
    """Daily bars indexed by session date. See module docstring for units and time semantics."""

    frame: pd.DataFrame
    source: str = "<memory>"

    def __post_init__(self) -> None:
        validate_ohlc(self.frame, self.source, PRICE_COLUMNS, DAILY_OPTIONAL)
        idx = self.frame.index
        if idx.tz is not None:
            raise DataValidationError(f"{self.source}: daily index must be tz-naive session dates, got tz {idx.tz}")
        if not (idx == idx.normalize()).all():
            pos = first_true(np.asarray(idx != idx.normalize()))
            raise DataValidationError(f"{self.source}: {_row_ref(self.frame, pos)}: expected a date without time of day")
        if self.frame.index.name != "date":
            object.__setattr__(self, "frame", self.frame.rename_axis("date"))

    @property
    def has_iv(self) -> bool:
        return "iv" in self.frame.columns

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.frame.index

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class MinuteBars:
    """Regular-session minute bars in exchange time. See module docstring for units and time semantics."""

    frame: pd.DataFrame
    source: str = "<memory>"

    def __post_init__(self) -> None:
        idx = self.frame.index
        if isinstance(idx, pd.DatetimeIndex) and idx.tz is None:
            raise DataValidationError(
                f"{self.source}: minute timestamps must be time-zone aware (exchange time); "
                "pass source_tz to the loader to interpret naive timestamps"
            )
        validate_ohlc(self.frame, self.source, MINUTE_COLUMNS, ())
        if self.frame.index.name != "timestamp":
            object.__setattr__(self, "frame", self.frame.rename_axis("timestamp"))

    @property
    def tz(self):
        return self.frame.index.tz

    @property
    def session_dates(self) -> pd.DatetimeIndex:
        """Unique session dates (tz-naive, normalized), ascending."""
        return pd.DatetimeIndex(self.frame.index.tz_localize(None).normalize().unique(), name="date")

    def session_labels(self) -> np.ndarray:
        """Per-row session date (tz-naive datetime64, :func:`local_dates`), aligned with ``frame``."""
        return local_dates(self.frame.index)

    def day(self, date) -> pd.DataFrame:
        """The minute rows of one session date; DataValidationError if the day has no bars."""
        date = pd.Timestamp(date).normalize()
        mask = self.session_labels() == date.to_datetime64()
        if not mask.any():
            raise DataValidationError(f"{self.source}: no minute bars for session {date.date()}")
        return self.frame.loc[mask]

    def __len__(self) -> int:
        return len(self.frame)
