"""Plausibility checks: bad input stops with one message naming the file, place, column and the flag that
repairs or overrides it; repairs run only on request and are counted; real files and synthetic data pass."""
from __future__ import annotations

import argparse
import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_loaders import assert_error

from lab_v10.src.cli import add_data_flags, apply_data_flags
from lab_v10.src.config import DataConfig, LabConfig
from lab_v10.src.data.calendars import sessions_in_range
from lab_v10.src.data.loaders import (
    check_daily_frame,
    load_daily,
    load_iv,
    load_minutes,
)
from lab_v10.src.data.market import load_market
from lab_v10.src.data.plausibility import (
    CheckOptions,
    CheckReport,
    bad_print_rows,
    check_bad_prints,
    check_iv_level,
    check_iv_values,
    check_magnitudes,
)
from lab_v10.src.data.raw_table import Rows
from lab_v10.src.data.session_checks import check_minute_clock
from lab_v10.src.data.synthetic import generate_market
from lab_v10.src.errors import DataValidationError

NY = "America/New_York"
UNIVERSE_PAIRS = [("SPY", "VIX"), ("QQQ", "VXN"), ("IWM", "RVX"), ("DIA", "VXD"), ("GLD", "GVZ"), ("USO", "OVX"),
                  ("AMZN", "VXAZN"), ("GOOG", "VXGOG")]




def daily_frame(n: int = 260, start: str = "2023-01-03", seed: int = 0, vol: float = 0.01) -> pd.DataFrame:
    """``n`` XNYS sessions of a random walk (daily vol ``vol``) with consistent OHLC and volume."""
    dates = sessions_in_range("XNYS", start, pd.Timestamp(start) + pd.Timedelta(days=2 * n))[:n]
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(vol * rng.standard_normal(n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {"date": dates.strftime("%Y-%m-%d"), "open": open_, "high": np.maximum(open_, close) * 1.004,
         "low": np.minimum(open_, close) * 0.996, "close": close, "volume": 1e6},
    )


def write_csv(tmp_path, frame: pd.DataFrame, name: str) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def iv_frame(daily: pd.DataFrame, level: float = 18.0, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"date": daily["date"], "iv": level * np.exp(0.05 * rng.standard_normal(len(daily)))})


def files_config(**kwargs) -> DataConfig:
    return DataConfig(source="files", **kwargs)


# ----------------------------------------------------------------------------------------------
# 1. Implied vol in the wrong unit


def test_iv_in_fractions_stops_naming_file_line_and_cause(tmp_path):
    daily = daily_frame()
    iv = iv_frame(daily).assign(iv=lambda f: f["iv"] / 100.0)
    path = write_csv(tmp_path, iv, "iv_fraction.csv")
    assert_error(lambda: load_iv(path), "iv_fraction.csv", "line 2", "column 'iv'", "fractions",
                 "--allow-implausible-iv")
    cboe = write_csv(tmp_path, iv.rename(columns={"date": "DATE", "iv": "CLOSE"}), "cboe.csv")
    assert_error(lambda: load_iv(cboe), "cboe.csv", "line 2", "column 'close'", "fractions")
    in_daily = write_csv(tmp_path, daily.assign(iv=iv["iv"]), "daily_iv.csv")
    assert_error(lambda: load_daily(in_daily), "daily_iv.csv", "line 2", "column 'iv'", "fractions")


def test_iv_above_a_few_hundred_points(tmp_path):
    daily = daily_frame()
    path = write_csv(tmp_path, iv_frame(daily).assign(iv=lambda f: f["iv"] * 100), "iv_bp.csv")
    assert_error(lambda: load_iv(path), "iv_bp.csv", "line 2", "column 'iv'", "above 500", "basis points")


