"""The dual-book pipeline: data -> features/labels -> purged walk-forward -> models -> books -> report.

:func:`run` is the whole main job (``main_v3.py`` is its CLI). Every model — the HRM and each baseline —
is fit on the same training dates, early-stopped on the same validation dates and scored on the same test
rows, and every strategy trades through the same simulator with the same costs.

Samples and time semantics are the dataset's (:mod:`lab_v10.src.dataset.dataset`, docs/design.md section 3).
The data is always a panel (:mod:`lab_v10.src.dataset.panel`): one symbol for a single asset, many for a
universe, with folds on the symbols' calendar. Every model is built by name (:mod:`lab_v10.src.models.registry`)
and run in a single loop, per symbol through the one model interface
(:class:`~lab_v10.src.dataset.forecasts.Forecaster`) and, in a universe, pooled across symbols
(:class:`~lab_v10.src.dataset.forecasts.PooledForecaster`). Scoring is :mod:`lab_v10.src.eval.scoring` per
symbol and :mod:`lab_v10.src.eval.universe_scoring` for the panel. Test blocks are consecutive, so the books
trade one contiguous out-of-sample period.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lab_v10.src.config import LabConfig, config_to_dict
from lab_v10.src.data.market import Market, load_market
from lab_v10.src.data.universe import is_universe, load_universe
from lab_v10.src.dataset.dataset import Dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.dataset.panel import Panel, build_panel, panel_folds, symbol_folds
from lab_v10.src.eval.report import console_summary, write_report
from lab_v10.src.eval.results import RunResult
from lab_v10.src.eval.run_folder import finish_run_folder, prepare_run_folder
from lab_v10.src.eval.scoring import checked_forecast, fold_dict, score_asset
from lab_v10.src.eval.universe_scoring import score_universe, symbol_summary, symbol_table
from lab_v10.src.models.registry import (
    POOLED_SUFFIX,
    check_model_names,
    check_pooled_names,
    make_model,
    make_pooled_model,
)

log = logging.getLogger("lab.pipeline")

def _truth(data: Dataset, fold: Fold, symbol: str) -> tuple[Dataset, pd.DatetimeIndex, pd.DataFrame | None,
                                                            pd.DataFrame | None]:
    """The data the fold's models see, its test dates and the truth rows the forecasts are joined to: Book A
    (``date, fold, y_true, train_mean``; None without yA) and Book B (``timestamp, session, fold, y_true,
    setup_signal``; None without minutes).

    Book B takes part in the fold only when minute sessions follow some of its training, validation and
    test dates (minute files often cover a short stretch of a long daily history); otherwise the models see
    the data without minutes in this fold (logged).
    """
    train, val, test = split_dates(data, fold)
    if data.X_intraday is not None and not all(len(sessions_for(data, d)) for d in (train, val, test)):
        log.info("fold %d%s: Book B sits out (no minute sessions after its %s dates)", fold.number,
                 f" {symbol}" if symbol else "",
                 "/".join(r for r, d in (("training", train), ("validation", val), ("test", test))
                          if not len(sessions_for(data, d))))
        data = dataclasses.replace(data, X_intraday=None, yB=None)
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
    return data, test, truth_a, truth_b


class _Tables:
    """The long forecast tables being collected (see :func:`_run_models`)."""

    def __init__(self) -> None:
        self.rows_a: list[pd.DataFrame] = []
        self.rows_b: list[pd.DataFrame] = []
        self.segments: dict[str, list[np.ndarray]] = {}

    def add(self, name: str, symbol: str, books: list[str], forecasts: Forecasts, test: pd.DatetimeIndex,
            truth_a: pd.DataFrame | None, truth_b: pd.DataFrame | None) -> None:
        if "A" in books:
            self.rows_a.append(truth_a.assign(symbol=symbol, model=name,
                                              mu=checked_forecast(forecasts.mu, test, name, "mu"),
                                              sigma=checked_forecast(forecasts.sigma, test, name, "sigma")))
        if "B" in books:
            proba = checked_forecast(forecasts.proba, truth_b["timestamp"], name, "probability")
            self.rows_b.append(truth_b.assign(symbol=symbol, model=name, proba=proba))
        for key, table in forecasts.diagnostics.items():
            if key.startswith("act_segments"):
                self.segments.setdefault(name, []).append(table.to_numpy().ravel())

    def frames(self, universe: bool) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
        symbol = ["symbol"] if universe else []
        columns_a = ["date", *symbol, "fold", "model", "y_true", "train_mean", "mu", "sigma"]
        columns_b = ["timestamp", "session", *symbol, "fold", "model", "y_true", "setup_signal", "proba"]
        a = pd.concat(self.rows_a, ignore_index=True)[columns_a] if self.rows_a else pd.DataFrame(columns=columns_a)
        b = pd.concat(self.rows_b, ignore_index=True)[columns_b] if self.rows_b else pd.DataFrame(columns=columns_b)
        return a, b, {name: np.concatenate(parts) for name, parts in self.segments.items()}


def _books_of(model, truth_a, truth_b) -> list[str]:
    return [b for b, truth in (("A", truth_a), ("B", truth_b)) if b in model.books and truth is not None]


def _run_models(panel: Panel, folds: list[Fold], cfg: LabConfig, out_dir: Path, universe: bool):
    """Fit every model per fold and forecast the fold's test rows of every symbol taking part.

    Every model of ``cfg.models`` is fitted per symbol (single asset: the one symbol; its folder
    ``<out>/<model>/fold_k``, in a universe ``<out>/<model>/<symbol>/fold_j``, j counting the symbol's own
    folds); in a universe each of ``cfg.panel.pooled_models`` is also fitted once per fold on every symbol
    taking part (``<out>/<model>_pooled/fold_k``). All are scored on the same rows.

    Returns the long Book A table (one row per test date, symbol (universe only) and model: ``date, fold,
    model, y_true, train_mean, mu, sigma``), the long Book B table (one row per test minute, symbol and
    model: ``timestamp, session, fold, model, y_true`` (NaN where the horizon runs past the close),
    ``setup_signal, proba``) and the ACT segments per model that reports them (one value per test sample and
    ensemble member). ``train_mean`` is the mean training label of the symbol's fold: the R^2 benchmark,
    the same for every model.
    """
    tables = _Tables()
    taken_part = dict.fromkeys(panel.symbols, 0)  # folds each symbol has taken part in so far
    for fold in tqdm(folds, desc="walk-forward folds", unit="fold"):
        members = symbol_folds(panel, fold, cfg.panel.min_train_days if universe else 1)
        if universe:
            log.info("fold %d: %d symbols take part (%s)", fold.number, len(members), ", ".join(members))
        truths = {sym: _truth(panel.datasets[sym], f, sym) for sym, f in members.items()}
        for name in cfg.models:
            for sym, sym_fold in members.items():
                data, test, truth_a, truth_b = truths[sym]
                folder = out_dir / name / sym if universe else out_dir / name
                own_fold = dataclasses.replace(sym_fold, number=taken_part[sym]) if universe else sym_fold
                model = make_model(name, cfg, folder / f"fold_{own_fold.number}")
                books = _books_of(model, truth_a, truth_b)
                if not books:
                    log.info("%s: skipped on %s (it forecasts Book %s, which this data cannot run)",
                             name, sym or "the data", "/".join(model.books))
                    continue
                forecasts = model.fit(data, own_fold).predict(data, test)
                tables.add(name, sym, books, forecasts, test, truth_a, truth_b)
        # the panel as this fold's models see it (a symbol's Book B may sit the fold out, see _truth)
        seen = dataclasses.replace(panel, datasets={s: truths[s][0] if s in truths else d
                                                    for s, d in panel.datasets.items()})
        for name in cfg.panel.pooled_models if universe and members else []:
            model = make_pooled_model(name, cfg, out_dir / f"{name}{POOLED_SUFFIX}" / f"fold_{fold.number}")
            model.fit(seen, members)
            for sym in members:
                _, test, truth_a, truth_b = truths[sym]
                books = _books_of(model, truth_a, truth_b)
                if books:
                    tables.add(model.name, sym, books, model.predict(seen, sym, test), test, truth_a, truth_b)
        for sym in members:
            taken_part[sym] += 1
    return tables.frames(universe)


def _describe(markets: dict[str, Market], panel: Panel, universe: bool) -> dict:
    """The data description of the report: the market's (single asset), or per symbol and in total."""
    def one(market: Market, data: Dataset) -> dict:
        out = dict(market.description)
        out.update(
            daily_feature_rows=len(data.X_daily),
            samples=len(data.sample_dates),
            yA_mean=None if data.yA is None else float(data.yA.mean()),
            yA_std=None if data.yA is None else float(data.yA.std()),
        )
        if data.yB is not None:
            labelled = data.yB.dropna()
            out.update(minute_feature_rows=len(data.X_intraday), yB_labelled=len(labelled),
                       yB_positive_rate=float(labelled.mean()) if len(labelled) else None,
                       setup_signals=int(data.X_intraday["setup_signal"].sum()))
        return out

    if not universe:
        (market,), (data,) = markets.values(), panel.datasets.values()
        return one(market, data)
    return {"universe": {"symbols": panel.symbols, "calendar_dates": len(panel.sample_dates),
                         "first": str(panel.sample_dates[0].date()), "last": str(panel.sample_dates[-1].date())},
            **{sym: one(markets[sym], panel.datasets[sym]) for sym in panel.symbols}}


