"""Pretrain the HRM on K fresh synthetic markets; ``train.init_from`` then starts every fold's networks from it.

    python scripts/pretrain_hrm.py --config config/universe.yaml --markets 8 --out runs/pretrained.pt
    torchrun --standalone --nproc-per-node 4 scripts/pretrain_hrm.py --config config/default_hrm27m.yaml \\
        --markets 64 --out runs/pretrained_27m.pt
    python main_v3.py --universe FILE.yaml --set train.init_from=runs/pretrained.pt

The markets are a synthetic universe of ``--markets`` independent symbols (``data.synthetic.n_symbols`` = K,
``market_factor_share`` 0, ``n_days`` from ``--n-days`` or the config) drawn from ``--seed`` (default: the
config's seed + 1000, so not the default job's own market): unlimited data with a known structure and no
look-ahead into any real or test data. One pooled network (ensemble of ``train.ensemble_size``) is trained on
all of them exactly as ``scripts/train_hrm.py`` trains a universe (torchrun DDP when launched so), with the
``hrm`` section of ``--config`` (so the weights fit that config; the symbol embedding is off here and is not
carried over), on each market's dates up to 85% of the calendar, early-stopped on the next
``walkforward.val_days`` (purged). ``--out`` is the pretrained adapter file; its run folder (checkpoints,
train logs, train_summary.json) is ``--out`` without the suffix.

Bad input exits with status 2 and one message (a bad config, flag or output path).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from lab_v10.src.cli import add_set_flag
from lab_v10.src.config import apply_overrides, load_config, validate_config
from lab_v10.src.errors import ConfigError, LabError

TRAIN_SHARE = 0.85  # of each market's calendar that trains; the next walkforward.val_days validate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True, help="YAML config whose hrm and train sections to use")
    add_set_flag(p)
    p.add_argument("--markets", type=int, required=True, help="K, the number of fresh synthetic markets (>= 1)")
    p.add_argument("--n-days", type=int, help="trading days per market (default: data.synthetic.n_days)")
    p.add_argument("--seed", type=int, help="seed of the markets (default: the config's seed + 1000)")
    p.add_argument("--out", type=Path, required=True, help="the pretrained adapter file to write (.pt)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def pretraining_config(cfg, markets: int, n_days: int | None, seed: int | None):
    """``cfg`` turned into the pretraining run: K independent synthetic markets, no symbol embedding."""
    if markets < 1:
        raise ConfigError(f"--markets: expected int >= 1, got {markets}")
    synthetic = dataclasses.replace(cfg.data.synthetic, n_symbols=markets, market_factor_share=0.0,
                                    n_days=cfg.data.synthetic.n_days if n_days is None else n_days)
    data = dataclasses.replace(cfg.data, source="synthetic", universe=None, synthetic=synthetic)
    hrm = dataclasses.replace(cfg.hrm, symbol_embedding=False)
    train = dataclasses.replace(cfg.train, init_from=None, warm_start=False)
    return validate_config(dataclasses.replace(cfg, seed=cfg.seed + 1000 if seed is None else seed, data=data,
                                               hrm=hrm, train=train), "pretraining")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = pretraining_config(apply_overrides(load_config(args.config), args.overrides), args.markets,
                                 args.n_days, args.seed)
        if args.out.suffix != ".pt" or args.out.is_dir():
            raise ConfigError(f"--out {args.out}: expected the path of a .pt file to write")
        run_dir = args.out.with_suffix("")
        from lab_v10.src.data.store import (
            write_bytes_atomic,  # heavy imports after the checks
        )
        from lab_v10.src.data.universe import load_universe
        from lab_v10.src.dataset.panel import build_panel
        from lab_v10.src.options.hrm_ddp import (
            ADAPTER_FILE,
            distributed_context,
            train_hrm,
        )

        panel = build_panel(load_universe(cfg.data, cfg.seed), cfg)
        train_end = panel.sample_dates[int(TRAIN_SHARE * (len(panel.sample_dates) - cfg.walkforward.val_days))]
        with distributed_context(cfg.train.device) as ctx:
            logging.basicConfig(level=(logging.DEBUG if args.verbose else logging.INFO) if ctx.is_main
                                else logging.WARNING,
                                format=f"%(asctime)s rank {ctx.rank} %(levelname)s %(name)s: %(message)s",
                                datefmt="%H:%M:%S")
            summary = train_hrm(cfg, run_dir, ctx, train_end, None, None)
            if ctx.is_main:
                write_bytes_atomic((run_dir / ADAPTER_FILE).read_bytes(), args.out)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ctx.is_main:
        print(f"pretrained on {args.markets} synthetic markets (seed {cfg.seed}, {cfg.data.synthetic.n_days} days "
              f"each; {summary['split']}), {summary['seconds']:.1f} s: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