def test_iv_as_variance_is_caught_by_the_level_check(tmp_path):
    daily = daily_frame()  # about 16% realised vol; 18^2 = 324 stays below 500 but is 20x the realised vol
    iv = iv_frame(daily).assign(iv=lambda f: f["iv"] ** 2)
    cfg = files_config(daily=write_csv(tmp_path, daily, "d.csv"), iv=write_csv(tmp_path, iv, "iv_var.csv"))
    assert_error(lambda: load_market(cfg, 0), "iv_var.csv", "realised vol", "variance", "--allow-implausible-iv")


def test_iv_level_against_realised_vol(tmp_path):
    """Values in 1..500 but in daily (not annualized) units: the median IV / RV ratio gives it away."""
    daily = daily_frame(vol=0.02)  # about 32% annualized, so IV/sqrt(252) stays above 1 vol point
    iv = iv_frame(daily, level=35.0).assign(iv=lambda f: f["iv"] / np.sqrt(252))
    cfg = files_config(daily=write_csv(tmp_path, daily, "d.csv"), iv=write_csv(tmp_path, iv, "iv_daily_units.csv"))
    assert_error(lambda: load_market(cfg, 0), "iv_daily_units.csv", "realised vol", "d.csv",
                 "daily rather than annualized", "--allow-implausible-iv")
    market = load_market(files_config(daily=cfg.daily, iv=cfg.iv, check_iv_units=False), 0)
    assert market.daily.has_iv
    assert any("iv_daily_units.csv" in w for w in market.description["data_checks"]["warnings"])
    good = load_market(files_config(daily=cfg.daily, iv=write_csv(tmp_path, iv_frame(daily, 35.0), "iv.csv")), 0)
    assert good.description["data_checks"] == {"repairs": [], "warnings": []}


def test_isolated_bad_iv_values(tmp_path):
    daily = daily_frame()
    spike = iv_frame(daily)
    spike.loc[40, "iv"] = 0.18  # one value in fractions among vol points: a bad print, not a unit error
    assert_error(lambda: load_iv(write_csv(tmp_path, spike, "spike.csv")), "spike.csv", "line 42", "bad print")
    low = iv_frame(daily, level=4.0)
    low.loc[40, "iv"] = 0.9  # below 1 but within 5x of its neighbours
    assert_error(lambda: load_iv(write_csv(tmp_path, low, "low.csv")), "low.csv", "line 42", "isolated bad values")


def test_iv_override_keeps_fractions_and_reports():
    report = CheckReport()
    values = np.array([0.18, 0.2, 0.22])
    check_iv_values(values, np.arange(3), Rows("mem"), "iv", CheckOptions(check_iv_units=False), report)
    assert len(report.warnings) == 1 and "fractions" in report.warnings[0]


def test_real_iv_indices_pass(shared_data_dir):
    universe = shared_data_dir / "universe"
    for _, index in UNIVERSE_PAIRS:
        iv = load_iv(universe / f"{index}_History.csv")
        assert 1.0 <= iv.min() and iv.max() <= 500.0
    assert load_iv(universe / "OVX_History.csv").max() > 300  # April 2020
    load_iv(shared_data_dir / "VIX_History.csv")


@pytest.mark.parametrize(("asset", "index"), UNIVERSE_PAIRS)
def test_universe_pairs_pass_every_check(shared_data_dir, asset, index):
    """Default checks pass; the IV files miss a few sessions, which --iv-missing drop drops (reported)."""
    universe = shared_data_dir / "universe"
    cfg = files_config(daily=str(universe / f"{asset}_daily.csv"), iv=str(universe / f"{index}_History.csv"))
    load_daily(cfg.daily)  # the asset file alone passes every check by default
    market = load_market(files_config(daily=cfg.daily, iv=cfg.iv, iv_missing="drop"), 0)
    checks = market.description["data_checks"]
    assert checks["warnings"] == []
    assert all(r["flag"] == "--iv-missing drop" and r["rows"] <= 11 for r in checks["repairs"])


# ----------------------------------------------------------------------------------------------
# 2. Implausible prices


