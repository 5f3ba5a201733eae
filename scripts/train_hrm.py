"""Train the HRM on a config and its data: one process, or DistributedDataParallel under torchrun.

    python scripts/train_hrm.py --config config/small.yaml --out runs/hrm
    torchrun --standalone --nproc-per-node 4 scripts/train_hrm.py --config config/default_hrm27m.yaml --out runs/hrm
    python scripts/train_hrm.py --config config/small.yaml --out runs/hrm2 --resume runs/hrm

The --set KEY=VALUE overrides and the data and device flags are main_v3.py's (lab_v10/src/cli.py: --data,
--daily, --iv, --minutes, --minutes-tz, --tz, --calendar, --fill-missing-minutes, --n-days, --device), applied
in the same order: --config, then --set, then the data flags. Training uses the first
walk-forward fold's training and validation rows, or --train-end DATE with the next --val-days sample dates
as validation (purged). ``train.batch_size`` is the global batch, split evenly over the ranks. Rank 0 writes
best.pt (and best_head_b.pt under train.early_stopping: per_head), last.pt, train_log.csv (into member_k/
per member of an ensemble), hrm_adapter.pt and train_summary.json into --out. Multi-node launch and
the rank semantics: docs/scale_out.md and lab_v10/src/options/hrm_ddp.py.

Bad input exits with status 2 and one message (on every rank), no traceback: a bad config or flag, a --resume
file or folder that is damaged, incomplete or from another config, data that contradicts the hrm section, or
a loss that turns non-finite (lower train.lr, or train.skip_nonfinite: true). A run that fails before its
first checkpoint leaves no run folder.

--tracking-uri (or the config's tracking.uri, or MLFLOW_TRACKING_URI) logs the finished training to MLflow
(rank 0): the config, each member's per-epoch curves from train_log.csv (step = epoch) and the summary
(lab_v10/src/eval/tracking.py; a bad store exits 2 before any training).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

from lab_v10.src.cli import add_data_flags, add_set_flag, apply_data_flags
from lab_v10.src.config import apply_overrides, load_config
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.eval.tracking import Tracker, add_tracking_flags, tracking_target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="YAML config (e.g. config/small.yaml)")
    add_set_flag(p)
    add_data_flags(p)
    p.add_argument("--train-end", help="last training forecast date, YYYY-MM-DD (default: the first walk-forward "
                   "fold's split)")
    p.add_argument("--val-days", type=int, help="validation sample dates after --train-end (default: "
                   "walkforward.val_days)")
    p.add_argument("--out", type=Path, required=True, help="run folder (rank 0 writes it)")
    p.add_argument("--resume", type=Path, help="a last.pt (or the interrupted run's folder; an ensemble needs "
                   "the folder) to continue from, readable by every rank")
    add_tracking_flags(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def parse_date(text: str | None) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        return pd.Timestamp(text).normalize()
    except ValueError:
        raise ConfigError(f"--train-end: expected a date YYYY-MM-DD, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = apply_data_flags(apply_overrides(load_config(args.config), args.overrides), args)
        train_end = parse_date(args.train_end)
        if args.resume is not None and not args.resume.exists():
            raise ConfigError(f"--resume: {args.resume}: checkpoint or run folder not found")
        existing = next(path for path in (args.out, *args.out.parents) if path.exists())
        if not existing.is_dir():
            raise ConfigError(f"--out {args.out}: expected a folder, but {existing} is a file")
        target = tracking_target(args.tracking_uri, args.experiment, cfg.tracking)
        # rank 0 (torchrun's RANK; a single process is rank 0) opens the store before any training
        tracker = Tracker(target) if target is not None and os.environ.get("RANK", "0") == "0" else None
        start_ms = int(time.time() * 1000)
        from lab_v10.src.options.hrm_ddp import distributed_context, train_hrm  # heavy imports after the checks

        with distributed_context(cfg.train.device) as ctx:
            level = logging.DEBUG if args.verbose else logging.INFO
            logging.basicConfig(level=level if ctx.is_main else logging.WARNING,
                                format=f"%(asctime)s rank {ctx.rank} %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
            summary = train_hrm(cfg, args.out, ctx, train_end, args.val_days, args.resume)
        run_id = tracker.log_training(summary["config"], args.out, summary, start_ms) if tracker else None
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ctx.is_main:
        for k, member in enumerate(summary["members"]):
            print(f"member {k}: best epoch {member['best_epoch']} of {member['epochs_run']}: validation loss "
                  f"{member['best_val_loss']:.4f} nats, {member['steps']} steps, checkpoint "
                  f"{member['checkpoint_path']}")
            if member["head_b_best_epoch"] is not None:  # per-head early stopping
                print(f"member {k}: Head B best epoch {member['head_b_best_epoch']}: validation log loss "
                      f"{member['head_b_best_val']:.4f} nats, checkpoint {member['head_b_checkpoint_path']}")
        print(f"{summary['world_size']} rank(s), {summary['seconds']:.1f} s; adapter: {summary['adapter_path']}")
        if run_id is not None:
            print(f"mlflow: run {run_id} in {tracker.describe()}; browse: {tracker.browse_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
