"""Pooled Book A baselines for a universe: one regression fitted on the stacked rows of every symbol
(:class:`~lab_v10.src.dataset.forecasts.PooledForecaster`).

The rows of the symbols taking part in the fold are stacked under a ``(symbol, date)`` index and given to
the single-asset forecaster (:mod:`lab_v10.src.baselines`), whose sample checks accept that index
(:mod:`lab_v10.src.dataset.samples`). Ridge and LightGBM read each symbol's daily features standardized on
that symbol's training rows (:func:`~lab_v10.src.dataset.panel.standardized_daily`), so an asset's level
(its typical implied vol, say) does not stand in for its identity; HAR reads the raw realised vols and
implied vol, in vol points, which its structural form needs (``RV = yA + iv``) and which are comparable
across assets. Book B is not pooled for the baselines (the pooled HRM covers both books).
"""
from __future__ import annotations

import pandas as pd

from lab_v10.src.baselines.base import DailyGapForecaster
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.dataset.panel import Panel, standardized_daily
from lab_v10.src.dataset.dataset import split_dates


class PooledGapModel:
    """A Book A gap forecaster fitted once on every symbol's rows; ``standardize``: per-symbol scaling of the
    daily features (module docstring)."""

    books = ("A",)

    def __init__(self, name: str, forecaster: DailyGapForecaster, standardize: bool) -> None:
        self.name, self.forecaster, self.standardize = name, forecaster, standardize

    def fit(self, panel: Panel, folds: dict[str, Fold]) -> PooledGapModel:
        labelled = {s: f for s, f in folds.items() if panel.datasets[s].yA is not None}
        if not labelled:
            raise ValueError(f"{self.name}: no symbol of the fold has gap labels (implied vol) to fit on")
        if self.standardize:
            self.X_ = standardized_daily(panel, labelled)
        else:
            self.X_ = {s: panel.datasets[s].X_daily for s in labelled}
        keys = {"train": [], "val": []}
        for sym, fold in labelled.items():
            train, val, _ = split_dates(panel.datasets[sym], fold)
            keys["train"].append(pd.MultiIndex.from_product([[sym], train]))
            keys["val"].append(pd.MultiIndex.from_product([[sym], val]))
        X = pd.concat(self.X_.values(), keys=list(self.X_))  # (symbol, date) rows
        y = pd.concat([panel.datasets[s].yA for s in self.X_], keys=list(self.X_))
        train_keys, val_keys = (keys[k][0].append(keys[k][1:]) for k in ("train", "val"))
        self.forecaster.fit(X, y, train_keys, val_keys)
        return self

    def predict(self, panel: Panel, symbol: str, dates: pd.DatetimeIndex) -> Forecasts:
        pred = self.forecaster.predict_daily(self.X_[symbol].loc[dates])
        return Forecasts(mu=pred["mu"], sigma=pred["sigma"])
