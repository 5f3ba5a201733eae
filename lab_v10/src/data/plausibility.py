"""Plausibility of loaded values: implied-vol units, bad prints, absurd magnitudes, future dates.

A check takes a parsed table (``frame``) with ``pos``, each row's position in the file, so that a message
names the file and its ``line N`` (CSV) or ``row N`` (Parquet, memory) through
:class:`~lab_v10.src.data.raw_table.Rows`. A failed check raises
:class:`~lab_v10.src.errors.DataValidationError` saying what was expected, the likely cause and the flag
that overrides or repairs it. A repair runs only when :class:`CheckOptions` asks for it, and it is counted
in :class:`CheckReport` (one WARNING log line each, and ``market.description["data_checks"]``).
Thresholds are module constants, documented in ``data/README.md`` ("Plausibility checks").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab_v10.src.data.raw_table import Rows
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")

MIN_IV, MAX_IV = 1.0, 500.0  # implied vol in vol points (OVX closed at 325 in April 2020)
IV_RV_BAND = (0.1, 10.0)  # median IV / median trailing realised vol, both annualized %
RV_WINDOW = 21  # trading days of the trailing realised vol
MIN_RV_RETURNS = 10  # fewer daily returns: the level check is skipped (logged)
BAD_PRINT_FACTOR = 5.0  # a jump by more than this factor (or less than its inverse) is suspect
REVERT_FACTOR = 2.0  # ... and a bad print when the series is back within this factor of the value before
MAX_BAD_RUN = 3  # ... within this many rows
MAX_PRICE = 1e9  # price units; larger values are corrupt cells (e.g. 1e308), not prices
MAX_VOLUME = 1e15
FUTURE_SLACK = pd.Timedelta(days=1)  # a date may be one day past today's UTC date (time zones)
_SHOWN = 5  # places listed in one message


@dataclass(frozen=True)
class CheckOptions:
    """Which checks stop a run and which repairs are allowed (built from ``DataConfig``).

    ``today``: the last plausible date (tz-naive); None means today's UTC date (set it in tests)."""

    calendar: str = "XNYS"
    check_iv_units: bool = True
    drop_bad_prints: bool = False
    drop_non_sessions: bool = False
    drop_days_without_iv: bool = False
    max_missing_sessions: int = 10
    check_minute_sessions: bool = True
    today: pd.Timestamp | None = None

    @classmethod
    def from_config(cls, cfg) -> CheckOptions:
        """Options from a ``DataConfig``."""
        return cls(
            calendar=cfg.calendar, check_iv_units=cfg.check_iv_units, drop_bad_prints=cfg.drop_bad_prints,
            drop_non_sessions=cfg.drop_non_sessions, drop_days_without_iv=cfg.iv_missing == "drop",
            max_missing_sessions=cfg.max_missing_sessions, check_minute_sessions=cfg.check_minute_sessions,
        )

    def last_date(self) -> pd.Timestamp:
        if self.today is not None:
            return pd.Timestamp(self.today) + FUTURE_SLACK
        return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + FUTURE_SLACK


@dataclass
class CheckReport:
    """Repairs made and oddities tolerated while loading; each is also logged at WARNING.

    ``dropped`` maps a source to the dates of the rows its repairs dropped (used to drop the same days from
    the daily bars when IV rows go)."""

    repairs: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, pd.DatetimeIndex] = field(default_factory=dict)

    def repaired(self, source: str, repair: str, flag: str, places: list[str], dates=None) -> None:
        shown = ", ".join(places[:_SHOWN]) + (", ..." if len(places) > _SHOWN else "")
        self.repairs.append({"file": source, "repair": repair, "rows": len(places), "flag": flag, "where": shown})
        if dates is not None:
            old = self.dropped.get(source, pd.DatetimeIndex([]))
            self.dropped[source] = old.append(pd.DatetimeIndex(dates)).unique()
        logger.warning("%s: %s: %d rows (%s): %s", source, repair, len(places), flag, shown)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        logger.warning("%s", message)

    def as_dict(self) -> dict:
        return {"repairs": list(self.repairs), "warnings": list(self.warnings)}


def listed(places: list[str]) -> str:
    """The first few of ``places`` joined, with ``...`` when there are more."""
    return ", ".join(places[:_SHOWN]) + (f", ... ({len(places)} in all)" if len(places) > _SHOWN else "")


def _when(label) -> str:
    """A date as ``YYYY-MM-DD``, a time of day as pandas prints it."""
    return str(label.date()) if isinstance(label, pd.Timestamp) and label == label.normalize() else str(label)


def place_of(rows: Rows, pos: np.ndarray, i: int, label) -> str:
    """``line N (label)`` of the row at frame position ``i``."""
    return f"{rows.place(int(pos[i]))} ({_when(label)})"


# ----------------------------------------------------------------------------------------------
# Dates


