"""The dual-book pipeline: data -> features/labels -> purged walk-forward -> models -> books -> report.

:func:`run` is the whole main job (``main_v3.py`` is its CLI). Every model — the HRM and each baseline —
is fit on the same training dates, early-stopped on the same validation dates and scored on the same test
rows, and every strategy trades through the same simulator with the same costs.

Samples and time semantics (DESIGN.md section 3):

- A daily sample is a forecast date *t* (a close) whose label ``yA(t)`` (days t+1..t+h) is defined; the
  walk-forward folds are built over these dates and purged by the label span ``t..t+h``.
- Book B's samples for forecast date *t* are the minutes of the next session *d* after *t*: their labels lie
  inside the yA span of *t*, so the same purging covers them; the HRM reads daily rows <= t = d−1 for them.
- Test blocks are consecutive, so the books trade one contiguous out-of-sample period.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lab_v10.src.baselines.registry import make_baselines
from lab_v10.src.config import LabConfig, config_to_dict
from lab_v10.src.data.market import Market, load_market
from lab_v10.src.eval.metrics import classification_metrics, regression_metrics, sharpe_ratio, trading_metrics
from lab_v10.src.eval.report import console_summary, write_report
from lab_v10.src.eval.results import BookRun, RunResult
from lab_v10.src.eval.walkforward import Fold, walk_forward_folds
from lab_v10.src.features.daily import build_daily_features
from lab_v10.src.features.intraday import build_intraday_features
from lab_v10.src.features.labels import make_daily_labels, make_intraday_labels
from lab_v10.src.intraday.intraday_book import simulate_intraday_shorts
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.straddle_book import positions_from_forecast, simulate_straddles
from lab_v10.src.portfolio import combine_books

log = logging.getLogger("lab.pipeline")

BOOK_A_RULES = ("always_short", "no_trade")  # position rules traded beside the forecasters
# Which metric decides a winner, and whether larger is better.
FORECAST_WINNER_METRICS = {
    "A": {"r2_oos": True, "rmse": False, "gaussian_nll": False, "rank_ic": True},
    "B": {"auc": True, "brier": False, "log_loss": False, "ece": False},
}
TRADING_WINNER_METRICS = {"net_sharpe": True, "net_ann_return": True, "net_max_drawdown": True, "dsr": True}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Features, labels and samples of one run (all causal; see module docstring)."""

    market: Market
    X_daily: pd.DataFrame  # index date
    yA: pd.Series | None  # index date, vol points (None without iv)
    X_intraday: pd.DataFrame | None  # index minute timestamp
    yB: pd.Series | None  # index minute timestamp, 0/1/NaN
    sample_dates: pd.DatetimeIndex  # forecast dates t with a defined label span
    span_end: pd.DatetimeIndex  # last date each sample's label looks at
    next_session: pd.Series  # forecast date t -> the next minute session after t (NaT when none)


def build_dataset(market: Market, cfg: LabConfig) -> Dataset:
    """Causal features and labels for ``market`` and the sample dates the folds are built on."""
    X_daily = build_daily_features(market.daily, cfg.features)
    yA = span = None
    if market.daily.has_iv:
        daily_labels = make_daily_labels(market.daily, cfg.labels).reindex(X_daily.index)
        yA, span = daily_labels["yA"], daily_labels["span_end"]
    X_intraday = yB = None
    if market.minutes is not None:
        X_intraday = build_intraday_features(market.minutes, cfg.features)
        yB = make_intraday_labels(market.minutes, X_intraday["atr"], cfg.labels)["yB"].reindex(X_intraday.index)

    sessions = pd.DatetimeIndex([] if X_intraday is None else X_intraday["session"].unique()).sort_values()
    dates = X_daily.index
    pos = np.searchsorted(sessions.to_numpy(), dates.to_numpy(), side="right")  # (n_dates,) len(sessions) = none
    after_last = np.append(sessions.to_numpy(), np.datetime64("NaT"))
    next_session = pd.Series(after_last[pos], index=dates)
    if yA is not None:
        keep = yA.notna().to_numpy()
        sample_dates, span_end = dates[keep], pd.DatetimeIndex(span[keep])
    else:
        # No implied vol: no yA. A sample is a date with a next minute session; its span is that session.
        keep = next_session.notna().to_numpy()
        sample_dates, span_end = dates[keep], pd.DatetimeIndex(next_session[keep])
    if len(sample_dates) == 0:
        raise ValueError("no labelled samples: the data is shorter than the label horizon")
    return Dataset(market, X_daily, yA, X_intraday, yB, sample_dates, span_end, next_session)


