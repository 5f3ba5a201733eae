"""scripts/compare_runs.py: two real runs with different configs, read from their folders or by MLflow run id
from a real local store, compared side by side (only the differing config keys; metrics and verdicts); bad
run references exit 2 with one line."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from test_param_budget import load_script
from test_tracking import CHEAP_MODELS, TINY_LAB

CHANGED = {"book_a.threshold": "0.8", "book_b.proba_threshold": "0.6"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, main_v3):
    """Two tracked main_v3.py runs that differ in two config keys, and the store's URI."""
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_LAB))
    base = ["--config", str(root / "tiny.yaml"), "--models", CHEAP_MODELS, "--tracking-uri", uri]
    changes = [arg for key, value in CHANGED.items() for arg in ("--set", f"{key}={value}")]
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main_v3.main([*base, "--out", str(root / "base")]) == 0
        assert main_v3.main([*base, *changes, "--out", str(root / "changed")]) == 0
    return root, uri


def compare(*argv: str) -> int:
    return load_script("compare_runs").main(list(argv))


def table(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "compare.csv", keep_default_na=False)


def test_two_configs_show_only_the_differing_keys_and_the_metrics_side_by_side(two_runs, tmp_path, capsys):
    root, _ = two_runs
    assert compare(str(root / "base"), str(root / "changed"), "--out", str(tmp_path / "cmp")) == 0
    frame = table(tmp_path / "cmp")
    assert list(frame.columns) == ["section", "key", "base", "changed"]
    config = frame[frame["section"] == "config"].set_index("key")
    assert list(config.index) == list(CHANGED)  # only what differs
    assert config.loc["book_a.threshold", "base"] == "0.5" and dict(config["changed"]) == CHANGED
    metrics = frame[frame["section"] == "metric"].set_index("key")
    summaries = {name: json.loads((root / name / "summary.json").read_text()) for name in ("base", "changed")}
    for name, summary in summaries.items():
        assert float(metrics.loc["forecast.A.har.all.r2_oos", name]) == pytest.approx(
            summary["forecast_metrics"]["A"]["har"]["all"]["r2_oos"])
        assert float(metrics.loc["trading.A.har.net_sharpe", name]) == pytest.approx(
            summary["trading_metrics"]["A"]["har"]["net_sharpe"])
        assert float(metrics.loc["forecast.B.logistic.all.auc", name]) == pytest.approx(
            summary["forecast_metrics"]["B"]["logistic"]["all"]["auc"])
    # the thresholds change the trades, never the forecasts
    assert metrics.loc["forecast.A.har.all.r2_oos", "base"] == metrics.loc["forecast.A.har.all.r2_oos", "changed"]
    assert metrics.loc["trading.A.har.net_sharpe", "base"] != metrics.loc["trading.A.har.net_sharpe", "changed"]
    assert {"trading.A.har.dsr", "n_trials"} <= set(metrics.index) and "forecast.A.har.fold_0.rmse" not in metrics.index
    assert list(frame.loc[frame["section"] == "verdict", "key"]) == ["verdict"]  # no candidate model ran
    out = capsys.readouterr().out
    assert "book_a.threshold" in out and "book_a.capital" not in out
    assert f"table: {tmp_path / 'cmp' / 'compare.csv'}" in out
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count("<table>") == 1 and "<td>book_b.proba_threshold</td>" in page and "mlflow ui" in page


def test_mlflow_run_ids_give_the_same_table_as_the_folders(two_runs, tmp_path):
    root, uri = two_runs
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["lab"]).set_index("tags.lab.out_dir")["run_id"]
    ids = [runs[str(root / "base")], runs[str(root / "changed")]]
    assert compare(*ids, "--tracking-uri", uri, "--out", str(tmp_path / "by_id")) == 0
    assert compare(str(root / "base"), str(root / "changed"), "--out", str(tmp_path / "by_folder")) == 0
    by_id, by_folder = table(tmp_path / "by_id"), table(tmp_path / "by_folder")
    assert list(by_id.loc[0, ["base", "changed"]]) == [f"mlflow run {i}" for i in ids]
    pd.testing.assert_frame_equal(by_id[by_id["key"] != "source"], by_folder[by_folder["key"] != "source"])


def test_bad_run_references_exit_2_with_one_line(two_runs, tmp_path, capsys, monkeypatch):
    root, uri = two_runs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(root / "base"), "0123456789abcdef0123456789abcdef", "--tracking-uri", uri],
         (f"error: --tracking-uri {uri}: RUN 0123456789abcdef0123456789abcdef: no such run folder, nor a run id "
          "in this store (MlflowException: ")),
        ([str(root / "base"), "0123456789abcdef"],
         "error: RUN 0123456789abcdef: no such run folder, and no tracking store to look it up in as an MLflow run id"),
        ([str(tmp_path / "empty")],
         f"error: RUN {tmp_path / 'empty'}: not a finished lab run folder (no summary.json)"),
        ([str(root / "tiny.yaml")],
         f"error: RUN {root / 'tiny.yaml'}: is a file (expected a run folder or an MLflow run id)"),
    ]
    for argv, message in cases:
        assert compare(*argv, "--out", str(tmp_path / "out")) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
