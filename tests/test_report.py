"""Report writer: summary.json, CSV, Parquet, PNG and HTML hold exactly the numbers of a hand-built RunResult."""
from __future__ import annotations

import base64
import html
import dataclasses
import json
import re
import struct

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import PortfolioConfig
from lab_v10.src.data.store import read_parquet
from lab_v10.src.eval.metrics import (
    classification_metrics,
    max_drawdown,
    regression_metrics,
    trading_metrics,
)
from lab_v10.src.eval.plots import drawdown_curve
from lab_v10.src.eval.report import console_summary, write_report
from lab_v10.src.eval.results import BookRun, RunResult
from lab_v10.src.eval.verdict import build_verdict
from lab_v10.src.books.portfolio import combine_books

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("equity_a.png", "equity_b.png", "equity_portfolio.png", "forecast_scatter_a.png", "calibration_b.png",
         "act_segments_hrm.png")
MODELS_A = ("hrm", "har")
MODELS_B = ("hrm", "lgbm", "logistic")
DAYS = pd.bdate_range("2021-03-01", periods=40, name="date")  # test days: fold 0 = first 20, fold 1 = last 20
FOLD_OF_DAY = np.repeat([0, 1], 20)


def _forecasts_a() -> pd.DataFrame:
    """The long Book A table: one row per test day and model."""
    t = np.arange(DAYS.size)
    y = 3.0 * np.sin(t / 3.0) + 0.5 * np.cos(t * 1.7)
    truth = pd.DataFrame({"date": DAYS, "fold": FOLD_OF_DAY, "y_true": y,
                          "train_mean": np.where(FOLD_OF_DAY == 0, 0.4, -0.2)})
    forecasts = {"hrm": (0.8 * y + 0.3 * np.cos(t), 1.0 + 0.1 * (t % 3)), "har": (0.3 * y + 0.2, np.full(t.size, 2.0))}
    parts = [truth.assign(model=m, mu=mu, sigma=sigma) for m, (mu, sigma) in forecasts.items()]
    return pd.concat(parts, ignore_index=True)[["date", "fold", "model", "y_true", "train_mean", "mu", "sigma"]]


def _forecasts_b() -> pd.DataFrame:
    """The long Book B table: one row per test minute and model."""
    sessions = DAYS[[3, 8, 25, 31]]  # two sessions per fold
    minutes = pd.DatetimeIndex(
        [s + pd.Timedelta(hours=9, minutes=30 + m) for s in sessions for m in range(30)]
    ).tz_localize("America/New_York")
    k = np.arange(minutes.size)
    y = ((k * 7) % 5 < 2).astype(float)
    truth = pd.DataFrame({"timestamp": minutes, "session": np.repeat(sessions, 30), "fold": np.repeat([0, 1], 60),
                          "y_true": y, "setup_signal": (k % 4 == 0)})
    probas = {
        "hrm": np.clip(0.25 + 0.5 * y + 0.2 * np.sin(k), 0.0, 1.0),
        "lgbm": np.clip(0.4 + 0.1 * y + 0.3 * np.cos(k / 2), 0.0, 1.0),
        "logistic": np.full(k.size, 0.4),
    }
    parts = [truth.assign(model=m, proba=p) for m, p in probas.items()]
    return pd.concat(parts, ignore_index=True)[
        ["timestamp", "session", "fold", "model", "y_true", "setup_signal", "proba"]
    ]


def _by_fold(frame: pd.DataFrame, fn) -> dict[str, dict]:
    out = {f"fold_{k}": fn(part) for k, part in frame.groupby("fold")}
    out["all"] = fn(frame)
    return out


def _daily(gross: np.ndarray, costs: np.ndarray, index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"gross_pnl": gross, "costs": costs, "net_pnl": gross - costs, "turnover": costs * 100},
                        index=index)


