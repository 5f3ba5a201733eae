"""Build HRMNet from a config, print its parameter budget and check the 27M range.

    python scripts/validate_hrm27m.py [--config FILE] [--markdown]

Counts the parameters of the torch model per group (H, L, FiLM, heads, final norms, input projections,
core total, total) with their share and bf16/fp16 and fp32 memory, and exits 1 when the total is outside
26.5M..27.5M. The model is built on the meta device: the same modules, no memory allocated.
``--markdown`` prints the generated block of HRM27M.md (budget, memory, training settings); a test
regenerates it and compares. scripts/manual_param_count.py prints the same table from formulas.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lab_v10.src.config import HRMConfig, load_config
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.param_budget import DEFAULT_CONFIG, report, within_budget


def torch_param_counts(hrm: HRMConfig) -> dict[str, int]:
    """HRMNet.param_counts() of the model built on the meta device."""
    with torch.device("meta"):
        return HRMNet(hrm).param_counts()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--markdown", action="store_true", help="print the HRM27M.md block instead")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    counts = torch_param_counts(cfg.hrm)
    if not args.markdown:
        print(f"{args.config} (torch count)")
    print(report(cfg, counts, markdown=args.markdown))
    return 0 if within_budget(counts) else 1


if __name__ == "__main__":
    sys.exit(main())
