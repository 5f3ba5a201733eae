"""Minute bars against the exchange calendar's regular-session minutes: coverage, trimming, gap filling.

Session dates are the local calendar dates of the bars' time zone; the regular-session grid comes from
:func:`~lab_v10.src.data.calendars.regular_session_minutes` (minutes labelled by their start). Trimming and
filling are logged on the ``lab.data`` logger.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import tzinfo

import numpy as np
import pandas as pd

from lab_v10.src.data.calendars import regular_session_minutes
from lab_v10.src.data.raw_table import TIME_UNIT
from lab_v10.src.data.schema import PRICE_COLUMNS, MinuteBars, local_dates
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")


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
    expected = pd.Series(local_dates(grid)).value_counts().sort_index()
    present = pd.Series(labels[on_grid]).value_counts().reindex(expected.index, fill_value=0)
    per_session = pd.DataFrame({"expected": expected, "present": present}).astype("int64")
    per_session["missing"] = per_session["expected"] - per_session["present"]
    per_session.index = pd.DatetimeIndex(per_session.index, name="date")
    return MinuteCoverage(per_session=per_session, outside_session=int((~on_grid).sum()))


def keep_regular_session(frame: pd.DataFrame, calendar: str, source: str) -> pd.DataFrame:
    """Rows of ``frame`` (tz-aware index) on regular-session minutes of ``calendar``; the dropped rows are
    counted per category in a log line. DataValidationError when no row is on one."""
    dates = local_dates(frame.index)
    grid = _session_grid(calendar, dates, frame.index.tz, source)
    regular = frame.index.isin(grid)
    if not regular.any():
        raise DataValidationError(
            f"{source}: none of the {len(frame)} rows falls on a regular-session minute of calendar {calendar!r} "
            f"in time zone {frame.index.tz} (check tz/source_tz)"
        )
    dropped = ~regular
    if dropped.any():
        on_session_day = np.isin(dates, local_dates(grid))
        logger.info(
            "%s: dropped %d of %d rows outside the regular session: %d outside regular hours on session days "
            "(pre-/post-market, after a half-day close), %d on non-session days (weekends, holidays)",
            source, int(dropped.sum()), len(frame), int((dropped & on_session_day).sum()), int((dropped & ~on_session_day).sum()),
        )
    return frame.loc[regular]


def fill_missing_minutes(bars: MinuteBars, calendar: str) -> MinuteBars:
    """Fill each session's missing minutes after its first bar with a flat bar at the previous close of
    the same session (volume 0). Minutes before a session's first bar stay missing: filling them would
    need a later price (look-ahead) or another session's close, so they are left out and reported."""
    labels_of_bars = bars.session_labels()
    grid = _session_grid(calendar, labels_of_bars, bars.tz, bars.source)
    grid_sessions = local_dates(grid)
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