def _book(strategies: dict[str, pd.DataFrame], trades: dict[str, pd.DataFrame]) -> BookRun:
    metrics = {s: trading_metrics(d["gross_pnl"], d["costs"], d["turnover"]) for s, d in strategies.items()}
    return BookRun(daily=strategies, trades=trades, metrics=metrics)


def make_result() -> RunResult:
    fa, fb = _forecasts_a(), _forecasts_b()
    forecast_metrics = {
        "A": {m: _by_fold(fa[fa["model"] == m], lambda f: regression_metrics(f["y_true"], f["mu"], f["sigma"],
                                                                              f["train_mean"])) for m in MODELS_A},
        "B": {m: _by_fold(fb[fb["model"] == m], lambda f: classification_metrics(f["y_true"], f["proba"]))
              for m in MODELS_B},
    }
    t = np.arange(DAYS.size)
    book_a = _book(
        {
            "hrm": _daily(0.004 * np.sin(t / 2.0) + 0.001, np.full(t.size, 0.0002), DAYS),
            "har": _daily(0.003 * np.cos(t / 3.0), np.full(t.size, 0.0001), DAYS),
            "flat": _daily(np.zeros(t.size), np.zeros(t.size), DAYS),  # never trades: Sharpe undefined (None)
        },
        {
            "hrm": pd.DataFrame({"entry_date": DAYS[[0, 10]], "exit_date": DAYS[[5, 15]], "size": [0.5, -0.3],
                                 "pnl_net": [0.004, -0.002]}),
            "har": pd.DataFrame({"entry_date": DAYS[[2]], "exit_date": DAYS[[7]], "size": [0.2], "pnl_net": [0.001]}),
        },
    )
    sessions = pd.DatetimeIndex(DAYS[[3, 8, 25, 31]], name="session")
    book_b = _book(
        {
            "hrm": _daily(np.array([0.002, -0.001, 0.003, 0.0005]), np.full(4, 0.0001), sessions),
            "lgbm": _daily(np.array([-0.001, 0.001, 0.0015, -0.002]), np.full(4, 0.0001), sessions),
        },
        {"hrm": pd.DataFrame({"session": sessions, "net_return": [0.0019, -0.0011, 0.0029, 0.0004]})},
    )
    cfg = PortfolioConfig(method="fixed")
    portfolio = {
        s: combine_books({"a": book_a.daily[s]["net_pnl"], "b": book_b.daily[s]["net_pnl"]}, DAYS, cfg).daily
        for s in ("hrm",)
    }
    portfolio_metrics = {
        s: trading_metrics(d["portfolio"], pd.Series(0.0, index=d.index)) for s, d in portfolio.items()
    }
    verdict = build_verdict(fa, fb, book_a, book_b, portfolio, horizon_days=5)
    folds = [
        {"number": k, "train_period": (DAYS[0] - pd.Timedelta(days=400 - 30 * k), DAYS[0] - pd.Timedelta(days=30)),
         "test_period": (DAYS[20 * k], DAYS[20 * k + 19]), "n_train": 250 + 20 * k, "n_test": 20, "purged": 21,
         "embargoed": 5 * k}
        for k in (0, 1)
    ]
    return RunResult(
        config={"seed": 7, "walkforward": {"n_folds": 2, "embargo_days": 5}, "portfolio": {"method": "fixed"},
                "book_a": {"entry_lag_days": 1}},
        preset="small.yaml (CPU preset for tests)",
        data={"source": "synthetic", "daily_rows": 540, "start": DAYS[0], "end": DAYS[-1],
              "label_balance": {"B": np.float64(fb["y_true"].mean())}, "iv_coverage": np.float64("nan")},
        folds=folds,
        forecasts_a=fa,
        forecasts_b=fb,
        forecast_metrics=forecast_metrics,
        book_a=book_a,
        book_b=book_b,
        portfolio=portfolio,
        portfolio_metrics=portfolio_metrics,
        verdict=verdict,
        act_segments={"hrm": np.array([1, 2, 2, 3, 3, 3, 4, 8, 2, 1])},
        n_trials=3,
        timings={"features": 1.25, "train_hrm": np.float64(12.5)},
    )


