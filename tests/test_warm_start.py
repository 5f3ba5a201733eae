"""Warm-started refits (``train.warm_start``): fold k's HRM networks start from fold k-1's best weights, train
fewer epochs on fewer samples, refit their scalers, and stay causal (perturbing data after fold k's validation
block changes neither its networks nor its forecasts up to a date)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lab_v10.src.config import config_from_dict
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import Dataset, build_dataset, split_dates
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.models.registry import make_model
from lab_v10.src.options import hrm_train
from lab_v10.src.options.checkpoint import (
    BEST_CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    warm_start_weights,
)
from lab_v10.src.options.hrm_model import previous_fold_dir, torch_threads
from lab_v10.src.options.hrm_net import HRMNet

CFG = config_from_dict({
    "seed": 4,
    "data": {"source": "synthetic", "synthetic": {"n_days": 330, "minutes_per_day": 30}},
    "labels": {"horizon_days": 5, "horizon_minutes": 10},
    "walkforward": {"mode": "whole_history", "min_train_days": 120, "val_days": 30, "test_days": 40,
                    "embargo_days": 2},
    "hrm": {
        "h": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "l": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "daily_window": 8, "H_cycles": 1, "L_cycles": 1, "max_segments": 2,
    },
    "train": {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "lr": 0.003, "autocast_bf16": False,
              "device": "cpu", "ensemble_size": 2, "warm_start": True, "warm_start_epochs": 1,
              "warm_start_samples": 40, "threads": 1},
}, "warm start test")


@pytest.fixture(scope="module")
def data() -> Dataset:
    data = build_dataset(load_market(CFG.data, CFG.seed), CFG)
    return dataclasses.replace(data, X_intraday=None, yB=None)  # Book A only: the weights are what matters here


@pytest.fixture(scope="module")
def folds(data):
    folds = walk_forward_folds(data.sample_dates, data.span_end, CFG.walkforward)
    assert len(folds) >= 3
    return folds


def fit_folds(data, folds, root, cfg=CFG, n=2):
    """Fit the HRM on folds 0..n-1 in order into root/hrm/fold_k (as the pipeline does); returns the models."""
    return [make_model("hrm", cfg, root / "hrm" / f"fold_{f.number}").fit(data, f) for f in folds[:n]]


@pytest.fixture(scope="module")
def fitted(data, folds, tmp_path_factory):
    """Folds 0 and 1, recording what each trainer started from."""
    root = tmp_path_factory.mktemp("warm")
    starts = []
    original = hrm_train.HRMTrainer.fit

    def recording_fit(self, train, val, resume_from=None):
        starts.append({"out_dir": self.out_dir, "epochs": self.train_cfg.epochs, "samples": self.samples_per_epoch,
                       "state": {k: v.detach().clone() for k, v in self.net.state_dict().items()}})
        return original(self, train, val, resume_from)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hrm_train.HRMTrainer, "fit", recording_fit)
        models = fit_folds(data, folds, root)
    return root, models, starts


def test_fold_0_trains_from_scratch_and_fold_1_starts_from_fold_0s_best_weights(fitted):
    root, models, starts = fitted
    assert len(starts) == 2 * CFG.train.ensemble_size
    for member in range(CFG.train.ensemble_size):
        scratch, warm = starts[member], starts[CFG.train.ensemble_size + member]
        best_0 = load_checkpoint(root / "hrm" / "fold_0" / f"member_{member}" / BEST_CHECKPOINT)["model"]
        assert scratch["out_dir"] == root / "hrm" / "fold_0" / f"member_{member}"
        assert warm["out_dir"] == root / "hrm" / "fold_1" / f"member_{member}"
        # fold 0 starts from its seed's initialisation, fold 1 from fold 0's best weights of the same member
        assert any(not torch.equal(scratch["state"][k], best_0[k]) for k in best_0)
        assert all(torch.equal(warm["state"][k], best_0[k]) for k in best_0)
        assert (scratch["epochs"], scratch["samples"]) == (CFG.train.epochs, None)
        assert (warm["epochs"], warm["samples"]) == (CFG.train.warm_start_epochs, CFG.train.warm_start_samples)
    assert [s.epochs_run for s in models[1].adapter_.summaries_] == [1, 1]
    # fewer samples per epoch: the trainer's learning-rate schedule counts ceil(40 / 16) = 3 batches
    assert models[1].adapter_.trainers_[0].scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    assert models[1].adapter_.trainers_[0].scheduler.last_epoch == 3


def test_warm_started_fold_refits_its_scalers_on_its_own_training_rows(fitted, data, folds):
    _, models, _ = fitted
    window = CFG.hrm.daily_window
    for model, fold in zip(models, folds):
        train, _, _ = split_dates(data, fold)
        rows = data.X_daily.index.get_indexer(train)
        rows = rows[rows >= window - 1]  # dates with a full daily window
        np.testing.assert_allclose(model.adapter_.daily_scaler_.mean_, data.X_daily.to_numpy()[rows].mean(axis=0))
    assert not np.allclose(models[0].adapter_.daily_scaler_.mean_, models[1].adapter_.daily_scaler_.mean_)


def test_warm_started_fold_ignores_data_after_its_validation_block(fitted, data, folds, tmp_path):
    """Perturb every feature after a test date of fold 1 and every label reaching into fold 1's test block; refit
    fold 0 and warm-started fold 1: fold 1's networks are identical and its forecasts up to that date too."""
    root, models, _ = fitted
    fold = folds[1]
    _, _, test = split_dates(data, fold)
    cut = test[len(test) // 2]
    X = data.X_daily.copy()
    later = X.index > cut
    X.loc[later] = X.loc[later] * 1.7 + 3.0
    y = data.yA.copy()
    reaching = pd.Series(data.span_end, index=data.sample_dates).reindex(y.index) >= test[0]
    y[reaching.to_numpy()] = y[reaching.to_numpy()] * -2.0 + 5.0
    perturbed = dataclasses.replace(data, X_daily=X, yA=y)
    again = fit_folds(perturbed, folds, tmp_path)
    for member in range(CFG.train.ensemble_size):
        a = load_checkpoint(root / "hrm" / "fold_1" / f"member_{member}" / BEST_CHECKPOINT)["model"]
        b = load_checkpoint(tmp_path / "hrm" / "fold_1" / f"member_{member}" / BEST_CHECKPOINT)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    before, after = models[1].predict(data, test), again[1].predict(perturbed, test)
    past = test <= cut
    np.testing.assert_array_equal(after.mu[past].to_numpy(), before.mu[past].to_numpy())
    np.testing.assert_array_equal(after.sigma[past].to_numpy(), before.sigma[past].to_numpy())
    assert not np.allclose(after.mu[~past].to_numpy(), before.mu[~past].to_numpy())


def test_forecasts_from_the_needed_rows_equal_those_from_the_whole_history(fitted, data, folds):
    _, models, _ = fitted
    _, _, test = split_dates(data, folds[1])
    full = models[1].adapter_.predict_daily(data.X_daily.loc[: test[-1]]).reindex(test)
    out = models[1].predict(data, test)
    np.testing.assert_allclose(out.mu.to_numpy(), full["mu"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(out.sigma.to_numpy(), full["sigma"].to_numpy(), rtol=1e-6)


def test_warm_start_without_the_previous_fold_or_with_other_widths_is_a_clear_error(data, folds, tmp_path):
    with pytest.raises(CheckpointError, match=r"fold_0: train.warm_start: fold 0's networks are missing"):
        make_model("hrm", CFG, tmp_path / "hrm" / "fold_1").fit(data, folds[1])
    with pytest.raises(CheckpointError, match="expects the run folder of fold 1 to be named fold_1"):
        previous_fold_dir(tmp_path / "somewhere", folds[1])
    assert previous_fold_dir(None, folds[1]) is None and previous_fold_dir(tmp_path / "fold_0", folds[0]) is None
    fit_folds(data, folds, tmp_path, n=1)
    wider = dataclasses.replace(CFG, hrm=dataclasses.replace(CFG.hrm, h=dataclasses.replace(CFG.hrm.h, ffn_dim=32)))
    with pytest.raises(CheckpointError, match=r"member_0/best.pt: cannot warm-start from this checkpoint: hrm "
                                              r"settings differ in hrm.h \(expected the previous fold's best.pt"):
        make_model("hrm", wider, tmp_path / "hrm" / "fold_1").fit(data, folds[1])
    with pytest.raises(CheckpointError, match="not found"):
        warm_start_weights(tmp_path / "nowhere.pt", CFG.hrm)


def test_no_run_folder_or_no_warm_start_trains_every_fold_from_scratch(data, folds, tmp_path, monkeypatch):
    epochs = []
    original = hrm_train.HRMTrainer.fit
    monkeypatch.setattr(hrm_train.HRMTrainer, "fit",
                        lambda self, *a, **k: epochs.append(self.train_cfg.epochs) or original(self, *a, **k))
    cold = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, warm_start=False, ensemble_size=1))
    fit_folds(data, folds, tmp_path, cfg=cold)
    make_model("hrm", dataclasses.replace(cold, train=dataclasses.replace(cold.train, warm_start=True))).fit(
        data, folds[1])  # no run folder: nothing to start from
    assert epochs == [CFG.train.epochs] * 3


def test_an_epoch_of_samples_per_epoch_draws_that_many_distinct_training_rows(tmp_path):
    net = HRMNet(dataclasses.replace(CFG.hrm, daily_features=3, minute_features=2))
    trainer = hrm_train.HRMTrainer(net, net.cfg, CFG.train, tmp_path, seed=1, samples_per_epoch=40)
    batches = trainer._epoch_batches(100, 1)
    assert [b.numel() for b in batches] == [16, 16, 8]
    rows = torch.cat(batches)
    assert rows.unique().numel() == 40 and rows.max() < 100
    assert math.ceil(40 / CFG.train.batch_size) == len(batches)
    full = hrm_train.HRMTrainer(net, net.cfg, CFG.train, tmp_path, seed=1)
    assert sum(b.numel() for b in full._epoch_batches(100, 1)) == 100


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
