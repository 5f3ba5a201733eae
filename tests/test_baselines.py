"""Baselines: HAR coefficient recovery, interface shapes, train-only preprocessing, determinism, skill on
processes with signal, and input errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bar_factories import random_minute_bars
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from lab_v10.src.baselines.har import HARGapForecaster
from lab_v10.src.baselines.lgbm import LGBMGapForecaster, LGBMSetupModel
from lab_v10.src.baselines.linear import LinearGapForecaster, LogisticSetupModel
from lab_v10.src.baselines.rules import RuleOnlySetup
from lab_v10.src.config import BaselineConfig, LabConfig, LabelConfig, config_from_dict
from lab_v10.src.data.schema import DailyBars
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.metrics import regression_metrics
from lab_v10.src.features.daily import build_daily_features
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS, build_intraday_features
from lab_v10.src.features.labels import make_daily_labels, make_intraday_labels
from lab_v10.src.models.registry import MODEL_NAMES, check_model_names, make_model

CFG = BaselineConfig()


def daily_model(name: str):
    """The Book A building block of baseline ``name`` from the registry."""
    return make_model(name, LabConfig(baselines=CFG, seed=0)).daily


def intraday_model(name: str):
    """The Book B building block of baseline ``name`` from the registry."""
    return make_model(name, LabConfig(baselines=CFG, seed=0)).intraday
HORIZON = LabelConfig().horizon_days


# ------------------------------------------------------------------------------------------------
# Data


def ar_vol_daily_bars(n_days: int, seed: int) -> DailyBars:
    """Daily bars whose annualized vol (%) follows a log-AR(1), with iv = vol + an AR(1) risk premium.

    Future realized vol is predictable from the trailing rv (persistence) and the gap from iv - rv (the
    premium), so yA carries signal a forecaster can learn.
    """
    rng = np.random.default_rng(seed)
    log_vol = np.empty(n_days)
    premium = np.empty(n_days)
    log_vol[0], premium[0] = np.log(18.0), 2.0
    for t in range(1, n_days):
        log_vol[t] = np.log(18.0) + 0.97 * (log_vol[t - 1] - np.log(18.0)) + 0.08 * rng.normal()
        premium[t] = 2.0 + 0.9 * (premium[t - 1] - 2.0) + 1.5 * rng.normal()
    vol = np.exp(log_vol)  # (n,) annualized %
    daily_sd = vol / 100.0 / np.sqrt(252.0)
    close = 100.0 * np.exp(np.cumsum(daily_sd * rng.normal(size=n_days)))
    open_ = close * np.exp(0.3 * daily_sd * rng.normal(size=n_days))
    high = np.maximum(open_, close) * np.exp(0.5 * daily_sd * np.abs(rng.normal(size=n_days)))
    low = np.minimum(open_, close) * np.exp(-0.5 * daily_sd * np.abs(rng.normal(size=n_days)))
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "iv": vol + premium},
        index=pd.bdate_range("2015-01-02", periods=n_days, name="date"),
    )
    return DailyBars(frame)


@pytest.fixture(scope="module")
def daily():
    """Features, labels and purged train/val/test dates (a horizon-long gap before val and test)."""
    bars = ar_vol_daily_bars(1100, seed=7)
    X = build_daily_features(bars)
    yA = make_daily_labels(bars)["yA"]
    dates = X.index
    train, val, test = dates[:600], dates[600 + HORIZON : 700], dates[700 + HORIZON : 1000]
    assert yA.reindex(dates[: 1000 + HORIZON]).notna().all()
    return X, yA, train, val, test


@pytest.fixture(scope="module")
def intraday():
    """Features, labels and train/val/test session dates of 16 random-walk sessions (15 after warm-up)."""
    bars = random_minute_bars([390] * 16, seed=3)
    X = build_intraday_features(bars)
    yB = make_intraday_labels(bars, X["atr"], LabelConfig())["yB"]
    sessions = pd.DatetimeIndex(X["session"].unique())
    return X, yB, sessions[:10], sessions[10:13], sessions[13:]


def minutes_of(X: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    return X.loc[X["session"].isin(sessions)]


def simulate_har(n: int, coef: dict[str, float], intercept: float, noise: float, seed: int):
    """A HAR process in vol: v(t+1) = b0 + b1 v(t) + b5 mean5(t) + b22 mean22(t) + e; yA = v(t+1) - iv(t)."""
    rng = np.random.default_rng(seed)
    v = np.full(n + 1, intercept / (1.0 - sum(coef.values())))
    for t in range(22, n):
        x = (v[t], v[t - 4 : t + 1].mean(), v[t - 21 : t + 1].mean())
        v[t + 1] = intercept + np.dot([coef["rv_1d"], coef["rv_5d"], coef["rv_22d"]], x) + noise * rng.normal()
    rows = np.arange(22, n)
    iv = v[rows] + rng.normal(2.0, 1.0, rows.size)
    dates = pd.bdate_range("2000-01-03", periods=rows.size, name="date")
    X = pd.DataFrame(  # columns deliberately out of window order
        {
            "rv_22d": [v[t - 21 : t + 1].mean() for t in rows],
            "iv": iv,
            "rv_5d": [v[t - 4 : t + 1].mean() for t in rows],
            "rv_1d": v[rows],
        },
        index=dates,
    )
    return X, pd.Series(v[rows + 1] - iv, index=dates, name="yA")


# ------------------------------------------------------------------------------------------------
# HAR


def test_har_recovers_the_coefficients_of_a_simulated_har_process():
    coef = {"rv_1d": 0.35, "rv_5d": 0.30, "rv_22d": 0.25}
    X, yA = simulate_har(6000, coef, intercept=1.5, noise=1.0, seed=1)
    model = HARGapForecaster().fit(X, yA, X.index[:4000], X.index[4000:])
    assert model.columns_ == ["rv_1d", "rv_5d", "rv_22d"]  # sorted by window, not by name
    assert model.regression_.coef_ == pytest.approx(list(coef.values()), abs=0.06)
    assert model.regression_.intercept_ == pytest.approx(1.5, abs=0.5)
    assert model.sigma_ == pytest.approx(1.0, rel=0.1)  # the noise sd, seen on validation
    forecast = model.predict_daily(X.iloc[4000:])
    assert np.allclose(forecast["mu"] + X["iv"].iloc[4000:], model.regression_.predict(X.iloc[4000:][model.columns_]))


def test_har_sigma_falls_back_to_the_training_residual_sd_without_validation_dates():
    coef = {"rv_1d": 0.4, "rv_5d": 0.3, "rv_22d": 0.2}
    X, yA = simulate_har(800, coef, intercept=1.0, noise=2.0, seed=2)
    model = HARGapForecaster().fit(X, yA, X.index, pd.DatetimeIndex([]))
    residual = yA.to_numpy() - model.predict_daily(X)["mu"].to_numpy()
    assert model.sigma_ == pytest.approx(np.sqrt(np.sum(residual**2) / (len(X) - 4)), rel=1e-12)


def test_har_needs_iv_to_rebuild_the_forward_realized_vol():
    X, yA = simulate_har(200, {"rv_1d": 0.4, "rv_5d": 0.3, "rv_22d": 0.2}, 1.0, 1.0, seed=3)
    with pytest.raises(ValueError, match="missing feature column 'iv'"):
        HARGapForecaster().fit(X.drop(columns="iv"), yA, X.index[:100], X.index[120:])


# ------------------------------------------------------------------------------------------------
# Book A interface, skill, train-only preprocessing, determinism


@pytest.mark.parametrize("name", ["har", "linear", "lgbm"])
def test_daily_models_forecast_every_row_with_positive_sigma(daily, name):
    X, yA, train, val, test = daily
    model = daily_model(name)
    assert model.name == name
    model.fit(X, yA, train, val)
    assert model.train_mean_ == pytest.approx(yA.loc[train].mean(), rel=1e-12)
    forecast = model.predict_daily(X.loc[test])
    assert list(forecast.columns) == ["mu", "sigma"]
    assert forecast.index.equals(test)
    assert np.isfinite(forecast.to_numpy()).all()
    assert (forecast["sigma"] > 0).all()


@pytest.mark.parametrize("name", ["linear", "lgbm"])
def test_linear_and_lgbm_beat_the_training_mean_out_of_sample(daily, name):
    X, yA, train, val, test = daily
    model = daily_model(name)
    forecast = model.fit(X, yA, train, val).predict_daily(X.loc[test])
    scores = regression_metrics(yA.loc[test], forecast["mu"], forecast["sigma"], model.train_mean_)
    assert scores["r2_oos"] > 0.1
    assert scores["rank_ic"] > 0.3


def perturbed_outside(X: pd.DataFrame, keep: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """``X`` with every numeric feature of the rows whose date is not in ``keep`` scaled and shifted wildly."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    dates = pd.DatetimeIndex(X["session"]) if "session" in X.columns else X.index
    rows = ~dates.isin(keep)
    columns = [c for c in X.columns if c != "session"]
    out.loc[rows, columns] = X.loc[rows, columns].to_numpy() * 1000.0 + rng.normal(0, 1e4, (rows.sum(), len(columns)))
    return out


