"""``--models tshrm``: the TimeSeriesHRM as a Book A gap forecaster behind the one model interface."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import config_from_dict
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import build_dataset, split_dates
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.models.registry import make_model

CFG = config_from_dict({
    "seed": 2,
    "data": {"source": "synthetic", "synthetic": {"n_days": 260, "minutes_per_day": 30}},
    "labels": {"horizon_days": 5, "horizon_minutes": 10},
    "walkforward": {"n_folds": 1, "min_train_days": 120, "val_days": 30, "test_days": 40, "embargo_days": 2},
    "train": {"device": "cpu"},
    "tshrm": {"window": 8, "patch_len": 4, "epochs": 3, "batch_size": 16, "patience": 2},
}, "tshrm test")


@pytest.fixture(scope="module")
def setup():
    data = build_dataset(load_market(CFG.data, CFG.seed), CFG)
    fold = walk_forward_folds(data.sample_dates, data.span_end, CFG.walkforward)[0]
    model = make_model("tshrm", CFG).fit(data, fold)
    return data, fold, model


def test_forecasts_every_test_date_with_positive_sigma(setup):
    data, fold, model = setup
    _, _, test = split_dates(data, fold)
    out = model.predict(data, test)
    assert out.proba is None and model.books == ("A",)
    assert out.mu.index.equals(test) and out.sigma.index.equals(test)
    assert np.isfinite(out.mu).all() and (out.sigma > 0).all()
    steps = out.diagnostics["act_segments_A"]
    assert steps.index.equals(test) and steps["member_0"].between(1, CFG.tshrm.max_segments).all()
    assert len(model.history_) >= 1 and 0 <= model.best_epoch_ < CFG.tshrm.epochs


def test_forecast_at_t_reads_daily_rows_up_to_t_only(setup):
    """Perturb every daily feature after a cut: forecasts at dates <= cut do not move, later ones do."""
    data, fold, model = setup
    _, _, test = split_dates(data, fold)
    cut = test[len(test) // 2]
    before = model.predict(data, test)
    X = data.X_daily.copy()
    later = X.index > cut
    X.loc[later] = X.loc[later] * 1.7 + 3.0
    after = model.predict(dataclasses.replace(data, X_daily=X), test)
    past = test <= cut
    np.testing.assert_array_equal(after.mu[past].to_numpy(), before.mu[past].to_numpy())
    np.testing.assert_array_equal(after.sigma[past].to_numpy(), before.sigma[past].to_numpy())
    assert not np.allclose(after.mu[~past].to_numpy(), before.mu[~past].to_numpy())


def test_same_seed_same_forecasts(setup):
    data, fold, model = setup
    _, _, test = split_dates(data, fold)
    again = make_model("tshrm", CFG).fit(data, fold)
    pd.testing.assert_series_equal(again.predict(data, test).mu, model.predict(data, test).mu)


def test_training_scaler_sees_training_rows_only(setup):
    data, fold, model = setup
    train, _, _ = split_dates(data, fold)
    np.testing.assert_allclose(model.scaler_.mean_, data.X_daily.loc[train].mean().to_numpy())
    assert model.y_mean_ == pytest.approx(data.yA.loc[train].mean())


def test_too_short_history_is_an_error(setup):
    data, _, model = setup
    with pytest.raises(ValueError, match="fewer than tshrm.window rows of daily history"):
        model.predict(data, data.X_daily.index[:10])  # the first 7 dates lack 8 rows
