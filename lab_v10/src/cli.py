"""Command-line pieces shared by ``main_v3.py`` and the scripts: ``--set`` and the data and device flags.

Every command line builds its config in one order: the YAML file, then ``--set KEY=VALUE`` overrides
(:func:`lab_v10.src.config.apply_overrides`), then the specific flags (``--seed``, ``--models``, the data
flags), so a specific flag wins over a ``--set`` of the same key. Each step is validated with the same rules
as a config file, so a bad value gets the same kind of message, naming ``--set`` or "command line" and the key.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lab_v10.src.config import LabConfig, validate_config
from lab_v10.src.errors import ConfigError


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--set KEY=VALUE`` (into ``args.overrides``, a list of strings in the order given)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="config override, a dotted key and a YAML value, e.g. train.epochs=2, hrm.l.d_model=32, "
             "train.autocast_bf16=false, features.har_windows=[1,5,22] (repeatable; applied after --config, "
             "before the other flags)",
    )


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Add --data, --daily, --iv, --minutes, --minutes-tz, --tz, --calendar, --fill-missing-minutes,
    --n-days and --device."""
    parser.add_argument("--data", choices=["synthetic", "arch", "files"],
                        help="data source (default: the config's; 'files' is implied by --daily/--iv/--minutes)")
    parser.add_argument("--daily", type=Path, help="daily bars CSV/Parquet: date,open,high,low,close[,volume][,iv]")
    parser.add_argument("--iv", type=Path, help="implied vol: Cboe VIX_History.csv layout or date,iv (vol points)")
    parser.add_argument("--minutes", type=Path, help="minute bars CSV/Parquet: timestamp,open,high,low,close,volume")
    parser.add_argument("--minutes-tz", help="time zone of naive minute timestamps, e.g. UTC (default: exchange time)")
    parser.add_argument("--tz", help="exchange time zone (default America/New_York)")
    parser.add_argument("--calendar", help="exchange calendar code for sessions (default XNYS)")
    parser.add_argument("--fill-missing-minutes", action="store_true",
                        help="forward-fill missing regular-session minutes (reported); default: report only")
    parser.add_argument("--n-days", type=int, help="synthetic market length in trading days")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="HRM device (default: the config's, auto)")


def apply_data_flags(cfg: LabConfig, args: argparse.Namespace) -> LabConfig:
    """Overlay the flags of :func:`add_data_flags` that were given on ``cfg`` and re-validate it."""
    data = cfg.data
    given_files = bool(args.daily or args.minutes or args.iv)
    source = args.data or ("files" if given_files else data.source)
    if source != "files" and given_files:
        raise ConfigError(f"--data {source} cannot be combined with --daily/--iv/--minutes (those imply --data files)")
    synthetic = data.synthetic if args.n_days is None else dataclasses.replace(data.synthetic, n_days=args.n_days)
    data = dataclasses.replace(
        data,
        source=source,
        daily=str(args.daily) if args.daily else data.daily,
        iv=str(args.iv) if args.iv else data.iv,
        minutes=str(args.minutes) if args.minutes else data.minutes,
        minutes_source_tz=args.minutes_tz or data.minutes_source_tz,
        tz=args.tz or data.tz,
        calendar=args.calendar or data.calendar,
        fill_missing_minutes=args.fill_missing_minutes or data.fill_missing_minutes,
        synthetic=synthetic,
    )
    train = dataclasses.replace(cfg.train, device=args.device) if args.device else cfg.train
    return validate_config(dataclasses.replace(cfg, data=data, train=train), "command line")