@pytest.fixture(scope="module")
def result() -> RunResult:
    return make_result()


@pytest.fixture(scope="module")
def report(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(result, out / "nested")


def _strict_json(text: str):
    def reject(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def _html_without_images(text: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)


def _row(html_text: str, first_cells: str) -> str:
    """The <tr> whose leading cells are ``first_cells`` (e.g. '<td>Portfolio</td><td>hrm</td>')."""
    match = re.search(r"<tr>" + re.escape(first_cells) + r".*?</tr>", html_text)
    assert match, f"no table row starting with {first_cells}"
    return match.group(0)


def test_summary_json_is_strict_and_holds_the_given_metrics(result, report):
    _, paths = report
    summary = _strict_json(paths["summary.json"].read_text())
    assert summary["preset"] == result.preset and summary["n_trials"] == 3
    assert summary["forecast_metrics"] == result.forecast_metrics  # per fold and "all", exact floats
    assert summary["trading_metrics"]["A"] == result.book_a.metrics
    assert summary["trading_metrics"]["B"] == result.book_b.metrics
    assert summary["portfolio_metrics"] == result.portfolio_metrics
    assert summary["trading_metrics"]["A"]["flat"]["net_sharpe"] is None  # None stays null
    assert summary["verdict"]["model"] == "hrm" and summary["verdict"]["lines"] == result.verdict["lines"]
    head = summary["verdict"]["sections"]["forecast_A"]
    assert head["best_baseline"] == "har" and set(head["versus"]["har"]["tests"]) == {"squared_error", "gaussian_nll"}
    assert summary["timings"] == {"features": 1.25, "train_hrm": 12.5}
    assert summary["skipped"] == {"A": None, "B": None}
    assert summary["n_trades"] == {"A": {"hrm": 2, "har": 1}, "B": {"hrm": 4}}
    assert summary["act_segments"] == {"hrm": {"n_samples": 10, "counts": {"1": 2, "2": 3, "3": 3, "4": 1, "8": 1}}}
    assert summary["data"]["start"] == "2021-03-01T00:00:00"
    assert summary["data"]["iv_coverage"] is None  # NaN is written as null, never as the NaN token
    assert summary["data"]["label_balance"]["B"] == float(result.forecasts_b["y_true"].mean())
    assert summary["folds"][1]["test_period"] == [DAYS[20].isoformat(), DAYS[39].isoformat()]
    assert summary["config"] == result.config


def test_fold_and_metric_csvs_match_the_result(result, report):
    _, paths = report
    folds = pd.read_csv(paths["folds.csv"])
    assert len(folds) == 2
    assert folds["number"].tolist() == [0, 1]
    assert folds["test_period_start"].tolist() == ["2021-03-01", "2021-03-29"]
    assert folds["test_period_end"].tolist() == ["2021-03-26", "2021-04-23"]
    assert folds["embargoed"].tolist() == [0, 5]

    for book, models in (("A", MODELS_A), ("B", MODELS_B)):
        table = pd.read_csv(paths[f"forecast_metrics_{book}.csv"])
        assert list(zip(table["model"], table["fold"])) == [(m, f) for m in models for f in ("fold_0", "fold_1", "all")]
        for row in table.itertuples(index=False):
            for key, value in result.forecast_metrics[book][row.model][row.fold].items():
                cell = getattr(row, key)
                assert (np.isnan(cell) if value is None else cell == pytest.approx(value, rel=1e-12)), (book, row, key)

    trading = pd.read_csv(paths["trading_metrics.csv"])
    expected = [("A", s) for s in ("hrm", "har", "flat")] + [("B", s) for s in ("hrm", "lgbm")] + [("portfolio", "hrm")]
    assert list(zip(trading["book"], trading["strategy"])) == expected
    hrm_a = trading.iloc[0]
    assert hrm_a["net_sharpe"] == pytest.approx(result.book_a.metrics["hrm"]["net_sharpe"], rel=1e-12)
    assert hrm_a["gross_ann_return"] == pytest.approx(result.book_a.metrics["hrm"]["gross_ann_return"], rel=1e-12)
    assert np.isnan(trading.iloc[2]["net_sharpe"])  # the flat strategy's undefined Sharpe is an empty cell

    trades = pd.read_csv(paths["trades_a_hrm.csv"])
    assert trades["pnl_net"].tolist() == [0.004, -0.002] and trades["size"].tolist() == [0.5, -0.3]
    assert set(n for n in paths if n.startswith("trades_")) == {"trades_a_hrm.csv", "trades_a_har.csv", "trades_b_hrm.csv"}


def test_parquet_files_round_trip(result, report):
    _, paths = report
    pd.testing.assert_frame_equal(read_parquet(paths["forecasts_a.parquet"]), result.forecasts_a, check_freq=False)
    pd.testing.assert_frame_equal(read_parquet(paths["forecasts_b.parquet"]), result.forecasts_b)
    pnl = read_parquet(paths["pnl_daily.parquet"])
    assert list(pnl.columns) == ["A:hrm", "A:har", "A:flat", "B:hrm", "B:lgbm", "portfolio:hrm"]
    assert pnl.index.equals(DAYS)
    np.testing.assert_array_equal(pnl["A:har"], result.book_a.daily["har"]["net_pnl"])
    np.testing.assert_array_equal(pnl["portfolio:hrm"], result.portfolio["hrm"]["portfolio"])
    b = pnl["B:hrm"].dropna()  # Book B traded on 4 sessions only; other dates are not its sessions
    np.testing.assert_array_equal(b.index, result.book_b.daily["hrm"].index)
    np.testing.assert_array_equal(b, result.book_b.daily["hrm"]["net_pnl"])


def test_plots_are_valid_pngs(report):
    _, paths = report
    for name in PLOTS:
        data = paths[name].read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert width > 400 and height > 300 and len(data) > 10_000, (name, width, height, len(data))
    assert not [p for p in paths["report.html"].parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_html_is_self_contained_with_headline_numbers(result, report):
    _, paths = report
    page = paths["report.html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert sorted(base64.b64decode(i) for i in images) == sorted(paths[n].read_bytes() for n in PLOTS)
    text = _html_without_images(page)
    assert "http" not in text and "<script" not in text and "<link" not in text
    assert "small.yaml (CPU preset for tests)" in text
    assert _row(text, "<td>iv_coverage</td>") == "<tr><td>iv_coverage</td><td>n/a</td></tr>"

    for model in MODELS_A:
        row = _row(text, f"<td>{model}</td>")  # Book A's forecast table comes first
        assert f"{result.forecast_metrics['A'][model]['all']['r2_oos']:.4f}" in row
        assert f"{result.forecast_metrics['A'][model]['all']['rmse']:.4f}" in row
    for model in MODELS_B:
        assert f"{result.forecast_metrics['B'][model]['all']['auc']:.4f}" in text
    m = result.book_a.metrics["hrm"]
    row = _row(text, '<td>Book A (daily straddles)</td><td>hrm</td>')
    for expected in (f"{m['net_sharpe']:.2f}", f"{m['net_ann_return']:.2%}", f"{m['net_max_drawdown']:.2%}",
                     f"{m['dsr']:.3f}", f"{m['total_costs']:.2%}", "<td class=\"num\">2</td>"):
        assert expected in row, expected
    flat = _row(text, '<td>Book A (daily straddles)</td><td>flat</td>')
    assert flat.count("n/a") >= 4  # Sharpe (net, gross), PSR, DSR are undefined for a strategy that never trades
    p = result.portfolio_metrics["hrm"]
    assert f"{p['net_sharpe']:.2f}" in _row(text, "<td>Portfolio</td><td>hrm</td>")
    assert text.index("<h2>Verdict</h2>") < text.index("<h2>Run</h2>")  # the page opens with the verdict
    for line in result.verdict["lines"]:
        assert html.escape(line.lstrip("- ")) in text
    assert "Book A fills at the close 1 session(s) after the signal (entry_lag_days=1)" in text
    assert _row(text, "<td>Trials (for the DSR)</td>") == (
        f"<tr><td>Trials (for the DSR)</td><td>3 ({result.n_trials_source})</td></tr>")


def test_skipped_book_and_missing_segments_show_notes(result, tmp_path):
    empty_b = result.forecasts_b.iloc[:0]
    skipped = dataclasses.replace(
        result,
        book_b=BookRun(skipped="no minute bars in data/minutes"),
        forecasts_b=empty_b,
        forecast_metrics={"A": result.forecast_metrics["A"]},
        portfolio={},
        portfolio_metrics={},
        verdict=build_verdict(result.forecasts_a, empty_b, result.book_a, BookRun(), {}, horizon_days=5),
        act_segments={},
    )
    paths = write_report(skipped, tmp_path)
    text = _html_without_images(paths["report.html"].read_text())
    assert "Book B (intraday shorts) skipped: no minute bars in data/minutes" in text
    assert "no model with learned halting ran" in text and "no Book B forecasts" in text
    assert {"equity_b.png", "calibration_b.png", "act_segments_hrm.png", "equity_portfolio.png"}.isdisjoint(paths)
    page = paths["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 2  # Book A equity and the Book A scatter remain
    summary = _strict_json(paths["summary.json"].read_text())
    assert summary["skipped"]["B"] == "no minute bars in data/minutes"
    assert summary["act_segments"] == {}
    assert pd.read_csv(paths["forecast_metrics_B.csv"]).empty
    assert "Book B (intraday shorts): skipped (no minute bars in data/minutes)" in console_summary(skipped)


def test_console_summary_opens_with_the_verdict_and_lists_models(result):
    text = console_summary(result)
    lines = text.splitlines()
    assert lines[: len(result.verdict["lines"])] == result.verdict["lines"]
    for model in {*MODELS_A, *MODELS_B, "flat"}:
        assert re.search(rf"^\s+{model}\s", text, re.MULTILINE), model
    hrm_a = result.forecast_metrics["A"]["hrm"]["all"]["r2_oos"]
    assert f"{hrm_a:.4f}" in text
    assert f"{result.book_a.metrics['hrm']['net_sharpe']:.2f}" in text
    book_a = lines.index("Book A (daily straddles)")
    widths = {len(line) for line in lines[book_a + 1: book_a + 5]}  # Book A table: header and 3 rows, fixed width
    assert len(widths) == 1


def test_drawdown_curve_matches_max_drawdown(result):
    pnl = result.book_a.daily["hrm"]["net_pnl"]
    dd = drawdown_curve(pnl)
    assert dd.shape == (len(pnl),) and (dd <= 0).all()
    assert dd.min() == pytest.approx(max_drawdown(pnl), abs=1e-15)



def test_verdict_states_the_sweeps_probability_of_backtest_overfitting(result):
    sweep = {"path": "runs/sweep.json", "study": "s", "n_trials": 12, "pbo": {"pbo": 0.375}}
    verdict = build_verdict(result.forecasts_a, result.forecasts_b, result.book_a, result.book_b, result.portfolio,
                            horizon_days=5, sweep=sweep)
    assert verdict["lines"][-1] == ("- Selection: this configuration is the best of 12 tried in sweep runs/sweep.json; "
                                    "probability of backtest overfitting (CSCV) = 0.38.")
    assert verdict["sweep"] == sweep
