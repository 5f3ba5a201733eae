"""HRMModel: the dual-book HRM (:class:`~lab_v10.src.options.hrm_adapter.HRMAdapter`) behind the lab's one
model interface (:class:`~lab_v10.src.dataset.forecasts.Forecaster`).

One fit trains the adapter (an ensemble of ``train.ensemble_size`` networks) on the fold's training dates
and early-stops on its validation dates; both books are then read from it. ACT segments used per forecast
date (Book A) and per session (Book B) and ensemble member are returned as diagnostics.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab_v10.src.config import LabConfig
from lab_v10.src.dataset.dataset import Dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.options.hrm_adapter import HRMAdapter


class HRMModel:
    """The HRM adapter as a Forecaster; ``run_dir`` holds the trainer's checkpoints and logs."""

    name = "hrm"
    books = ("A", "B")

    def __init__(self, config: LabConfig, run_dir: Path | None = None) -> None:
        self.config, self.run_dir = config, run_dir

    def fit(self, data: Dataset, fold: Fold) -> HRMModel:
        train, val, _ = split_dates(data, fold)
        self.adapter_ = HRMAdapter(self.config, out_dir=self.run_dir)
        self.adapter_.fit(data.X_daily, data.X_intraday, data.yA, data.yB, train, val)
        return self

    def predict(self, data: Dataset, dates: pd.DatetimeIndex) -> Forecasts:
        out = Forecasts()
        if data.yA is not None:
            # the full history up to the last date: each forecast needs its daily_window rows
            pred = self.adapter_.predict_daily(data.X_daily.loc[: dates[-1]]).reindex(dates)
            if pred["mu"].isna().any():
                missing = pred.index[pred["mu"].isna()][0]
                raise ValueError(f"hrm: no forecast for date {missing.date()} (too little daily history)")
            out.mu, out.sigma = pred["mu"], pred["sigma"]
            out.diagnostics["act_segments_A"] = self.adapter_.last_steps_.reindex(dates)
        if data.X_intraday is not None:
            minutes = session_minutes(data, sessions_for(data, dates))
            out.proba = self.adapter_.predict_intraday_proba(data.X_intraday.loc[minutes], data.X_daily)
            out.diagnostics["act_segments_B"] = self.adapter_.last_steps_
        return out
