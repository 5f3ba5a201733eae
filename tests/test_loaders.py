"""Market data loaders: every bad input gives a DataValidationError naming the file and the line or column;
good inputs load with the right time zones, sessions, coverage reports and fills."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.data.calendars import regular_session_minutes, session_bounds
from lab_v10.src.data.loaders import (
    attach_iv,
    load_arch_spx_vix,
    load_daily,
    load_iv,
    load_minutes,
)
from lab_v10.src.data.schema import DailyBars
from lab_v10.src.data.sessions import minute_coverage
from lab_v10.src.errors import ConfigError, DataValidationError

NY = "America/New_York"
DAILY_HEADER = "date,open,high,low,close,volume"
DAILY_ROWS = [
    "2024-01-02,100,102,99,101,1000",
    "2024-01-03,101,103,100,102,1100",
    "2024-01-04,102,104,101,103,1200",
]


def write(tmp_path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def daily_with(tmp_path, row_index: int, row: str, name: str = "daily.csv") -> str:
    """The good daily file with data row ``row_index`` (0-based; file line row_index + 2) replaced."""
    rows = list(DAILY_ROWS)
    rows[row_index] = row
    return write(tmp_path, name, [DAILY_HEADER, *rows])


def minute_csv(tmp_path, stamps: list[str] | pd.DatetimeIndex, name: str = "minutes.csv", volume: float = 100.0) -> str:
    """A minute file with the given timestamp strings and a slowly rising price."""
    n = len(stamps)
    close = 50.0 + 0.01 * np.arange(n)
    frame = pd.DataFrame(
        {"timestamp": [str(s) for s in stamps], "open": close, "high": close + 0.02, "low": close - 0.02,
         "close": close, "volume": volume}
    )
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def session_minutes(date: str, start: str = "09:30", end: str = "15:59", tz: str | None = None) -> pd.DatetimeIndex:
    return pd.date_range(f"{date} {start}", f"{date} {end}", freq="min", tz=tz)


def naive_strings(index: pd.DatetimeIndex) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M:%S") for t in index]


def assert_error(call, *fragments: str) -> str:
    """The one-line DataValidationError of ``call()``, checked to contain every fragment."""
    with pytest.raises(DataValidationError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------
# Daily bars: bad input


def test_daily_missing_file(tmp_path):
    assert_error(lambda: load_daily(tmp_path / "nope.csv"), "nope.csv", "not found")


def test_daily_unsupported_extension(tmp_path):
    path = write(tmp_path, "daily.txt", [DAILY_HEADER, *DAILY_ROWS])
    assert_error(lambda: load_daily(path), "daily.txt", "unsupported file type", ".parquet")


def test_daily_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert_error(lambda: load_daily(path), "empty.csv", "empty file")


def test_daily_header_only(tmp_path):
    path = write(tmp_path, "header.csv", [DAILY_HEADER])
    assert_error(lambda: load_daily(path), "header.csv", "no data rows")


def test_daily_missing_column(tmp_path):
    path = write(tmp_path, "noclose.csv", ["date,open,high,low", "2024-01-02,100,102,99"])
    assert_error(lambda: load_daily(path), "noclose.csv", "missing column 'close'", "found date, open, high, low")


# One data row of the good daily file replaced (row index 0-based; file line = index + 2) -> the error
# names daily.csv and these fragments.
BAD_DAILY_ROWS = [
    pytest.param(1, "2024-13-45,101,103,100,102,1100", ("line 3", "column 'date'", "'2024-13-45'", "YYYY-MM-DD"),
                 id="unparseable_date"),
    pytest.param(0, "Jan 2 2024,100,102,99,101,1000", ("line 2", "'Jan 2 2024'", "MM/DD/YYYY"),
                 id="unrecognized_date_format_names_first_line"),
    pytest.param(2, "01/04/2024,102,104,101,103,1200", ("line 4", "'01/04/2024'", "format of the first data row"),
                 id="mixed_date_formats"),
    pytest.param(1, "2024-01-03 15:00,101,103,100,102,1100", ("line 3", "time of day"), id="date_with_time_of_day"),
    pytest.param(1, "2024-01-03,101,abc,100,102,1100", ("line 3", "column 'high'", "'abc'"), id="unparseable_number"),
    *(
        pytest.param(2, f"2024-01-04,102,104,101,{cell},1200", ("line 4", "column 'close'", "finite number"),
                     id=f"non_finite_price_{cell or 'empty'}")
        for cell in ("NaN", "", "inf")
    ),
    pytest.param(1, "2024-01-03,101,103,100", ("line 3", "column 'close'", "missing value"),
                 id="missing_field_in_short_row"),
    pytest.param(2, "2024-01-03,102,104,101,103,1200", ("line 4", "repeats", "line 3"), id="duplicate_date"),
    pytest.param(2, "2024-01-01,102,104,101,103,1200", ("line 4", "earlier than", "line 3"), id="unsorted"),
    pytest.param(1, "2024-01-03,101,103,0,102,1100", ("line 3", "column 'low'", "> 0"), id="non_positive_price"),
    pytest.param(2, "2024-01-04,102,100,101.5,101,1200", ("line 4", "high 100.0 < low 101.5"), id="high_below_low"),
    pytest.param(0, "2024-01-02,100,102,100.5,101,1000", ("line 2", "column 'low'", "min(open, close)"),
                 id="low_above_open_close"),
    pytest.param(0, "2024-01-02,100,100.5,99,101,1000", ("line 2", "column 'high'", "max(open, close)"),
                 id="high_below_open_close"),
    pytest.param(1, "2024-01-03,101,103,100,102,-5", ("line 3", "column 'volume'", ">= 0"), id="negative_volume"),
]


@pytest.mark.parametrize(("row_index", "row", "fragments"), BAD_DAILY_ROWS)
def test_daily_bad_row(tmp_path, row_index, row, fragments):
    path = daily_with(tmp_path, row_index, row)
    assert_error(lambda: load_daily(path), "daily.csv", *fragments)


def test_daily_blank_line_is_reported(tmp_path):
    path = write(tmp_path, "blank.csv", [DAILY_HEADER, DAILY_ROWS[0], "", *DAILY_ROWS[1:]])
    assert_error(lambda: load_daily(path), "blank.csv", "line 3", "column 'date'")


def test_daily_duplicate_column_after_normalizing(tmp_path):
    path = write(tmp_path, "dup.csv", ["date,open,high,low,close,Close", "2024-01-02,100,102,99,101,101"])
    assert_error(lambda: load_daily(path), "dup.csv", "'close' appears more than once")


def test_daily_parquet_errors_name_rows(tmp_path):
    frame = pd.DataFrame(
        {"date": ["2024-01-02", "2024-01-03"], "open": [100.0, 101.0], "high": [102.0, 99.0],
         "low": [99.0, 100.0], "close": [101.0, 100.5]}
    )
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    assert_error(lambda: load_daily(path), "bad.parquet", "row 1", "high 99.0 < low 100.0")


# ----------------------------------------------------------------------------------------------
# Daily bars and IV: good input


def test_daily_headers_case_and_whitespace_us_dates_and_ignored_columns(tmp_path, caplog):
    path = write(
        tmp_path,
        "spy.csv",
        [" Date , OPEN,High ,low, Close ,Adj Close,VOLUME",
         "01/02/2024,100,102,99,101,100.5,1000",
         "01/03/2024, 101 ,103,100,102,101.5,0"],
    )
    with caplog.at_level(logging.WARNING, logger="lab.data"):
        bars = load_daily(path)
    assert isinstance(bars, DailyBars)
    assert list(bars.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert list(bars.dates) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert bars.frame.index.name == "date"
    assert bars.frame.loc["2024-01-03", "open"] == 101.0
    assert bars.frame.loc["2024-01-03", "volume"] == 0.0  # zero volume is valid
    warned = [r.getMessage() for r in caplog.records if r.name == "lab.data" and r.levelno == logging.WARNING]
    assert any("'adj close'" in m and "spy.csv" in m for m in warned)


def test_daily_with_iv_column_and_gzip(tmp_path):
    import gzip

    path = tmp_path / "daily.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("date,open,high,low,close,iv\n2024-01-02,100,102,99,101,13.2\n2024-01-03,101,103,100,102,14.1\n")
    bars = load_daily(path)
    assert bars.has_iv
    np.testing.assert_array_equal(bars.frame["iv"].to_numpy(), [13.2, 14.1])


def test_daily_parquet_with_date_objects(tmp_path):
    import datetime

    frame = pd.DataFrame(
        {"Date": [datetime.date(2024, 1, 2), datetime.date(2024, 1, 3)], "Open": [100.0, 101.0],
         "High": [102.0, 103.0], "Low": [99.0, 100.0], "Close": [101.0, 102.0]}
    )
    frame.to_parquet(tmp_path / "daily.pq")  # pyarrow stores the dates as date32
    bars = load_daily(tmp_path / "daily.pq")
    assert list(bars.dates) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    np.testing.assert_array_equal(bars.frame["close"].to_numpy(), [101.0, 102.0])


def test_load_iv_date_iv_layout_and_parquet(tmp_path):
    csv = write(tmp_path, "iv.csv", ["date,iv", "2024-01-02,13.2", "2024-01-03,14.1"])
    from_csv = load_iv(csv)
    assert from_csv.name == "iv" and from_csv.index.name == "date"
    assert from_csv.to_dict() == {pd.Timestamp("2024-01-02"): 13.2, pd.Timestamp("2024-01-03"): 14.1}
    pq = tmp_path / "iv.parquet"
    from_csv.to_frame().to_parquet(pq)  # stored with its date index
    pd.testing.assert_series_equal(load_iv(pq), from_csv)


def test_load_iv_rejects_non_positive_and_duplicates(tmp_path):
    zero = write(tmp_path, "zero.csv", ["DATE,OPEN,HIGH,LOW,CLOSE", "01/02/1990,17,17,17,17", "01/03/1990,18,18,18,0"])
    assert_error(lambda: load_iv(zero), "zero.csv", "line 3", "column 'close'", "> 0")
    dup = write(tmp_path, "dup.csv", ["date,iv", "2024-01-02,13", "2024-01-02,14"])
    assert_error(lambda: load_iv(dup), "dup.csv", "line 3", "repeats")
    none = write(tmp_path, "none.csv", ["date,value", "2024-01-02,13"])
    assert_error(lambda: load_iv(none), "none.csv", "missing column 'iv'")


def test_load_iv_real_vix_history(shared_data_dir):
    iv = load_iv(shared_data_dir / "VIX_History.csv")
    assert len(iv) == 8249
    assert iv.index[0] == pd.Timestamp("1990-01-02") and iv.index[-1] == pd.Timestamp("2022-09-27")
    assert iv.index.is_monotonic_increasing and iv.index.is_unique
    assert (iv > 0).all() and np.isfinite(iv.to_numpy()).all()
    assert iv.loc["2022-09-27"] == 32.6  # the file's last CLOSE
    assert 9.0 < iv.min() and iv.max() < 90.0  # VIX's historical range (record close 82.69 in 2020)


def _daily_bars(dates: list[str]) -> DailyBars:
    n = len(dates)
    close = 100.0 + np.arange(n)
    frame = pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close},
        index=pd.DatetimeIndex(dates, name="date"),
    )
    return DailyBars(frame, source="daily.csv")


def test_attach_iv_trims_outside_coverage_and_logs(caplog):
    daily = _daily_bars(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"])
    iv = pd.Series([12.0, 13.0, 14.0, 15.0], index=pd.DatetimeIndex(["2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06"]))
    with caplog.at_level(logging.INFO, logger="lab.data"):
        bars = attach_iv(daily, iv, source="iv.csv")
    assert list(bars.dates) == list(pd.DatetimeIndex(["2024-01-03", "2024-01-04", "2024-01-05"]))
    np.testing.assert_array_equal(bars.frame["iv"].to_numpy(), [12.0, 13.0, 14.0])
    np.testing.assert_array_equal(bars.frame["close"].to_numpy(), [101.0, 102.0, 103.0])
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "trimmed 1 daily rows 2024-01-02..2024-01-02 before the first IV date 2024-01-03" in messages
    assert "trimmed 1 daily rows 2024-01-08..2024-01-08 after the last IV date 2024-01-06" in messages
    assert "1 IV dates have no daily bar" in messages


def test_attach_iv_gap_inside_coverage_is_an_error():
    daily = _daily_bars(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])
    iv = pd.Series([12.0, 14.0], index=pd.DatetimeIndex(["2024-01-02", "2024-01-05"]))
    assert_error(lambda: attach_iv(daily, iv, source="iv.csv"), "iv.csv", "2 daily date(s)", "2024-01-03, 2024-01-04")


def test_attach_iv_rejects_bad_series_and_existing_iv():
    daily = _daily_bars(["2024-01-02", "2024-01-03"])
    bad = pd.Series([12.0, -1.0], index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"]))
    assert_error(lambda: attach_iv(daily, bad, source="mem"), "mem: row 1", "column 'iv'", "> 0")
    good = pd.Series([12.0, 13.0], index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"]))
    with_iv = attach_iv(daily, good, source="mem")
    assert_error(lambda: attach_iv(with_iv, good, source="mem"), "already have an 'iv' column")
    disjoint = pd.Series([12.0], index=pd.DatetimeIndex(["2025-01-02"]))
    assert_error(lambda: attach_iv(daily, disjoint, source="mem"), "no daily date", "IV coverage")


def test_load_arch_spx_vix():
    bars = load_arch_spx_vix()
    assert isinstance(bars, DailyBars) and bars.has_iv
    # The overlap of arch's S&P 500 (1999-01-04..2018-12-31) and VIX (2014-01-03..2019-01-03) files.
    assert bars.dates[0] == pd.Timestamp("2014-01-03") and bars.dates[-1] == pd.Timestamp("2018-12-31")
    assert len(bars) > 1200  # about 252 sessions a year for five years
    assert np.isfinite(bars.frame.to_numpy()).all() and (bars.frame["iv"] > 0).all()
    assert list(bars.frame.columns) == ["open", "high", "low", "close", "volume", "iv"]
    assert bars.frame.loc["2018-12-24", "iv"] == pytest.approx(36.07)  # VIX close on Christmas Eve 2018
    DailyBars(bars.frame, source="recheck")  # still passes schema validation


# ----------------------------------------------------------------------------------------------
# Calendars


def test_calendar_half_day_holiday_and_bounds():
    minutes = regular_session_minutes("XNYS", "2023-11-22", "2023-11-27", NY)
    dates = pd.Series(minutes.tz_localize(None).normalize()).value_counts().sort_index()
    assert dates.to_dict() == {
        pd.Timestamp("2023-11-22"): 390, pd.Timestamp("2023-11-24"): 210, pd.Timestamp("2023-11-27"): 390
    }  # 2023-11-23 is Thanksgiving, 11-24 closes at 13:00
    assert minutes[0] == pd.Timestamp("2023-11-22 09:30", tz=NY)
    assert minutes[minutes.normalize() == pd.Timestamp("2023-11-24", tz=NY)][-1] == pd.Timestamp("2023-11-24 12:59", tz=NY)
    bounds = session_bounds("XNYS", "2023-11-22", "2023-11-27", NY)
    assert list(bounds.index) == list(pd.DatetimeIndex(["2023-11-22", "2023-11-24", "2023-11-27"]))
    assert bounds.loc["2023-11-24", "close"] == pd.Timestamp("2023-11-24 13:00", tz=NY)
    assert bounds.loc["2023-11-27", "open"] == pd.Timestamp("2023-11-27 09:30", tz=NY)
    assert regular_session_minutes("XNYS", "2023-11-23", "2023-11-23", NY).empty  # a holiday alone


def test_calendar_errors():
    with pytest.raises(DataValidationError, match=r"'XKRX' supports dates 1956-01-01\.\.2050-12-31 only; requested 1950"):
        regular_session_minutes("XKRX", "1950-01-02", "1950-01-10", "Asia/Seoul")
    with pytest.raises(ConfigError, match="exchange calendar 'NOPE': unknown"):
        regular_session_minutes("NOPE", "2024-01-02", "2024-01-03", NY)
    with pytest.raises(ConfigError, match="time zone 'Mars/Base': unknown"):
        regular_session_minutes("XNYS", "2024-01-02", "2024-01-03", "Mars/Base")


# ----------------------------------------------------------------------------------------------
# Minute bars: bad input


GOOD_MINUTES = naive_strings(session_minutes("2024-01-03", "09:30", "09:34"))


def test_minutes_mixed_time_zones(tmp_path):
    stamps = [*GOOD_MINUTES[:3], "2024-01-03T09:33:00-05:00", GOOD_MINUTES[4]]
    path = minute_csv(tmp_path, stamps)
    assert_error(lambda: load_minutes(path), "minutes.csv", "line 5", "mixed time zones", "'2024-01-03T09:33:00-05:00'")


def test_minutes_duplicate_and_unsorted(tmp_path):
    dup = minute_csv(tmp_path, [*GOOD_MINUTES[:3], GOOD_MINUTES[2], GOOD_MINUTES[4]], name="dup.csv")
    assert_error(lambda: load_minutes(dup), "dup.csv", "line 5", "repeats", "line 4")
    back = minute_csv(tmp_path, [GOOD_MINUTES[0], GOOD_MINUTES[2], GOOD_MINUTES[1]], name="back.csv")
    assert_error(lambda: load_minutes(back), "back.csv", "line 4", "earlier than", "line 3")


def test_minutes_unparseable_timestamp_and_number(tmp_path):
    path = minute_csv(tmp_path, [GOOD_MINUTES[0], "2024-01-03 9h31", *GOOD_MINUTES[2:]])
    assert_error(lambda: load_minutes(path), "minutes.csv", "line 3", "column 'timestamp'", "'2024-01-03 9h31'")
    text = (tmp_path / "minutes.csv").read_text().replace("2024-01-03 9h31", GOOD_MINUTES[1]).splitlines()
    text[4] = text[4].replace(",100.0", ",lots")
    path = write(tmp_path, "vol.csv", text)
    assert_error(lambda: load_minutes(path), "vol.csv", "line 5", "column 'volume'", "'lots'")


def test_minutes_ohlc_and_volume_errors_name_lines(tmp_path):
    good = minute_csv(tmp_path, GOOD_MINUTES, name="base.csv")
    lines = (tmp_path / "base.csv").read_text().splitlines()
    broken = list(lines)
    broken[3] = f"{GOOD_MINUTES[2]},50.02,50.0,50.1,50.02,100.0"  # high < low on file line 4
    assert_error(lambda: load_minutes(write(tmp_path, "hl.csv", broken)), "hl.csv", "line 4", "high 50.0 < low 50.1")
    broken = list(lines)
    broken[5] = f"{GOOD_MINUTES[4]},50.04,50.06,50.02,50.04,-1"  # file line 6
    assert_error(lambda: load_minutes(write(tmp_path, "neg.csv", broken)), "neg.csv", "line 6", "column 'volume'", ">= 0")
    assert len(load_minutes(good)) == 5


def test_minutes_off_minute_and_dst_gap_naive_times(tmp_path):
    off = minute_csv(tmp_path, [GOOD_MINUTES[0], "2024-01-03 09:31:30"], name="off.csv")
    assert_error(lambda: load_minutes(off), "off.csv", "line 3", "not on a whole minute")
    # 02:30 on 2024-03-10 does not exist in New York (clocks jump from 02:00 to 03:00).
    gap = minute_csv(tmp_path, ["2024-03-08 15:59:00", "2024-03-10 02:30:00"], name="gap.csv")
    assert_error(lambda: load_minutes(gap), "gap.csv", "line 3", "does not exist", "source_tz='UTC'")


def test_minutes_outside_calendar_range(tmp_path):
    path = minute_csv(tmp_path, ["1950-01-04 09:30:00", "1950-01-04 09:31:00"], name="old.csv")
    assert_error(
        lambda: load_minutes(path, tz="Asia/Seoul", calendar="XKRX"), "old.csv", "'XKRX' supports dates 1956-01-01"
    )


# ----------------------------------------------------------------------------------------------
# Minute bars: good input


def test_minutes_utc_source_across_dst(tmp_path):
    # 13:30 UTC is 09:30 in New York in July (EDT, UTC-4); 14:30 UTC is 09:30 in January (EST, UTC-5).
    july = session_minutes("2024-07-08", "13:30", "19:59")
    january = session_minutes("2024-01-08", "14:30", "20:59")
    path = minute_csv(tmp_path, naive_strings(january.append(july)))
    bars = load_minutes(path, source_tz="UTC")
    assert str(bars.tz) == NY
    assert len(bars) == 2 * 390
    firsts = bars.frame.index[[0, 390]]
    assert list(firsts) == [pd.Timestamp("2024-01-08 09:30", tz=NY), pd.Timestamp("2024-07-08 09:30", tz=NY)]
    assert bars.frame.index[-1] == pd.Timestamp("2024-07-08 15:59", tz=NY)


def test_minutes_offset_aware_strings_across_dst_change(tmp_path):
    stamps = ["2024-03-08T09:30:00-05:00", "2024-03-08T15:59:00-05:00", "2024-03-11T09:30:00-04:00",
              "2024-03-11T13:30:00Z"]  # the last is 09:30 New York written in UTC
    path = minute_csv(tmp_path, stamps[:3] + ["2024-03-11T13:31:00+00:00"])
    bars = load_minutes(path, source_tz="Asia/Tokyo")  # source_tz applies to naive times only
    assert list(bars.frame.index) == [
        pd.Timestamp("2024-03-08 09:30", tz=NY), pd.Timestamp("2024-03-08 15:59", tz=NY),
        pd.Timestamp("2024-03-11 09:30", tz=NY), pd.Timestamp("2024-03-11 09:31", tz=NY),
    ]


def test_minutes_half_day_holiday_extended_hours_and_zero_volume(tmp_path, caplog):
    # Wednesday 2023-11-22 full day with pre- and post-market prints, Thanksgiving 2023-11-23 (holiday),
    # Friday 2023-11-24 half day (closes 13:00) with prints until 16:00.
    stamps = (
        session_minutes("2023-11-22", "08:00", "08:04")  # 5 pre-market
        .append(session_minutes("2023-11-22"))  # 390 regular
        .append(session_minutes("2023-11-22", "16:00", "16:02"))  # 3 after-hours
        .append(session_minutes("2023-11-23", "10:00", "10:09"))  # 10 on the holiday
        .append(session_minutes("2023-11-24"))  # 210 regular + 180 after the half-day close
    )
    path = minute_csv(tmp_path, naive_strings(stamps), volume=0.0)
    with caplog.at_level(logging.INFO, logger="lab.data"):
        bars = load_minutes(path)
    per_day = pd.Series(bars.session_labels()).value_counts().sort_index()
    assert per_day.to_dict() == {pd.Timestamp("2023-11-22"): 390, pd.Timestamp("2023-11-24"): 210}
    assert bars.frame.index[-1] == pd.Timestamp("2023-11-24 12:59", tz=NY)
    assert (bars.frame["volume"] == 0).all()  # zero-volume bars are kept
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "dropped 198 of 798 rows outside the regular session: 188 outside regular hours on session days" in messages
    assert "10 on non-session days" in messages
    assert "600 of 600 regular-session minutes present in 2 sessions; 0 missing in 0 sessions" in messages


def test_minutes_missing_counted_and_fill_flag(tmp_path, caplog):
    day1 = session_minutes("2024-01-03")
    day1 = day1[~day1.isin(session_minutes("2024-01-03", "10:00", "10:09"))]  # 10-minute hole
    day2 = session_minutes("2024-01-04", "09:35")  # first 5 minutes absent (leading)
    day4 = session_minutes("2024-01-08", "09:30", "09:30").append(session_minutes("2024-01-08", "15:59", "15:59"))
    # 2024-01-05 (a session) has no bars at all.
    path = minute_csv(tmp_path, naive_strings(day1.append(day2).append(day4)))
    with caplog.at_level(logging.INFO, logger="lab.data"):
        bars = load_minutes(path)
    coverage = minute_coverage(bars)
    assert coverage.per_session["present"].to_dict() == {
        pd.Timestamp("2024-01-03"): 380, pd.Timestamp("2024-01-04"): 385,
        pd.Timestamp("2024-01-05"): 0, pd.Timestamp("2024-01-08"): 2,
    }
    assert (coverage.per_session["expected"] == 390).all()
    assert coverage.missing_total == 10 + 5 + 390 + 388
    assert list(coverage.sessions_with_gaps) == list(coverage.per_session.index)
    assert coverage.median_bars_per_session == pytest.approx((2 + 380) / 2)
    assert coverage.outside_session == 0
    assert f"{coverage.missing_total} missing in 4 sessions" in " ".join(r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lab.data"):
        filled = load_minutes(path, fill_missing=True)
    frame = filled.frame
    hole = frame.loc[pd.Timestamp("2024-01-03 10:00", tz=NY) : pd.Timestamp("2024-01-03 10:09", tz=NY)]
    before_close = frame.loc[pd.Timestamp("2024-01-03 09:59", tz=NY), "close"]
    assert len(hole) == 10 and (hole["volume"] == 0).all()
    assert (hole[["open", "high", "low", "close"]].to_numpy() == before_close).all()
    # Leading minutes of 2024-01-04 and the bar-less 2024-01-05 are not filled (never from another session).
    assert frame.index[frame.index.normalize() == pd.Timestamp("2024-01-04", tz=NY)][0] == pd.Timestamp("2024-01-04 09:35", tz=NY)
    assert not (frame.index.normalize() == pd.Timestamp("2024-01-05", tz=NY)).any()
    day4_filled = frame.loc[frame.index.normalize() == pd.Timestamp("2024-01-08", tz=NY)]
    assert len(day4_filled) == 390
    original_0930 = bars.frame.loc[pd.Timestamp("2024-01-08 09:30", tz=NY), "close"]
    assert (day4_filled["close"].iloc[1:389] == original_0930).all()
    assert day4_filled["close"].iloc[-1] == bars.frame["close"].iloc[-1]  # the real 15:59 bar is kept
    assert len(filled) == len(bars) + 10 + 388
    refilled = minute_coverage(filled)
    assert refilled.missing_total == 5 + 390
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "filled 398 missing minutes in 2 sessions" in message
    assert "left 395 minutes before the first bar of 2 sessions unfilled (1 of those sessions have no bar at all)" in message


# ----------------------------------------------------------------------------------------------
# Real FXY minute file (naive UTC, extended hours, many missing minutes)


@pytest.fixture(scope="module")
def fxy(shared_data_dir):
    return load_minutes(shared_data_dir / "FXY_1min_2023-07-10_to_2025-07-08.csv", source_tz="UTC")


def test_fxy_regular_session_only(fxy):
    index = fxy.frame.index
    assert str(index.tz) == NY
    minute_of_day = index.hour * 60 + index.minute
    assert minute_of_day.min() >= 9 * 60 + 30 and minute_of_day.max() <= 15 * 60 + 59
    grid = regular_session_minutes("XNYS", fxy.session_dates[0], fxy.session_dates[-1], NY)
    assert index.isin(grid).all()  # also excludes 13:00..15:59 on half days
    assert index.is_monotonic_increasing and index.is_unique


def test_fxy_coverage_report(fxy):
    coverage = minute_coverage(fxy)
    # 2023-07-10..2025-07-08 holds about 500 NYSE sessions (252 a year).
    assert 480 <= coverage.sessions <= 510
    assert coverage.missing_total > 0 and len(coverage.sessions_with_gaps) > 0
    assert coverage.present_total == len(fxy)
    assert 50 <= coverage.median_bars_per_session < 390  # thinly traded: the README says ~140 a day
    assert coverage.outside_session == 0
    half_day = coverage.per_session.loc["2023-11-24"]
    assert half_day["expected"] == 210 and half_day["present"] <= 210