def sessions_for(data: Dataset, dates: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The minute sessions whose labels belong to forecast dates ``dates`` (the next session of each)."""
    nxt = data.next_session.reindex(dates).dropna()
    return pd.DatetimeIndex(nxt.unique()).sort_values()


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


def _forecast_metrics(frame: pd.DataFrame, models: list[str], book: str) -> dict[str, dict]:
    """Per model: metrics per fold and over all test rows (``fold_<k>`` and ``all``)."""
    out: dict[str, dict] = {}
    for model in models:
        per: dict[str, dict] = {}
        groups = [(f"fold_{k}", g) for k, g in frame.groupby("fold", sort=True)] + [("all", frame)]
        for key, g in groups:
            if book == "A":
                per[key] = regression_metrics(g["y_true"], g[f"mu_{model}"], g[f"sigma_{model}"], g["train_mean"])
            else:
                per[key] = classification_metrics(g["y_true"], g[f"proba_{model}"])
        out[model] = per
    return out


def _winners(scores: dict[str, dict], rules: dict[str, bool]) -> dict[str, str]:
    """For each metric, the model with the best value (None values never win)."""
    winners = {}
    for metric, larger_better in rules.items():
        valid = {m: s[metric] for m, s in scores.items() if s.get(metric) is not None}
        if valid:
            pick = max if larger_better else min
            winners[metric] = pick(valid, key=valid.get)
    return winners


def _trading(book: BookRun, n_trials_per_strategy: int) -> None:
    """Fill ``book.metrics`` with trading metrics; the DSR counts every strategy of the book as a trial."""
    # Per-period Sharpe of every strategy tried; a strategy that never trades counts as a trial with Sharpe 0.
    sharpes = [sharpe_ratio(daily["net_pnl"], periods_per_year=1) or 0.0 for daily in book.daily.values()]
    n_trials = max(1, len(book.daily)) * n_trials_per_strategy
    sr_variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else None
    for name, daily in book.daily.items():
        book.metrics[name] = trading_metrics(
            daily["gross_pnl"], daily["costs"], daily.get("turnover"), n_trials=n_trials, sr_variance=sr_variance
        )


def _run_models(data: Dataset, folds: list[Fold], cfg: LabConfig, out_dir: Path):
    """Fit every model per fold.

    Returns the Book A forecast table (test dates), the Book B forecast table (labelled test minutes, for
    scoring), the Book B probabilities of every test minute (for trading: minutes whose label horizon runs
    past the close have no label but can still be traded) and the HRM's ACT segments per prediction and member.
    """
    names = list(dict.fromkeys(cfg.models))
    daily_models_names = [n for n in names if n != "hrm"]
    rows_a, rows_b, rows_trade, steps = [], [], [], []
    for fold in tqdm(folds, desc="walk-forward folds", unit="fold"):
        train = data.sample_dates[fold.train_idx]
        val = data.sample_dates[fold.val_idx]
        test = data.sample_dates[fold.test_idx]
        daily_models, intraday_models = make_baselines(daily_models_names, cfg.baselines, cfg.seed)
        if data.yA is None:
            daily_models = []
        if data.X_intraday is None:
            intraday_models = []
        table_a = pd.DataFrame(index=test) if data.yA is not None else None
        table_b = None
        if data.X_intraday is not None:
            test_sessions = sessions_for(data, test)
            test_minutes = data.X_intraday.index[data.X_intraday["session"].isin(test_sessions).to_numpy()]
            labelled = test_minutes[data.yB.reindex(test_minutes).notna().to_numpy()]
            table_b = pd.DataFrame(index=labelled)
            trade_b = pd.DataFrame(index=test_minutes)
            X_test_minutes = data.X_intraday.loc[test_minutes]

        if table_a is not None:
            table_a["fold"] = fold.number
            table_a["y_true"] = data.yA.loc[test].to_numpy()
        for model in daily_models:
            model.fit(data.X_daily, data.yA, train, val)
            pred = model.predict_daily(data.X_daily.loc[test])
            table_a[f"mu_{model.name}"] = pred["mu"].to_numpy()
            table_a[f"sigma_{model.name}"] = pred["sigma"].to_numpy()
            table_a["train_mean"] = model.train_mean_
        if table_b is not None:
            table_b["fold"] = fold.number
            table_b["session"] = data.X_intraday.loc[labelled, "session"].to_numpy()
            table_b["y_true"] = data.yB.loc[labelled].to_numpy()
            table_b["setup_signal"] = data.X_intraday.loc[labelled, "setup_signal"].to_numpy().astype(bool)
            train_s, val_s = sessions_for(data, train), sessions_for(data, val)
            for model in intraday_models:
                model.fit(data.X_intraday, data.yB, train_s, val_s)
                proba = model.predict_intraday_proba(X_test_minutes)
                trade_b[model.name] = proba.to_numpy()
                table_b[f"proba_{model.name}"] = proba.loc[labelled].to_numpy()
        if "hrm" in names:
            hrm = HRMAdapter(cfg, out_dir=out_dir / "hrm" / f"fold_{fold.number}")
            hrm.fit(data.X_daily, data.X_intraday, data.yA, data.yB, train, val)
            if table_a is not None:
                pred = hrm.predict_daily(data.X_daily.loc[: test[-1]]).reindex(test)
                if pred["mu"].isna().any():
                    missing = pred.index[pred["mu"].isna()][0]
                    raise ValueError(f"hrm: no forecast for test date {missing.date()} (too little daily history)")
                table_a["mu_hrm"] = pred["mu"].to_numpy()
                table_a["sigma_hrm"] = pred["sigma"].to_numpy()
                if "train_mean" not in table_a:
                    table_a["train_mean"] = hrm.train_mean_
                steps.append(hrm.last_steps_.reindex(test).to_numpy().ravel())  # per (test date, member)
            if table_b is not None:
                proba = hrm.predict_intraday_proba(X_test_minutes, data.X_daily).reindex(test_minutes)
                if proba.isna().any():
                    raise ValueError(f"hrm: no probability for test minute {proba.index[proba.isna()][0]}")
                trade_b["hrm"] = proba.to_numpy()
                table_b["proba_hrm"] = proba.loc[labelled].to_numpy()
                steps.append(hrm.last_steps_.to_numpy().ravel())  # per (test session, member)
        if table_a is not None:
            rows_a.append(table_a)
        if table_b is not None:
            rows_b.append(table_b)
            rows_trade.append(trade_b)
    forecasts_a = pd.concat(rows_a) if rows_a else pd.DataFrame()
    forecasts_b = pd.concat(rows_b) if rows_b else pd.DataFrame()
    trade_proba_b = pd.concat(rows_trade) if rows_trade else pd.DataFrame()
    segments = np.concatenate(steps) if steps else np.zeros(0, dtype=int)
    return forecasts_a, forecasts_b, trade_proba_b, segments


def _book_a(data: Dataset, forecasts_a: pd.DataFrame, cfg: LabConfig) -> BookRun:
    if forecasts_a.empty:
        return BookRun(skipped="Book A skipped: the daily data has no implied vol (iv), so yA and straddles are undefined")
    book = BookRun()
    test = forecasts_a.index
    models = [c[len("mu_"):] for c in forecasts_a.columns if c.startswith("mu_")]
    positions = {m: positions_from_forecast(forecasts_a[f"mu_{m}"], forecasts_a[f"sigma_{m}"], cfg.book_a) for m in models}
    positions["always_short"] = pd.Series(-cfg.book_a.size_cap, index=test)
    positions["no_trade"] = pd.Series(0.0, index=test)
    for name, position in positions.items():
        result = simulate_straddles(data.market.daily, position, cfg.book_a)
        book.daily[name] = result.daily.loc[test[0]:]
        book.trades[name] = result.trades
    return book


def _book_b(data: Dataset, trade_proba: pd.DataFrame, cfg: LabConfig) -> BookRun:
    """Trade the setup on every test minute: the rule alone, and filtered by each model's probability."""
    if data.X_intraday is None or trade_proba.empty:
        return BookRun(skipped="Book B skipped: no minute bars were given (--minutes), so there is nothing to trade")
    book = BookRun()
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


def _portfolio(book_a: BookRun, book_b: BookRun, cfg: LabConfig) -> tuple[dict, dict]:
    """Combine the two books per strategy name present in both (or the one book that ran)."""
    names = [n for n in book_a.daily if n in book_b.daily] or list(book_a.daily) or list(book_b.daily)
    out, metrics = {}, {}
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
        metrics[name] = trading_metrics(daily["gross"], daily["costs"].clip(lower=0.0))
    return out, metrics


def run(cfg: LabConfig, out_dir: Path, preset: str = "", n_trials: int = 1) -> RunResult:
    """Run the whole lab for ``cfg``; write the report into ``out_dir``; return the results."""
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
    forecasts_a, forecasts_b, trade_proba_b, segments = _run_models(data, folds, cfg, out_dir)
    lap("models")

    book_a = _book_a(data, forecasts_a, cfg)
    book_b = _book_b(data, trade_proba_b, cfg)
    for book in (book_a, book_b):
        if book.skipped is None:
            _trading(book, n_trials)
        else:
            log.warning(book.skipped)
    portfolio, portfolio_metrics = _portfolio(book_a, book_b, cfg)
    lap("books")

    models_a = [c[len("mu_"):] for c in forecasts_a.columns if c.startswith("mu_")]
    models_b = [c[len("proba_"):] for c in forecasts_b.columns if c.startswith("proba_")]
    forecast_metrics = {}
    winners = {}
    if models_a:
        forecast_metrics["A"] = _forecast_metrics(forecasts_a, models_a, "A")
        winners["forecast_A"] = _winners({m: s["all"] for m, s in forecast_metrics["A"].items()}, FORECAST_WINNER_METRICS["A"])
    if models_b:
        forecast_metrics["B"] = _forecast_metrics(forecasts_b, models_b, "B")
        winners["forecast_B"] = _winners({m: s["all"] for m, s in forecast_metrics["B"].items()}, FORECAST_WINNER_METRICS["B"])
        # The meta-label only matters where the setup fires: score the models on those minutes too.
        on_setup = forecasts_b[forecasts_b["setup_signal"]]
        if on_setup["y_true"].nunique() == 2 and all(on_setup.groupby("fold")["y_true"].nunique() == 2):
            models = [m for m in models_b if m != "rule"]  # the rule's probability is constant on setup minutes
            forecast_metrics["B_setup"] = _forecast_metrics(on_setup, models, "B")
            winners["forecast_B_setup"] = _winners(
                {m: s["all"] for m, s in forecast_metrics["B_setup"].items()}, FORECAST_WINNER_METRICS["B"]
            )
        else:
            log.warning("Book B: too few labelled setup minutes with both outcomes to score the meta-label on them")
    for key, book in (("trading_A", book_a), ("trading_B", book_b)):
        if book.metrics:
            winners[key] = _winners(book.metrics, TRADING_WINNER_METRICS)
    if portfolio_metrics:
        winners["portfolio"] = _winners(portfolio_metrics, TRADING_WINNER_METRICS)

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
        winners=winners,
        hrm_segments=segments,
        n_trials=n_trials,
        timings=timings,
    )
    write_report(result, out_dir)
    lap("report")
    result.timings.update(timings)
    print(console_summary(result))
    return result
