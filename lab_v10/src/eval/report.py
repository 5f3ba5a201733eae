"""Write one run's report: summary.json, CSV tables, Parquet predictions, PNG plots and report.html.

:func:`write_report` renders a :class:`~lab_v10.src.eval.results.RunResult` into a folder; every number
in the output comes from the RunResult (metrics as given, tables and plots of its frames), none is
recomputed except the reliability tables of Head B, which are :func:`~lab_v10.src.eval.metrics.
calibration_table` of its forecast table. :func:`console_summary` gives the headline numbers as text.

Files (in ``out_dir``):

- ``summary.json``: strict JSON (no NaN/Infinity; undefined metrics are ``null``) with the config,
  preset, data description, folds, forecast metrics per book, model and fold (and ``"all"``), trading
  metrics per book and strategy (gross and net keys of ``trading_metrics``), portfolio metrics, skipped
  books, trade counts, the verdict, ACT segment counts per model with learned halting, ``n_trials`` and
  timings (seconds); for a universe also ``by_symbol`` (each symbol's metrics and verdict) and
  ``symbol_table`` (also ``symbols.csv`` and a table and plot in report.html).
- ``folds.csv`` (one row per fold; a (start, end) period becomes ``<key>_start``, ``<key>_end``),
  ``forecast_metrics_A.csv`` / ``forecast_metrics_B.csv`` (one row per model and fold, ``"all"`` last),
  ``trading_metrics.csv`` (one row per book and strategy; book ``A``, ``B`` or ``portfolio``),
  ``trades_<book>_<strategy>.csv`` (the simulator's trade table).
- ``forecasts_a.parquet``, ``forecasts_b.parquet`` (the long forecast tables as given, a ``model`` column) and ``pnl_daily.parquet``
  (index ``date``; one column ``<book>:<strategy>`` of daily net P&L per unit of capital for each book
  strategy and ``portfolio:<strategy>`` for the portfolio; NaN on dates that are not sessions of that book).
- PNG plots (see :mod:`lab_v10.src.eval.plots`) and ``report.html``, one self-contained page (inline CSS,
  images as base64 data URIs, no scripts and no external references).

Each file is written to a temporary name in ``out_dir`` and moved into place with ``os.replace``, so a
reader never sees a partial file; ``report.html`` is written last.
"""
from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab_v10.src.data.store import write_bytes_atomic, write_parquet
from lab_v10.src.eval import plots
from lab_v10.src.eval.formatting import csv_bytes, flatten, fmt, html_table, is_time, json_safe, text_table
from lab_v10.src.eval.metrics import calibration_table
from lab_v10.src.eval.results import BookRun, RunResult

BOOK_TITLES = {"A": "Book A (daily straddles)", "B": "Book B (intraday shorts)", "portfolio": "Portfolio"}
FORECAST_TITLES = {"A": BOOK_TITLES["A"], "B": "Book B, all labelled minutes",
                   "B_setup": "Book B, setup minutes only (the meta-label's decisions)"}
