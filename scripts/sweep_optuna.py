"""Optuna sweep of the HRM on purged validation folds (walk-forward or CPCV), on a shared storage with pruning.

    python scripts/sweep_optuna.py --config config/small.yaml --space config/sweep_small.yaml \\
        --study small --trials 40 --workers 2 --out sweeps/small
    python scripts/sweep_optuna.py --config config/default_hrm27m.yaml --space config/sweep_hrm27m.yaml \\
        --study hrm27m --trials 200 --storage postgresql://optuna:PASSWORD@db-host/optuna --out sweeps/hrm27m

--set KEY=VALUE overrides a key of the base config (lab_v10/src/cli.py), e.g. --set train.ensemble_size=1;
the trials' parameters are set on top of it. --storage defaults to the journal file
<out>/optuna_journal.log; re-running the same --study resumes it (--trials is the number of finished trials
the study should hold). Writes trials.csv, best_config.yaml
(or one per Pareto-optimal trial) and sweep.json into --out, then prints the main_v3.py command with the
trial count for the deflated Sharpe ratio and the optuna-dashboard command. The space format
(validation.scheme walkforward or cpcv): lab_v10/src/eval/sweep_space.py; the folds: sweep_folds.py; the
objective: sweep_objective.py; storages and workers: sweep.py; scaling out: docs/scale_out.md.
--tracking-uri (or the config's tracking.uri, or MLFLOW_TRACKING_URI) logs the sweep to MLflow, each trial a
child run with its parameters, per-block scores and state (README "Tracking").

Bad input (--out a file, --storage not a journal, a bad config or space) exits with status 2 and one message,
no traceback. A sweep without a completed trial, or one whose worker died (its running trial is marked
failed; the results of the other trials are written), exits 1.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lab_v10.src.cli import add_set_flag
from lab_v10.src.config import apply_overrides, load_config
from lab_v10.src.errors import LabError
from lab_v10.src.eval.tracking import add_tracking_flags, tracking_target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="base lab config (data, walk-forward, model)")
    add_set_flag(p)
    p.add_argument("--space", type=Path, required=True, help="search space YAML, e.g. config/sweep_small.yaml")
    p.add_argument("--study", required=True, help="Optuna study name (re-use it to resume)")
    p.add_argument("--storage", help="journal file path, or a database URL such as postgresql://user:pw@host/db "
                   "(default: <out>/optuna_journal.log)")
    p.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--timeout", type=float, help="seconds after which each worker starts no new trial")
    p.add_argument("--out", type=Path, required=True, help="results folder")
    add_tracking_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from lab_v10.src.eval.sweep import run_sweep  # heavy imports after argument parsing
    from lab_v10.src.eval.sweep_space import load_space

    try:
        cfg = apply_overrides(load_config(args.config), args.overrides)
        space = load_space(args.space)
        tracking = tracking_target(args.tracking_uri, args.experiment, cfg.tracking)
        result = run_sweep(cfg, space, args.study, args.trials, args.out, storage=args.storage,
                           workers=args.workers, timeout=args.timeout, tracking=tracking)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items()))
    print(f"study {result.study_name}: {states}; {result.n_trials} configurations evaluated")
    print(f"trials: {result.csv_path}")
    print(f"summary: {result.json_path}")
    if result.tracking:
        print(f"mlflow: {result.tracking}")
    for failure in result.worker_failures:
        print(f"error: worker {failure}; re-run the same command to finish the study", file=sys.stderr)
    if not result.best:
        print(f"no trial completed: see the error and rejected columns of {result.csv_path}", file=sys.stderr)
        return 1
    for best in result.best:
        print(f"best trial {best['number']}: {best['values']} -> {best['config']}")
    print("run the best configuration(s) with the trial count for the deflated Sharpe ratio:")
    for command in result.commands:
        print(f"  {command}")
    print(f"dashboard: {result.dashboard_command}")
    return 1 if result.worker_failures else 0


if __name__ == "__main__":
    sys.exit(main())
