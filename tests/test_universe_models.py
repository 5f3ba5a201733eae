"""Pooled models of a universe: causal (perturb one symbol's future, no forecast of any symbol moves),
preprocessing per symbol on its own training rows, stable symbol ids, and one symbol pooled = one asset."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import config_from_dict
from lab_v10.src.data.market import Market
from lab_v10.src.data.schema import DailyBars
from lab_v10.src.data.universe import load_universe
from lab_v10.src.dataset.dataset import split_dates
from lab_v10.src.dataset.panel import build_panel, panel_folds, symbol_folds
from lab_v10.src.models.registry import make_pooled_model
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.hrm_symbol import SymbolInputs

CFG = config_from_dict({
    "seed": 5,
    "data": {"source": "synthetic", "synthetic": {"n_days": 330, "minutes_per_day": 30, "n_symbols": 2}},
    "labels": {"horizon_days": 5, "horizon_minutes": 10},
    "walkforward": {"mode": "last", "n_folds": 1, "min_train_days": 150, "val_days": 30, "test_days": 40,
                    "embargo_days": 2},
    "hrm": {
        "h": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "l": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 24},
        "daily_window": 8, "H_cycles": 1, "L_cycles": 1, "max_segments": 2, "symbol_embedding": True,
    },
    "train": {"epochs": 1, "batch_size": 16, "warmup_steps": 2, "lr": 0.003, "autocast_bf16": False,
              "device": "cpu", "threads": 1},
    "panel": {"min_train_days": 50},
}, "pooled test")


def _daily_only(markets: dict[str, Market]) -> dict[str, Market]:
    return {s: dataclasses.replace(m, minutes=None) for s, m in markets.items()}


def _forecasts(markets, names, tmp_path):
    """Fit each pooled model on the one fold, forecast every symbol's test dates: {model: {symbol: mu}}."""
    panel = build_panel(markets, CFG)
    (fold,) = panel_folds(panel, CFG)
    members = symbol_folds(panel, fold, CFG.panel.min_train_days)
    out = {}
    for name in names:
        model = make_pooled_model(name, CFG, tmp_path / name).fit(panel, members)
        out[name] = {s: model.predict(panel, s, split_dates(panel.datasets[s], f)[2]).mu for s, f in members.items()}
    return out, panel, members


@pytest.fixture(scope="module")
def markets():
    return _daily_only(load_universe(CFG.data, CFG.seed))


def test_pooled_models_do_not_read_any_symbols_future(markets, tmp_path):
    names = ["hrm", "linear", "har"]
    before, panel, members = _forecasts(markets, names, tmp_path / "a")
    last_test = max(split_dates(panel.datasets[s], f)[2][-1] for s, f in members.items())
    # SYN1's bars after the last test date become wild: every label of the test dates changes, no forecast may
    changed = dict(markets)
    frame = markets["SYN1"].daily.frame.copy()
    after = frame.index > last_test
    frame.loc[after, ["open", "high", "low", "close"]] *= 3.0
    frame.loc[after, "iv"] *= 2.0
    changed["SYN1"] = dataclasses.replace(markets["SYN1"], daily=DailyBars(frame, source="perturbed"))
    assert after.sum() > 0
    after_run, _, _ = _forecasts(changed, names, tmp_path / "b")
    for name in names:
        for sym in members:
            pd.testing.assert_series_equal(before[name][sym], after_run[name][sym], obj=f"{name} {sym}")
    # and the perturbation is not a no-op for what lies in the future: SYN1's test labels moved
    new_panel = build_panel(changed, CFG)
    test = split_dates(panel.datasets["SYN1"], members["SYN1"])[2]
    assert not np.allclose(panel.datasets["SYN1"].yA.loc[test], new_panel.datasets["SYN1"].yA.loc[test])


def test_pooled_hrm_scales_each_symbol_on_its_own_training_rows(markets, tmp_path):
    panel = build_panel(markets, CFG)
    (fold,) = panel_folds(panel, CFG)
    members = symbol_folds(panel, fold, CFG.panel.min_train_days)
    model = make_pooled_model("hrm", CFG, tmp_path).fit(panel, members)
    adapter = model.adapter_
    assert adapter.universe_ == ["SYN0", "SYN1"] and adapter.hrm_config_.n_symbols == 2
    for sym, sym_fold in members.items():
        data = panel.datasets[sym]
        train = split_dates(data, sym_fold)[0]
        rows = data.X_daily.index.get_indexer(train)
        rows = rows[rows >= CFG.hrm.daily_window - 1]  # dates with a full window are the samples
        np.testing.assert_allclose(adapter.scalings_[sym].daily_scaler.mean_, data.X_daily.to_numpy()[rows].mean(axis=0))
    assert not np.allclose(adapter.scalings_["SYN0"].daily_scaler.mean_, adapter.scalings_["SYN1"].daily_scaler.mean_)
    with pytest.raises(ValueError, match="symbol: 'SYN9' was not among the fitted symbols"):
        adapter.predict_daily(panel.datasets["SYN0"].X_daily, "SYN9")
    with pytest.raises(ValueError, match="fitted on 2 symbols"):
        adapter.predict_daily(panel.datasets["SYN0"].X_daily)


def test_one_symbol_pooled_equals_the_single_asset_fit(markets, tmp_path):
    cfg = dataclasses.replace(CFG, hrm=dataclasses.replace(CFG.hrm, symbol_embedding=False))
    panel = build_panel(markets, cfg)
    (fold,) = panel_folds(panel, cfg)
    data = panel.datasets["SYN0"]
    train, val, test = split_dates(data, fold)
    single = HRMAdapter(cfg, tmp_path / "single").fit(data.X_daily, None, data.yA, None, train, val)
    pooled = HRMAdapter(cfg, tmp_path / "pooled").fit_pooled(
        {"SYN0": SymbolInputs(data.X_daily, None, data.yA, None, train, val)})
    pd.testing.assert_frame_equal(single.predict_daily(data.X_daily), pooled.predict_daily(data.X_daily, "SYN0"))
    # saved and loaded, the pooled adapter keeps its symbols and forecasts
    loaded = HRMAdapter.load(pooled.save(tmp_path / "pooled.pt"))
    assert loaded.universe_ == ["SYN0"]
    pd.testing.assert_frame_equal(loaded.predict_daily(data.X_daily, "SYN0"), pooled.predict_daily(data.X_daily, "SYN0"))
