"""Dates and times against the exchange calendar: non-session rows, holes, minute clocks, overlap.

- :func:`check_daily_sessions`: daily rows on weekends/holidays of the calendar (an error, or dropped with
  ``drop_non_sessions``) and runs of missing sessions longer than ``max_missing_sessions`` (an error;
  shorter gaps are reported).
- :func:`check_minute_clock`: a minute file whose rows mostly miss the regular sessions was probably read in
  the wrong time zone; the error names the file and suggests ``--minutes-tz``.
- :func:`check_common_dates`: daily and minute files must share at least one date.
- :func:`check_minute_prices`: minute prices must agree with the daily bars of the same sessions (a split
  between split-adjusted daily bars and as-traded minutes is an error, or rescaled on request).

Messages name the file and ``line N`` / ``row N`` (:class:`~lab_v10.src.data.raw_table.Rows`); options and
the report are those of :mod:`lab_v10.src.data.plausibility`. Thresholds are documented in
``data/README.md`` ("Plausibility checks").
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from lab_v10.src.data.calendars import regular_session_minutes, sessions_in_range
from lab_v10.src.data.plausibility import CheckOptions, CheckReport, listed, place_of
from lab_v10.src.data.raw_table import TIME_UNIT, Rows
from lab_v10.src.data.schema import local_dates
from lab_v10.src.errors import DataValidationError

logger = logging.getLogger("lab.data")

SHIFT_CHECK_OUTSIDE = 0.10  # above this share of rows outside the sessions, look for a better clock shift
MAX_OUTSIDE = 0.50  # above this share the file stops the run (unless the zone was given and fits)
SHIFT_MARGIN = 0.10  # a whole-hour shift "fits better" with at least this much more of the rows inside
SHIFT_HOURS = [h for h in range(-12, 15) if h]


def _calendar(call, source: str):
    try:
        return call()
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Daily rows


def check_daily_sessions(
    frame: pd.DataFrame, pos: np.ndarray, rows: Rows, options: CheckOptions, report: CheckReport
) -> tuple[pd.DataFrame, np.ndarray]:
    """Daily rows only on sessions of ``options.calendar`` (else an error, or dropped and reported with
    ``drop_non_sessions``) and no run of more than ``max_missing_sessions`` missing sessions between the
    first and last row (an error; shorter gaps are reported)."""
    dates = frame.index
    sessions = _calendar(lambda: sessions_in_range(options.calendar, dates[0], dates[-1]), rows.source)
    sessions = sessions.as_unit(TIME_UNIT)
    off = ~dates.isin(sessions)
    if off.any():
        places = [
            f"{place_of(rows, pos, i, dates[i])} a {dates[i].day_name()}{'' if dates[i].weekday() >= 5 else ' holiday'}"
            for i in np.flatnonzero(off)
        ]
        if not options.drop_non_sessions or off.all():
            raise DataValidationError(
                f"{rows.source}: {len(places)} rows are not sessions of exchange calendar {options.calendar!r}: "
                f"{listed(places)} (expected trading days only). Pass --drop-non-sessions (data.drop_non_sessions) "
                "to drop them, or --calendar with the asset's exchange"
            )
        report.repaired(rows.source, f"dropped rows on non-sessions of {options.calendar}", "--drop-non-sessions",
                        places, dates[off])
        frame, pos, dates = frame.loc[~off], pos[~off], dates[~off]
    inside = sessions[(sessions >= dates[0]) & (sessions <= dates[-1])]
    _check_missing_sessions(dates, pos, rows, inside, options, report)
    return frame, pos


def _check_missing_sessions(dates, pos, rows: Rows, sessions: pd.DatetimeIndex, options: CheckOptions,
                            report: CheckReport) -> None:
    missing = ~sessions.isin(dates)
    if not missing.any():
        return
    # Runs of consecutive missing sessions: starts where the previous session is present.
    idx = np.flatnonzero(missing)
    starts = idx[np.r_[True, np.diff(idx) > 1]]
    ends = idx[np.r_[np.diff(idx) > 1, True]]
    lengths = ends - starts + 1
    k = int(np.argmax(lengths))
    first, last = sessions[starts[k]], sessions[ends[k]]
    before = int(np.searchsorted(dates, first)) - 1  # the row before the hole
    text = (f"{rows.source}: {int(missing.sum())} sessions of calendar {options.calendar!r} are missing between "
            f"{dates[0].date()} and {dates[-1].date()}; the longest run is {lengths[k]} sessions "
            f"{first.date()}..{last.date()}, between {place_of(rows, pos, before, dates[before])} and "
            f"{place_of(rows, pos, before + 1, dates[before + 1])}")
    if lengths[k] > options.max_missing_sessions:
        raise DataValidationError(
            f"{text} (expected at most {options.max_missing_sessions} missing in a row: the file has a hole). "
            "Fill the hole from another source, cut the file, or raise --max-missing-sessions "
            "(data.max_missing_sessions)"
        )
    report.warn(f"{text} (tolerated: at most {options.max_missing_sessions} in a row, data.max_missing_sessions)")


# ----------------------------------------------------------------------------------------------
# Minute clock


def _share_on_grid(values: np.ndarray, grid: np.ndarray) -> float:
    at = np.clip(np.searchsorted(grid, values), 0, grid.size - 1)
    return float(np.mean(grid[at] == values)) if grid.size else 0.0


def _share_of_reading(wall: pd.DatetimeIndex, zone: str, tz, grid: np.ndarray) -> float:
    """Share of rows on the grid when the wall-clock times ``wall`` are read in ``zone`` (skipped or repeated
    times count as outside)."""
    aware = wall.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").tz_convert(tz)
    ok = ~aware.isna()
    return _share_on_grid(pd.DatetimeIndex(aware[ok]).as_unit(TIME_UNIT).asi8, grid) * ok.mean()


def check_minute_clock(
    stamps: pd.DatetimeIndex, rows: Rows, tz: str, source_tz: str | None, has_offsets: bool,
    options: CheckOptions, report: CheckReport,
) -> None:
    """Stop when most rows miss the regular sessions of ``options.calendar``: the timestamps were probably
    read in the wrong time zone.

    ``stamps`` are the parsed timestamps in ``tz``; ``source_tz`` is the zone given for naive times (None:
    read as ``tz``); ``has_offsets``: the file carries UTC offsets. With more than SHIFT_CHECK_OUTSIDE of
    the rows outside, whole-hour shifts of the clock are tried. It is an error when a shift puts at least
    SHIFT_MARGIN more of the rows inside (the clock is off), or when more than MAX_OUTSIDE of the rows are
    outside and the zone was not given (no ``source_tz``, no offsets). A zone that was given and fits (no
    better shift) is only reported, as is everything with ``check_minute_sessions`` False.
    """
    if len(stamps) == 0:
        return
    days = local_dates(stamps)
    grid_index = _calendar(lambda: regular_session_minutes(options.calendar, days.min(), days.max(), tz), rows.source)
    grid = grid_index.as_unit(TIME_UNIT).asi8
    values = stamps.as_unit(TIME_UNIT).asi8
    inside = _share_on_grid(values, grid)
    outside = 1.0 - inside
    if outside <= SHIFT_CHECK_OUTSIDE:
        return
    hour = int(pd.Timedelta(hours=1) / pd.Timedelta(1, unit=TIME_UNIT))
    shifted = {h: _share_on_grid(values + h * hour, grid) for h in SHIFT_HOURS}
    best = max(shifted, key=shifted.get)
    better = shifted[best] >= inside + SHIFT_MARGIN
    explicit = source_tz is not None or has_offsets
    if not (better or outside > MAX_OUTSIDE):
        return
    if has_offsets:
        reading, alternative = "with the UTC offsets they carry", None
    elif source_tz is not None:
        reading = f"as {source_tz} (given with --minutes-tz / data.minutes_source_tz)"
        wall = stamps.tz_convert(source_tz).tz_localize(None)
        alternative = (str(tz), _share_of_reading(wall, str(tz), tz, grid)) if str(source_tz) != str(tz) else None
    else:
        reading = f"as exchange time {tz} (naive timestamps, no --minutes-tz)"
        alternative = ("UTC", _share_of_reading(stamps.tz_localize(None), "UTC", tz, grid))
    text = (f"{rows.source}: {outside:.0%} of its {len(stamps)} rows ({round(outside * len(stamps))}) fall "
            f"outside the regular sessions of calendar {options.calendar!r} with the timestamps read {reading}")
    if alternative is not None:
        text += f"; read as {alternative[0]}, {alternative[1]:.0%} would fall inside"
    if better:
        text += (f"; shifted by {best:+d} h, {shifted[best]:.0%} would, so the clock looks off (a wrong time zone)")
    else:
        text += ("; no whole-hour shift fits better, so the clock fits and the file holds mostly extended-hours "
                 "or non-session bars")
    if not options.check_minute_sessions or (explicit and not better):
        kept = "--allow-minutes-outside-session" if not options.check_minute_sessions else "the zone was given"
        report.warn(f"{text} (only the regular-session rows are kept: {kept})")
        return
    if explicit:
        remedy = ("even though the time zone was given: check --minutes-tz (or the offsets in the file); "
                  "--allow-minutes-outside-session keeps only the regular-session rows anyway")
    elif better:
        zone = ("pass --minutes-tz UTC (data.minutes_source_tz) if they are UTC"
                if alternative and alternative[1] >= shifted[best] - SHIFT_MARGIN else "")
        remedy = (f"{zone + ', or ' if zone else 'pass '}--minutes-tz with the time zone the file was written in "
                  "(expected timestamps that put most rows inside the regular sessions)")
    else:
        remedy = (f"if the timestamps are exchange time, confirm with --minutes-tz {tz}; "
                  "to keep only the regular-session rows anyway pass --allow-minutes-outside-session")
    raise DataValidationError(f"{text}: {remedy}")


# ----------------------------------------------------------------------------------------------
# Daily and minute files together


def check_common_dates(daily_dates: pd.DatetimeIndex, daily_source: str, minute_dates: pd.DatetimeIndex,
                       minutes_source: str) -> None:
    """At least one session date in both files (the books join minute and daily data by date)."""
    if daily_dates.intersection(minute_dates).empty:
        raise DataValidationError(
            f"{daily_source} and {minutes_source} have no date in common: the daily bars cover "
            f"{daily_dates[0].date()}..{daily_dates[-1].date()} ({len(daily_dates)} rows), the minute bars "
            f"{minute_dates[0].date()}..{minute_dates[-1].date()} ({len(minute_dates)} sessions) "
            "(expected files of the same asset over overlapping dates)"
        )


PRICE_SLACK = 0.02  # a minute close may sit this far (relative) outside its daily bar's [low, high]
# split ratios (new shares per old share, and reverse splits): n:1 and 1:n for n = 2..50, and 3:2, 4:3, 5:2, 5:4
SPLIT_RATIOS = sorted({float(n) for n in range(2, 51)} | {1.0 / n for n in range(2, 51)}
                      | {r for p, q in ((3, 2), (4, 3), (5, 2), (5, 4)) for r in (p / q, q / p)})
SPLIT_SNAP = 0.02  # a daily/minute close ratio within 2% of a split ratio is that split


def split_ratio(ratio: float) -> float | None:
    """The split ratio of :data:`SPLIT_RATIOS` within 2% of ``ratio``, else None (not a split)."""
    best = min(SPLIT_RATIOS, key=lambda r: abs(ratio / r - 1.0))
    return best if abs(ratio / best - 1.0) <= SPLIT_SNAP else None


def check_minute_prices(daily: pd.DataFrame, daily_source: str, minutes: pd.DataFrame, minutes_source: str,
                        rescale: bool, report: CheckReport) -> pd.DataFrame:
    """Minute prices that agree with the daily bars of the same sessions, or DataValidationError naming both
    files; returns the minute frame (rescaled where allowed).

    A session disagrees when the median of its minute closes lies outside the daily bar's ``[low, high]``
    widened by 2%. Typical cause: split-adjusted daily bars beside as-traded minutes. With ``rescale`` each
    disagreeing session whose daily/minute close ratio is within 2% of a split ratio (:data:`SPLIT_RATIOS`) gets
    its minute prices multiplied and its volume divided by that ratio (counted and reported); a session with
    no such ratio is an error either way. ``daily``: the daily frame (index date); ``minutes``: the minute
    frame (tz-aware index).
    """
    session = pd.DatetimeIndex(local_dates(minutes.index))
    typical = minutes["close"].groupby(session).median()  # (sessions,)
    last = minutes["close"].groupby(session).last()
    common = typical.index.intersection(daily.index)
    low, high = daily.loc[common, "low"], daily.loc[common, "high"]
    off = common[((typical[common] < low * (1 - PRICE_SLACK)) | (typical[common] > high * (1 + PRICE_SLACK))).to_numpy()]
    if off.empty:
        return minutes
    ratios = daily.loc[off, "close"] / last[off]  # (off,)
    splits = ratios.map(split_ratio)
    first = off[0]
    what = (f"{minutes_source} and {daily_source} disagree on {len(off)} of {len(common)} common sessions: on "
            f"{first.date()} the median minute close is {typical[first]:.4g}, outside the daily bar's range "
            f"{low[first]:.4g}..{high[first]:.4g} (daily/minute close ratio {ratios[first]:.4g})")
    unexplained = splits[splits.isna()]
    if not rescale or len(unexplained):
        if len(unexplained):
            bad = unexplained.index[0]
            hint = (f"; the ratio on {bad.date()} ({ratios[bad]:.4g}) is no split ratio: check that both files are "
                    "the same asset")
        else:
            hint = ("; a split between the files? (daily bars split-adjusted, minutes as traded) pass "
                    "--minutes-vs-daily rescale (data.minutes_vs_daily) to rescale those sessions' minutes by "
                    "the split ratio (counted, reported)")
        raise DataValidationError(what + hint)
    factor = pd.Series(splits, index=off).reindex(session).fillna(1.0).to_numpy()  # (minutes,)
    out = minutes.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column].to_numpy() * factor
    out["volume"] = out["volume"].to_numpy() / factor
    places = [f"{d.date()} x{splits[d]:g}" for d in off]
    report.repaired(minutes_source, f"rescaled minute prices by the split ratio to match {daily_source}",
                    "--minutes-vs-daily rescale", places)
    return out
