"""The per-book building blocks of the baselines: a Book A gap forecaster and a Book B probability model.

Each baseline implements one (or, for LightGBM, both) of these table-level protocols on the conventions of
:mod:`lab_v10.src.dataset.samples`; :class:`BookModels` joins them into the
lab's one model interface (:class:`~lab_v10.src.dataset.forecasts.Forecaster`).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from lab_v10.src.dataset.dataset import Dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts


class DailyGapForecaster(Protocol):
    """A Book A forecaster of the vol gap ``yA`` with a Gaussian uncertainty.

    ``train_mean_`` (set by ``fit``): the mean of ``yA`` over the training dates, in vol points; the
    benchmark of the out-of-sample R^2 (:func:`lab_v10.src.eval.metrics.regression_metrics`).
    """

    name: str
    train_mean_: float

    def fit(
        self, X_daily: pd.DataFrame, yA: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> DailyGapForecaster:
        """Fit on the ``train_idx`` rows; ``val_idx`` rows may early-stop, select hyper-parameters and
        calibrate ``sigma``, never fit preprocessing. Returns ``self``."""
        ...

    def predict_daily(self, X_daily: pd.DataFrame) -> pd.DataFrame:
        """Forecast for every row of ``X_daily``: columns ``mu`` (expected gap) and ``sigma`` (its standard
        deviation, > 0), both in vol points, indexed by the forecast date (the row's date *t*; the forecast
        is of ``yA(t)`` and uses row *t* only)."""
        ...


class IntradayProbaModel(Protocol):
    """A Book B model of ``P(yB = 1)``: the downside barrier is hit first within the next H minutes."""

    name: str

    def fit(
        self, X_intraday: pd.DataFrame, yB: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> IntradayProbaModel:
        """Fit on the labelled minutes of the ``train_idx`` sessions; the ``val_idx`` sessions' labelled
        minutes may early-stop or select hyper-parameters. Returns ``self``."""
        ...

    def predict_intraday_proba(self, X_intraday: pd.DataFrame) -> pd.Series:
        """Probability in [0, 1] for every row of ``X_intraday``, indexed like it. Each minute's probability
        reads that row's features only, so it is causal because the features are."""
        ...


def residual_sigma(y: pd.Series, mu: np.ndarray, fitted_parameters: int = 0) -> float:
    """Root mean square residual ``sqrt(sum (y - mu)^2 / (n - fitted_parameters))``, in ``y``'s units.

    Out of sample (``fitted_parameters=0``) it is the residual spread about zero, so a forecast bias widens
    it; on the training rows of an OLS fit pass the number of fitted coefficients (intercept included) for
    the unbiased residual standard deviation. Raises ValueError when it is 0 or there are too few rows.
    """
    residuals = y.to_numpy(dtype=float) - np.asarray(mu, dtype=float)
    dof = residuals.size - fitted_parameters
    if dof <= 0:
        raise ValueError(
            f"{y.name}: {residuals.size} rows leave no residual degrees of freedom after {fitted_parameters} "
            "fitted parameters (expected more rows)"
        )
    sigma = float(np.sqrt(np.sum(residuals**2) / dof))
    if not sigma > 0:
        raise ValueError(f"{y.name}: residuals are all 0 (expected a positive forecast error spread)")
    return sigma


def gap_forecast(index: pd.Index, mu: np.ndarray, sigma: float) -> pd.DataFrame:
    """The ``predict_daily`` frame: ``mu`` per row and a constant ``sigma`` (vol points) on ``index``."""
    mu = np.asarray(mu, dtype=float)
    return pd.DataFrame({"mu": mu, "sigma": np.full(mu.shape, sigma)}, index=index)


class BookModels:
    """A :class:`~lab_v10.src.dataset.forecasts.Forecaster` made of a Book A gap forecaster, a Book B
    probability model, or both (LightGBM), fitted on the same fold.

    Book A is fitted on the fold's training dates and validated on its validation dates; Book B on the
    labelled minutes of their paired sessions (dates without a paired session are dropped). A book the data
    cannot support (no ``yA``, no minutes) is skipped.
    """

    def __init__(self, name: str, daily: DailyGapForecaster | None, intraday: IntradayProbaModel | None) -> None:
        self.name, self.daily, self.intraday = name, daily, intraday
        self.books = tuple(b for b, m in (("A", daily), ("B", intraday)) if m is not None)

    def fit(self, data: Dataset, fold: Fold) -> BookModels:
        train, val, _ = split_dates(data, fold)
        if self.daily is not None and data.yA is not None:
            self.daily.fit(data.X_daily, data.yA, train, val)
        if self.intraday is not None and data.X_intraday is not None:
            self.intraday.fit(data.X_intraday, data.yB, sessions_for(data, train), sessions_for(data, val))
        return self

    def predict(self, data: Dataset, dates: pd.DatetimeIndex) -> Forecasts:
        out = Forecasts()
        if self.daily is not None and data.yA is not None:
            pred = self.daily.predict_daily(data.X_daily.loc[dates])
            out.mu, out.sigma = pred["mu"], pred["sigma"]
        if self.intraday is not None and data.X_intraday is not None:
            minutes = session_minutes(data, sessions_for(data, dates))
            out.proba = self.intraday.predict_intraday_proba(data.X_intraday.loc[minutes])
        return out
