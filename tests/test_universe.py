"""A universe of underlyings: the manifest, per-symbol loading and checks, the panel's calendar folds, pooled
and per-symbol models on identical rows, and the universe report."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import DataConfig, config_from_dict
from lab_v10.src.data.universe import load_universe, read_manifest
from lab_v10.src.dataset.panel import build_panel, panel_folds, symbol_folds
from lab_v10.src.errors import ConfigError, DataValidationError
from lab_v10.src.eval.results import BookRun
from lab_v10.src.eval.universe_scoring import POOLED_COLUMNS, pool_books
from lab_v10.src.pipeline import run
from tests.test_pipeline import TINY

UNIVERSE = copy.deepcopy(TINY)
UNIVERSE["data"] = {"source": "synthetic", "synthetic": {"n_days": 300, "n_symbols": 3}}
UNIVERSE["models"] = ["hrm", "har", "linear", "logistic", "rule"]
UNIVERSE["panel"] = {"pooled_models": ["hrm", "har", "linear"], "min_train_days": 50}
UNIVERSE["hrm"] = {**TINY["hrm"], "symbol_embedding": True}


@pytest.fixture(scope="module")
def universe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("universe")
    result = run(config_from_dict(UNIVERSE, "universe"), out, preset="tiny universe")
    return result, out


def test_pooled_and_per_symbol_models_are_scored_on_identical_rows(universe_run):
    result, _ = universe_run
    fa, fb = result.forecasts_a, result.forecasts_b
    assert set(fa["symbol"]) == {"SYN0", "SYN1", "SYN2"}
    assert list(fa["model"].unique()) == ["hrm", "har", "linear", "hrm_pooled", "har_pooled", "linear_pooled"]
    key = ["symbol", "date", "fold", "y_true", "train_mean"]
    rows = {m: g[key].sort_values(["symbol", "date"]).reset_index(drop=True) for m, g in fa.groupby("model")}
    for model, table in rows.items():
        pd.testing.assert_frame_equal(table, rows["hrm_pooled"], obj=model)
    # the R² benchmark is each symbol's own training mean in the fold
    assert fa.groupby(["symbol", "fold"])["train_mean"].nunique().eq(1).all()
    assert fa.groupby("fold")["train_mean"].nunique().gt(1).all()
    assert set(fb["model"]) == {"hrm", "logistic", "rule", "hrm_pooled"}
    b_rows = {m: g[["symbol", "timestamp", "y_true"]].sort_values(["symbol", "timestamp"]).reset_index(drop=True)
              for m, g in fb.groupby("model")}
    for model, table in b_rows.items():
        pd.testing.assert_frame_equal(table, b_rows["hrm_pooled"], obj=model)
    assert np.isfinite(fa["mu"]).all() and fb["proba"].between(0, 1).all()


def test_verdict_is_about_the_pooled_hrm_per_symbol_and_pooled(universe_run):
    result, out = universe_run
    assert result.verdict["model"] == "hrm_pooled"
    assert set(result.by_symbol) == {"SYN0", "SYN1", "SYN2"}
    for sym, scores in result.by_symbol.items():
        assert scores["verdict"]["model"] == "hrm_pooled"
        assert "hrm_pooled" in scores["forecast_metrics"]["A"]
    assert [row["symbol"] for row in result.symbol_table] == ["SYN0", "SYN1", "SYN2"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["by_symbol"]) == {"SYN0", "SYN1", "SYN2"} and len(summary["symbol_table"]) == 3
    assert (out / "symbols.csv").is_file() and (out / "per_symbol_a.png").is_file()
    assert "Per symbol" in (out / "report.html").read_text()
    assert set(summary["data"]["universe"]["symbols"]) == {"SYN0", "SYN1", "SYN2"}
    # the portfolio combines one stream per symbol and book
    weights = [c for c in result.portfolio["hrm_pooled"].columns if c.startswith("w_")]
    assert sorted(weights) == sorted(f"w_{s}:{b}" for s in ("SYN0", "SYN1", "SYN2") for b in "ab")


def test_pooled_book_is_the_mean_of_the_symbols_trading_each_day():
    days = pd.bdate_range("2020-01-01", periods=4)
    frame = lambda values: pd.DataFrame({c: values for c in POOLED_COLUMNS}, index=days)  # noqa: E731
    books = {"X": BookRun(daily={"m": frame([1.0, 2.0, 3.0, 4.0])}, trades={"m": pd.DataFrame({"pnl": [1.0]})}),
             "Y": BookRun(daily={"m": frame([3.0, 2.0, 1.0, 0.0]).iloc[1:]}, trades={"m": pd.DataFrame({"pnl": [2.0]})}),
             "Z": BookRun(skipped="no minutes")}
    pooled = pool_books(books, "A")
    np.testing.assert_allclose(pooled.daily["m"]["net_pnl"], [1.0, 2.0, 2.0, 2.0])
    assert list(pooled.trades["m"]["symbol"]) == ["X", "Y"]
    skipped = pool_books({"Z": BookRun(skipped="Book B skipped: no minutes"), "W": BookRun(skipped="x")}, "B").skipped
    assert skipped == "Book B skipped on every symbol (no minutes; x)"


def test_folds_are_built_on_the_calendar_and_a_late_symbol_joins_later():
    cfg = config_from_dict(UNIVERSE, "universe")
    markets = load_universe(cfg.data, cfg.seed)
    late = markets["SYN2"]
    cut = late.daily.dates[150]
    markets["SYN2"] = type(late)(type(late.daily)(late.daily.frame.loc[cut:], source="late"), None, None, {})
    panel = build_panel(markets, cfg)
    folds = panel_folds(panel, cfg)
    assert len(panel.sample_dates) == len(panel.datasets["SYN0"].sample_dates)
    first = symbol_folds(panel, folds[0], min_train_days=50)
    assert "SYN2" not in first  # too little history of its own yet
    assert "SYN2" in symbol_folds(panel, folds[-1], 10)  # and joins once it has the training dates asked for
    for fold in folds:
        for sym, f in symbol_folds(panel, fold, 50).items():
            data = panel.datasets[sym]
            train, test = data.sample_dates[f.train_idx], data.sample_dates[f.test_idx]
            # purged by date across the panel: no training label of any symbol reaches the test block
            assert data.span_end[f.train_idx].max() < test.min()
            assert train.max() < test.min()


def _manifest(tmp_path, text: str):
    path = tmp_path / "u.yaml"
    path.write_text(text)
    return path


def test_manifest_errors_name_the_symbol_and_key(tmp_path, shared_data_dir):
    universe = shared_data_dir / "universe"
    for name in ("SPY_daily.csv", "VIX_History.csv"):
        shutil.copy(universe / name, tmp_path / name)
    cases = {
        "symbols: []": "symbols: expected a non-empty mapping",
        "other: 1": "expected one top-level key 'symbols'",
        "symbols:\n  SPY: {daily: SPY_daily.csv}": "symbols.SPY: missing key 'iv'",
        "symbols:\n  SPY: {daily: SPY_daily.csv, iv: VIX_History.csv, minute: x.csv}": "symbols.SPY: unknown key 'minute'",
        "symbols:\n  SPY: {daily: SPY_daily.csv, iv: nope.csv}": "symbols.SPY.iv: file not found",
        "symbols:\n  SPY: {daily: SPY_daily.csv, iv: VIX_History.csv, iv_missing: fill}":
            "symbols.SPY.iv_missing: expected one of error, drop",
        "symbols:\n  'S P Y': {daily: SPY_daily.csv, iv: VIX_History.csv}": "expected a symbol name",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            read_manifest(_manifest(tmp_path, text))
    # the symbol's own iv_missing policy wins over the run's: SPY's 3 VIX gaps are dropped, not an error
    manifest = _manifest(tmp_path, "symbols:\n  SPY: {daily: SPY_daily.csv, iv: VIX_History.csv, iv_missing: drop}")
    markets = load_universe(DataConfig(source="universe", universe=str(manifest), iv_missing="error"), 0)
    assert markets["SPY"].daily.has_iv


def test_real_universe_errors_name_the_symbol_and_the_split_is_caught(shared_data_dir):
    manifest = shared_data_dir / "universe" / "universe.yaml"
    cfg = DataConfig(source="universe", universe=str(manifest))
    # QQQ's IV index misses dates inside its range: the error names the symbol and the flag
    with pytest.raises(DataValidationError, match=r"universe symbol \w+: .*iv"):
        load_universe(cfg, 0)
    # USO's minutes are as traded, its daily bars split-adjusted (1:8 in 2020): an error naming both files
    cfg = DataConfig(source="universe", universe=str(manifest), iv_missing="drop", drop_bad_prints=True)
    with pytest.raises(DataValidationError, match=r"universe symbol USO: .*USO_1min.csv and .*USO_daily.csv.* "
                                                  r"disagree .*--minutes-vs-daily rescale"):
        load_universe(cfg, 0)
    markets = load_universe(DataConfig(source="universe", universe=str(manifest), iv_missing="drop",
                                       drop_bad_prints=True, minutes_vs_daily="rescale"), 0)
    assert list(markets) == ["SPY", "QQQ", "IWM", "DIA", "GLD", "USO", "AMZN", "GOOG"]
    uso = markets["USO"]
    assert any("split ratio" in r["repair"] for r in uso.description["data_checks"]["repairs"])
    common = uso.minutes.session_dates.intersection(uso.daily.dates)
    last = uso.minutes.frame["close"].groupby(uso.minutes.session_labels()).last()
    ratio = uso.daily.frame.loc[common, "close"].to_numpy() / last.loc[common].to_numpy()
    assert np.abs(ratio - 1).max() < 0.01
    assert markets["AMZN"].minutes is None and markets["SPY"].minutes is not None


def _bars(days: pd.DatetimeIndex, close: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                         "volume": 1000.0}, index=days)


def test_minutes_that_disagree_with_the_daily_bars_are_an_error_or_rescaled_by_the_split_ratio():
    from lab_v10.src.data.plausibility import CheckReport
    from lab_v10.src.data.session_checks import check_minute_prices, split_ratio

    days = pd.bdate_range("2020-04-27", periods=4)
    daily = _bars(days, np.full(4, 100.0))
    stamps = pd.DatetimeIndex([d + pd.Timedelta(hours=10, minutes=m) for d in days for m in range(3)],
                              tz="America/New_York")
    as_traded = np.repeat([12.5, 12.5, 100.0, 100.0], 3)  # a 1:8 reverse split on the third day
    minutes = _bars(stamps, as_traded)
    with pytest.raises(DataValidationError, match=r"m.csv and d.csv disagree on 2 of 4 common sessions: on "
                                                  r"2020-04-27 .*ratio 8\).*--minutes-vs-daily rescale"):
        check_minute_prices(daily, "d.csv", minutes, "m.csv", rescale=False, report=CheckReport())
    report = CheckReport()
    fixed = check_minute_prices(daily, "d.csv", minutes, "m.csv", rescale=True, report=report)
    np.testing.assert_allclose(fixed["close"], 100.0)
    np.testing.assert_allclose(fixed["volume"], np.repeat([125.0, 125.0, 1000.0, 1000.0], 3))
    assert report.repairs[0]["rows"] == 2 and report.repairs[0]["flag"] == "--minutes-vs-daily rescale"
    # a factor that is no split ratio is an error even with rescale: not the same asset?
    minutes = _bars(stamps, np.repeat([37.0, 100.0, 100.0, 100.0], 3))
    with pytest.raises(DataValidationError, match="no split ratio: check that both files are the same asset"):
        check_minute_prices(daily, "d.csv", minutes, "m.csv", rescale=True, report=CheckReport())
    assert split_ratio(8.02) == 8.0 and split_ratio(1.49) == 1.5 and split_ratio(0.0501) == 0.05 and split_ratio(1.0) is None
    assert split_ratio(2.7) is None


def test_a_date_far_before_the_minutes_pairs_with_no_session():
    cfg = config_from_dict(UNIVERSE, "universe")
    market = load_universe(cfg.data, cfg.seed)["SYN0"]
    minutes = market.minutes.frame
    late = minutes[minutes.index.normalize().tz_localize(None) >= market.daily.dates[200]]
    market = type(market)(market.daily, type(market.minutes)(late, source="late minutes"), None, {})
    data = build_panel({"X": market}, cfg).datasets["X"]
    early = data.sample_dates[data.sample_dates < market.daily.dates[150]]
    assert data.next_session.reindex(early).isna().all()  # not the first minute session, years later
    paired = data.next_session.dropna()
    following = data.X_daily.index[data.X_daily.index.get_indexer(paired.index) + 1]
    assert (pd.DatetimeIndex(paired.to_numpy()) == following).all()


def test_cli_universe_flags_pick_the_universe_preset_and_refuse_mixed_sources(main_v3, captured_run, tmp_path,
                                                                              shared_data_dir):
    manifest = shared_data_dir / "universe" / "universe.yaml"
    assert main_v3.main(["--universe", str(manifest), "--minutes-vs-daily", "rescale", "--out",
                         str(tmp_path / "r")]) == 0
    cfg = captured_run["cfg"]
    assert cfg.data.source == "universe" and cfg.data.universe == str(manifest)
    assert cfg.data.minutes_vs_daily == "rescale" and "universe.yaml" in captured_run["preset"]
    assert main_v3.main(["--universe", str(manifest), "--daily", str(manifest), "--out", str(tmp_path / "x")]) == 2
    assert main_v3.main(["--data", "arch", "--universe", str(manifest), "--out", str(tmp_path / "y")]) == 2


def test_another_manifest_of_real_files_runs_end_to_end(tmp_path, shared_data_dir):
    universe = shared_data_dir / "universe"
    manifest = _manifest(tmp_path, f"""# two other symbols, one with minutes (as traded: rescaled by the split ratio)
