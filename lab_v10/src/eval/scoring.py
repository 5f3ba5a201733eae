"""Scoring one asset's forecasts: forecast metrics, the two books' trades, the portfolio and the deflated
Sharpe ratios (docs/design.md sections 4 and 5).

Shared by the single-asset pipeline and the universe pipeline (which scores each symbol with these, then
the panel): every strategy trades through the same simulator with the same costs, and the deflated Sharpe
ratio counts every strategy of a set as a trial.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab_v10.src.books.intraday import simulate_intraday_shorts
from lab_v10.src.books.portfolio import combine_books
from lab_v10.src.books.straddle import positions_from_forecast, simulate_straddles
from lab_v10.src.config import LabConfig
from lab_v10.src.dataset.dataset import Dataset
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.eval.metrics import classification_metrics, regression_metrics, sharpe_ratio, trading_metrics
from lab_v10.src.eval.results import BookRun
from lab_v10.src.eval.verdict import build_verdict

log = logging.getLogger("lab.pipeline")


def fold_dict(fold: Fold) -> dict:
    return {
        "fold": fold.number,
        "train_period": fold.train_period,
        "val_period": fold.val_period,
        "test_period": fold.test_period,
        "train_rows": int(fold.train_idx.size),
        "val_rows": int(fold.val_idx.size),
        "test_rows": int(fold.test_idx.size),
        "purged_train": fold.purged_train,
        "embargoed": fold.embargoed,
        "purged_val": fold.purged_val,
    }


def forecast_metrics(frame: pd.DataFrame, book: str) -> dict[str, dict]:
    """Per model of a long forecast table: metrics per fold and over all its labelled rows (``fold_<k>``, ``all``)."""
    out: dict[str, dict] = {}
    frame = frame[frame["y_true"].notna()]
    for model, rows in frame.groupby("model", sort=False):
        per: dict[str, dict] = {}
        groups = [(f"fold_{k}", g) for k, g in rows.groupby("fold", sort=True)] + [("all", rows)]
        for key, g in groups:
            if book == "A":
                per[key] = regression_metrics(g["y_true"], g["mu"], g["sigma"], g["train_mean"])
            else:
                per[key] = classification_metrics(g["y_true"], g["proba"])
        out[model] = per
    return out


def deflated_metrics(pnl: dict[str, tuple[pd.Series, pd.Series, pd.Series | None]], n_trials: int) -> dict[str, dict]:
    """Trading metrics of each strategy from its daily ``(gross, costs, turnover)``; the deflated Sharpe ratio
    counts every strategy of the set as a trial, times ``n_trials`` configurations tried before this run, with
    the cross-strategy variance of their Sharpe ratios. With a single strategy that variance is unobserved: the
    sampling variance ``1 / T`` of a zero-skill per-period Sharpe estimate over its ``T`` days stands in (the
    spread of the trials' Sharpe ratios under the null)."""
    # Per-period Sharpe of every strategy tried; a strategy that never trades counts as a trial with Sharpe 0.
    sharpes = [sharpe_ratio(gross - costs, periods_per_year=1) or 0.0 for gross, costs, _ in pnl.values()]
    trials = max(1, len(pnl)) * n_trials
    if len(sharpes) > 1:
        sr_variance = float(np.var(sharpes, ddof=1))
    else:
        sr_variance = 1.0 / max(len(gross) for gross, _, _ in pnl.values()) if pnl else None
    return {name: trading_metrics(gross, costs, turnover, n_trials=trials, sr_variance=sr_variance)
            for name, (gross, costs, turnover) in pnl.items()}


def checked_forecast(values: pd.Series | None, index: pd.Index, model: str, what: str) -> np.ndarray:
    """``values`` on exactly ``index``, finite; ValueError naming the model and the first row it lacks."""
    aligned = pd.Series(np.nan, index=index) if values is None else values.reindex(index)
    bad = ~np.isfinite(aligned.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(f"{model}: no finite {what} for test row {index[np.flatnonzero(bad)[0]]}")
    return aligned.to_numpy(dtype=float)


def trade_book_a(data: Dataset, forecasts_a: pd.DataFrame, cfg: LabConfig) -> BookRun:
    """Trade each model's straddle positions, always-short and no-trade on the test dates."""
    if data.yA is None:
        return BookRun(skipped="Book A skipped: the daily data has no implied vol (iv), so yA and straddles are undefined")
    if forecasts_a.empty:
        return BookRun(skipped="Book A skipped: no model in --models forecasts Book A (e.g. hrm, tshrm, har, linear, lgbm)")
    book = BookRun()
    positions = {}
    for model, rows in forecasts_a.groupby("model", sort=False):
        rows = rows.set_index("date")
        positions[model] = positions_from_forecast(rows["mu"], rows["sigma"], cfg.book_a)
    test = pd.DatetimeIndex(forecasts_a["date"].unique())
    positions["always_short"] = pd.Series(-cfg.book_a.size_cap, index=test)
    positions["no_trade"] = pd.Series(0.0, index=test)
    results = {name: simulate_straddles(data.market.daily, position, cfg.book_a) for name, position in positions.items()}
    # Scored window: the test days, plus the days until the last straddle opened from a test-day forecast exits
    # (one window for every strategy, so they are compared on the same dates).
    exits = [r.trades["exit_date"].max() for r in results.values() if len(r.trades)]
    end = max([test[-1], *exits])
    for name, result in results.items():
        book.daily[name] = result.daily.loc[test[0]:end]
        book.trades[name] = result.trades
    return book


def trade_book_b(data: Dataset, forecasts_b: pd.DataFrame, cfg: LabConfig) -> BookRun:
    """Trade the setup on every test minute: the rule alone, and filtered by each model's probability."""
    if data.X_intraday is None:
        return BookRun(skipped="Book B skipped: no minute bars were given (--minutes), so there is nothing to trade")
    if forecasts_b.empty:
        return BookRun(skipped="Book B skipped: no model in --models forecasts Book B (e.g. hrm, lgbm, logistic, rule)")
    book = BookRun()
    trade_proba = forecasts_b.pivot(index="timestamp", columns="model", values="proba")  # (test minutes, models)
    trade_proba = trade_proba[list(forecasts_b["model"].unique())]
    X = data.X_intraday.loc[trade_proba.index]
    sessions = pd.DatetimeIndex(X["session"].unique())
    bars = data.market.minutes.frame.loc[X.index]
    minutes = bars.join(X[["vwap", "atr", "pivot_high", "session"]])
    # Prior session closes from the full history, so SSR at the start of the test period is not lost.
    all_sessions = pd.DatetimeIndex(data.market.minutes.session_labels())
    last_close = data.market.minutes.frame["close"].groupby(all_sessions).last()
    prior_close = last_close.shift(1).reindex(sessions)
    if prior_close.isna().any():
        prior_close = None  # the first session of the data has no prior close; the simulator derives its own
    setup = X["setup_signal"].to_numpy().astype(bool)
    strategies = {"rule": setup}
    for model in trade_proba.columns:
        if model != "rule":  # the rule baseline's "probability" is the setup itself: traded above
            strategies[model] = setup & (trade_proba[model].to_numpy() >= cfg.book_b.proba_threshold)
    for name, signal in strategies.items():
        result = simulate_intraday_shorts(minutes, signal, cfg.book_b, prior_close)
        daily = result.daily.copy()
        daily["turnover"] = daily["n_trades"] * 2.0 * cfg.book_b.capital_per_trade
        book.daily[name] = daily
        book.trades[name] = result.trades
    return book


def combine_portfolio(books: dict[str, BookRun], cfg: LabConfig, n_trials: int,
                      base_weights: dict[str, float] | None = None) -> tuple[dict, dict]:
    """Combine the book streams ``books`` (``{"a": Book A, "b": Book B}`` for one asset, or one stream per
    symbol and book) per strategy name present in every stream that ran; base weights as
    :func:`~lab_v10.src.books.portfolio.combine_books`. The portfolio DSR is deflated like a book's
    (:func:`deflated_metrics`)."""
    ran = {k: b for k, b in books.items() if b.daily}
    names = [n for n in next(iter(ran.values())).daily if all(n in b.daily for b in ran.values())] if ran else []
    out, pnl = {}, {}
    for name in names:
        streams = {k: b.daily[name] for k, b in ran.items()}
        calendar = pd.DatetimeIndex(sorted(set().union(*(d.index for d in streams.values()))))
        result = combine_books({k: d["net_pnl"] for k, d in streams.items()}, calendar, cfg.portfolio, base_weights)
        daily = result.daily
        gross = sum(daily[f"w_{k}"] * d["gross_pnl"].reindex(calendar, fill_value=0.0) for k, d in streams.items())
        daily["gross"] = gross
        daily["costs"] = gross - daily["portfolio"]
        out[name] = daily
        # gross - net is >= 0 by construction (weights >= 0, costs >= 0); clip only float rounding below 0.
        pnl[name] = (daily["gross"], daily["costs"].clip(lower=0.0), None)
    return out, deflated_metrics(pnl, n_trials)


@dataclass
class AssetScores:
    """Everything scored for one asset (or, aggregated, for a universe): the two books (each strategy's
    daily P&L, trades and deflated metrics), the portfolio per strategy and its metrics, the forecast
    metrics (``{"A"|"B"|"B_setup": {model: {"fold_<k>"|"all": metrics}}}``) and the verdict."""

    book_a: BookRun
    book_b: BookRun
    portfolio: dict[str, pd.DataFrame]
    portfolio_metrics: dict[str, dict]
    forecast_metrics: dict[str, dict]
    verdict: dict = field(default_factory=dict)


def score_forecasts(forecasts_a: pd.DataFrame, forecasts_b: pd.DataFrame) -> dict[str, dict]:
    """Forecast metrics of the long tables: Book A, Book B over every labelled minute and over the setup
    minutes (``B_setup``, when every fold has both outcomes there; the rule is constant there and skipped)."""
    out = {}
    if not forecasts_a.empty:
        out["A"] = forecast_metrics(forecasts_a, "A")
    if not forecasts_b.empty:
        out["B"] = forecast_metrics(forecasts_b, "B")
        # The meta-label only matters where the setup fires: score the models on those minutes too.
        on_setup = forecasts_b[forecasts_b["setup_signal"]]
        if on_setup["y_true"].nunique() == 2 and all(on_setup.groupby("fold")["y_true"].nunique() == 2):
            out["B_setup"] = forecast_metrics(on_setup[on_setup["model"] != "rule"], "B")
        else:
            log.warning("Book B: too few labelled setup minutes with both outcomes to score the meta-label on them")
    return out


def add_book_metrics(book: BookRun, n_trials: int) -> None:
    """Fill ``book.metrics`` with every strategy's deflated trading metrics (log the reason a book skipped)."""
    if book.skipped is None:
        pnl = {name: (d["gross_pnl"], d["costs"], d.get("turnover")) for name, d in book.daily.items()}
        book.metrics.update(deflated_metrics(pnl, n_trials))
    else:
        log.warning(book.skipped)


def score_asset(data: Dataset, forecasts_a: pd.DataFrame, forecasts_b: pd.DataFrame, cfg: LabConfig,
                n_trials: int, sweep: dict | None) -> AssetScores:
    """Trade both books of one asset on its forecasts, combine them, and score forecasts and verdict."""
    book_a = trade_book_a(data, forecasts_a, cfg)
    book_b = trade_book_b(data, forecasts_b, cfg)
    for book in (book_a, book_b):
        add_book_metrics(book, n_trials)
    portfolio, portfolio_metrics = combine_portfolio({"a": book_a, "b": book_b}, cfg, n_trials)
    scores = AssetScores(book_a, book_b, portfolio, portfolio_metrics, score_forecasts(forecasts_a, forecasts_b))
    scores.verdict = build_verdict(forecasts_a, forecasts_b, book_a, book_b, portfolio, cfg.labels.horizon_days, sweep)
    return scores
