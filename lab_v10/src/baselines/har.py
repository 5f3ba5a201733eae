"""HAR-RV baseline for Book A (Corsi 2009, "A Simple Approximate Long-Memory Model of Realized Volatility").

The forward realized vol is regressed, by OLS, on the trailing realized-vol components of the daily
features, in **vol** (annualized %, not variance) so the fit and the gap share units:

    RV(t+1..t+h) = b0 + sum_w b_w * rv_{w}d(t) + e(t),    w in the feature table's HAR windows (1, 5, 22)

The target is not a column of its own: it is reconstructed from the label as ``RV(t+1..t+h) = yA(t) +
iv(t)`` (:mod:`lab_v10.src.features.labels` defines ``yA = RV - IV``), so ``X_daily`` must carry ``iv``.
The gap forecast is ``mu(t) = RV_hat(t) - iv(t)``. ``sigma`` is constant: the root mean square of the gap
residuals ``yA - mu`` on the validation dates (the same as the RV residuals, since ``iv`` cancels); when
there are no validation dates it falls back to the OLS residual standard deviation on the training dates
(``n - k - 1`` degrees of freedom).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from lab_v10.src.baselines.base import gap_forecast, residual_sigma
from lab_v10.src.dataset.samples import daily_samples, feature_frame, require_fitted

_RV_COLUMN = re.compile(r"^rv_(\d+)d$")


def har_columns(X_daily: pd.DataFrame) -> list[str]:
    """The ``rv_{w}d`` columns of ``X_daily`` sorted by window ``w``; ValueError when there are none."""
    found = sorted((int(m.group(1)), c) for c in X_daily.columns if (m := _RV_COLUMN.match(str(c))))
    if not found:
        raise ValueError(
            "X_daily: no realized-vol column rv_{w}d (expected e.g. rv_1d, rv_5d, rv_22d; "
            f"got {list(X_daily.columns)})"
        )
    return [c for _, c in found]


class HARGapForecaster:
    """HAR-RV in vol with a constant Gaussian sigma (module docstring).

    Fitted attributes: ``columns_`` (the rv components, ascending window), ``regression_`` (the sklearn
    LinearRegression of RV on them: ``coef_`` per component, ``intercept_`` in vol points),
    ``sigma_`` (vol points), ``train_mean_`` (mean training ``yA``, vol points).
    """

    name = "har"

    def fit(
        self, X_daily: pd.DataFrame, yA: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> HARGapForecaster:
        columns = har_columns(X_daily)
        data = daily_samples(X_daily, yA, train_idx, val_idx, [*columns, "iv"], require_val=False)
        regression = LinearRegression().fit(data.X_train[columns], data.y_train + data.X_train["iv"])
        if data.X_val.empty:
            sigma = residual_sigma(data.y_train, self._gap(regression, data.X_train, columns), len(columns) + 1)
        else:
            sigma = residual_sigma(data.y_val, self._gap(regression, data.X_val, columns))
        self.columns_, self.regression_, self.sigma_ = columns, regression, sigma
        self.train_mean_ = float(data.y_train.mean())
        return self

    def predict_daily(self, X_daily: pd.DataFrame) -> pd.DataFrame:
        require_fitted(self, "regression_")
        X = feature_frame(X_daily, [*self.columns_, "iv"], "X_daily")
        return gap_forecast(X.index, self._gap(self.regression_, X, self.columns_), self.sigma_)

    @staticmethod
    def _gap(regression: LinearRegression, X: pd.DataFrame, columns: list[str]) -> np.ndarray:
        """Forecast gap ``RV_hat - iv`` per row, vol points."""
        return regression.predict(X[columns]) - X["iv"].to_numpy()