def test_linear_scaler_and_coefficients_see_training_rows_only(daily):
    X, yA, train, val, test = daily
    wild = perturbed_outside(X, train, seed=0)
    one_alpha = BaselineConfig(ridge_alphas=[10.0])
    a = LinearGapForecaster(one_alpha).fit(X, yA, train, val)
    b = LinearGapForecaster(one_alpha).fit(wild, yA, train, val)
    for model in (a, b):
        scaler = model.pipeline_.named_steps["scaler"]
        assert np.allclose(scaler.mean_, X.loc[train].mean().to_numpy(), rtol=1e-12)
    assert np.array_equal(a.pipeline_.named_steps["ridge"].coef_, b.pipeline_.named_steps["ridge"].coef_)
    assert a.sigma_ != b.sigma_  # the validation rows did change, and they set sigma

    # with the full grid, the validation rows pick alpha but the scaler still sees training rows only
    c = LinearGapForecaster(CFG).fit(wild, yA, train, val)
    assert np.array_equal(c.pipeline_.named_steps["scaler"].scale_, a.pipeline_.named_steps["scaler"].scale_)
    assert set(c.validation_mse_) == set(CFG.ridge_alphas)


def test_har_coefficients_see_training_rows_only(daily):
    X, yA, train, val, _ = daily
    a = HARGapForecaster().fit(X, yA, train, val)
    b = HARGapForecaster().fit(perturbed_outside(X, train, seed=1), yA, train, val)
    assert np.array_equal(a.regression_.coef_, b.regression_.coef_)
    assert a.regression_.intercept_ == b.regression_.intercept_


