"""The dual-book pipeline: data -> features/labels -> purged walk-forward -> models -> books -> report.

:func:`run` is the whole main job (``main_v3.py`` is its CLI). Every model — the HRM and each baseline —
is fit on the same training dates, early-stopped on the same validation dates and scored on the same test
rows, and every strategy trades through the same simulator with the same costs.

Samples and time semantics are the dataset's (:mod:`lab_v10.src.dataset.dataset`, docs/design.md section 3).
Every model is built by name (:mod:`lab_v10.src.models.registry`) and run through the one model interface
(:class:`~lab_v10.src.dataset.forecasts.Forecaster`) in a single loop. Test blocks are consecutive, so the
books trade one contiguous out-of-sample period.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lab_v10.src.books.intraday import simulate_intraday_shorts
from lab_v10.src.books.portfolio import combine_books
from lab_v10.src.books.straddle import positions_from_forecast, simulate_straddles
from lab_v10.src.config import LabConfig, config_to_dict
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import Dataset, build_dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import Fold, walk_forward_folds
from lab_v10.src.eval.metrics import classification_metrics, regression_metrics, sharpe_ratio, trading_metrics
from lab_v10.src.eval.report import console_summary, write_report
from lab_v10.src.eval.results import BookRun, RunResult
from lab_v10.src.eval.run_folder import finish_run_folder, prepare_run_folder
from lab_v10.src.eval.verdict import build_verdict
from lab_v10.src.models.registry import check_model_names, make_model

log = logging.getLogger("lab.pipeline")

def _fold_dict(fold: Fold) -> dict:
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


def _forecast_metrics(frame: pd.DataFrame, book: str) -> dict[str, dict]:
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


def _deflated_metrics(pnl: dict[str, tuple[pd.Series, pd.Series, pd.Series | None]], n_trials: int) -> dict[str, dict]:
    """Trading metrics of each strategy from its daily ``(gross, costs, turnover)``; the deflated Sharpe ratio
    counts every strategy of the set as a trial, times ``n_trials`` configurations tried before this run, with
    the cross-strategy variance of their Sharpe ratios."""
    # Per-period Sharpe of every strategy tried; a strategy that never trades counts as a trial with Sharpe 0.
    sharpes = [sharpe_ratio(gross - costs, periods_per_year=1) or 0.0 for gross, costs, _ in pnl.values()]
    trials = max(1, len(pnl)) * n_trials
    sr_variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else None
    return {name: trading_metrics(gross, costs, turnover, n_trials=trials, sr_variance=sr_variance)
            for name, (gross, costs, turnover) in pnl.items()}


def _checked(values: pd.Series | None, index: pd.Index, model: str, what: str) -> np.ndarray:
    """``values`` on exactly ``index``, finite; ValueError naming the model and the first row it lacks."""
    aligned = pd.Series(np.nan, index=index) if values is None else values.reindex(index)
    bad = ~np.isfinite(aligned.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(f"{model}: no finite {what} for test row {index[np.flatnonzero(bad)[0]]}")
    return aligned.to_numpy(dtype=float)


def _run_models(data: Dataset, folds: list[Fold], cfg: LabConfig, out_dir: Path):
    """Fit every model of ``cfg.models`` per fold and forecast the fold's test rows.

    Returns the long Book A table (one row per test date and model: ``date, fold, model, y_true,
    train_mean, mu, sigma``), the long Book B table (one row per test minute and model: ``timestamp,
    session, fold, model, y_true`` (NaN where the horizon runs past the close), ``setup_signal, proba``) and
    the ACT segments per model that reports them (one value per test sample and ensemble member).
    ``train_mean`` is the mean training label of the fold: the R^2 benchmark, the same for every model.
    """
    names = cfg.models
    rows_a, rows_b, segments = [], [], {}
    for fold in tqdm(folds, desc="walk-forward folds", unit="fold"):
        train, _, test = split_dates(data, fold)
        truth_a = truth_b = None
        if data.yA is not None:
            truth_a = pd.DataFrame({"date": test, "fold": fold.number, "y_true": data.yA.loc[test].to_numpy(),
                                    "train_mean": float(data.yA.loc[train].mean())})
        if data.X_intraday is not None:
            minutes = session_minutes(data, sessions_for(data, test))
            X = data.X_intraday.loc[minutes]
            truth_b = pd.DataFrame({"timestamp": minutes, "session": X["session"].to_numpy(), "fold": fold.number,
                                    "y_true": data.yB.reindex(minutes).to_numpy(dtype=float),
                                    "setup_signal": X["setup_signal"].to_numpy().astype(bool)})
        for name in names:
            model = make_model(name, cfg, out_dir / name / f"fold_{fold.number}")
            books = [b for b, truth in (("A", truth_a), ("B", truth_b)) if b in model.books and truth is not None]
            if not books:
                log.info("%s: skipped (it forecasts Book %s, which this data cannot run)", name, "/".join(model.books))
                continue
            forecasts = model.fit(data, fold).predict(data, test)
            if "A" in books:
                rows_a.append(truth_a.assign(model=name, mu=_checked(forecasts.mu, test, name, "mu"),
                                             sigma=_checked(forecasts.sigma, test, name, "sigma")))
            if "B" in books:
                proba = _checked(forecasts.proba, truth_b["timestamp"], name, "probability")
                rows_b.append(truth_b.assign(model=name, proba=proba))
            for key, table in forecasts.diagnostics.items():
                if key.startswith("act_segments"):
                    segments.setdefault(name, []).append(table.to_numpy().ravel())
    columns_a = ["date", "fold", "model", "y_true", "train_mean", "mu", "sigma"]
    columns_b = ["timestamp", "session", "fold", "model", "y_true", "setup_signal", "proba"]
    forecasts_a = pd.concat(rows_a, ignore_index=True)[columns_a] if rows_a else pd.DataFrame(columns=columns_a)
    forecasts_b = pd.concat(rows_b, ignore_index=True)[columns_b] if rows_b else pd.DataFrame(columns=columns_b)
    return forecasts_a, forecasts_b, {name: np.concatenate(parts) for name, parts in segments.items()}


def _book_a(data: Dataset, forecasts_a: pd.DataFrame, cfg: LabConfig) -> BookRun:
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


def _book_b(data: Dataset, forecasts_b: pd.DataFrame, cfg: LabConfig) -> BookRun:
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


def _portfolio(book_a: BookRun, book_b: BookRun, cfg: LabConfig, n_trials: int) -> tuple[dict, dict]:
    """Combine the two books per strategy name present in both (or the one book that ran); the portfolio DSR
    is deflated like a book's (:func:`_deflated_metrics`)."""
    names = [n for n in book_a.daily if n in book_b.daily] or list(book_a.daily) or list(book_b.daily)
    out, pnl = {}, {}
    for name in names:
        books = {k: b.daily[name] for k, b in (("a", book_a), ("b", book_b)) if name in b.daily}
        calendar = pd.DatetimeIndex(sorted(set().union(*(d.index for d in books.values()))))
        result = combine_books({k: d["net_pnl"] for k, d in books.items()}, calendar, cfg.portfolio)
        daily = result.daily
        gross = sum(daily[f"w_{k}"] * d["gross_pnl"].reindex(calendar, fill_value=0.0) for k, d in books.items())
        daily["gross"] = gross
        daily["costs"] = gross - daily["portfolio"]
        out[name] = daily
        # gross - net is >= 0 by construction (weights >= 0, costs >= 0); clip only float rounding below 0.
        pnl[name] = (daily["gross"], daily["costs"].clip(lower=0.0), None)
    return out, _deflated_metrics(pnl, n_trials)


