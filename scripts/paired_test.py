"""Diebold-Mariano test of one model's Book A forecasts in two runs on identical rows (e.g. the pooled HRM
from scratch vs pretrained, or two seeds).

    python scripts/paired_test.py RUN_A RUN_B [--model hrm_pooled] [--model-b NAME] [--horizon 21]

RUN_A, RUN_B: run folders (their ``forecasts_a.parquet``). The rows both runs forecast with the model
(``date``, and ``symbol`` in a universe) must carry the same truth; the loss differential is the squared
error of A minus that of B, averaged over the symbols of each date in a universe, tested as the verdict tests
Book A (eval/verdict.py: HLN-corrected DM, uniform-kernel HAC with h - 1 lags). Prints the difference (vol
points squared; negative: A better), its 95% CI and the two-sided p-value, and writes them as JSON with
``--json FILE``.

Bad input (a missing folder or file, a model a run lacks, runs without common rows, different truths on the
same row) exits 2 with one message.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from lab_v10.src.data.store import write_bytes_atomic
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.eval.significance import diebold_mariano, squared_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a", type=Path, help="run folder A")
    p.add_argument("run_b", type=Path, help="run folder B")
    p.add_argument("--model", default="hrm_pooled", help="model of run A (default hrm_pooled)")
    p.add_argument("--model-b", help="model of run B (default: the same as --model)")
    p.add_argument("--horizon", type=int, default=21, help="label horizon in days (labels.horizon_days)")
    p.add_argument("--json", type=Path, help="also write the result to this JSON file")
    return p.parse_args(argv)


def forecasts(run: Path, model: str) -> pd.DataFrame:
    """The model's Book A rows of ``run``, indexed by (symbol, date) or date; ConfigError naming what is missing."""
    path = run / "forecasts_a.parquet"
    if not path.is_file():
        raise ConfigError(f"{path}: not found (expected a run folder written by main_v3.py)")
    frame = pd.read_parquet(path)
    rows = frame[frame["model"] == model]
    if rows.empty:
        raise ConfigError(f"{path}: no Book A forecasts of model {model!r} (models: "
                          f"{', '.join(map(str, frame['model'].unique()))})")
    keys = ["symbol", "date"] if "symbol" in rows else ["date"]
    return rows.set_index(keys)[["y_true", "mu"]].sort_index()


def paired_test(a: pd.DataFrame, b: pd.DataFrame, horizon: int) -> dict:
    """DM test of A's squared error against B's on their common rows (module docstring)."""
    both = pd.merge(a, b, left_index=True, right_index=True, suffixes=("_a", "_b"))  # inner join on the rows
    if both.empty:
        raise ConfigError("the two runs have no forecast row in common (expected the same data and folds)")
    differ = (both["y_true_a"] - both["y_true_b"]).abs() > 1e-9
    if differ.any():
        raise ConfigError(f"the two runs disagree on the truth of row {both.index[differ.argmax()]} (expected the "
                          "same data and labels)")
    loss = pd.DataFrame({"a": squared_error(both["y_true_a"], both["mu_a"]),
                         "b": squared_error(both["y_true_b"], both["mu_b"])}, index=both.index)
    if isinstance(loss.index, pd.MultiIndex):
        loss = loss.groupby(level="date").mean()  # one value per date: symbols of a date share its shocks
    result = diebold_mariano(loss["a"], loss["b"], horizon=horizon, lags=max(horizon - 1, 0), kernel="uniform")
    return {"rows": len(both), "dates": len(loss), "mse_a": float(loss["a"].mean()),
            "mse_b": float(loss["b"].mean()), **result.to_dict()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = paired_test(forecasts(args.run_a, args.model), forecasts(args.run_b, args.model_b or args.model),
                          args.horizon)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.update(run_a=str(args.run_a), run_b=str(args.run_b), model_a=args.model, model_b=args.model_b or args.model)
    print(f"{args.model} in {args.run_a} - {args.model_b or args.model} in {args.run_b}: squared error "
          f"{out['difference']:+.4g} [{out['ci_low']:+.4g}, {out['ci_high']:+.4g}] vol pts^2, p = "
          f"{out['p_value']:.3g} ({out['rows']} rows, {out['dates']} dates; MSE {out['mse_a']:.4g} vs "
          f"{out['mse_b']:.4g})")
    if args.json is not None:
        write_bytes_atomic(json.dumps(out, indent=2).encode(), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
