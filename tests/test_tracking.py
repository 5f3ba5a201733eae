"""MLflow tracking (lab_v10/src/eval/tracking*.py): lab runs, sweeps with a child run per trial and training runs
land in a real local store (SQLite in a temporary folder, no mocks); --n-trials auto counts the distinct
configurations and deflates the Sharpe ratio by them; bad stores exit 2 before any work; no URI, no mlflow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name
from test_param_budget import load_script
from test_sweep import TINY, CheapObjective, cheap_space

from lab_v10.src.config import LabConfig, TrackingConfig, apply_overrides, config_to_dict, load_config
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.sweep import open_storage, read_sweep_summary, run_sweep
from lab_v10.src.eval.tracking import (
    Tracker,
    TrackingTarget,
    config_hash,
    summary_metrics,
    tracking_target,
)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "t"
CHEAP_MODELS = "har,linear,logistic,rule"  # two strategies per book: the DSR is defined with n_trials > 1
TINY_LAB = {**TINY, "walkforward": {**TINY["walkforward"], "n_folds": 2},
            "tshrm": {"window": 8, "patch_len": 4, "epochs": 1, "batch_size": 16}}
SWEEP_SPACE = {
    "objectives": ["loss"], "pruner": {"type": "none"}, "sampler": {"type": "random"},
    "validation": {"n_folds": 2, "block_days": 20},
    "params": {"train.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
               "hrm.h.n_heads": {"type": "categorical", "choices": [2, 3]}},
}


def lab_run(main_v3, folder: Path, *flags: str) -> int:
    return main_v3.main(["--config", str(folder.parent / "tiny.yaml"), "--out", str(folder), *flags])


def summary_of(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory, main_v3):
    """Two tracked main_v3.py runs (different configs; the second has a verdict) and a tracked sweep of the
    HRM (one trial rejected, two evaluated) in one SQLite store."""
    root = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY_LAB, "train": {**TINY["train"], "epochs": 1}}))
    (root / "space.yaml").write_text(yaml.safe_dump(SWEEP_SPACE))
    journal = root / "journal.log"
    study = optuna.create_study(study_name="tiny", storage=open_storage(str(journal)))
    for params in ({"hrm.h.n_heads": 3, "train.lr": 0.003}, {"hrm.h.n_heads": 2, "train.lr": 0.002},
                   {"hrm.h.n_heads": 2, "train.lr": 0.006}):  # 16 / 3 heads: rejected before training
        study.enqueue_trial(params)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        track = ["--tracking-uri", uri, "--experiment", EXPERIMENT]
        assert lab_run(main_v3, root / "r1", "--models", CHEAP_MODELS, *track) == 0
        assert lab_run(main_v3, root / "r2", "--models", "tshrm," + CHEAP_MODELS, "--seed", "5", *track) == 0
        code = load_script("sweep_optuna").main([
            "--config", str(root / "tiny.yaml"), "--space", str(root / "space.yaml"), "--study", "tiny",
            "--storage", str(journal), "--trials", "3", "--out", str(root / "sweep"), *track])
        assert code == 0
    return root, uri


def search(uri: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[EXPERIMENT])


def test_two_runs_and_a_sweep_are_runs_with_metrics_artifacts_and_a_child_run_per_trial(store):
    root, uri = store
    runs = search(uri)
    lab = runs[runs["tags.lab.kind"] == "run"].set_index("tags.lab.out_dir")
    assert sorted(lab.index) == [str(root / "r1"), str(root / "r2")] and (lab["status"] == "FINISHED").all()
    client = mlflow.MlflowClient(uri)
    for folder in ("r1", "r2"):
        row, summary = lab.loc[str(root / folder)], summary_of(root / folder)
        assert row["params.seed"] == str(summary["config"]["seed"]) and row["params.train.lr"] == "0.003"
        assert row["params.data_description.daily_rows"] == "300"
        har_a, trading = summary["forecast_metrics"]["A"]["har"], summary["trading_metrics"]["A"]["har"]
        assert row["metrics.forecast.A.har.all.r2_oos"] == pytest.approx(har_a["all"]["r2_oos"])
        assert row["metrics.forecast.A.har.fold_1.rmse"] == pytest.approx(har_a["fold_1"]["rmse"])
        assert row["metrics.trading.A.har.net_sharpe"] == pytest.approx(trading["net_sharpe"])
        assert row["tags.mlflow.note.content"] == "\n".join(summary["verdict"]["lines"])
        assert {a.path for a in client.list_artifacts(row["run_id"])} >= {
            "report.html", "summary.json", "forecasts_a.parquet", "forecasts_b.parquet"}
    verdict = lab.loc[str(root / "r2")]  # tshrm ran: a verdict with numbers
    section = summary_of(root / "r2")["verdict"]["sections"]["forecast_A"]
    headline = section["versus"][section["best_baseline"]]
    assert verdict["metrics.verdict.forecast_A.p_value_holm"] == pytest.approx(headline["p_value_holm"])
    assert verdict["tags.verdict.forecast_A"].startswith(headline["conclusion_holm"])

    (sweep_id,) = runs.loc[runs["tags.lab.kind"] == "sweep", "run_id"]
    trials = runs[runs["tags.mlflow.parentRunId"] == sweep_id].set_index("tags.lab.trial_number").sort_index()
    assert list(trials.index) == ["0", "1", "2"] and (trials["tags.lab.kind"] == "trial").all()
    assert list(trials["tags.lab.trial_state"]) == ["PRUNED", "COMPLETE", "COMPLETE"]
    assert list(trials["status"]) == ["KILLED", "FINISHED", "FINISHED"]
    assert "hrm.h.n_heads" in trials.loc["0", "tags.lab.rejected"]
    assert list(trials["tags.lab.counts_as_trial"]) == ["false", "true", "true"]
    study = optuna.load_study(study_name="tiny", storage=open_storage(str(root / "journal.log")))
    stored = {t.number: t for t in study.trials}
    for number in ("1", "2"):
        attrs = stored[int(number)].user_attrs
        assert trials.loc[number, "params.train.lr"] == str(stored[int(number)].params["train.lr"])
        assert trials.loc[number, "metrics.loss"] == pytest.approx(stored[int(number)].value)
        for block in (0, 1):
            assert trials.loc[number, f"metrics.fold_{block}.yA_nll"] == pytest.approx(attrs[f"fold_{block}_yA_nll"])
    parent = runs.set_index("run_id").loc[sweep_id]
    assert parent["metrics.n_trials"] == 2 == read_sweep_summary(root / "sweep" / "sweep.json")["n_trials"]
    assert {a.path for a in client.list_artifacts(sweep_id)} >= {"trials.csv", "sweep.json", "best_config.yaml"}


def test_n_trials_auto_counts_distinct_configurations_and_deflates_the_sharpe(store, main_v3):
    root, uri = store
    # r1's config again: recorded already, so the count is r1, r2 and the two evaluated trials
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert lab_run(main_v3, root / "r3", "--models", CHEAP_MODELS, "--n-trials", "auto", "--tracking-uri", uri,
                       "--experiment", EXPERIMENT) == 0
    once, auto = summary_of(root / "r1"), summary_of(root / "r3")
    assert auto["n_trials"] == 4 and once["n_trials"] == 1
    assert auto["n_trials_source"] == f"auto: 4 distinct configurations in MLflow experiment '{EXPERIMENT}' at {uri}"
    assert "<td>4 (auto: 4 distinct configurations in MLflow experiment" in (root / "r3" / "report.html").read_text()
    compared = 0
    for book in ("A", "B"):
        for strategy, metrics in once["trading_metrics"][book].items():
            again = auto["trading_metrics"][book][strategy]
            assert again["net_sharpe"] == metrics["net_sharpe"]  # same config, same numbers...
            if metrics["dsr"] is not None:  # ...deflated by four times as many trials
                assert again["dsr"] < metrics["dsr"]
                compared += 1
    assert compared >= 3
    # a new configuration counts itself; a --sweep tracked in the experiment adds nothing, an untracked one does
    tracker = Tracker(TrackingTarget(uri, EXPERIMENT, "--tracking-uri"))
    cfg = apply_overrides(load_config(root / "tiny.yaml"), {"models": CHEAP_MODELS.split(",")})
    assert main_v3.trial_count("auto", None, tracker, cfg)[0] == 4  # r1's config: recorded
    changed = apply_overrides(cfg, {"book_a.threshold": 0.9})
    n, source = main_v3.trial_count("auto", None, tracker, changed)
    assert n == 5 and source.endswith("(this run's included)")
    tracked = read_sweep_summary(root / "sweep" / "sweep.json")
    assert main_v3.trial_count("auto", tracked, tracker, changed)[0] == 5
    other = {**tracked, "study": "elsewhere", "n_trials": 7}
    n, source = main_v3.trial_count("auto", other, tracker, changed)
    assert n == 12 and "+ the 7 trials of sweep" in source


def test_metric_names_are_valid_and_the_config_hash_ignores_only_what_changes_no_number(store):
    root, _ = store
    summary = summary_of(root / "r2")
    metrics = summary_metrics(summary)
    assert len(metrics) > 200 and "verdict.trading_A.p_value_holm" in metrics
    assert all(validate_param_and_metric_name(k) and not path_not_unique(k) for k in metrics)
    # a universe run's summary.json holds each symbol's metrics and verdict in the same shape
    symbol = {k: summary[k] for k in ("forecast_metrics", "trading_metrics", "portfolio_metrics", "verdict")}
    universe = summary_metrics({**summary, "by_symbol": {"SYN0": symbol, "BRK/B": symbol}})
    assert universe["symbol.SYN0.forecast.A.har.all.r2_oos"] == metrics["forecast.A.har.all.r2_oos"]
    assert universe["symbol.BRK_B.verdict.forecast_A.p_value_holm"] == metrics["verdict.forecast_A.p_value_holm"]
    assert all(validate_param_and_metric_name(k) and not path_not_unique(k) for k in universe)
    base = config_to_dict(LabConfig())
    same = config_to_dict(apply_overrides(LabConfig(), {"train.device": "cuda", "train.threads": 2,
                                                        "tracking.uri": "sqlite:///x.db", "baselines.num_threads": 4}))
    assert config_hash(same) == config_hash(base)
    for key, value in (("seed", 1), ("models", ["har"]), ("book_a.threshold", 0.6), ("train.lr", 0.002)):
        assert config_hash(config_to_dict(apply_overrides(LabConfig(), {key: value}))) != config_hash(base), key


def test_tracking_target_precedence():
    cfg = TrackingConfig(uri="sqlite:///cfg.db", experiment="from-config")
    env = {"MLFLOW_TRACKING_URI": "sqlite:///env.db"}
    assert tracking_target("sqlite:///flag.db", "x", cfg, env) == TrackingTarget("sqlite:///flag.db", "x",
                                                                                   "--tracking-uri")
    assert tracking_target(None, None, cfg, env) == TrackingTarget("sqlite:///cfg.db", "from-config", "tracking.uri")
    assert tracking_target(None, None, TrackingConfig(), env) == TrackingTarget("sqlite:///env.db", "lab",
                                                                                "MLFLOW_TRACKING_URI")
    assert tracking_target(None, None, TrackingConfig(), {"MLFLOW_TRACKING_URI": ""}) is None
    with pytest.raises(ConfigError, match="--experiment x: no tracking URI is set"):
        tracking_target(None, "x", TrackingConfig(), {})


def test_a_resumed_sweep_with_two_workers_logs_every_trial_once_under_one_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    target = TrackingTarget(uri, "sweeps", "--tracking-uri")
    space = cheap_space(tmp_path)
    first = run_sweep(LabConfig(), space, "two", 4, tmp_path / "out", workers=2,
                      objective=CheapObjective(space, fail_number=1, sleep_s=0.2), tracking=target)
    second = run_sweep(LabConfig(), space, "two", 6, tmp_path / "out", objective=CheapObjective(space), tracking=target)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["sweeps"])
    (parent,) = runs.loc[runs["tags.lab.kind"] == "sweep", "run_id"]
    assert first.tracking.startswith(f"sweep run {parent} ") and second.tracking == first.tracking
    children = runs[runs["tags.mlflow.parentRunId"] == parent]
    assert sorted(children["tags.lab.trial_number"].astype(int)) == [0, 1, 2, 3, 4, 5]  # each once
    workers = set(children["tags.lab.worker"])
    assert len(workers) == 3 and f"{os.uname().nodename}:{os.getpid()}" in workers  # two spawned workers, then this one
    failed = children[children["tags.lab.trial_number"] == "1"].iloc[0]
    assert failed["status"] == "FAILED" and failed["tags.lab.error"] == "RuntimeError: deliberate failure in trial 1"
    assert (children["tags.lab.counts_as_trial"] == "true").all()  # a failed trial counts, as in sweep.json
    assert runs.set_index("run_id").loc[parent, "metrics.n_trials"] == 6


def test_train_hrm_logs_per_epoch_curves(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    code = load_script("train_hrm").main(["--config", str(config), "--set", "train.epochs=3", "--out",
                                          str(tmp_path / "run"), "--tracking-uri", uri, "--experiment", "train"])
    assert code == 0
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "member_0.val_loss")}
    epochs = json.loads((tmp_path / "run" / "train_summary.json").read_text())["members"][0]
    assert sorted(logged) == list(range(1, epochs["epochs_run"] + 1))
    assert min(logged.values()) == pytest.approx(epochs["best_val_loss"]) == run.data.metrics["member_0.best_val_loss"]
    assert run.data.tags["lab.kind"] == "train" and run.data.params["train.epochs"] == "3"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"train_summary.json", "member_0"}


@pytest.mark.parametrize("uri, names", [
    ("nosuch://x", "--tracking-uri nosuch://x: MLflow cannot open this tracking store"),
    ("http://127.0.0.1:9", "--tracking-uri http://127.0.0.1:9: MLflow cannot open this tracking store"),
    ("sqlite:///{file}/store.db", "--tracking-uri sqlite:///{file}/store.db: cannot create the folder {file}"),
])
def test_a_bad_tracking_uri_exits_2_with_one_line_before_any_work(main_v3, tmp_path, capsys, monkeypatch, uri, names):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "afile").write_text("not a folder")
    uri, names = uri.format(file=tmp_path / "afile"), names.format(file=tmp_path / "afile")
    code = main_v3.main(["--config", str(REPO / "config/small.yaml"), "--out", str(tmp_path / "out"),
                         "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {names}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing was run


def test_the_variable_is_named_and_auto_needs_a_store(main_v3, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://y")
    assert main_v3.main(["--config", str(REPO / "config/small.yaml"), "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.startswith("error: MLFLOW_TRACKING_URI nosuch://y: MLflow cannot open")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main_v3.main(["--config", str(REPO / "config/small.yaml"), "--n-trials", "auto",
                         "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == ("error: --n-trials auto: no tracking store to count configurations in (give "
                                       "--tracking-uri, tracking.uri in the config or MLFLOW_TRACKING_URI)\n")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_a_uri_nothing_is_tracked_and_mlflow_is_never_imported(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_LAB))
    script = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ["main_v3.py", "--config", {str(tmp_path / 'tiny.yaml')!r}, "--models", "har,rule",
                    "--out", {str(tmp_path / 'run')!r}]
        try:
            runpy.run_path({str(REPO / 'main_v3.py')!r}, run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print("mlflow imported:", "mlflow" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "mlflow imported: False" in done.stdout and "mlflow:" not in done.stdout.replace("mlflow imported", "")
    assert (tmp_path / "run" / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]  # no ./mlruns or mlflow.db
