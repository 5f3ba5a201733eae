"""Parquet store: exact round trips, atomic writes, clear errors, and loaders reading stored bars."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lab_v10.src.data.loaders import load_daily, load_minutes
from lab_v10.src.data.schema import DailyBars, MinuteBars
from lab_v10.src.data.store import read_parquet, write_parquet
from lab_v10.src.errors import DataValidationError

NY = "America/New_York"


@pytest.fixture
def daily_csv(tmp_path):
    path = tmp_path / "daily.csv"
    path.write_text(
        "date,open,high,low,close,volume,iv\n"
        "2024-01-02,100,102,99,101,1000,13.2\n"
        "2024-01-03,101,103.5,100,102.25,0,14.1\n"
        "2024-01-04,102,104,101,103,1200,12.9\n"
    )
    return path


@pytest.fixture
def minute_csv(tmp_path):
    """Two sessions written as naive UTC, with pre-market rows and a gap (January, EST = UTC-5)."""
    stamps = pd.date_range("2024-01-08 14:25", "2024-01-08 15:10", freq="min").append(
        pd.date_range("2024-01-09 14:30", "2024-01-09 14:50", freq="min")
    )
    stamps = stamps.delete([20, 21])
    close = 30.0 + np.sin(np.arange(len(stamps)) / 5.0)
    frame = pd.DataFrame(
        {"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close + 0.05,
         "low": close - 0.05, "close": close, "volume": np.arange(len(stamps)) * 10.0}
    )
    path = tmp_path / "minutes.csv"
    frame.to_csv(path, index=False)
    return path


def test_daily_bars_round_trip(tmp_path, daily_csv):
    bars = load_daily(daily_csv)
    written = write_parquet(bars.frame, tmp_path / "out" / "daily.parquet")
    assert written == tmp_path / "out" / "daily.parquet" and written.is_file()
    back = read_parquet(written)
    pd.testing.assert_frame_equal(back, bars.frame)
    DailyBars(back)  # still valid bars


def test_minute_bars_round_trip_keeps_time_zone(tmp_path, minute_csv):
    bars = load_minutes(minute_csv, source_tz="UTC")
    back = read_parquet(write_parquet(bars.frame, tmp_path / "minutes.parquet"))
    pd.testing.assert_frame_equal(back, bars.frame)
    assert str(back.index.tz) == NY and back.index.name == "timestamp"
    assert back.index[0] == pd.Timestamp("2024-01-08 09:30", tz=NY)
    MinuteBars(back)


def test_feature_frame_round_trip(tmp_path):
    index = pd.DatetimeIndex(pd.date_range("2024-03-08 09:30", periods=6, freq="min", tz=NY), name="timestamp", freq=None)
    frame = pd.DataFrame(
        {
            "ret_1m": [np.nan, 0.001, -0.002, 0.0, 0.0005, np.nan],  # NaN where a window is not yet full
            "atr": np.linspace(0.1, 0.2, 6).astype(np.float32),
            "minute_of_day": np.arange(570, 576, dtype=np.int64),
            "setup": [False, True, False, False, True, False],
            "symbol": ["FXY"] * 6,
        },
        index=index,
    )
    back = read_parquet(write_parquet(frame, tmp_path / "features.parquet"))
    pd.testing.assert_frame_equal(back, frame)
    assert back["atr"].dtype == np.float32 and back["ret_1m"].isna().sum() == 2


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "table.parquet"
    first = pd.DataFrame({"x": [1.0, 2.0]})
    write_parquet(first, path)
    write_parquet(first * 2, path)  # overwrite in place
    pd.testing.assert_frame_equal(read_parquet(path), first * 2)
    unwritable = pd.DataFrame({"x": [1.0, object()]})  # pyarrow cannot store an arbitrary object
    with pytest.raises(pa.ArrowInvalid):
        write_parquet(unwritable, path)
    pd.testing.assert_frame_equal(read_parquet(path), first * 2)  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(DataValidationError, match=r"missing\.parquet: file not found"):
        read_parquet(tmp_path / "missing.parquet")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataValidationError, match=r"corrupt\.parquet: not a readable Parquet file"):
        read_parquet(corrupt)


def test_loaders_read_stored_parquet_like_csv(tmp_path, daily_csv, minute_csv):
    daily = load_daily(daily_csv)
    from_parquet = load_daily(write_parquet(daily.frame, tmp_path / "daily.parquet"))
    pd.testing.assert_frame_equal(from_parquet.frame, daily.frame)

    minutes = load_minutes(minute_csv, source_tz="UTC")
    stored = load_minutes(write_parquet(minutes.frame, tmp_path / "minutes.parquet"))
    pd.testing.assert_frame_equal(stored.frame, minutes.frame)

    # A raw Parquet export (naive UTC timestamps as a datetime column, extended hours included) loads
    # exactly like the CSV it came from.
    raw = pd.read_csv(minute_csv)
    raw["timestamp"] = pd.to_datetime(raw["timestamp"])
    raw.to_parquet(tmp_path / "raw.pq", index=False)
    pd.testing.assert_frame_equal(load_minutes(tmp_path / "raw.pq", source_tz="UTC").frame, minutes.frame)