def check_not_future(index: pd.DatetimeIndex, pos: np.ndarray, rows: Rows, column: str, options: CheckOptions) -> None:
    """No date (local date for tz-aware times) after today + 1 day; a typo in the year is the usual cause."""
    dates = index.tz_localize(None).normalize() if index.tz is not None else index
    late = np.flatnonzero(dates > options.last_date())
    if late.size:
        i = int(late[0])
        raise DataValidationError(
            f"{rows.at(int(pos[i]))}, column {column!r}: {_when(index[i])} is after today "
            f"({(options.last_date() - FUTURE_SLACK).date()}) (expected observed data only; {late.size} such rows; "
            "a typo in the year?)"
        )


# ----------------------------------------------------------------------------------------------
# Bad prints and magnitudes


def bad_print_rows(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Rows of a positive series that are bad prints, and the rows after jumps that are not.

    A bad print is a run of 1..MAX_BAD_RUN rows entered by a jump of more than BAD_PRINT_FACTOR (either
    way) and left by an opposite jump back to within REVERT_FACTOR of the value before the run. A jump of
    that size into the last row or out of the first row cannot be seen to revert; it is a bad print too.
    Other large jumps (a real move, an unadjusted split) are returned as the second item, not flagged.
    """
    bad = np.zeros(values.size, dtype=bool)
    if values.size < 2:
        return bad, []
    logs = np.log(values)
    step = np.diff(logs)  # step[k]: row k -> row k + 1
    big = np.flatnonzero(np.abs(step) > np.log(BAD_PRINT_FACTOR))
    used: set[int] = set()
    for k in big:
        if k in used:
            continue
        for j in big[(big > k) & (big <= k + MAX_BAD_RUN)]:
            if np.sign(step[j]) != np.sign(step[k]) and abs(logs[j + 1] - logs[k]) < np.log(REVERT_FACTOR):
                bad[k + 1 : j + 1] = True
                used.update((int(k), int(j)))
                break
    unexplained = []
    for k in big:
        if k in used:
            continue
        if k == step.size - 1:
            bad[k + 1] = True  # into the last row
        elif k == 0:
            bad[0] = True  # out of the first row
        else:
            unexplained.append(int(k + 1))
    return bad, unexplained


def check_bad_prints(
    frame: pd.DataFrame, pos: np.ndarray, rows: Rows, columns: tuple[str, ...], options: CheckOptions,
    report: CheckReport,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a bad print (:func:`bad_print_rows`) in any of ``columns``: an error, or with
    ``options.drop_bad_prints`` dropped and reported. Large jumps that do not revert are only reported."""
    bad = np.zeros(len(frame), dtype=bool)
    first: tuple[int, str] | None = None
    jumps: dict[int, str] = {}  # row -> first column with a large jump that does not revert
    for column in columns:
        if column not in frame.columns:
            continue
        column_bad, unexplained = bad_print_rows(frame[column].to_numpy(dtype=float))
        hit = np.flatnonzero(column_bad & ~bad)
        if hit.size and (first is None or hit[0] < first[0]):
            first = (int(hit[0]), column)
        bad |= column_bad
        for i in unexplained:
            jumps.setdefault(i, column)
    for i, column in sorted(jumps.items()):
        values = frame[column].to_numpy(dtype=float)
        report.warn(
            f"{rows.source}: {place_of(rows, pos, i, frame.index[i])}, column {column!r}: {values[i]:g} is "
            f"{_factor(values[i], values[i - 1])} the row before and does not revert (kept: a real move, or a "
            "split the file is not adjusted for?)"
        )
    if first is None:
        return frame, pos
    places = [place_of(rows, pos, i, frame.index[i]) for i in np.flatnonzero(bad)]
    if options.drop_bad_prints:
        report.repaired(rows.source, "dropped bad-print rows", "--drop-bad-prints", places, frame.index[bad])
        return frame.loc[~bad], pos[~bad]
    i, column = first
    value = frame[column].iloc[i]
    around = _neighbours(frame[column].to_numpy(dtype=float), i)
    raise DataValidationError(
        f"{rows.at(int(pos[i]))}, column {column!r}: {value:g} on {_when(frame.index[i])} is a bad print ({around}; "
        f"expected no jump by more than {BAD_PRINT_FACTOR:g}x that reverts within {MAX_BAD_RUN} rows). "
        f"{len(places)} bad-print rows: {listed(places)}. Fix them, or pass --drop-bad-prints "
        "(data.drop_bad_prints) to drop them"
    )


def _factor(value: float, before: float) -> str:
    ratio = value / before
    return f"{ratio:.3g} times" if ratio >= 1 else f"1/{1 / ratio:.3g} of"


def _neighbours(values: np.ndarray, i: int) -> str:
    parts = []
    if i > 0:
        parts.append(f"{_factor(values[i], values[i - 1])} the row before, {values[i - 1]:g}")
    if i + 1 < values.size:
        parts.append(f"the row after is {values[i + 1]:g}")
    else:
        parts.append("it is the last row, so it cannot be seen to revert")
    return "; ".join(parts)


def check_magnitudes(frame: pd.DataFrame, pos: np.ndarray, rows: Rows, price_columns: tuple[str, ...]) -> None:
    """Prices below MAX_PRICE and volume below MAX_VOLUME: larger values are corrupt cells (1e308)."""
    limits = [(c, MAX_PRICE, "a price") for c in price_columns] + [("volume", MAX_VOLUME, "a volume")]
    for column, limit, what in limits:
        if column not in frame.columns:
            continue
        values = frame[column].to_numpy(dtype=float)
        over = np.flatnonzero(values >= limit)
        if over.size:
            i = int(over[0])
            raise DataValidationError(
                f"{rows.at(int(pos[i]))}, column {column!r}: {values[i]:g} is not plausible as {what} "
                f"(expected < {limit:g}; {over.size} such rows; a corrupt cell or a unit error?)"
            )


# ----------------------------------------------------------------------------------------------
# Implied vol units


def check_iv_values(values: np.ndarray, pos: np.ndarray, rows: Rows, column: str, options: CheckOptions,
                    report: CheckReport, index=None) -> None:
    """Every implied vol in [MIN_IV, MAX_IV] vol points; the message names the likely unit error.
    With ``options.check_iv_units`` False the values are kept and the finding is reported."""
    low, high = values < MIN_IV, values > MAX_IV
    if not (low.any() or high.any()):
        return
    i = int(np.flatnonzero(low | high)[0])
    median = float(np.median(values))
    count = f"{int(low.sum())} of {values.size} values are below {MIN_IV:g}" if low[i] else \
        f"{int(high.sum())} of {values.size} values are above {MAX_IV:g}"
    if MIN_IV <= median <= MAX_IV:
        cause = f"{count} while the median {median:.4g} is plausible: isolated bad values"
    elif low[i]:
        cause = f"{count} (median {median:.4g}): the file looks like fractions (0.2 for 20%); multiply by 100"
    else:
        cause = f"{count} (median {median:.4g}): the file looks like variance (vol squared) or vol x 100 (basis points)"
    where = rows.place(int(pos[i])) + (f" ({index[i].date()})" if index is not None else "")
    text = (f"{rows.source}: {where}, column {column!r}: implied vol {values[i]:g} is not plausible "
            f"(expected annualized vol in vol points, {MIN_IV:g}..{MAX_IV:g}, e.g. 18.5 for 18.5%); {cause}")
    if not options.check_iv_units:
        report.warn(f"{text} (kept: --allow-implausible-iv)")
        return
    raise DataValidationError(f"{text}; or pass --allow-implausible-iv (data.check_iv_units: false) to keep them")


def realised_vol(close: pd.Series, window: int = RV_WINDOW, days: int = 252) -> pd.Series:
    """Trailing realised vol of daily closes, annualized %: 100 sqrt(days/window sum of window squared log
    returns); NaN until ``window`` returns exist."""
    returns = np.log(close).diff()
    return 100.0 * np.sqrt(days / window * (returns ** 2).rolling(window).sum())


def check_iv_level(daily, iv_source: str, options: CheckOptions, report: CheckReport) -> None:
    """Median ``iv`` of ``daily`` (DailyBars) over median trailing realised vol of its closes, on the dates
    where both exist, must lie in IV_RV_BAND. Skipped (logged) with fewer than MIN_RV_RETURNS returns."""
    close = daily.frame["close"]
    n_returns = len(close) - 1
    if n_returns < MIN_RV_RETURNS:
        logger.info("%s: IV level check skipped: %d daily returns (needs %d)", iv_source, n_returns, MIN_RV_RETURNS)
        return
    rv = realised_vol(close, min(RV_WINDOW, n_returns)).dropna()
    iv = daily.frame["iv"].loc[rv.index]
    median_rv, median_iv = float(rv.median()), float(iv.median())
    if median_rv <= 0:
        report.warn(f"{daily.source}: closes do not move (realised vol 0); IV level check skipped")
        return
    ratio = median_iv / median_rv
    if IV_RV_BAND[0] <= ratio <= IV_RV_BAND[1]:
        logger.info("%s: median IV %.4g / median realised vol %.4g = %.3g (expected %g..%g)",
                    iv_source, median_iv, median_rv, ratio, *IV_RV_BAND)
        return
    if ratio < IV_RV_BAND[0]:
        cause = ("fractions (0.2 for 20%)" if ratio < 0.03 else "daily rather than annualized vol (x sqrt(252))"
                 if ratio < 0.1 else "a unit error")
    else:
        cause = "vol x 100 (basis points)" if ratio > 50 else "variance (vol squared) or another unit"
    text = (f"{iv_source}: median implied vol {median_iv:.4g} is {ratio:.3g} times the median {RV_WINDOW}-day "
            f"realised vol {median_rv:.4g} of the closes in {daily.source} (both annualized %, over {len(rv)} "
            f"common dates; expected a ratio in [{IV_RV_BAND[0]:g}, {IV_RV_BAND[1]:g}]): the IV looks like {cause}")
    if not options.check_iv_units:
        report.warn(f"{text} (kept: --allow-implausible-iv)")
        return
    raise DataValidationError(f"{text}; fix its unit, or pass --allow-implausible-iv (data.check_iv_units: false)")