def run(cfg: LabConfig, out_dir: Path, preset: str = "", n_trials: int = 1, overwrite: bool = False,
        sweep: dict | None = None) -> RunResult:
    """Run the whole lab for ``cfg``; write the report into ``out_dir``; return the results.

    ``n_trials``: configurations tried before this run (deflated Sharpe); ``sweep``: the sweep the config
    came from (``eval.sweep.read_sweep_summary``), whose probability of backtest overfitting the verdict states.

    ``out_dir`` is checked and prepared before any work (:mod:`lab_v10.src.eval.run_folder`): a non-empty
    folder is refused unless ``overwrite``, and it carries an in-progress marker until the report is written.
    """
    check_model_names(cfg.models)  # before any work: a typo or a bad folder must not cost a data load
    prepare_run_folder(out_dir, overwrite)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    market = load_market(cfg.data, cfg.seed)
    lap("data")
    data = build_dataset(market, cfg)
    lap("features_labels")
    description = dict(market.description)
    description.update(
        daily_feature_rows=len(data.X_daily),
        samples=len(data.sample_dates),
        yA_mean=None if data.yA is None else float(data.yA.mean()),
        yA_std=None if data.yA is None else float(data.yA.std()),
    )
    if data.yB is not None:
        labelled = data.yB.dropna()
        description.update(minute_feature_rows=len(data.X_intraday), yB_labelled=len(labelled),
                           yB_positive_rate=float(labelled.mean()) if len(labelled) else None,
                           setup_signals=int(data.X_intraday["setup_signal"].sum()))
    log.info("data: %s", description)

    folds = walk_forward_folds(data.sample_dates, data.span_end, cfg.walkforward)
    for fold in folds:
        log.info(fold.describe())
    forecasts_a, forecasts_b, segments = _run_models(data, folds, cfg, out_dir)
    lap("models")

    book_a = _book_a(data, forecasts_a, cfg)
    book_b = _book_b(data, forecasts_b, cfg)
    for book in (book_a, book_b):
        if book.skipped is None:
            pnl = {name: (d["gross_pnl"], d["costs"], d.get("turnover")) for name, d in book.daily.items()}
            book.metrics.update(_deflated_metrics(pnl, n_trials))
        else:
            log.warning(book.skipped)
    portfolio, portfolio_metrics = _portfolio(book_a, book_b, cfg, n_trials)
    lap("books")

    forecast_metrics = {}
    if not forecasts_a.empty:
        forecast_metrics["A"] = _forecast_metrics(forecasts_a, "A")
    if not forecasts_b.empty:
        forecast_metrics["B"] = _forecast_metrics(forecasts_b, "B")
        # The meta-label only matters where the setup fires: score the models on those minutes too.
        on_setup = forecasts_b[forecasts_b["setup_signal"]]
        if on_setup["y_true"].nunique() == 2 and all(on_setup.groupby("fold")["y_true"].nunique() == 2):
            # the rule's probability is constant on setup minutes: nothing to score
            forecast_metrics["B_setup"] = _forecast_metrics(on_setup[on_setup["model"] != "rule"], "B")
        else:
            log.warning("Book B: too few labelled setup minutes with both outcomes to score the meta-label on them")
    verdict = build_verdict(forecasts_a, forecasts_b, book_a, book_b, portfolio, cfg.labels.horizon_days, sweep)
    lap("verdict")

    result = RunResult(
        config=config_to_dict(cfg),
        preset=preset,
        data=description,
        folds=[_fold_dict(f) for f in folds],
        forecasts_a=forecasts_a,
        forecasts_b=forecasts_b,
        forecast_metrics=forecast_metrics,
        book_a=book_a,
        book_b=book_b,
        portfolio=portfolio,
        portfolio_metrics=portfolio_metrics,
        verdict=verdict,
        act_segments=segments,
        n_trials=n_trials,
        timings=timings,
    )
    write_report(result, out_dir)
    finish_run_folder(out_dir)
    lap("report")
    result.timings.update(timings)
    print(console_summary(result))
    return result
