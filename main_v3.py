"""HRM Dual-Book Trading Lab: command-line entry point.

    python main_v3.py                                   # synthetic market, CPU preset, all models
    python main_v3.py --data arch                       # real S&P 500 + VIX shipped in the arch package
    python main_v3.py --daily spx.csv --iv VIX_History.csv --minutes spy_1min.csv --minutes-tz UTC
    python main_v3.py --set train.epochs=2 --set hrm.l.d_model=32 --models hrm,har
    python main_v3.py --tracking-uri sqlite:///mlflow.db --n-trials auto   # logged to MLflow; DSR counts the configs

The config is built in one order (lab_v10/src/cli.py): --config, then each --set KEY=VALUE, then the data
flags, --models and --seed. Bad input exits with status 2 and one message naming the file, row/column or
key — no traceback. With a tracking URI the run is logged to MLflow after its report is written
(lab_v10/src/eval/tracking.py); without one nothing is tracked and mlflow is never imported. See README.md for
every flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import signal
import sys
import time
from pathlib import Path

import torch

from lab_v10.src.cli import add_data_flags, add_set_flag, apply_data_flags
from lab_v10.src.config import LabConfig, apply_overrides, config_to_dict, load_config, validate_config
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.eval.run_folder import INCOMPLETE_MARKER
from lab_v10.src.eval.sweep import read_sweep_summary
from lab_v10.src.eval.tracking import Tracker, add_tracking_flags, tracking_target
from lab_v10.src.models.registry import MODEL_NAMES, check_model_names

CONFIG_DIR = Path(__file__).resolve().parent / "config"
log = logging.getLogger("lab")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HRM dual-book lab: walk-forward, after costs, against baselines.")
    p.add_argument("--config", type=Path, help="YAML config (default: config/real.yaml for --data arch or --daily, "
                   "else config/default_hrm27m.yaml with CUDA, else config/small.yaml)")
    add_set_flag(p)
    add_data_flags(p)
    p.add_argument("--models", help=f"comma-separated, each once: {','.join(MODEL_NAMES)} (default: the config's)")
    p.add_argument("--out", type=Path, help="report folder, new or empty (default reports/<timestamp>)")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse a folder that holds an earlier lab report: its files are removed first")
    p.add_argument("--seed", type=int, help="seed for data, models and training (default: the config's)")
    p.add_argument("--n-trials", metavar="N|auto",
                   help="configurations tried (e.g. an Optuna sweep), for the deflated Sharpe (default 1, or the "
                        "--sweep file's); auto: the distinct configurations recorded in the MLflow experiment, "
                        "this run's included")
    p.add_argument("--sweep", type=Path, metavar="SWEEP_JSON",
                   help="sweep.json of the sweep this config came from: its trial count feeds the deflated Sharpe "
                        "and its probability of backtest overfitting goes into the verdict")
    add_tracking_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def select_config(path: Path | None, cuda_available: bool, real_data: bool = False,
                  universe: bool = False) -> tuple[LabConfig, str]:
    """The config to run and a sentence saying which preset and why. ``universe`` (``--universe``): the
    universe preset; ``real_data`` (``--data arch`` or ``--daily``): the real-data preset, whole-history
    walk-forward with warm-started refits, with or without CUDA."""
    if path is not None:
        return load_config(path), f"{path} (given with --config)"
    if universe:
        chosen = CONFIG_DIR / "universe.yaml"
        return load_config(chosen), (
            f"{chosen.relative_to(CONFIG_DIR.parent)} (a universe: the whole-history protocol on a panel, 1-year "
            "test blocks, pooled and per-symbol models; --config to change)")
    if real_data:
        chosen = CONFIG_DIR / "real.yaml"
        return load_config(chosen), (
            f"{chosen.relative_to(CONFIG_DIR.parent)} (real data: scores the whole history after a 3-year warm-up, "
            "expanding walk-forward with a warm-started refit per 6-month test block, CPU widths; --config "
            "config/small.yaml scores only the last 2 x 120 days)")
    if cuda_available:
        chosen = CONFIG_DIR / "default_hrm27m.yaml"
        return load_config(chosen), f"{chosen.relative_to(CONFIG_DIR.parent)} (CUDA is available: the 27M model)"
    chosen = CONFIG_DIR / "small.yaml"
    return load_config(chosen), (f"{chosen.relative_to(CONFIG_DIR.parent)} (no CUDA: the CPU preset, same code "
                                 "path with small widths)")


def parse_models(text: str) -> list[str]:
    """``--models a,b``: the model names, checked against the registry (ConfigError naming ``--models``)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        check_model_names(names)
    except ConfigError as exc:
        raise ConfigError(f"--models {text!r}: {exc}") from None
    return names


