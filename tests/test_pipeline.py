"""End to end: the whole pipeline on a tiny synthetic market, checked through the report's content."""
from __future__ import annotations

import json
import subprocess
import sys

import exchange_calendars
import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import config_from_dict
from lab_v10.src.pipeline import run

TINY = {
    "seed": 3,
    "models": ["hrm", "tshrm", "har", "linear", "lgbm", "logistic", "rule"],
    "data": {"source": "synthetic", "synthetic": {"n_days": 300}},
    "labels": {"horizon_days": 5, "horizon_minutes": 20},
    "walkforward": {"n_folds": 2, "min_train_days": 120, "val_days": 30, "test_days": 40, "embargo_days": 2},
    "hrm": {
        "h": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "l": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "daily_window": 8, "H_cycles": 1, "L_cycles": 1, "max_segments": 2,
    },
    "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 2, "lr": 0.001, "autocast_bf16": False, "device": "cpu"},
    "tshrm": {"window": 8, "patch_len": 4, "epochs": 2, "batch_size": 16},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = run(config_from_dict(TINY, "tiny"), out, preset="tiny test preset")
    return result, out


def test_every_model_scored_on_identical_rows(tiny_run):
    result, _ = tiny_run
    fa, fb = result.forecasts_a, result.forecasts_b
    assert list(fa["model"].unique()) == ["hrm", "tshrm", "har", "linear", "lgbm"]
    rows_a = {m: g[["date", "fold", "y_true", "train_mean"]].reset_index(drop=True) for m, g in fa.groupby("model")}
    for model, rows in rows_a.items():
        assert len(rows) == 2 * 40 and rows["fold"].value_counts().to_dict() == {0: 40, 1: 40}
        pd.testing.assert_frame_equal(rows, rows_a["hrm"])  # same dates, truth and R² benchmark for every model
    assert np.isfinite(fa["mu"]).all() and (fa["sigma"] > 0).all()
    # The R² benchmark is the fold's mean training label, whichever models ran.
    assert fa.groupby("fold")["train_mean"].nunique().eq(1).all()
    assert list(fb["model"].unique()) == ["hrm", "lgbm", "logistic", "rule"]
    rows_b = {m: g[["timestamp", "session", "fold", "y_true"]].reset_index(drop=True) for m, g in fb.groupby("model")}
    for rows in rows_b.values():
        pd.testing.assert_frame_equal(rows, rows_b["hrm"], check_exact=True)
    assert fb["proba"].notna().all() and fb["proba"].between(0, 1).all()
    # Every test minute is traded; the minutes whose horizon runs past the close carry no label.
    assert fb["y_true"].dropna().isin([0.0, 1.0]).all() and fb["y_true"].isna().any()
    # Test rows come after every training row of their fold (walk-forward) and folds do not overlap.
    periods = [(pd.Timestamp(f["test_period"][0]), pd.Timestamp(f["test_period"][1])) for f in result.folds]
    assert periods[0][1] < periods[1][0]
    for fold in result.folds:
        assert pd.Timestamp(fold["train_period"][1]) < pd.Timestamp(fold["val_period"][0])
        assert pd.Timestamp(fold["val_period"][1]) < pd.Timestamp(fold["test_period"][0])


def test_summary_json_matches_results(tiny_run):
    result, out = tiny_run

    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=reject)
    for book in ("A", "B"):
        for model, per_fold in result.forecast_metrics[book].items():
            assert set(per_fold) == {"fold_0", "fold_1", "all"}
            for key, value in per_fold["all"].items():
                assert summary["forecast_metrics"][book][model]["all"][key] == pytest.approx(value)
    verdict = summary["verdict"]
    assert verdict["model"] == "hrm" and verdict["lines"] == result.verdict["lines"]
    assert set(verdict["sections"]) >= {"forecast_A", "forecast_B", "trading_A", "trading_B", "portfolio"}
    assert set(verdict["sections"]["forecast_A"]["versus"]) == {"tshrm", "har", "linear", "lgbm"}
    head = verdict["sections"]["forecast_A"]["versus"][verdict["sections"]["forecast_A"]["best_baseline"]]
    assert head["tests"]["squared_error"]["lags"] == TINY["labels"]["horizon_days"] - 1  # overlapping labels
    assert set(result.book_a.daily) == {"hrm", "tshrm", "har", "linear", "lgbm", "always_short", "no_trade"}
    assert {"hrm", "rule", "logistic", "lgbm"} <= set(result.book_b.daily)
    no_trade = result.book_a.metrics["no_trade"]
    assert no_trade["total_costs"] == 0 and no_trade["net_ann_return"] == 0
    assert result.book_a.metrics["always_short"]["total_costs"] > 0
    assert set(result.portfolio) >= {"hrm", "lgbm"}
    assert set(result.act_segments) == {"hrm", "tshrm"}
    for model, segments in result.act_segments.items():
        assert len(segments) > 0 and set(np.unique(segments)) <= {1, 2}  # max_segments is 2 for both
        assert summary["act_segments"][model]["n_samples"] == len(segments)
    assert len(result.act_segments["tshrm"]) == 2 * 40  # one per test date (a single network)