@pytest.mark.parametrize("factor", [1e306, 1e3, 1e6, 1e-3, 1e-6])
def test_one_day_spike_that_reverts_is_a_bad_print(tmp_path, factor):
    daily = daily_frame()
    row = 100
    for column in ("open", "high", "low", "close"):
        daily.loc[row, column] *= factor
    path = write_csv(tmp_path, daily, "spike.csv")
    assert_error(lambda: load_daily(path), "spike.csv", f"line {row + 2}", "bad print", "--drop-bad-prints")
    report = CheckReport()
    bars = load_daily(path, CheckOptions(drop_bad_prints=True), report)
    assert len(bars) == len(daily) - 1 and pd.Timestamp(daily.loc[row, "date"]) not in bars.dates
    assert report.repairs[0]["rows"] == 1 and f"line {row + 2}" in report.repairs[0]["where"]


def test_bad_print_in_the_last_row_and_absurd_volume(tmp_path):
    daily = daily_frame()
    last = daily.copy()
    last.loc[len(last) - 1, ["open", "high", "low", "close"]] = 1e308
    assert_error(lambda: load_daily(write_csv(tmp_path, last, "last.csv")), "last.csv", f"line {len(last) + 1}",
                 "last row", "--drop-bad-prints")
    volume = daily.copy()
    volume.loc[7, "volume"] = 1e308
    assert_error(lambda: load_daily(write_csv(tmp_path, volume, "vol.csv")), "vol.csv", "line 9", "column 'volume'")


def test_genuine_big_moves_are_not_bad_prints(tmp_path):
    daily = daily_frame()
    scale = np.ones(len(daily))
    scale[50:] *= 0.70  # a -30% crash that stays
    scale[120:] *= 0.75  # another -25%
    scale[121:] *= 1.25  # a V-shaped rebound
    scale[200:] *= 4.0  # a 4x jump (below the 5x factor)
    for column in ("open", "high", "low", "close"):
        daily[column] = daily[column] * scale
    daily.loc[50, "open"] = daily.loc[49, "close"]  # keep OHLC consistent around the gaps
    daily["high"] = daily[["open", "close", "high"]].max(axis=1)
    daily["low"] = daily[["open", "close", "low"]].min(axis=1)
    report = CheckReport()
    bars = load_daily(write_csv(tmp_path, daily, "moves.csv"), report=report)
    assert len(bars) == len(daily) and report.repairs == []


def test_bad_print_rule():
    flat = np.full(10, 100.0)
    spike = flat.copy()
    spike[4:6] = 1e5  # a two-row bad print
    assert list(np.flatnonzero(bad_print_rows(spike)[0])) == [4, 5]
    split = flat.copy()
    split[5:] = 10.0  # a 10:1 split the file is not adjusted for: reported, not flagged
    bad, unexplained = bad_print_rows(split)
    assert not bad.any() and unexplained == [5]
    first = flat.copy()
    first[0] = 1e4
    assert list(np.flatnonzero(bad_print_rows(first)[0])) == [0]


def test_real_daily_files_pass_and_split_adjusted_uso(shared_data_dir):
    for asset, _ in UNIVERSE_PAIRS:
        report = CheckReport()
        load_daily(shared_data_dir / "universe" / f"{asset}_daily.csv", report=report)
        assert report.repairs == [] and report.warnings == [], asset


def test_rows_on_weekends_and_holidays(tmp_path):
    daily = daily_frame()
    saturday = daily.copy()
    saturday.loc[3, "date"] = "2023-01-07"  # between 2023-01-06 (Fri) and 2023-01-09 (Mon)
    saturday = saturday.drop(index=4).reset_index(drop=True)  # keep dates ascending
    assert_error(lambda: load_daily(write_csv(tmp_path, saturday, "sat.csv")), "sat.csv", "line 5", "2023-01-07",
                 "Saturday", "'XNYS'", "--drop-non-sessions")
    holiday = pd.concat([daily.iloc[:120], pd.DataFrame([daily.iloc[120]]).assign(date="2023-07-04"),
                         daily.iloc[120:]]).reset_index(drop=True)
    holiday = holiday.sort_values("date").reset_index(drop=True)
    path = write_csv(tmp_path, holiday, "hol.csv")
    assert_error(lambda: load_daily(path), "hol.csv", "2023-07-04", "Tuesday holiday", "--drop-non-sessions")
    report = CheckReport()
    bars = load_daily(path, CheckOptions(drop_non_sessions=True), report)
    assert len(bars) == len(daily) and report.repairs[0]["rows"] == 1 and "2023-07-04" in report.repairs[0]["where"]