symbols:
  OIL: {{daily: {universe / 'USO_daily.csv'}, iv: {universe / 'OVX_History.csv'}, minutes: {universe / 'minutes' / 'USO_1min.csv'}}}
  GOLD: {{daily: {universe / 'GLD_daily.csv'}, iv: {universe / 'GVZ_History.csv'}}}
""")
    cfg = config_from_dict({
        "models": ["har", "linear", "logistic", "rule"],
        "data": {"source": "universe", "universe": str(manifest), "iv_missing": "drop",
                 "minutes_vs_daily": "rescale"},
        "walkforward": {"mode": "last", "n_folds": 2, "min_train_days": 1000, "val_days": 80, "test_days": 250},
        "panel": {"pooled_models": ["har", "linear"], "min_train_days": 500},
    }, "two real symbols")
    result = run(cfg, tmp_path / "out", preset="two real symbols")
    fa = result.forecasts_a
    assert set(fa["symbol"]) == {"OIL", "GOLD"}
    assert set(fa["model"]) == {"har", "linear", "har_pooled", "linear_pooled"}
    assert result.forecasts_b.empty  # the minutes (Dec 2019) follow no training date of these folds
    assert result.verdict["model"] is None  # no HRM ran: the report says so instead of crowning a winner
    assert [row["symbol"] for row in result.symbol_table] == ["OIL", "GOLD"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["data"]["OIL"]["data_checks"]["repairs"][-1]["flag"] == "--minutes-vs-daily rescale"


def test_a_book_with_one_strategy_deflates_by_the_trials_tried():
    from lab_v10.src.eval.scoring import deflated_metrics

    rng = np.random.default_rng(0)
    days = pd.bdate_range("2020-01-01", periods=250)
    gross = pd.Series(rng.normal(0.001, 0.01, days.size), index=days)
    costs = pd.Series(0.0, index=days)
    one = deflated_metrics({"only": (gross, costs, None)}, n_trials=1)["only"]
    many = deflated_metrics({"only": (gross, costs, None)}, n_trials=20)["only"]
    assert one["dsr"] == pytest.approx(one["psr"]) and many["dsr"] < one["dsr"]
