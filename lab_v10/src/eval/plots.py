"""PNG figures of one run for the report, returned as bytes (the report writes them and embeds them).

Every figure is a standalone :class:`matplotlib.figure.Figure` drawn on its own Agg canvas
(:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`): pyplot is never imported, so no figure is
registered in pyplot's global state, none can leak or be shown, the process-wide backend is left alone,
and each figure is freed with its object once its PNG bytes are returned.

Units follow :mod:`lab_v10.src.eval.results`: P&L is per unit of capital (0.01 = +1% of capital), vol
gaps are in annualized vol points, probabilities are in [0, 1].
"""
from __future__ import annotations

from io import BytesIO

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lab_v10.src.eval.metrics import equity_curve

DPI = 110
PANEL_COLUMNS = 3  # model panels per row in the scatter and calibration figures


def drawdown_curve(returns: pd.Series | np.ndarray) -> np.ndarray:
    """Drawdown of the non-compounded equity 1 + cumsum(returns) below its running peak, per day (<= 0).

    The peak starts at the initial equity 1, as in :func:`~lab_v10.src.eval.metrics.max_drawdown`, so the
    curve's minimum is that function's value. Units: fractions of initial capital.
    """
    equity = equity_curve(returns)
    return equity - np.maximum.accumulate(np.maximum(equity, 1.0))