def test_dates_after_today(tmp_path):
    daily = daily_frame()
    future = pd.concat([daily, pd.DataFrame([daily.iloc[-1]]).assign(date="2099-01-05")]).reset_index(drop=True)
    assert_error(lambda: load_daily(write_csv(tmp_path, future, "future.csv")), "future.csv",
                 f"line {len(future) + 1}", "2099-01-05", "after today")
    iv = pd.DataFrame({"date": ["2024-01-02", "2094-01-03"], "iv": [15.0, 16.0]})
    assert_error(lambda: load_iv(write_csv(tmp_path, iv, "iv_future.csv")), "iv_future.csv", "line 3", "after today")
    options = CheckOptions(today=pd.Timestamp("2023-06-30"))
    assert_error(lambda: load_daily(write_csv(tmp_path, daily, "d.csv"), options), "line", "after today (2023-06-30)")


def test_a_year_of_missing_sessions(tmp_path):
    daily = daily_frame(n=900, start="2020-01-02")
    hole = daily[(daily["date"] < "2021-01-01") | (daily["date"] >= "2022-01-01")]
    path = write_csv(tmp_path, hole, "hole.csv")
    assert_error(lambda: load_daily(path), "hole.csv", "longest run is 252 sessions 2021-01-04..2021-12-31",
                 "--max-missing-sessions")
    report = CheckReport()
    load_daily(path, CheckOptions(max_missing_sessions=300), report)
    assert "252 sessions" in report.warnings[0]
    few = daily.drop(index=[10, 11, 40])  # short gaps are tolerated and reported
    report = CheckReport()
    load_daily(write_csv(tmp_path, few, "few.csv"), report=report)
    assert "3 sessions" in report.warnings[0] and "longest run is 2" in report.warnings[0]


def test_iv_bad_print_dropped_with_its_day(tmp_path):
    daily = daily_frame()
    iv = iv_frame(daily)
    iv.loc[30, "iv"] = 2.71  # a VXD-like bad close between values near 18
    cfg = files_config(daily=write_csv(tmp_path, daily, "d.csv"), iv=write_csv(tmp_path, iv, "iv.csv"))
    assert_error(lambda: load_market(cfg, 0), "iv.csv", "line 32", "bad print", "--drop-bad-prints")
    market = load_market(files_config(daily=cfg.daily, iv=cfg.iv, drop_bad_prints=True), 0)
    assert len(market.daily) == len(daily) - 1
    repairs = market.description["data_checks"]["repairs"]
    assert [r["rows"] for r in repairs] == [1, 1] and {r["flag"] for r in repairs} == {"--drop-bad-prints"}


def test_minute_bad_print(tmp_path):
    stamps = pd.date_range("2024-01-03 09:30", "2024-01-03 15:59", freq="min")
    close = np.full(len(stamps), 50.0)
    close[100] = 50_000.0
    frame = pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close,
                          "low": close, "close": close, "volume": 10.0})
    path = write_csv(tmp_path, frame, "m.csv")
    assert_error(lambda: load_minutes(path), "m.csv", "line 102", "bad print", "--drop-bad-prints")
    assert len(load_minutes(path, checks=CheckOptions(drop_bad_prints=True))) == len(stamps) - 1


# ----------------------------------------------------------------------------------------------
# 3. Minutes in the wrong time zone


