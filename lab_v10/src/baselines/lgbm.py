"""LightGBM baselines: a gradient-boosted regressor of the vol gap (Book A) and a classifier of yB (Book B).

Both grow at most ``cfg.lgbm_n_estimators`` trees on the training rows and stop early when the validation
loss (squared error for Book A, binary log loss for Book B) has not improved for
``cfg.lgbm_early_stopping_rounds`` rounds; predictions use the best round. Trees need no scaling, so there
is no fitted preprocessing. Runs are reproducible: ``deterministic=True`` with row-wise histograms, the
given ``seed``, and ``cfg.num_threads`` threads.
"""
from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from lab_v10.src.baselines.base import gap_forecast, residual_sigma
from lab_v10.src.config import BaselineConfig
from lab_v10.src.dataset.samples import Samples, daily_samples, feature_frame, intraday_samples, require_fitted
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS


def lgbm_params(cfg: BaselineConfig, seed: int) -> dict:
    """Constructor keywords shared by both LightGBM baselines (deterministic for a fixed ``seed``)."""
    return {
        "n_estimators": cfg.lgbm_n_estimators,
        "learning_rate": cfg.lgbm_learning_rate,
        "num_leaves": cfg.lgbm_num_leaves,
        "min_child_samples": cfg.lgbm_min_child_samples,
        "random_state": seed,
        "n_jobs": cfg.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def fit_early_stopped(model: lgb.LGBMModel, data: Samples, rounds: int) -> lgb.LGBMModel:
    """Fit ``model`` on the training rows, early-stopping on the validation rows after ``rounds`` idle rounds."""
    return model.fit(
        data.X_train,
        data.y_train,
        eval_X=data.X_val,
        eval_y=data.y_val,
        callbacks=[lgb.early_stopping(rounds, verbose=False)],
    )


class LGBMGapForecaster:
    """LGBMRegressor of ``yA`` on every column of ``X_daily`` with a constant Gaussian sigma.

    ``sigma`` (vol points) is the root mean square of the validation residuals at the best round. The
    validation rows also chose that round, so sigma is slightly optimistic. Fitted attributes:
    ``columns_``, ``model_`` (``best_iteration_`` is the round used), ``sigma_``, ``train_mean_``.
    """

    name = "lgbm"

    def __init__(self, cfg: BaselineConfig = BaselineConfig(), seed: int = 0):
        self.cfg, self.seed = cfg, seed

    def fit(
        self, X_daily: pd.DataFrame, yA: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> LGBMGapForecaster:
        columns = list(X_daily.columns)
        data = daily_samples(X_daily, yA, train_idx, val_idx, columns, require_val=True)
        model = lgb.LGBMRegressor(objective="regression", **lgbm_params(self.cfg, self.seed))
        self.model_ = fit_early_stopped(model, data, self.cfg.lgbm_early_stopping_rounds)
        self.columns_ = columns
        self.sigma_ = residual_sigma(data.y_val, self.model_.predict(data.X_val))
        self.train_mean_ = float(data.y_train.mean())
        return self

    def predict_daily(self, X_daily: pd.DataFrame) -> pd.DataFrame:
        require_fitted(self, "model_")
        X = feature_frame(X_daily, self.columns_, "X_daily")
        return gap_forecast(X.index, self.model_.predict(X), self.sigma_)


class LGBMSetupModel:
    """LGBMClassifier of ``yB`` on :data:`INTRADAY_MODEL_COLUMNS`, early-stopped on validation log loss.

    Trained on every labelled minute of the training sessions (the pipeline scores it on setup minutes).
    Fitted attribute: ``model_`` (``best_iteration_`` is the round used).
    """

    name = "lgbm"

    def __init__(self, cfg: BaselineConfig = BaselineConfig(), seed: int = 0):
        self.cfg, self.seed = cfg, seed

    def fit(
        self, X_intraday: pd.DataFrame, yB: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> LGBMSetupModel:
        data = intraday_samples(X_intraday, yB, train_idx, val_idx, INTRADAY_MODEL_COLUMNS)
        model = lgb.LGBMClassifier(objective="binary", **lgbm_params(self.cfg, self.seed))
        self.model_ = fit_early_stopped(model, data, self.cfg.lgbm_early_stopping_rounds)
        return self

    def predict_intraday_proba(self, X_intraday: pd.DataFrame) -> pd.Series:
        require_fitted(self, "model_")
        X = feature_frame(X_intraday, INTRADAY_MODEL_COLUMNS, "X_intraday")
        return pd.Series(np.asarray(self.model_.predict_proba(X)[:, 1]), index=X.index, name="proba")
