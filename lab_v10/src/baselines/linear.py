"""Linear baselines: ridge regression of the vol gap (Book A) and logistic regression of yB (Book B).

Both are scikit-learn Pipelines ``StandardScaler -> model``: the scaler's means and standard deviations are
fitted on the training rows only. One penalty is picked from a small grid by its score on the validation
rows (each candidate is fitted on the training rows only; ties keep the earlier grid value); the chosen
pipeline is the one fitted on the training rows, so the validation rows never enter a fitted parameter.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from lab_v10.src.baselines.base import gap_forecast, residual_sigma
from lab_v10.src.config import BaselineConfig
from lab_v10.src.dataset.samples import Samples, daily_samples, feature_frame, intraday_samples, require_fitted
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS


def select_on_validation(
    make: Callable[[float], Pipeline], grid: Sequence[float], data: Samples, loss: Callable[[Pipeline], float]
) -> tuple[float, Pipeline, dict[float, float]]:
    """Fit ``make(value)`` on the training rows for every grid value and keep the lowest validation ``loss``.

    Returns ``(value, fitted pipeline, {value: validation loss})``; ties keep the earlier value.
    """
    scores: dict[float, float] = {}
    best: tuple[float, Pipeline] | None = None
    for value in grid:
        pipeline = make(value).fit(data.X_train, data.y_train)
        scores[value] = loss(pipeline)
        if best is None or scores[value] < scores[best[0]]:
            best = (value, pipeline)
    return best[0], best[1], scores


class LinearGapForecaster:
    """Ridge regression of ``yA`` on every column of ``X_daily`` (standardized on train) with constant sigma.

    ``alpha`` is chosen from ``cfg.ridge_alphas`` by validation mean squared error. ``sigma`` (vol points) is
    the root mean square of the chosen model's validation residuals. Fitted attributes: ``columns_``,
    ``pipeline_`` (``scaler`` then ``ridge``), ``alpha_``, ``validation_mse_`` (per alpha, vol points^2),
    ``sigma_``, ``train_mean_``.
    """

    name = "linear"

    def __init__(self, cfg: BaselineConfig = BaselineConfig()):
        self.alphas = list(cfg.ridge_alphas)

    def fit(
        self, X_daily: pd.DataFrame, yA: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> LinearGapForecaster:
        columns = list(X_daily.columns)
        data = daily_samples(X_daily, yA, train_idx, val_idx, columns, require_val=True)
        self.alpha_, self.pipeline_, self.validation_mse_ = select_on_validation(
            lambda alpha: Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(alpha=alpha))]),
            self.alphas,
            data,
            lambda pipeline: mean_squared_error(data.y_val, pipeline.predict(data.X_val)),
        )
        self.columns_ = columns
        self.sigma_ = residual_sigma(data.y_val, self.pipeline_.predict(data.X_val))
        self.train_mean_ = float(data.y_train.mean())
        return self

    def predict_daily(self, X_daily: pd.DataFrame) -> pd.DataFrame:
        require_fitted(self, "pipeline_")
        X = feature_frame(X_daily, self.columns_, "X_daily")
        return gap_forecast(X.index, self.pipeline_.predict(X), self.sigma_)


class LogisticSetupModel:
    """Logistic regression of ``yB`` on :data:`INTRADAY_MODEL_COLUMNS` (standardized on train).

    Trained on every labelled minute of the training sessions, not only setup minutes: the pipeline scores
    the meta-label where the setup fires, but the model learns the downside-first odds from all minutes.
    No class weights (probabilities stay calibrated to the base rate). ``C`` (inverse L2 strength) is chosen
    from ``cfg.logistic_cs`` by validation log loss (nats per minute). Fitted attributes: ``pipeline_``
    (``scaler`` then ``logistic``), ``C_``, ``validation_log_loss_`` (per C).
    """

    name = "logistic"

    def __init__(self, cfg: BaselineConfig = BaselineConfig()):
        self.cs = list(cfg.logistic_cs)
        self.max_iter = cfg.logistic_max_iter

    def fit(
        self, X_intraday: pd.DataFrame, yB: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> LogisticSetupModel:
        data = intraday_samples(X_intraday, yB, train_idx, val_idx, INTRADAY_MODEL_COLUMNS)
        self.C_, self.pipeline_, self.validation_log_loss_ = select_on_validation(
            lambda c: Pipeline([
                ("scaler", StandardScaler()),
                ("logistic", LogisticRegression(C=c, class_weight=None, max_iter=self.max_iter)),
            ]),
            self.cs,
            data,
            lambda pipeline: log_loss(data.y_val, pipeline.predict_proba(data.X_val)[:, 1], labels=[0.0, 1.0]),
        )
        return self

    def predict_intraday_proba(self, X_intraday: pd.DataFrame) -> pd.Series:
        require_fitted(self, "pipeline_")
        X = feature_frame(X_intraday, INTRADAY_MODEL_COLUMNS, "X_intraday")
        return pd.Series(np.asarray(self.pipeline_.predict_proba(X)[:, 1]), index=X.index, name="proba")
