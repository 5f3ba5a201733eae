"""HRM parameter budget from closed-form formulas (no torch import).

    python scripts/manual_param_count.py [--config FILE] [--json]

Prints the same table as ``scripts/validate_hrm27m.py`` (which counts the parameters of the built torch
model) and exits 1 when the total is outside the 27M budget. The formulas, per docs/design.md section 4:

    block (post-norm)  4 d^2 (QKV + output) + 3 d ffn (SwiGLU) + 2 d (two RMSNorm gains)
    H-module           n_H blocks of width d_H;  L-module  n_L blocks of width d_L
    FiLM H->L          2 d_H d_L;  heads  2 d_H (A) + d_L (B) + 2 d_H (Q);  final norms  d_H + d_L
    input projections  F_d d_H + F_m d_L
No layer has a bias; the initial states and RoPE tables are buffers, not parameters.
The formulas and tables live in lab_v10/src/options/param_budget.py (shared with validate_hrm27m.py, optimize_hrm27m.py and sweep_optuna.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab_v10.src.config import load_config
from lab_v10.src.options.param_budget import DEFAULT_CONFIG, param_counts, report, within_budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    counts = param_counts(cfg.hrm)
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{args.config} (closed-form count)")
        print(report(cfg, counts, markdown=False))
    return 0 if within_budget(counts) else 1


if __name__ == "__main__":
    sys.exit(main())