def run(cfg: LabConfig, out_dir: Path, preset: str = "", n_trials: int = 1, overwrite: bool = False,
        sweep: dict | None = None, n_trials_source: str = "a single run") -> RunResult:
    """Run the whole lab for ``cfg``; write the report into ``out_dir``; return the results.

    A single asset, or a universe (:func:`~lab_v10.src.data.universe.is_universe`): then every symbol is scored on its own and the
    panel as a whole (:mod:`lab_v10.src.eval.universe_scoring`), and the report adds a table per symbol.

    ``n_trials``: configurations tried before this run (deflated Sharpe), ``n_trials_source`` where that count
    came from (stated in the report); ``sweep``: the sweep the config came from
    (``eval.sweep.read_sweep_summary``), whose probability of backtest overfitting the verdict states.

    ``out_dir`` is checked and prepared before any work (:mod:`lab_v10.src.eval.run_folder`): a non-empty
    folder is refused unless ``overwrite``, and it carries an in-progress marker until the report is written.
    """
    check_model_names(cfg.models)  # before any work: a typo or a bad folder must not cost a data load
    universe = is_universe(cfg)
    if universe:
        check_pooled_names(cfg.panel.pooled_models)
    prepare_run_folder(out_dir, overwrite)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    markets = load_universe(cfg.data, cfg.seed) if universe else {"": load_market(cfg.data, cfg.seed)}
    lap("data")
    panel = build_panel(markets, cfg)
    lap("features_labels")
    description = _describe(markets, panel, universe)
    log.info("data: %s", description)

    folds = panel_folds(panel, cfg)
    for fold in folds:
        log.info(fold.describe())
    forecasts_a, forecasts_b, segments = _run_models(panel, folds, cfg, out_dir, universe)
    lap("models")

    by_symbol = {}
    if universe:
        for sym, data in panel.datasets.items():
            fa, fb = forecasts_a[forecasts_a["symbol"] == sym], forecasts_b[forecasts_b["symbol"] == sym]
            if fa.empty and fb.empty:
                log.warning("%s: never took part in a fold (too little history for panel.min_train_days=%d)",
                            sym, cfg.panel.min_train_days)
                continue
            by_symbol[sym] = score_asset(data, fa.drop(columns="symbol"), fb.drop(columns="symbol"), cfg,
                                         n_trials, sweep)
        scores = score_universe(by_symbol, forecasts_a, forecasts_b, cfg, n_trials, sweep)
    else:
        (data,) = panel.datasets.values()
        scores = score_asset(data, forecasts_a, forecasts_b, cfg, n_trials, sweep)
    lap("books_verdict")

    result = RunResult(
        config=config_to_dict(cfg),
        preset=preset,
        data=description,
        folds=[fold_dict(f) for f in folds],
        forecasts_a=forecasts_a,
        forecasts_b=forecasts_b,
        forecast_metrics=scores.forecast_metrics,
        book_a=scores.book_a,
        book_b=scores.book_b,
        portfolio=scores.portfolio,
        portfolio_metrics=scores.portfolio_metrics,
        verdict=scores.verdict,
        act_segments=segments,
        n_trials=n_trials,
        n_trials_source=n_trials_source,
        timings=timings,
        by_symbol={sym: symbol_summary(sc) for sym, sc in by_symbol.items()},
        symbol_table=symbol_table(by_symbol, forecasts_a) if universe else [],
    )
    write_report(result, out_dir)
    finish_run_folder(out_dir)
    lap("report")
    result.timings.update(timings)
    print(console_summary(result))
    return result