def test_lgbm_daily_is_deterministic_and_ignores_rows_outside_train_and_val(daily):
    X, yA, train, val, test = daily
    a = LGBMGapForecaster(CFG, seed=5).fit(X, yA, train, val)
    b = LGBMGapForecaster(CFG, seed=5).fit(perturbed_outside(X, train.append(val), seed=2), yA, train, val)
    assert a.model_.best_iteration_ < CFG.lgbm_n_estimators  # early stopping engaged
    assert np.array_equal(a.predict_daily(X.loc[test]).to_numpy(), b.predict_daily(X.loc[test]).to_numpy())


# ------------------------------------------------------------------------------------------------
# Book B


@pytest.mark.parametrize("name", ["rule", "logistic", "lgbm"])
def test_intraday_models_give_a_probability_for_every_minute(intraday, name):
    X, yB, train, val, test = intraday
    model = intraday_model(name)
    assert model.name == name
    proba = model.fit(X, yB, train, val).predict_intraday_proba(X)
    assert proba.index.equals(X.index)
    assert np.isfinite(proba.to_numpy()).all()
    assert ((proba >= 0) & (proba <= 1)).all()


def test_rule_only_setup_is_the_setup_signal(intraday):
    X, yB, train, val, _ = intraday
    assert X["setup_signal"].sum() > 0  # the random sessions do fire the setup
    proba = RuleOnlySetup().fit(X, yB, train, val).predict_intraday_proba(X)
    assert np.array_equal(proba.to_numpy(), X["setup_signal"].to_numpy())
    with pytest.raises(ValueError, match="'setup_signal' at .* is 0.5"):
        RuleOnlySetup().predict_intraday_proba(X.assign(setup_signal=0.5))