HEADLINE_FORECAST = {"A": "r2_oos", "B": "auc"}  # the forecast metric of each book shown in the console
METRIC_LABELS = {
    "r2_oos": "R² (OOS)",
    "rmse": "RMSE (vol pts)",
    "gaussian_nll": "Gaussian NLL (nats)",
    "coverage_80": "80% coverage",
    "rank_ic": "Rank IC",
    "auc": "AUC",
    "brier": "Brier",
    "log_loss": "Log loss (nats)",
    "ece": "ECE",
    "positive_rate": "Positive rate",
}
# (trading_metrics key, column title, format kind): the headline trading table of report.html
TRADING_COLUMNS = (
    ("net_sharpe", "Sharpe (net)", "ratio"),
    ("gross_sharpe", "Sharpe (gross)", "ratio"),
    ("net_ann_return", "Ann. return (net)", "pct"),
    ("net_ann_vol", "Ann. vol (net)", "pct"),
    ("net_max_drawdown", "Max DD (net)", "pct"),
    ("psr", "PSR", "prob"),
    ("dsr", "DSR", "prob"),
    ("total_costs", "Costs (total, % capital)", "pct"),
    ("n_days", "Days", "auto"),
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1d2733; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #1d2733; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #c8d0d8; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #c8d0d8; padding: .25em .6em; }
th { background: #eef2f5; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: .4em .8em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #c8d0d8; }
figcaption { font-size: .9em; color: #4a5866; }
pre { background: #f5f7f9; padding: .8em; overflow-x: auto; font-size: .8em; }
"""


@dataclass(frozen=True)
class Plot:
    """One figure of the report: its PNG bytes and file name, or the note shown instead (``png`` None)."""

    title: str
    filename: str
    png: bytes | None
    note: str | None = None


def write_report(result: RunResult, out_dir: Path) -> dict[str, Path]:
    """Write every report file of ``result`` into ``out_dir`` (created if needed).

    Returns the path of each file written, keyed by file name (plots replaced by a note are not written).
    The pipeline hands it an empty folder (:mod:`lab_v10.src.eval.run_folder`), so no earlier run's file
    sits beside these.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        written[name] = write_bytes_atomic(data, out_dir / name)

    put("folds.csv", csv_bytes(pd.DataFrame([_flat_fold(fold) for fold in result.folds])))
    for book in ("A", "B", *(k for k in result.forecast_metrics if k not in ("A", "B"))):
        put(f"forecast_metrics_{book}.csv", csv_bytes(_forecast_metrics_frame(result.forecast_metrics.get(book, {}))))
    put("trading_metrics.csv", csv_bytes(_trading_metrics_frame(result)))
    if result.symbol_table:
        put("symbols.csv", csv_bytes(pd.DataFrame(result.symbol_table)))
    for name, trades in _trade_tables(result).items():
        put(name, csv_bytes(trades))

    net_pnl = _net_pnl(result)
    parquet = {
        "forecasts_a.parquet": result.forecasts_a,
        "forecasts_b.parquet": result.forecasts_b,
        "pnl_daily.parquet": _pnl_daily(net_pnl),
    }
    for name, frame in parquet.items():
        written[name] = write_parquet(frame, out_dir / name)

    figures = _render_plots(result, net_pnl)
    for plot in figures:
        if plot.png is not None:
            put(plot.filename, plot.png)
    put("summary.json", _summary_json(result).encode("utf-8"))
    put("report.html", _html_page(result, figures).encode("utf-8"))
    return written


def console_summary(result: RunResult) -> str:
    """The verdict first, then headline numbers as fixed-width text: per book each model's overall R² (A) or
    AUC (B), net Sharpe and max drawdown; the portfolio per strategy; skipped books."""
    lines = [*result.verdict["lines"], "",
             f"Run: preset {result.preset}, {len(result.folds)} folds, n_trials {result.n_trials} ({result.n_trials_source}); "
             f"{fill_rule(result)}"]
    for book, run in (("A", result.book_a), ("B", result.book_b)):
        metric = HEADLINE_FORECAST[book]
        forecasts = result.forecast_metrics.get(book, {})
        names = list(forecasts) + [s for s in run.metrics if s not in forecasts]
        lines.append(BOOK_TITLES[book] + (f": skipped ({run.skipped})" if run.skipped else ""))
        rows = [
            [
                name,
                fmt(forecasts.get(name, {}).get("all", {}).get(metric), "metric"),
                fmt(run.metrics.get(name, {}).get("net_sharpe"), "ratio"),
                fmt(run.metrics.get(name, {}).get("net_max_drawdown"), "pct"),
            ]
            for name in names
        ]
        if rows:
            lines += text_table(["model", metric, "net Sharpe", "max DD"], rows)
    if result.symbol_table:
        lines.append("Per symbol (Book A)")
        lines += text_table(["symbol", "test days", "R² cand.", "best other", "R² other", "Sharpe cand.",
                             "Sharpe short"],
                            [[r["symbol"], fmt(r["test_days"]), fmt(r["r2_candidate"], "metric"),
                              fmt(r["best_other"]), fmt(r["r2_best_other"], "metric"),
                              fmt(r["net_sharpe_A_candidate"], "ratio"), fmt(r["net_sharpe_A_always_short"], "ratio")]
                             for r in result.symbol_table])
    lines.append(BOOK_TITLES["portfolio"])
    rows = [
        [name, fmt(m.get("net_sharpe"), "ratio"), fmt(m.get("net_max_drawdown"), "pct")]
        for name, m in result.portfolio_metrics.items()
    ]
    if rows:
        lines += text_table(["strategy", "net Sharpe", "max DD"], rows)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Tables


def _flat_fold(fold: dict) -> dict:
    """A fold as one CSV row: a (start, end) pair of timestamps becomes ``<key>_start`` and ``<key>_end``;
    other non-scalar values become JSON text."""
    row: dict[str, Any] = {}
    for key, value in fold.items():
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_time(v) for v in value):
            row[f"{key}_start"], row[f"{key}_end"] = value
        elif isinstance(value, (dict, list, tuple, np.ndarray)):
            row[key] = json.dumps(json_safe(value, f"folds.{key}"), allow_nan=False)
        else:
            row[key] = value
    return row


def _forecast_metrics_frame(by_model: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per model and fold (in the given order, ``"all"`` included) with every metric as a column."""
    rows = [
        {"model": model, "fold": fold, **metrics} for model, folds in by_model.items() for fold, metrics in folds.items()
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["model", "fold"])


def _trading_metrics_frame(result: RunResult) -> pd.DataFrame:
    """One row per book (A, B, portfolio) and strategy with every trading metric as a column."""
    rows = [
        {"book": book, "strategy": strategy, **metrics}
        for book, by_strategy in _trading_metrics(result).items()
        for strategy, metrics in by_strategy.items()
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["book", "strategy"])


def _trading_metrics(result: RunResult) -> dict[str, dict[str, dict]]:
    """Trading metrics keyed by book (``A``, ``B``, ``portfolio``), then strategy."""
    return {"A": result.book_a.metrics, "B": result.book_b.metrics, "portfolio": result.portfolio_metrics}


def _books(result: RunResult) -> dict[str, BookRun]:
    return {"A": result.book_a, "B": result.book_b}


def _trade_tables(result: RunResult) -> dict[str, pd.DataFrame]:
    """``trades_<book>_<strategy>.csv`` file name -> trade table; raises if two strategies share a name."""
    tables: dict[str, pd.DataFrame] = {}
    for book, run in _books(result).items():
        for strategy, trades in run.trades.items():
            name = f"trades_{book.lower()}_{re.sub(r'[^A-Za-z0-9_-]+', '_', strategy)}.csv"
            if name in tables:
                raise ValueError(
                    f"book {book}: strategies map to the same trade file {name} (rename one: {strategy!r})"
                )
            tables[name] = trades
    return tables


def _net_pnl(result: RunResult) -> dict[str, dict[str, pd.Series]]:
    """Daily net P&L per unit of capital keyed by book (``A``, ``B``, ``portfolio``), then strategy."""
    out = {book: {s: daily["net_pnl"] for s, daily in run.daily.items()} for book, run in _books(result).items()}
    out["portfolio"] = {s: daily["portfolio"] for s, daily in result.portfolio.items()}
    return out


def _pnl_daily(net_pnl: dict[str, dict[str, pd.Series]]) -> pd.DataFrame:
    """The net P&L series side by side on the union of their dates (index ``date``)."""
    columns = {f"{book}:{strategy}": pnl for book, by in net_pnl.items() for strategy, pnl in by.items()}
    if not columns:
        return pd.DataFrame(index=pd.DatetimeIndex([], name="date"))
    return pd.concat(columns, axis=1).sort_index().rename_axis("date")


# ----------------------------------------------------------------------------------------------
# Plots


def _render_plots(result: RunResult, net_pnl: dict[str, dict[str, pd.Series]]) -> list[Plot]:
    """Every figure of the report in page order; a figure without data becomes a note saying why."""
    figures = []
    skipped = {book: run.skipped for book, run in _books(result).items()} | {"portfolio": None}
    for book, by_strategy in net_pnl.items():
        name, filename = BOOK_TITLES[book], f"equity_{book.lower()}.png"
        title = f"{name}: equity and drawdown, net of costs"
        series = {s: pnl for s, pnl in by_strategy.items() if len(pnl)}
        if skipped[book]:
            figures.append(Plot(title, filename, None, f"{name} skipped: {skipped[book]}"))
        elif not series:
            figures.append(Plot(title, filename, None, f"{name}: no daily P&L in this run."))
        else:
            figures.append(Plot(title, filename, plots.equity_drawdown_png(series, name)))

    title = "Book A: predicted vs realised vol gap"
    fa = result.forecasts_a
    if fa.empty:
        figures.append(Plot(title, "forecast_scatter_a.png", None, f"{title}: no Book A forecasts in this run."))
    else:
        r2 = {m: result.forecast_metrics.get("A", {}).get(m, {}).get("all", {}).get("r2_oos") for m in fa["model"].unique()}
        by_model = {m: rows for m, rows in fa.groupby("model", sort=False)}
        panels = {f"{m} (R² OOS {fmt(r2[m], 'metric')})": rows["mu"].to_numpy() for m, rows in by_model.items()}
        png = plots.forecast_scatter_png(next(iter(by_model.values()))["y_true"].to_numpy(), panels)
        figures.append(Plot(title, "forecast_scatter_a.png", png))

    title = "Book B: calibration of Head B"
    fb = result.forecasts_b
    fb = fb[fb["y_true"].notna()]
    if fb.empty:
        figures.append(Plot(title, "calibration_b.png", None, f"{title}: no Book B forecasts in this run."))
    else:
        tables = {m: calibration_table(rows["y_true"], rows["proba"]) for m, rows in fb.groupby("model", sort=False)}
        figures.append(Plot(title, "calibration_b.png", plots.calibration_png(tables)))

    if result.symbol_table:
        table = result.symbol_table
        symbols = [row["symbol"] for row in table]
        panels = {"Book A R² (OOS)": {"candidate": [row["r2_candidate"] for row in table],
                                      "best other model": [row["r2_best_other"] for row in table]},
                  "Book A net Sharpe": {"candidate": [row["net_sharpe_A_candidate"] for row in table],
                                        "always short": [row["net_sharpe_A_always_short"] for row in table]}}
        figures.append(Plot("Per symbol: Book A", "per_symbol_a.png", plots.symbol_bars_png(symbols, panels)))
    if not result.act_segments:
        title = "ACT segments used"
        figures.append(Plot(title, "act_segments.png", None, f"{title}: no model with learned halting ran."))
    for model, segments in result.act_segments.items():
        title = f"{model}: ACT segments used"
        figures.append(Plot(title, f"act_segments_{model}.png", plots.segments_histogram_png(segments, model)))
    return figures


# ----------------------------------------------------------------------------------------------
# summary.json


def _summary_json(result: RunResult) -> str:
    """The summary as strict, indented JSON text (see the module docstring for its content)."""
    segments = {}
    for model, steps in result.act_segments.items():
        values, counts = np.unique(np.asarray(steps, dtype=int), return_counts=True)
        segments[model] = {"n_samples": int(counts.sum()), "counts": dict(zip(values.tolist(), counts.tolist()))}
    summary = {
        "preset": result.preset,
        "config": result.config,
        "data": result.data,
        "folds": result.folds,
        "n_trials": result.n_trials,
        "n_trials_source": result.n_trials_source,
        "timings": result.timings,
        "forecast_metrics": result.forecast_metrics,
        "trading_metrics": {"A": result.book_a.metrics, "B": result.book_b.metrics},
        "portfolio_metrics": result.portfolio_metrics,
        "skipped": {book: run.skipped for book, run in _books(result).items()},
        "n_trades": {book: {s: len(t) for s, t in run.trades.items()} for book, run in _books(result).items()},
        "verdict": result.verdict,
        "act_segments": segments,
        "by_symbol": result.by_symbol,
        "symbol_table": result.symbol_table,
    }
    return json.dumps(json_safe(summary, "summary"), indent=2, allow_nan=False, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# report.html


def _html_page(result: RunResult, figures: list[Plot]) -> str:
    """The self-contained report page (see the module docstring)."""
    folds = pd.DataFrame([_flat_fold(fold) for fold in result.folds])
    body = [
        "<h1>HRM Dual-Book Trading Lab: run report</h1>",
        *_verdict_html(result.verdict),
        *_symbols_html(result.symbol_table),
        "<h2>Run</h2>",
        html_table(["Item", "Value"], [["Preset", fmt(result.preset)], ["Folds", fmt(len(result.folds))],
                                        ["Trials (for the DSR)", f"{fmt(result.n_trials)} ({result.n_trials_source})"],
                                        ["Book A fills", fill_rule(result)]]),
        "<h3>Data</h3>",
        html_table(["Field", "Value"], [[k, fmt(v)] for k, v in flatten(result.data).items()]),
        "<h3>Folds</h3>",
        html_table(list(folds.columns), [[fmt(v) for v in row] for row in folds.itertuples(index=False)]),
        "<h3>Timings (seconds)</h3>",
        html_table(["Step", "Seconds"], [[k, fmt(v, "ratio")] for k, v in result.timings.items()]),
        "<h2>Forecast metrics (all test rows pooled)</h2>",
    ]
    for book in ("A", "B", *(k for k in result.forecast_metrics if k not in ("A", "B"))):
        title = FORECAST_TITLES.get(book, book)
        body.append(f"<h3>{html.escape(title)}</h3>")
        by_model = result.forecast_metrics.get(book, {})
        if not by_model:
            body.append(f'<p class="note">{html.escape(title)}: no forecast metrics in this run.</p>')
            continue
        keys = list(dict.fromkeys(k for folds_ in by_model.values() for k in folds_.get("all", {})))
        rows = [
            [model, *(fmt(folds_.get("all", {}).get(k), "metric") for k in keys)] for model, folds_ in by_model.items()
        ]
        body.append(html_table(["Model", *(METRIC_LABELS.get(k, k) for k in keys)], rows))

    body.append("<h2>Trading metrics per strategy (daily P&amp;L per unit of capital, after costs)</h2>")
    n_trades = {book: {s: len(t) for s, t in run.trades.items()} for book, run in _books(result).items()}
    rows = [
        [BOOK_TITLES[book], strategy, *(fmt(metrics.get(k), kind) for k, _, kind in TRADING_COLUMNS),
         fmt(n_trades.get(book, {}).get(strategy))]
        for book, by_strategy in _trading_metrics(result).items()
        for strategy, metrics in by_strategy.items()
    ]
    body.append(html_table(["Book", "Strategy", *(title for _, title, _ in TRADING_COLUMNS), "Trades"], rows))
    for book, run in _books(result).items():
        if run.skipped:
            body.append(f'<p class="note">{html.escape(BOOK_TITLES[book])} skipped: {html.escape(run.skipped)}</p>')


    body.append("<h2>Plots</h2>")
    for plot in figures:
        body.append(f"<h3>{html.escape(plot.title)}</h3>")
        if plot.png is None:
            body.append(f'<p class="note">{html.escape(plot.note or "")}</p>')
        else:
            data = base64.b64encode(plot.png).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(plot.title)}">'
                        f"<figcaption>{html.escape(plot.filename)}</figcaption></figure>")

    config = json.dumps(json_safe(result.config, "config"), indent=2, allow_nan=False, ensure_ascii=False)
    body.append("<h2>Configuration</h2><details><summary>Resolved config</summary>"
                f"<pre>{html.escape(config)}</pre></details>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>HRM Dual-Book Trading Lab: {html.escape(result.preset)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _symbols_html(table: list[dict]) -> list[str]:
    """A universe's per-symbol table (empty for a single asset)."""
    if not table:
        return []
    columns = list(dict.fromkeys(k for row in table for k in row))
    return ["<h2>Per symbol (each symbol's own test rows and verdict)</h2>",
            html_table(columns, [[fmt(row.get(c), "metric") for c in columns] for row in table])]


def fill_rule(result: RunResult) -> str:
    """Which close Book A's straddles were filled at (the config's ``book_a.entry_lag_days``), in words."""
    lag = result.config["book_a"]["entry_lag_days"]
    if lag == 0:
        return "Book A fills at the signal's own close (entry_lag_days=0, optimistic)"
    return f"Book A fills at the close {lag} session(s) after the signal (entry_lag_days={lag})"


def _verdict_html(verdict: dict) -> list[str]:
    """The verdict's sentences, then every comparison of the candidate with each baseline."""
    body = ["<h2>Verdict</h2>", "<ul>" + "".join(f"<li>{html.escape(line.lstrip('- '))}</li>"
                                                  for line in verdict["lines"]) + "</ul>"]
    rows = []
    for section, part in verdict.get("sections", {}).items():
        for baseline, comparison in part["versus"].items():
            for name, test in comparison["tests"].items():
                headline = baseline == part["best_baseline"] and name == comparison["headline_test"]
                rows.append([section, baseline + (" (best)" if baseline == part["best_baseline"] else ""), name,
                             fmt(test["difference"], "metric"), fmt(test["ci_low"], "metric"),
                             fmt(test["ci_high"], "metric"), fmt(test["p_value"], "prob"),
                             fmt(comparison.get("p_value_holm"), "prob") if headline else "",
                             test.get("reason") or ""])
    if rows:
        body.append("<h3>Every comparison (difference = candidate - baseline; p two-sided, unadjusted unless Holm)</h3>")
        body.append(html_table(["Section", "Baseline", "Test", "Difference", "CI low", "CI high", "p", "p (Holm)",
                                "Note"], rows))
    return body
