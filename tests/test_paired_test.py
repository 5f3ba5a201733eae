"""scripts/paired_test.py: one model's Book A forecasts in two runs, DM-tested on identical rows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from test_param_budget import load_script


def _run(folder, mu_noise: float, seed: int, symbols=("X", "Y")) -> None:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=300)
    truth = {s: rng.normal(size=dates.size) for s in symbols}
    noise = np.random.default_rng(seed)
    rows = [pd.DataFrame({"date": dates, "symbol": s, "model": "hrm_pooled", "y_true": truth[s],
                          "mu": truth[s] + noise.normal(scale=mu_noise, size=dates.size)}) for s in symbols]
    folder.mkdir()
    pd.concat(rows, ignore_index=True).to_parquet(folder / "forecasts_a.parquet")


def test_better_run_has_a_negative_difference_and_errors_exit_2(tmp_path, capsys):
    script = load_script("paired_test")
    _run(tmp_path / "good", 0.5, 1)
    _run(tmp_path / "bad", 1.5, 2)
    assert script.main([str(tmp_path / "good"), str(tmp_path / "bad"), "--horizon", "1",
                        "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["rows"] == 600 and out["dates"] == 300
    assert out["difference"] < 0 and out["p_value"] < 0.001 and out["ci_high"] < 0
    assert np.isclose(out["difference"], out["mse_a"] - out["mse_b"])
    assert "hrm_pooled in" in capsys.readouterr().out
    _run(tmp_path / "other", 0.5, 3, symbols=("Z",))
    assert script.main([str(tmp_path / "good"), str(tmp_path / "other")]) == 2
    assert "no forecast row in common" in capsys.readouterr().err
    assert script.main([str(tmp_path / "good"), str(tmp_path / "bad"), "--model", "har"]) == 2
    assert "no Book A forecasts of model 'har'" in capsys.readouterr().err
