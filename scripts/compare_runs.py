"""Compare lab runs side by side: the config keys that differ, the headline metrics and the verdicts.

    python scripts/compare_runs.py reports/20260101-120000 reports/20260102-090000
    python scripts/compare_runs.py 3bfe69ea9cdf45ff8ac95602842ef78d reports/run2 --tracking-uri sqlite:///mlflow.db

Each RUN is a run folder of main_v3.py (read from its summary.json) or an MLflow run id in the tracking store
(--tracking-uri, else MLFLOW_TRACKING_URI): a lab run is read from its summary.json artifact, so a folder and
its MLflow run give the same column; a run without one (a sweep trial) from its params and metrics. Rows:

    run      where each run was read from, and where its trial count (for the deflated Sharpe) came from
    config   only the keys whose values differ between the runs ("-": the key is missing in that run)
    metric   n_trials; R² (OOS) and AUC over all test rows per model; net Sharpe and deflated Sharpe per book
             and strategy; a sweep trial's objective and per-block scores
    verdict  per verdict section, the headline conclusion (Holm-adjusted) against the best baseline

The table is printed and written as compare.csv (full-precision numbers) and compare.html into --out (default
reports/compare-<timestamp>). Every metric, param and artifact of a tracked run is in the MLflow UI:
``mlflow ui --backend-store-uri URI`` (README "Tracking").

Bad input (a RUN that is neither a run folder nor a run id in the store, a folder without summary.json, no
store to look an id up in, a bad --out) exits with status 2 and one message, no traceback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lab_v10.src.config import TrackingConfig
from lab_v10.src.data.store import write_bytes_atomic
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.eval.formatting import csv_bytes, fmt, html_table, text_table
from lab_v10.src.eval.run_folder import check_writable_folder
from lab_v10.src.eval.tracking import Tracker, flat_config, summary_metrics, tracking_target, verdict_texts

# Metric rows, in this order: the headline numbers of a lab run, then a sweep trial's scores.
HEADLINE = [re.compile(p) for p in (
    r"n_trials", r"forecast\.A\.[^.]+\.all\.r2_oos", r"forecast\.B(_setup)?\.[^.]+\.all\.auc",
    r"trading\.[^.]+\.[^.]+\.net_sharpe", r"trading\.[^.]+\.[^.]+\.dsr", r"loss|yA_nll|yB_log_loss",
    r"fold_\d+\.[^.]+",
)]
MISSING = "-"


@dataclass
class RunRecord:
    """One compared run: its column ``label``, ``source`` (folder or run id), flattened ``config`` (param
    text), ``metrics`` (MLflow names, :func:`~lab_v10.src.eval.tracking.summary_metrics`), ``verdict`` texts
    and the origin of its trial count."""

    label: str
    source: str
    config: dict[str, str]
    metrics: dict[str, float]
    verdict: dict[str, str]
    n_trials_source: str


def record_from_summary(summary: dict, label: str, source: str) -> RunRecord:
    """A run from the content of its summary.json."""
    return RunRecord(label, source, flat_config(summary.get("config") or {}), summary_metrics(summary),
                     verdict_texts(summary), str(summary.get("n_trials_source", MISSING)))


def load_run(ref: str, tracker: Tracker | None) -> RunRecord:
    """RUN ``ref``: a run folder, else an MLflow run id in ``tracker``'s store (module docstring); ConfigError
    naming ``ref`` when it is neither."""
    path = Path(ref)
    if path.is_dir():
        if not (path / "summary.json").is_file():
            raise ConfigError(f"RUN {ref}: not a finished lab run folder (no summary.json)")
        try:
            summary = json.loads((path / "summary.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"RUN {ref}: {path / 'summary.json'} is not readable JSON ({exc})") from None
        return record_from_summary(summary, path.resolve().name, str(path))
    if path.exists():
        raise ConfigError(f"RUN {ref}: is a file (expected a run folder or an MLflow run id)")
    if tracker is None:
        raise ConfigError(f"RUN {ref}: no such run folder, and no tracking store to look it up in as an MLflow run "
                          "id (give --tracking-uri or set MLFLOW_TRACKING_URI)")
    with tracker.calls(f"RUN {ref}: no such run folder, nor a run id in this store"):
        run = tracker.client.get_run(ref)
        label, source = run.info.run_name or ref[:8], f"mlflow run {ref}"
        if any(a.path == "summary.json" for a in tracker.client.list_artifacts(ref)):
            with tempfile.TemporaryDirectory(prefix="compare_runs_") as tmp:
                summary = json.loads(Path(tracker.client.download_artifacts(ref, "summary.json", tmp)).read_text())
            return record_from_summary(summary, label, source)
    config = {k: v for k, v in run.data.params.items() if not k.startswith("data_description.")}
    return RunRecord(label, source, config, dict(run.data.metrics), {},
                     run.data.tags.get("lab.n_trials_source", MISSING))


def _unique_labels(records: list[RunRecord]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for record in records:
        seen[record.label] = seen.get(record.label, 0) + 1
        labels.append(record.label if seen[record.label] == 1 else f"{record.label} ({seen[record.label]})")
    return labels


def _metric_order(key: str) -> tuple[int, str]:
    return next((i for i, p in enumerate(HEADLINE) if p.fullmatch(key)), len(HEADLINE)), key


def compare_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per compared item (columns ``section``, ``key`` and one per run, module docstring): the config
    keys that differ, the headline metrics (floats, None where a run lacks one), the verdict texts."""
    rows = [["run", "source", *(r.source for r in records)],
            ["run", "n_trials_source", *(r.n_trials_source for r in records)]]
    for key in sorted(set().union(*(r.config for r in records))):
        values = [r.config.get(key, MISSING) for r in records]
        if len(set(values)) > 1:
            rows.append(["config", key, *values])
    metrics = sorted((k for k in set().union(*(r.metrics for r in records)) if _metric_order(k)[0] < len(HEADLINE)),
                     key=_metric_order)
    rows += [["metric", key, *(r.metrics.get(key) for r in records)] for key in metrics]
    for section in dict.fromkeys(s for r in records for s in r.verdict):
        rows.append(["verdict", section, *(r.verdict.get(section, MISSING) for r in records)])
    return pd.DataFrame(rows, columns=["section", "key", *_unique_labels(records)])