def apply_flags(cfg: LabConfig, args: argparse.Namespace) -> LabConfig:
    """The config file's ``cfg`` with ``--set``, then the data flags, ``--models`` and ``--seed``, validated."""
    cfg = apply_overrides(cfg, args.overrides)
    cfg = apply_data_flags(cfg, args)
    changes: dict = {}
    if args.models is not None:
        changes["models"] = parse_models(args.models)
    if args.seed is not None:
        changes["seed"] = args.seed
    return validate_config(dataclasses.replace(cfg, **changes), "command line") if changes else cfg


def trial_count(text: str | None, sweep: dict | None, tracker: Tracker | None, cfg: LabConfig) -> tuple[int, str]:
    """The deflated Sharpe's trial count and where it came from, in words: ``--n-trials`` (an int >= 1, or
    ``auto``: counted in the tracking store, :meth:`Tracker.count_configurations`), else the ``--sweep``
    file's, else 1. ConfigError for a bad value, ``auto`` without a store, or an int contradicting ``--sweep``."""
    if text == "auto":
        if tracker is None:
            raise ConfigError("--n-trials auto: no tracking store to count configurations in (give --tracking-uri, "
                              "tracking.uri in the config or MLFLOW_TRACKING_URI)")
        return tracker.count_configurations(config_to_dict(cfg), sweep)
    if text is None:
        return (sweep["n_trials"], f"the trials of sweep {sweep['path']}") if sweep else (1, "a single run")
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(f"--n-trials: expected int >= 1 or auto, got {text}")
    if sweep and int(text) != sweep["n_trials"]:
        raise ConfigError(f"--n-trials {text} contradicts --sweep {sweep['path']} ({sweep['n_trials']} trials): "
                          "give one of them")
    return int(text), "given with --n-trials"


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the run like Ctrl-C: one message, no traceback, the folder keeps its in-progress marker."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from lab_v10.src.pipeline import run  # after argument parsing: a usage error never loads the pipeline

    out_dir = None
    try:
        cfg, preset = select_config(args.config, torch.cuda.is_available(),
                                    real_data=args.data == "arch" or args.daily is not None,
                                    universe=args.data == "universe" or args.universe is not None)
        cfg = apply_flags(cfg, args)
        if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
        sweep = None if args.sweep is None else read_sweep_summary(args.sweep)
        target = tracking_target(args.tracking_uri, args.experiment, cfg.tracking)
        tracker = None if target is None else Tracker(target)  # a bad store fails here, before any work
        n_trials, n_trials_source = trial_count(args.n_trials, sweep, tracker, cfg)
        log.info("config: %s", preset)
        out_dir = args.out or Path("reports") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        start_ms = int(time.time() * 1000)
        result = run(cfg, out_dir, preset=preset, n_trials=n_trials, overwrite=args.overwrite, sweep=sweep,
                     n_trials_source=n_trials_source)
        run_id = None if tracker is None else tracker.log_lab_run(result, out_dir, start_ms)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        started = out_dir is not None and (out_dir / INCOMPLETE_MARKER).exists()
        where = f"; {out_dir} holds a partial run, marked by {INCOMPLETE_MARKER}" if started else ""
        print(f"interrupted: the run stopped before its report was finished{where}", file=sys.stderr)
        return 130
    print(f"report: {out_dir / 'report.html'}")
    if run_id is not None:
        print(f"mlflow: run {run_id} in {tracker.describe()}; browse: {tracker.browse_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