def minute_file(tmp_path, name: str, days: list[str], start="09:30", end="15:59", shift_to_utc=False) -> str:
    stamps = pd.DatetimeIndex([])
    for day in days:
        stamps = stamps.append(pd.date_range(f"{day} {start}", f"{day} {end}", freq="min"))
    if shift_to_utc:
        stamps = stamps.tz_localize(NY).tz_convert("UTC").tz_localize(None)
    close = 50.0 + 0.001 * np.arange(len(stamps))
    frame = pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "open": close, "high": close + 0.01,
                          "low": close - 0.01, "close": close, "volume": 100.0})
    return write_csv(tmp_path, frame, name)


DAYS = ["2024-01-08", "2024-01-09", "2024-01-10", "2024-07-08", "2024-07-09"]


def test_naive_utc_minutes_read_as_exchange_time(tmp_path):
    path = minute_file(tmp_path, "utc.csv", DAYS, shift_to_utc=True)
    assert_error(lambda: load_minutes(path), "utc.csv", "fall outside the regular sessions", "--minutes-tz UTC")
    assert len(load_minutes(path, source_tz="UTC")) == 5 * 390


def test_explicit_zone_that_does_not_fit(tmp_path):
    path = minute_file(tmp_path, "ny.csv", DAYS)  # New York wall clock, read as UTC
    assert_error(lambda: load_minutes(path, source_tz="UTC"), "ny.csv", "given", "read as America/New_York, 100%",
                 "check --minutes-tz")


def test_clock_one_hour_off(tmp_path):
    """Chicago wall-clock times (08:30..14:59 for the NYSE session) read as New York: only 15% of the rows
    fall outside, but a one-hour shift puts them all inside."""
    path = minute_file(tmp_path, "chicago.csv", DAYS, start="08:30", end="14:59")
    assert_error(lambda: load_minutes(path), "chicago.csv", "15%", "shifted by +1 h, 100%", "--minutes-tz")
    assert len(load_minutes(path, source_tz="America/Chicago")) == 5 * 390


def test_extended_hours_file_with_a_fitting_clock(tmp_path):
    path = minute_file(tmp_path, "ext.csv", DAYS, start="04:00", end="19:59")  # 16 h a day, 6.5 regular
    assert_error(lambda: load_minutes(path), "ext.csv", "clock fits", f"--minutes-tz {NY}",
                 "--allow-minutes-outside-session")
    report = CheckReport()
    assert len(load_minutes(path, source_tz=NY, report=report)) == 5 * 390  # the zone given: reported only
    assert "the zone was given" in report.warnings[0]
    report = CheckReport()
    assert len(load_minutes(path, checks=CheckOptions(check_minute_sessions=False), report=report)) == 5 * 390
    assert "--allow-minutes-outside-session" in report.warnings[0]


def test_real_fxy_needs_its_zone(shared_data_dir):
    path = shared_data_dir / "FXY_1min_2023-07-10_to_2025-07-08.csv"
    assert_error(lambda: load_minutes(path), "FXY_1min", "59%", "--minutes-tz UTC")


def test_minute_clock_on_synthetic_minutes():
    _, minutes, _ = generate_market(seed=3, n_days=30, start="2024-01-02")
    report = CheckReport()
    check_minute_clock(minutes.frame.index, Rows("synthetic"), NY, None, False, CheckOptions(), report)
    assert report.warnings == []


# ----------------------------------------------------------------------------------------------
# 4. Daily and minute files without a common date


def test_daily_and_minutes_without_common_dates(tmp_path):
    daily = write_csv(tmp_path, daily_frame(n=60, start="2023-01-03"), "daily_2023.csv")
    minutes = minute_file(tmp_path, "minutes_2024.csv", DAYS)
    assert_error(lambda: load_market(files_config(daily=daily, minutes=minutes), 0), "daily_2023.csv",
                 "minutes_2024.csv", "no date in common", "2023-01-03..2023-03-29", "2024-01-08..2024-07-09")


# ----------------------------------------------------------------------------------------------
# 5. Valid input: trailing blank lines