def test_logistic_learns_from_every_labelled_training_minute_with_a_train_only_scaler(intraday):
    X, yB, train, val, _ = intraday
    labelled = yB.reindex(minutes_of(X, train).index).notna()
    model = LogisticSetupModel(BaselineConfig(logistic_cs=[1.0])).fit(X, yB, train, val)
    scaler = model.pipeline_.named_steps["scaler"]
    assert scaler.n_samples_seen_ == labelled.sum() < len(labelled)  # NaN labels masked, setup or not
    train_rows = minutes_of(X, train).loc[labelled.to_numpy(), list(INTRADAY_MODEL_COLUMNS)]
    assert np.allclose(scaler.mean_, train_rows.mean().to_numpy(), rtol=1e-12, atol=1e-15)

    wild = LogisticSetupModel(BaselineConfig(logistic_cs=[1.0])).fit(perturbed_outside(X, train, 3), yB, train, val)
    assert np.array_equal(wild.pipeline_.named_steps["scaler"].mean_, scaler.mean_)
    assert np.array_equal(
        wild.pipeline_.named_steps["logistic"].coef_, model.pipeline_.named_steps["logistic"].coef_
    )


def synthetic_yB(X: pd.DataFrame, yB: pd.Series, seed: int) -> pd.Series:
    """Labels drawn with P(yB = 1) = sigmoid(1.5 * vwap_distance_atr), NaN where the real label is NaN."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.exp(-1.5 * X["vwap_distance_atr"].to_numpy()))
    drawn = (rng.uniform(size=p.size) < p).astype(float)
    return pd.Series(np.where(yB.reindex(X.index).isna(), np.nan, drawn), index=X.index)


@pytest.mark.parametrize("model_cls", [LogisticSetupModel, LGBMSetupModel])
def test_intraday_models_beat_the_base_rate_when_yB_depends_on_a_feature(intraday, model_cls):
    X, yB, train, val, test = intraday
    y = synthetic_yB(X, yB, seed=4)
    proba = model_cls(CFG).fit(X, y, train, val).predict_intraday_proba(minutes_of(X, test))
    labelled = y.loc[proba.index].notna()
    assert roc_auc_score(y.loc[proba.index][labelled], proba[labelled]) > 0.6


def test_lgbm_intraday_is_deterministic_for_a_seed(intraday):
    X, yB, train, val, test = intraday
    a = LGBMSetupModel(CFG, seed=11).fit(X, yB, train, val).predict_intraday_proba(X)
    b = LGBMSetupModel(CFG, seed=11).fit(X, yB, train, val).predict_intraday_proba(X)
    assert np.array_equal(a.to_numpy(), b.to_numpy())


# ------------------------------------------------------------------------------------------------
# Errors


def test_nan_daily_feature_is_named_by_column_and_date(daily):
    X, yA, train, val, _ = daily
    broken = X.copy()
    broken.loc[train[5], "rv_5d"] = np.nan
    with pytest.raises(ValueError, match=rf"'rv_5d' at {train[5].date()}.* is nan"):
        LinearGapForecaster(CFG).fit(broken, yA, train, val)
    fitted = HARGapForecaster().fit(X, yA, train, val)
    with pytest.raises(ValueError, match="'rv_5d'"):
        fitted.predict_daily(broken)


def test_train_date_without_a_label_is_rejected(daily):
    X, yA, train, val, _ = daily
    tail = X.index[-1]  # yA is NaN on the last horizon rows
    with pytest.raises(ValueError, match=rf"yA: label at train date {tail.date()} is nan"):
        HARGapForecaster().fit(X, yA, train.append(pd.DatetimeIndex([tail])), val)


def test_unknown_dates_and_overlapping_folds_are_rejected(daily):
    X, yA, train, val, _ = daily
    saturday = pd.DatetimeIndex([pd.Timestamp("2016-01-02")])
    with pytest.raises(ValueError, match="X_daily: no feature row for train date 2016-01-02"):
        LGBMGapForecaster(CFG).fit(X, yA, train.append(saturday), val)
    with pytest.raises(ValueError, match=rf"yA: no label row for validation date {val[0]}"):
        LinearGapForecaster(CFG).fit(X, yA.drop(val[0]), train, val)
    with pytest.raises(ValueError, match=rf"val_idx: date {train[-1].date()} is also in train_idx"):
        HARGapForecaster().fit(X, yA, train, val.append(train[-1:]))
    with pytest.raises(ValueError, match="val_idx: expected at least one validation date"):
        LinearGapForecaster(CFG).fit(X, yA, train, pd.DatetimeIndex([]))


def test_intraday_input_errors(intraday):
    X, yB, train, val, _ = intraday
    minute = minutes_of(X, train).index[7]
    broken = X.copy()
    broken.loc[minute, "rel_volume"] = np.inf
    with pytest.raises(ValueError, match=rf"'rel_volume' at {minute}.* is inf"):
        LogisticSetupModel(CFG).fit(broken, yB, train, val)
    with pytest.raises(ValueError, match=rf"yB: no label row for minute {minute}"):
        LGBMSetupModel(CFG).fit(X, yB.drop(minute), train, val)
    with pytest.raises(ValueError, match=rf"yB: label at minute {minute} is 2.0"):
        LogisticSetupModel(CFG).fit(X, yB.where(yB.index != minute, 2.0), train, val)
    holiday = pd.DatetimeIndex([pd.Timestamp("2024-12-25")])
    with pytest.raises(ValueError, match="X_intraday: no minutes for validation session 2024-12-25"):
        LogisticSetupModel(CFG).fit(X, yB, train, val.append(holiday))
    with pytest.raises(ValueError, match="expected both classes"):
        LGBMSetupModel(CFG).fit(X, yB.where(yB.isna(), 0.0), train, val)


def test_predicting_before_fit_is_an_error(intraday):
    X, *_ = intraday
    with pytest.raises(NotFittedError, match="LGBMSetupModel: call fit"):
        LGBMSetupModel(CFG).predict_intraday_proba(X)


# ------------------------------------------------------------------------------------------------
# Registry and config


def test_registry_builds_every_model_with_its_books():
    cfg = LabConfig(baselines=CFG, seed=3)
    books = {name: make_model(name, cfg).books for name in MODEL_NAMES}
    assert books == {"hrm": ("A", "B"), "tshrm": ("A",), "har": ("A",), "linear": ("A",), "lgbm": ("A", "B"),
                     "logistic": ("B",), "rule": ("B",)}
    lgbm = make_model("lgbm", cfg)
    assert [lgbm.daily.seed, lgbm.intraday.seed] == [3, 3]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            ["har", "garch"],
            r"models\[1\]: unknown model 'garch' \(expected one of: hrm, tshrm, har, linear, lgbm, logistic, rule\)",
        ),
        ([], r"models: expected at least one model name"),
        (["lgbm", "lgbm"], r"models\[1\]: model 'lgbm' is listed twice"),
    ],
)
def test_registry_rejects_unknown_repeated_and_missing_names(names, message):
    with pytest.raises(ConfigError, match=message):
        check_model_names(names)


def test_baseline_config_rejects_an_empty_or_non_positive_grid():
    assert config_from_dict({"ridge_alphas": [0.5, 2.0]}, cls=BaselineConfig).ridge_alphas == [0.5, 2.0]
    with pytest.raises(ConfigError, match="ridge_alphas: expected .* non-empty, all > 0"):
        config_from_dict({"ridge_alphas": []}, cls=BaselineConfig)
    with pytest.raises(ConfigError, match="logistic_cs: expected .* non-empty, all > 0"):
        config_from_dict({"logistic_cs": [1.0, -1.0]}, cls=BaselineConfig)
