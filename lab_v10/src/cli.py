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
    """Add --data, --universe, --daily, --iv, --minutes, --minutes-tz, --tz, --calendar, --fill-missing-minutes, the
    plausibility flags (--allow-implausible-iv, --drop-bad-prints, --drop-non-sessions, --iv-missing,
    --max-missing-sessions, --allow-minutes-outside-session, --minutes-vs-daily; data/README.md), --n-days and
    --device."""
    parser.add_argument("--data", choices=["synthetic", "arch", "files", "universe"],
                        help="data source (default: the config's; 'files' is implied by --daily/--iv/--minutes, "
                             "'universe' by --universe)")
    parser.add_argument("--universe", type=Path, metavar="FILE.yaml",
                        help="universe manifest: symbols: {SYM: {daily: FILE, iv: FILE[, minutes: FILE]}}, paths "
                             "relative to it; every symbol is loaded and checked like --daily/--iv/--minutes")
    parser.add_argument("--daily", type=Path, help="daily bars CSV/Parquet: date,open,high,low,close[,volume][,iv]")
    parser.add_argument("--iv", type=Path, help="implied vol: Cboe VIX_History.csv layout or date,iv (vol points)")
    parser.add_argument("--minutes", type=Path, help="minute bars CSV/Parquet: timestamp,open,high,low,close,volume")
    parser.add_argument("--minutes-tz", help="time zone of naive minute timestamps, e.g. UTC (default: exchange time)")
    parser.add_argument("--tz", help="exchange time zone (default America/New_York)")
    parser.add_argument("--calendar", help="exchange calendar code for sessions (default XNYS)")
    parser.add_argument("--fill-missing-minutes", action="store_true",
                        help="forward-fill missing regular-session minutes (reported); default: report only")
    checks = parser.add_argument_group("data plausibility (each stops the run by default; see data/README.md)")
    checks.add_argument("--allow-implausible-iv", action="store_true",
                        help="keep implied vol outside 1..500 vol points or far from the realised vol (reported)")
    checks.add_argument("--drop-bad-prints", action="store_true",
                        help="drop rows whose price or iv jumps > 5x and reverts within 3 rows (counted, reported)")
    checks.add_argument("--drop-non-sessions", action="store_true",
                        help="drop daily rows on weekends/holidays of --calendar (counted, reported)")
    checks.add_argument("--iv-missing", choices=["error", "drop"],
                        help="a daily date inside the IV file's range without IV: error (default), or drop its "
                             "daily row (counted, reported)")
    checks.add_argument("--max-missing-sessions", type=int, metavar="N",
                        help="longest run of calendar sessions a daily file may miss (default 10)")
    checks.add_argument("--allow-minutes-outside-session", action="store_true",
                        help="keep going when most minute rows miss the regular sessions (reported)")
    checks.add_argument("--minutes-vs-daily", choices=["error", "rescale"],
                        help="minute prices outside their daily bar's range (e.g. a split: daily bars adjusted, "
                             "minutes as traded): error (default), or rescale those sessions by the split ratio "
                             "(counted, reported)")
    parser.add_argument("--n-days", type=int, help="synthetic market length in trading days")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="HRM device (default: the config's, auto)")


def apply_data_flags(cfg: LabConfig, args: argparse.Namespace) -> LabConfig:
    """Overlay the flags of :func:`add_data_flags` that were given on ``cfg`` and re-validate it."""
    data = cfg.data
    given_files = bool(args.daily or args.minutes or args.iv)
    if given_files and args.universe:
        raise ConfigError("--universe cannot be combined with --daily/--iv/--minutes (the manifest lists each "
                          "symbol's files)")
    source = args.data or ("files" if given_files else "universe" if args.universe else data.source)
    if source != "files" and given_files:
        raise ConfigError(f"--data {source} cannot be combined with --daily/--iv/--minutes (those imply --data files)")
    if source != "universe" and args.universe:
        raise ConfigError(f"--data {source} cannot be combined with --universe (it implies --data universe)")
    synthetic = data.synthetic if args.n_days is None else dataclasses.replace(data.synthetic, n_days=args.n_days)
    data = dataclasses.replace(
        data,
        source=source,
        universe=str(args.universe) if args.universe else data.universe,
        daily=str(args.daily) if args.daily else data.daily,
        iv=str(args.iv) if args.iv else data.iv,
        minutes=str(args.minutes) if args.minutes else data.minutes,
        minutes_source_tz=args.minutes_tz or data.minutes_source_tz,
        tz=args.tz or data.tz,
        calendar=args.calendar or data.calendar,
        fill_missing_minutes=args.fill_missing_minutes or data.fill_missing_minutes,
        check_iv_units=data.check_iv_units and not args.allow_implausible_iv,
        drop_bad_prints=args.drop_bad_prints or data.drop_bad_prints,
        drop_non_sessions=args.drop_non_sessions or data.drop_non_sessions,
        iv_missing=args.iv_missing or data.iv_missing,
        max_missing_sessions=(data.max_missing_sessions if args.max_missing_sessions is None
                              else args.max_missing_sessions),
        check_minute_sessions=data.check_minute_sessions and not args.allow_minutes_outside_session,
        minutes_vs_daily=args.minutes_vs_daily or data.minutes_vs_daily,
        synthetic=synthetic,
    )
    train = dataclasses.replace(cfg.train, device=args.device) if args.device else cfg.train
    return validate_config(dataclasses.replace(cfg, data=data, train=train), "command line")