@pytest.mark.parametrize("ending", ["\n\n", "\r\n\r\n", "\n\n\n", "\n  \n"])
def test_trailing_blank_lines_are_accepted(tmp_path, ending):
    body = "date,open,high,low,close\n2024-01-02,100,102,99,101\n2024-01-03,101,103,100,102"
    path = tmp_path / "daily.csv"
    path.write_bytes((body + ending).encode())
    assert len(load_daily(path)) == 2
    gz = tmp_path / "daily.csv.gz"
    with gzip.open(gz, "wt", newline="") as handle:
        handle.write(body + ending)
    assert len(load_daily(gz)) == 2
    iv = tmp_path / "iv.csv"
    iv.write_text("date,iv\n2024-01-02,13.2\n\n")
    assert len(load_iv(iv)) == 1


def test_trailing_comma_only_row_is_still_an_error(tmp_path):
    path = tmp_path / "daily.csv"
    path.write_text("date,open,high,low,close\n2024-01-02,100,102,99,101\n,,,,\n")
    assert_error(lambda: load_daily(path), "daily.csv", "line 3", "column 'date'")


# ----------------------------------------------------------------------------------------------
# 6. Synthetic data passes; flags reach the config


def test_synthetic_market_passes_the_value_checks():
    daily, minutes, _ = generate_market(seed=0, n_days=400, start="2015-01-02")
    report = CheckReport()
    # The synthetic calendar is business days (holidays included), so the session check does not apply.
    options = CheckOptions(max_missing_sessions=10)
    frame, pos = daily.frame, np.arange(len(daily))
    check_bad_prints(frame, pos, Rows("synthetic"), ("open", "high", "low", "close", "iv"), options, report)
    check_magnitudes(frame, pos, Rows("synthetic"), ("open", "high", "low", "close"))
    check_iv_values(frame["iv"].to_numpy(), pos, Rows("synthetic"), "iv", options, report)
    check_iv_level(daily, "synthetic", options, report)
    check_bad_prints(minutes.frame, np.arange(len(minutes)), Rows("synthetic"), ("open", "high", "low", "close"),
                     options, report)
    assert report.repairs == [] and report.warnings == []


def test_check_daily_frame_on_in_memory_bars_names_rows():
    daily, _, _ = generate_market(seed=0, n_days=60, start="2024-01-02")
    expected = r"synthetic: \d+ rows are not sessions.*row 9 \(2024-01-15\) a Monday holiday"
    with pytest.raises(DataValidationError, match=expected):
        check_daily_frame(daily, Rows("synthetic"), CheckOptions(), CheckReport())


def test_flags_set_the_config():
    parser = argparse.ArgumentParser()
    add_data_flags(parser)
    args = parser.parse_args(["--daily", "d.csv", "--allow-implausible-iv", "--drop-bad-prints", "--drop-non-sessions",
                              "--iv-missing", "drop", "--max-missing-sessions", "30",
                              "--allow-minutes-outside-session"])
    data = apply_data_flags(LabConfig(), args).data
    assert (data.check_iv_units, data.drop_bad_prints, data.drop_non_sessions, data.iv_missing,
            data.max_missing_sessions, data.check_minute_sessions) == (False, True, True, "drop", 30, False)
    default = apply_data_flags(LabConfig(), parser.parse_args([])).data
    assert (default.check_iv_units, default.drop_bad_prints, default.check_minute_sessions) == (True, False, True)
    options = CheckOptions.from_config(data)
    assert options.drop_bad_prints and not options.check_iv_units and options.max_missing_sessions == 30


def test_cli_exits_2_with_one_error_line(repo_root, tmp_path):
    daily = daily_frame()
    daily_path = write_csv(tmp_path, daily, "d.csv")
    iv_path = write_csv(tmp_path, iv_frame(daily).assign(iv=lambda f: f["iv"] / 100), "iv_fraction.csv")
    proc = subprocess.run(
        [sys.executable, str(repo_root / "main_v3.py"), "--daily", daily_path, "--iv", iv_path,
         "--out", str(tmp_path / "r")],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "iv_fraction.csv" in errors[0] and "line 2" in errors[0] and "fractions" in errors[0]
