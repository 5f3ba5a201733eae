"""Exchange sessions from ``exchange_calendars``: which minutes are regular-session minutes.

Session dates are tz-naive normalized dates (the exchange's local trading day). Minutes are labelled by
their **start** (the calendar's ``side="left"``): the XNYS regular session 09:30-16:00 New York time has the
390 minutes 09:30..15:59, a half day (e.g. 2023-11-24) ends at 13:00 with 210 minutes, holidays have none.

A requested date range outside the dates a calendar supports (``bound_min``/``bound_max`` of its class,
e.g. XKRX before 1956) raises :class:`~lab_v10.src.errors.DataValidationError` saying so; an unknown
calendar code or time zone raises :class:`~lab_v10.src.errors.ConfigError`.
"""
from __future__ import annotations

import functools
import zoneinfo
from datetime import tzinfo

import exchange_calendars as xcals
import pandas as pd
from exchange_calendars.errors import InvalidCalendarName

from lab_v10.src.errors import ConfigError, DataValidationError

# Days added on each side of a requested range when building a calendar, so that a range of one day or
# one without sessions (a holiday, a weekend) still yields a valid calendar to slice.
_RANGE_PADDING = pd.Timedelta(days=7)


def check_time_zone(tz: str | tzinfo) -> str | tzinfo:
    """Return ``tz`` if it is a ``tzinfo`` or an IANA time zone name (e.g. "America/New_York", "UTC"),
    else raise ConfigError."""
    if isinstance(tz, tzinfo):
        return tz
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"time zone {tz!r}: unknown (expected an IANA name such as 'America/New_York' or 'UTC')") from None
    return tz


def _session_date(value, name: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        raise ConfigError(f"{name} {value!r}: expected a tz-naive session date")
    return ts.normalize()


def _calendar_bounds(calendar: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    try:
        cls = type(xcals.get_calendar(calendar))
    except InvalidCalendarName:
        raise ConfigError(
            f"exchange calendar {calendar!r}: unknown (expected an exchange_calendars code such as 'XNYS')"
        ) from None
    return cls.bound_min(), cls.bound_max()


@functools.lru_cache(maxsize=16)
def _build_calendar(calendar: str, start: pd.Timestamp, end: pd.Timestamp) -> xcals.ExchangeCalendar:
    return xcals.get_calendar(calendar, start=start, end=end, side="left")


def _bound_text(bound: pd.Timestamp | None) -> str:
    return "unbounded" if bound is None else str(bound.date())


def _schedule(calendar: str, start, end) -> tuple[xcals.ExchangeCalendar, pd.DataFrame]:
    """A ``side="left"`` calendar covering the session dates ``start..end`` and its schedule rows
    (``open``, ``break_start``, ``break_end``, ``close`` in UTC) for those sessions.

    Raises DataValidationError when the range lies outside the calendar's supported dates.
    """
    start, end = _session_date(start, "start"), _session_date(end, "end")
    if end < start:
        raise ConfigError(f"session range {start.date()}..{end.date()}: end is before start")
    bound_min, bound_max = _calendar_bounds(calendar)
    if (bound_min is not None and start < bound_min) or (bound_max is not None and end > bound_max):
        raise DataValidationError(
            f"exchange calendar {calendar!r} supports dates {_bound_text(bound_min)}..{_bound_text(bound_max)} "
            f"only; requested {start.date()}..{end.date()} is outside that range"
        )
    padded_start = start - _RANGE_PADDING if bound_min is None else max(start - _RANGE_PADDING, bound_min)
    padded_end = end + _RANGE_PADDING if bound_max is None else min(end + _RANGE_PADDING, bound_max)
    try:
        cal = _build_calendar(calendar, padded_start, padded_end)
    except ValueError as exc:
        raise DataValidationError(f"exchange calendar {calendar!r} cannot cover {start.date()}..{end.date()}: {exc}") from None
    return cal, cal.schedule.loc[start:end]


def session_bounds(calendar: str, start, end, tz: str | tzinfo) -> pd.DataFrame:
    """Regular sessions dated ``start..end`` (inclusive): index ``date`` (tz-naive session date), columns
    ``open`` (start of the first minute) and ``close`` (end of the last minute), tz-aware in ``tz``.

    For a session with a lunch break (e.g. XHKG) these are the overall open and close; the minutes from
    :func:`regular_session_minutes` exclude the break.
    """
    check_time_zone(tz)
    _, schedule = _schedule(calendar, start, end)
    return pd.DataFrame(
        {"open": schedule["open"].dt.tz_convert(tz), "close": schedule["close"].dt.tz_convert(tz)},
        index=pd.DatetimeIndex(schedule.index, name="date"),
    )


def regular_session_minutes(calendar: str, start, end, tz: str | tzinfo) -> pd.DatetimeIndex:
    """Start times of all regular-session minutes of the sessions dated ``start..end`` (inclusive), in
    ``tz``, ascending, named ``timestamp``. Empty when the range holds no session."""
    check_time_zone(tz)
    cal, schedule = _schedule(calendar, start, end)
    if schedule.empty:
        return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="timestamp").tz_convert(tz)
    minutes = cal.sessions_minutes(schedule.index[0], schedule.index[-1])
    return pd.DatetimeIndex(minutes.tz_convert(tz), name="timestamp")


def sessions_in_range(calendar: str, start, end) -> pd.DatetimeIndex:
    """Session dates (tz-naive, ascending, named ``date``) of ``calendar`` from ``start`` to ``end`` inclusive."""
    _, schedule = _schedule(calendar, start, end)
    sessions = pd.DatetimeIndex(schedule.index, name="date")
    return sessions if sessions.tz is None else sessions.tz_localize(None)