def test_book_a_is_scored_on_the_test_days_plus_the_exits_of_open_straddles(tiny_run):
    """Regression: the straddle P&L used to run to the end of the bars, adding unlabelled zero-P&L days."""
    result, _ = tiny_run
    test = pd.DatetimeIndex(result.forecasts_a["date"].unique())
    cfg = result.config["book_a"]
    windows = {name: daily.index for name, daily in result.book_a.daily.items()}
    first = windows["always_short"]
    assert all(w.equals(first) for w in windows.values())  # one scored window for every strategy
    assert first[0] == test[0] and first[-1] >= test[-1]
    assert len(first) <= len(test) + cfg["entry_lag_days"] + cfg["holding_days"]
    exits = max(t["exit_date"].max() for t in result.book_a.trades.values() if len(t))
    assert first[-1] == max(exits, test[-1])


def test_portfolio_dsr_is_deflated_by_the_strategies_tried(tiny_run):
    """Regression: the portfolio's DSR was its PSR (one trial), whatever the number of strategies."""
    result, _ = tiny_run
    scored = {n: m for n, m in result.portfolio_metrics.items() if m["psr"] is not None}
    assert len(result.portfolio_metrics) > 1 and scored
    for metrics in scored.values():
        assert metrics["dsr"] < metrics["psr"]


def test_report_files_hold_the_numbers(tiny_run):
    result, out = tiny_run
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert "hrm" in html and "always_short" in html
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 2
    forecasts = pd.read_parquet(out / "forecasts_a.parquet")
    pd.testing.assert_frame_equal(forecasts, result.forecasts_a, check_freq=False)
    pnl = pd.read_parquet(out / "pnl_daily.parquet")
    np.testing.assert_allclose(pnl["A:hrm"].dropna().to_numpy(), result.book_a.daily["hrm"]["net_pnl"].to_numpy())


def test_same_seed_same_numbers(tiny_run, tmp_path):
    result, _ = tiny_run
    again = run(config_from_dict(TINY, "tiny"), tmp_path, preset="tiny test preset")
    pd.testing.assert_frame_equal(again.forecasts_a, result.forecasts_a)
    pd.testing.assert_frame_equal(again.forecasts_b, result.forecasts_b)


def test_cli_bad_input_exits_with_message_and_no_traceback(repo_root, tmp_path):
    bad = tmp_path / "daily.csv"
    bad.write_text("date,open,high,low,close,iv\n2020-01-02,1,2,0.5,1.5,20\n2020-01-03,1,0.5,2,1.5,20\n")
    proc = subprocess.run(
        [sys.executable, str(repo_root / "main_v3.py"), "--daily", str(bad), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "line 3" in proc.stderr and "high" in proc.stderr


def test_cli_rejects_conflicting_flags(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "main_v3.py"), "--data", "arch", "--minutes", "x.csv"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 2 and "cannot be combined" in proc.stderr


def test_minutes_file_without_iv_runs_book_b_and_skips_book_a(tmp_path):
    """A minute file alone (UTC timestamps, like the FXY sample): daily bars are aggregated, Book A is
    skipped for lack of implied vol, and every Book B model — the HRM included — is trained and traded."""
    from lab_v10.src.data.synthetic import generate_market

    _, minutes, _ = generate_market(seed=5, n_days=160, start="2021-03-01")
    frame = minutes.frame.copy()
    frame.index = frame.index.tz_convert("UTC").tz_localize(None)
    path = tmp_path / "minutes_utc.csv"
    frame.rename_axis("timestamp").to_csv(path)
    cfg = dict(TINY, data={"source": "files", "minutes": str(path), "minutes_source_tz": "UTC"},
               walkforward={"n_folds": 2, "min_train_days": 60, "val_days": 20, "test_days": 20, "embargo_days": 1})
    result = run(config_from_dict(cfg, "minutes-only"), tmp_path / "report", preset="minutes only")
    assert result.book_a.skipped is not None and "implied vol" in result.book_a.skipped
    assert result.forecasts_a.empty and "A" not in result.forecast_metrics
    assert {"hrm", "logistic", "lgbm", "rule"} <= set(result.book_b.daily)
    # Synthetic business days include exchange holidays; the XNYS calendar filter drops those minutes.
    dates = minutes.session_dates
    xnys = exchange_calendars.get_calendar("XNYS").sessions_in_range(dates[0], dates[-1])
    assert result.data["has_iv"] is False and result.data["sessions"] == len(dates.intersection(xnys)) < 160
    hrm = result.forecasts_b[result.forecasts_b["model"] == "hrm"]
    assert len(hrm) > 0 and hrm["proba"].between(0, 1).all()