def equity_drawdown_png(net_pnl: dict[str, pd.Series], title: str) -> bytes:
    """Equity (top) and drawdown (bottom) of each strategy's daily net P&L, one line per strategy.

    ``net_pnl`` maps a strategy name to its daily net P&L per unit of capital indexed by date (at least
    one day each). Equity is non-compounded, 1 + cumulative sum; drawdown is in % of initial capital.
    """
    if not net_pnl:
        raise ValueError(f"{title}: expected at least one strategy's P&L to plot, got none")
    fig = _figure(9.0, 6.5)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for strategy, pnl in net_pnl.items():
        ax_eq.plot(pnl.index, equity_curve(pnl), label=strategy, linewidth=1.3)
        ax_dd.plot(pnl.index, 100.0 * drawdown_curve(pnl), label=strategy, linewidth=1.1)
    ax_eq.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax_eq.set_title(f"{title}: equity net of costs (1 + cumulative daily P&L, x initial capital)")
    ax_eq.set_ylabel("Equity (x initial capital)")
    ax_eq.legend(loc="upper left", fontsize=8, ncols=2)
    ax_dd.set_title("Drawdown below running peak (% of initial capital)")
    ax_dd.set_ylabel("Drawdown (%)")
    ax_dd.set_xlabel("Date")
    for ax in (ax_eq, ax_dd):
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def forecast_scatter_png(y_true: np.ndarray, predictions: dict[str, np.ndarray]) -> bytes:
    """Book A: predicted vol gap (x) against the realised gap (y), one panel per model, with the 45° line.

    ``predictions`` maps a panel title (model name, optionally with its score) to the forecast mean, one
    value per element of ``y_true``; all values in annualized vol points.
    """
    if not predictions:
        raise ValueError("forecast scatter: expected at least one model's predictions, got none")
    y = np.asarray(y_true, dtype=float)
    fig, axes = _panels(len(predictions), height=4.0)
    for ax, (label, mu) in zip(axes, predictions.items()):
        mu = np.asarray(mu, dtype=float)
        ax.scatter(mu, y, s=9, alpha=0.5, edgecolors="none")
        low, high = float(min(mu.min(), y.min())), float(max(mu.max(), y.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=0.9, linestyle="--", label="45° (perfect)")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("Predicted gap mu (vol points)")
        ax.set_ylabel("Realised gap RV - IV (vol points)")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Book A: predicted vs realised vol gap (annualized vol points, test rows)")
    return _png(fig)


def calibration_png(tables: dict[str, pd.DataFrame]) -> bytes:
    """Book B reliability diagram per model: observed frequency against mean forecast per probability bin
    (top) and the number of test minutes in each bin (bottom).

    ``tables`` maps a model name to its :func:`~lab_v10.src.eval.metrics.calibration_table`.
    """
    if not tables:
        raise ValueError("calibration: expected at least one model's calibration table, got none")
    n_rows, n_cols = _grid_shape(len(tables))
    fig = _figure(4.2 * n_cols, 5.2 * n_rows)
    grid = fig.add_gridspec(2 * n_rows, n_cols, height_ratios=[2, 1] * n_rows)
    for k, (model, table) in enumerate(tables.items()):
        row, col = divmod(k, n_cols)
        ax_rel = fig.add_subplot(grid[2 * row, col])
        ax_cnt = fig.add_subplot(grid[2 * row + 1, col], sharex=ax_rel)
        ax_rel.plot([0, 1], [0, 1], color="black", linewidth=0.9, linestyle="--", label="perfectly calibrated")
        ax_rel.plot(table["mean_proba"], table["frac_positive"], marker="o", label=model)
        ax_rel.set(xlim=(0, 1), ylim=(0, 1), title=model, ylabel="Observed frequency of yB = 1")
        ax_rel.legend(loc="upper left", fontsize=8)
        ax_cnt.bar(table["lower"], table["count"], width=table["upper"] - table["lower"], align="edge",
                   edgecolor="white")
        ax_cnt.set(xlabel="Predicted probability (bin)", ylabel="Minutes (count)")
        for ax in (ax_rel, ax_cnt):
            ax.grid(alpha=0.3)
    fig.suptitle("Book B: reliability of P(downside barrier first), test minutes")
    return _png(fig)


def segments_histogram_png(segments: np.ndarray, model: str) -> bytes:
    """Histogram of the ACT segments ``model`` ran per test sample (integers >= 1), one bar per count."""
    values, counts = np.unique(np.asarray(segments, dtype=int), return_counts=True)
    if values.size == 0:
        raise ValueError(f"{model}: ACT segments: expected at least one test sample, got none")
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    ax.bar(values, counts, width=0.8)
    ax.set_xticks(values)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{model}: ACT segments used per test sample and member (learned halting)")
    ax.set_xlabel("Segments run (count)")
    ax.set_ylabel("Test samples (count)")
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def symbol_bars_png(symbols: list[str], panels: dict[str, dict[str, list[float | None]]]) -> bytes:
    """Per-symbol grouped bars, one panel per metric: ``panels[title][series]`` holds one value per symbol of
    ``symbols`` (None: not defined, drawn as no bar). E.g. Book A R² and net Sharpe of the candidate and a
    baseline per symbol of a universe."""
    if not symbols or not panels:
        raise ValueError("per-symbol bars: expected at least one symbol and one metric, got none")
    fig, axes = _panels(len(panels), height=4.0)
    x = np.arange(len(symbols))
    for ax, (title, series) in zip(axes, panels.items()):
        width = 0.8 / max(len(series), 1)
        for k, (label, values) in enumerate(series.items()):
            heights = np.array([np.nan if v is None else v for v in values], dtype=float)
            ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(heights), width=width, label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, symbols, rotation=45, ha="right")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Per symbol: test rows of each symbol")
    return _png(fig)


def _figure(width: float, height: float) -> Figure:
    """A standalone figure (inches) on its own Agg canvas, with a constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) holding ``n`` >= 1 panels, at most :data:`PANEL_COLUMNS` per row."""
    n_cols = min(n, PANEL_COLUMNS)
    return -(-n // n_cols), n_cols


def _panels(n: int, height: float) -> tuple[Figure, list]:
    """A figure with ``n`` axes laid out ``PANEL_COLUMNS`` per row; the axes in reading order."""
    n_rows, n_cols = _grid_shape(n)
    fig = _figure(4.2 * n_cols, height * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, list(axes[:n])


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes at :data:`DPI` (no software metadata, so equal figures give equal bytes)."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
