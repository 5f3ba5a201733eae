"""The command lines (main_v3.py, scripts/train_hrm.py, sweep_optuna.py, bench_hrm_learning.py; the flags of
lab_v10/src/cli.py): --set KEY=VALUE after the config file and before the specific flags, values typed like
YAML, one-line errors naming the key with exit status 2, and the --models and --n-days checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_param_budget import load_script

import lab_v10.src.pipeline as pipeline
from lab_v10.src.eval import sweep
from lab_v10.src.models.registry import MODEL_NAMES
from lab_v10.src.options import hrm_ddp
from lab_v10.src.options.segment_loss import NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]
SMALL = str(REPO / "config" / "small.yaml")


def flags_config(main_v3, *argv: str):
    """The config main_v3.py builds from ``argv`` (config file, --set, then the specific flags)."""
    args = main_v3.parse_args(["--config", SMALL, *argv])
    return main_v3.apply_flags(main_v3.select_config(args.config, False)[0], args)


# ----------------------------------------------------------------------------------------------
# main_v3.py


def test_set_runs_the_pipeline_with_the_overridden_config(main_v3, captured_run, tmp_path, capsys):
    code = main_v3.main(["--config", SMALL, "--set", "train.epochs=2", "--set", "hrm.l.d_model=32",
                         "--out", str(tmp_path)])
    assert code == 0 and capsys.readouterr().out == f"report: {tmp_path / 'report.html'}\n"
    cfg = captured_run["cfg"]
    assert cfg.train.epochs == 2 and cfg.hrm.l.d_model == 32
    assert cfg.hrm.h == main_v3.load_config(SMALL).hrm.h  # nothing else changed


def test_set_values_are_typed_like_yaml(main_v3):
    cfg = flags_config(main_v3, "--set", "train.autocast_bf16=false", "--set", "features.har_windows=[1, 5]",
                       "--set", "data.minutes_source_tz=null", "--set", "train.lr=0.002",
                       "--set", "train.device=cpu", "--set", "book_a.capital=5")
    assert cfg.train.autocast_bf16 is False and cfg.features.har_windows == [1, 5]
    assert cfg.data.minutes_source_tz is None and cfg.train.lr == 0.002 and cfg.train.device == "cpu"
    assert cfg.book_a.capital == 5.0 and isinstance(cfg.book_a.capital, float)  # an int where a float goes


def test_specific_flags_win_over_set(main_v3):
    cfg = flags_config(main_v3, "--set", "seed=3", "--set", "data.synthetic.n_days=500", "--set", "models=[har]",
                       "--seed", "5", "--n-days", "300", "--models", "hrm,tshrm")
    assert (cfg.seed, cfg.data.synthetic.n_days, cfg.models) == (5, 300, ["hrm", "tshrm"])
    later = flags_config(main_v3, "--set", "train.epochs=2", "--set", "train.epochs=4")
    assert later.train.epochs == 4  # repeated --set: the last one wins


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "nosuch.key=1"], "error: --set nosuch.key: 'nosuch' is not a config section\n"),
        (["--set", "train.epochz=1"], "error: --set train.epochz: unknown key 'epochz' (expected one of: "),
        (["--set", "train.epochs=2.5"], "error: --set: train.epochs: expected int > 0, got 2.5\n"),
        (["--set", "train.epochs"], "error: --set 'train.epochs': expected KEY=VALUE, e.g. train.epochs=8\n"),
        (["--set", "walkforward.cpcv_test_groups=6"],
         "error: --set: walkforward.cpcv_test_groups: expected int < cpcv_groups (6), got 6\n"),
        (["--models", ","], "error: --models ',': models: expected at least one model name (one of: "),
        (["--models", "hrm,nosuch"], "error: --models 'hrm,nosuch': models[1]: unknown model 'nosuch'"),
        (["--models", "har,har"], "error: --models 'har,har': models[1]: model 'har' is listed twice"),
        (["--n-days", "0"], "error: command line: data.synthetic.n_days: expected int > 0, got 0\n"),
        (["--n-days", "-5"], "error: command line: data.synthetic.n_days: expected int > 0, got -5\n"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_key(main_v3, captured_run, tmp_path, capsys, argv, message):
    code = main_v3.main(["--config", SMALL, *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert "cfg" not in captured_run  # nothing ran


def test_unknown_set_key_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "main_v3.py"), "--set", "nosuch.key=1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --set nosuch.key: 'nosuch' is not a config section\n"


def test_help_lists_every_registered_model(main_v3, capsys):
    with pytest.raises(SystemExit) as done:
        main_v3.parse_args(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert ",".join(MODEL_NAMES) in text and "tshrm" in MODEL_NAMES
    assert "--set KEY=VALUE" in text


# ----------------------------------------------------------------------------------------------
# The scripts


def test_train_hrm_applies_set_before_the_data_flags(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_train(cfg, out, ctx, *rest):
        seen["cfg"] = cfg
        return {"members": [], "world_size": 1, "seconds": 0.0, "adapter_path": str(out)}

    monkeypatch.setattr(hrm_ddp, "train_hrm", fake_train)
    script = load_script("train_hrm")
    code = script.main(["--config", SMALL, "--set", "train.epochs=3", "--set", "data.synthetic.n_days=500",
                        "--n-days", "400", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0
    cfg = seen["cfg"]
    assert (cfg.train.epochs, cfg.data.synthetic.n_days, cfg.train.device) == (3, 400, "cpu")
    code = script.main(["--config", SMALL, "--set", "hrm.nosuch=1", "--out", str(tmp_path)])
    assert code == 2 and capsys.readouterr().err.startswith("error: --set hrm.nosuch: unknown key 'nosuch'")


def test_sweep_script_sets_keys_of_the_base_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_sweep(cfg, space, study, trials, out, **options):
        seen["cfg"] = cfg
        return sweep.SweepResult(study, "journal", 0, {}, [], out / "trials.csv", out / "sweep.json", [], "")

    monkeypatch.setattr(sweep, "run_sweep", fake_sweep)
    script = load_script("sweep_optuna")
    base = ["--config", SMALL, "--space", str(REPO / "config/sweep_small.yaml"), "--study", "s", "--trials", "1",
            "--out", str(tmp_path)]
    assert script.main([*base, "--set", "train.ensemble_size=1"]) == 1  # the fake sweep completes no trial
    assert seen["cfg"].train.ensemble_size == 1 and script.load_config(SMALL).train.ensemble_size != 1
    capsys.readouterr()
    assert script.main([*base, "--set", "nosuch=1"]) == 2
    assert capsys.readouterr().err.startswith("error: --set nosuch: unknown key 'nosuch'")


def test_bench_hrm_learning_set_follows_quick_and_checks_keys(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # the benchmarks import bench_common
    bench = load_script("bench_hrm_learning")
    cfg = bench.bench_config(Path(SMALL), [*bench.QUICK_OVERRIDES, "train.epochs=3"])
    assert cfg.train.epochs == 3 and cfg.walkforward.test_days == 40  # --set after --quick's overrides
    assert bench.main(["--quick", "--set", "nosuch.key=1"]) == 2
    assert capsys.readouterr().err == "error: --set nosuch.key: 'nosuch' is not a config section\n"
    assert bench.main(["--set", "data.source=arch"]) == 2
    assert capsys.readouterr().err.startswith("error: data.source: expected 'synthetic'")


# ----------------------------------------------------------------------------------------------
# Bad input exits 2 with one line and no traceback (subprocesses: the real entry points)


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_a_repeated_config_key_exits_2_naming_file_and_line(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("train:\n  lr: 0.001\nhrm:\n  daily_window: 8\ntrain:\n  epochs: 2\n")
    proc = run_cli(str(REPO / "main_v3.py"), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: {config}: not valid YAML at line 5, column 1: key 'train' repeated (first on line 1)\n"
    assert list(tmp_path.iterdir()) == [config]  # no report folder


def test_sweep_out_pointing_at_a_file_exits_2_at_once(tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("a,b\n")
    proc = run_cli(str(REPO / "scripts/sweep_optuna.py"), "--config", SMALL, "--space",
                   str(REPO / "config/sweep_small.yaml"), "--study", "s", "--trials", "1", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == f"error: --out {out}: expected a folder, but {out} is a file\n"


def test_training_divergence_exits_2_from_main_v3(main_v3, monkeypatch, tmp_path, capsys):
    def diverge(cfg, out_dir, **_):
        raise NonFiniteLossError("non-finite loss term q (nan) at epoch 1, batch 2, segment 1; run folder x")

    monkeypatch.setattr(pipeline, "run", diverge)
    assert main_v3.main(["--config", SMALL, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: non-finite loss term q (nan) at epoch 1, batch 2, segment 1; run folder x\n"


def test_sweep_whose_worker_died_writes_results_and_exits_1(monkeypatch, tmp_path, capsys):
    def sweep_with_a_dead_worker(cfg, space, study, trials, out, **options):
        best = [{"number": 1, "values": {"loss": 0.5}, "config": str(out / "best_config.yaml")}]
        return sweep.SweepResult(study, "journal", 2, {"COMPLETE": 1, "FAIL": 1}, best, out / "trials.csv",
                                 out / "sweep.json", ["python main_v3.py"], "optuna-dashboard journal",
                                 ["sweep-worker-1 was killed by SIGKILL (trials marked failed: [0])"])

    monkeypatch.setattr(sweep, "run_sweep", sweep_with_a_dead_worker)
    code = load_script("sweep_optuna").main(["--config", SMALL, "--space", str(REPO / "config/sweep_small.yaml"),
                                             "--study", "s", "--trials", "2", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and f"trials: {tmp_path / 'trials.csv'}" in captured.out
    assert captured.err == ("error: worker sweep-worker-1 was killed by SIGKILL (trials marked failed: [0]); re-run the "
                            "same command to finish the study\n")


def test_sweep_file_and_a_contradicting_n_trials_exit_2(repo_root, tmp_path):
    summary = tmp_path / "sweep.json"
    summary.write_text(json.dumps({"study_name": "s", "n_trials": 5, "pbo": {"pbo": None, "reason": "x"}}))
    proc = subprocess.run([sys.executable, str(repo_root / "main_v3.py"), "--sweep", str(summary), "--n-trials", "3",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--n-trials 3 contradicts --sweep {summary} (5 trials)" in proc.stderr
