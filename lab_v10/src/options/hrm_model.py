"""HRMModel: the dual-book HRM (:class:`~lab_v10.src.options.hrm_adapter.HRMAdapter`) behind the lab's one
model interface (:class:`~lab_v10.src.dataset.forecasts.Forecaster`).

One fit trains the adapter (an ensemble of ``train.ensemble_size`` networks) on the fold's training dates
and early-stops on its validation dates; both books are then read from it. ACT segments used per forecast
date (Book A) and per session (Book B) and ensemble member are returned as diagnostics.

Warm start (``train.warm_start``, for the many refits of ``walkforward.mode: whole_history``). The pipeline
fits fold *k* into ``run_dir = <out>/hrm/fold_k``; with a warm start, fold *k* > 0 starts each ensemble
member from the best weights that fold *k-1* left in its sibling folder ``fold_{k-1}`` and trains
``train.warm_start_epochs`` epochs (HRMAdapter, "Warm start"); fold 0 trains from scratch. That is causal:
fold *k-1* was fitted on training and validation labels that end before its own test block, which precedes
fold *k*'s (folds.py); only weights carry over, scalers are refit on fold *k*'s training rows.

``train.threads`` sets torch's CPU threads while the HRM fits and predicts (restored afterwards).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch

from lab_v10.src.config import LabConfig
from lab_v10.src.dataset.dataset import Dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.dataset.panel import Panel
from lab_v10.src.options.checkpoint import CheckpointError
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.hrm_symbol import SymbolInputs

logger = logging.getLogger("lab.hrm")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op CPU threads (None: leave torch's setting)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def previous_fold_dir(run_dir: Path | None, fold: Fold) -> Path | None:
    """The run folder of fold ``fold.number - 1`` beside ``run_dir`` (``.../fold_k``), or None for fold 0 or
    without a run folder. CheckpointError when ``run_dir`` is not named ``fold_<k>`` or the earlier fold's
    folder is missing (the folds must run in order into sibling folders, as the pipeline does)."""
    if run_dir is None or fold.number == 0:
        return None
    run_dir = Path(run_dir)
    if run_dir.name != f"fold_{fold.number}":
        raise CheckpointError(f"{run_dir}: train.warm_start expects the run folder of fold {fold.number} to be named "
                              f"fold_{fold.number}, beside the earlier folds' (as the pipeline writes them)")
    previous = run_dir.parent / f"fold_{fold.number - 1}"
    if not previous.is_dir():
        raise CheckpointError(f"{previous}: train.warm_start: fold {fold.number - 1}'s networks are missing (expected "
                              f"the folds fitted in order, each warm-starting from the one before)")
    return previous


class _HRMForecasts:
    """What the single-asset and the pooled HRM share: the config, the run folder (``run_dir``: the trainer's
    checkpoints and logs), the warm-start choice and reading both books' forecasts from the fitted adapter."""

    name: str
    books = ("A", "B")

    def __init__(self, config: LabConfig, run_dir: Path | None = None) -> None:
        self.config, self.run_dir = config, run_dir

    def _fit_log(self, fold: Fold) -> Path | None:
        """The warm-start folder of ``fold`` (None: from scratch), logged."""
        init_from = previous_fold_dir(self.run_dir, fold) if self.config.train.warm_start else None
        if self.config.train.warm_start:
            logger.info("%s: fold %d %s", self.name, fold.number, "trains from scratch" if init_from is None else
                        f"warm-starts from {init_from} (train.warm_start_epochs={self.config.train.warm_start_epochs})")
        return init_from

    def _forecasts(self, data: Dataset, dates: pd.DatetimeIndex, symbol: str | None) -> Forecasts:
        """Both books' forecasts of ``dates`` of ``data`` (of ``symbol`` in a pooled fit)."""
        out = Forecasts()
        with torch_threads(self.config.train.threads):
            if data.yA is not None:
                # each forecast reads its daily_window rows ending at its date: pass those rows, not the whole past
                rows = data.X_daily.index.get_indexer(dates)  # (N,) -1 for a date without a row
                first = max(0, int(rows.min()) - self.config.hrm.daily_window + 1) if (rows >= 0).all() else 0
                pred = self.adapter_.predict_daily(data.X_daily.iloc[first:].loc[: dates[-1]], symbol).reindex(dates)
                if pred["mu"].isna().any():
                    missing = pred.index[pred["mu"].isna()][0]
                    raise ValueError(f"hrm: no forecast for date {missing.date()} (too little daily history)")
                out.mu, out.sigma = pred["mu"], pred["sigma"]
                out.diagnostics["act_segments_A"] = self.adapter_.last_steps_.reindex(dates)
            if data.X_intraday is not None:
                minutes = session_minutes(data, sessions_for(data, dates))
                out.proba = self.adapter_.predict_intraday_proba(data.X_intraday.loc[minutes], data.X_daily, symbol)
                out.diagnostics["act_segments_B"] = self.adapter_.last_steps_
        return out


class HRMModel(_HRMForecasts):
    """The HRM adapter as a Forecaster of one asset."""

    name = "hrm"

    def fit(self, data: Dataset, fold: Fold) -> HRMModel:
        train, val, _ = split_dates(data, fold)
        init_from = self._fit_log(fold)
        self.adapter_ = HRMAdapter(self.config, out_dir=self.run_dir)
        with torch_threads(self.config.train.threads):
            self.adapter_.fit(data.X_daily, data.X_intraday, data.yA, data.yB, train, val, init_from=init_from)
        return self

    def predict(self, data: Dataset, dates: pd.DatetimeIndex) -> Forecasts:
        return self._forecasts(data, dates, None)


class PooledHRMModel(_HRMForecasts):
    """One HRM ensemble fitted on every symbol of a universe panel fold (``hrm_pooled``): per-symbol
    preprocessing, one network (:meth:`HRMAdapter.fit_pooled`); a PooledForecaster. Warm starts as
    :class:`HRMModel`'s."""

    name = "hrm_pooled"

    def fit(self, panel: Panel, folds: dict[str, Fold]) -> PooledHRMModel:
        inputs = {}
        for sym, fold in folds.items():
            data = panel.datasets[sym]
            train, val, _ = split_dates(data, fold)
            inputs[sym] = SymbolInputs(data.X_daily, data.X_intraday, data.yA, data.yB, train, val)
        init_from = self._fit_log(next(iter(folds.values())))
        self.adapter_ = HRMAdapter(self.config, out_dir=self.run_dir)
        with torch_threads(self.config.train.threads):
            self.adapter_.fit_pooled(inputs, init_from=init_from, universe=panel.symbols)
        return self

    def predict(self, panel: Panel, symbol: str, dates: pd.DatetimeIndex) -> Forecasts:
        return self._forecasts(panel.datasets[symbol], dates, symbol)