def _text_rows(table: pd.DataFrame) -> list[list[str]]:
    return [[row[0], row[1], *(fmt(v, "metric") if row[0] == "metric" else fmt(v) for v in row[2:])]
            for row in table.itertuples(index=False)]


def write_comparison(table: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """compare.csv and compare.html (a small self-contained page) in ``out_dir``; their paths."""
    from lab_v10.src.eval.report import CSS

    csv_path = write_bytes_atomic(csv_bytes(table), out_dir / "compare.csv")
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Lab runs compared</title>'
            f"<style>{CSS}</style></head>\n<body>\n<h1>Lab runs compared</h1>\n"
            "<p>Config: only the keys whose values differ. Metrics over all test rows; verdicts Holm-adjusted. "
            f"Browse every run: <code>{html.escape('mlflow ui --backend-store-uri URI')}</code>.</p>\n"
            + html_table(list(table.columns), _text_rows(table)) + "\n</body></html>\n")
    return csv_path, write_bytes_atomic(page.encode("utf-8"), out_dir / "compare.html")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="a main_v3.py run folder or an MLflow run id")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking store to look run ids up in "
                   "(default: MLFLOW_TRACKING_URI)")
    p.add_argument("--out", type=Path, help="folder for compare.csv and compare.html "
                   "(default reports/compare-<timestamp>)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out_dir = args.out or Path("reports") / dt.datetime.now().strftime("compare-%Y%m%d-%H%M%S")
        check_writable_folder(out_dir)
        target = tracking_target(args.tracking_uri, None, TrackingConfig())
        ids = [ref for ref in args.runs if not Path(ref).exists()]
        tracker = Tracker(target, experiment=False) if target is not None and ids else None
        table = compare_table([load_run(ref, tracker) for ref in args.runs])
        csv_path, html_path = write_comparison(table, out_dir)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(text_table(list(table.columns), _text_rows(table))))
    print(f"table: {csv_path}\npage: {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
