"""Scoring a universe: the symbols' books pooled, the portfolio across symbols and books, the pooled
verdict, and the per-symbol summary table (docs/design.md section 5, "Universe").

- Pooled books: per strategy, the equal-weight mean of the daily P&L (gross, costs, net, turnover) of the
  symbols that trade it on that day (one unit of capital split equally among them), with every symbol's
  trades; its metrics are deflated like a single asset's.
- Portfolio: one stream per symbol and book (``SYM:a``, ``SYM:b``), combined per strategy by
  :func:`~lab_v10.src.books.portfolio.combine_books` (vol targeting on past returns only) with base weights
  ``weight_a / (Book A streams)`` and ``weight_b / (Book B streams)``.
- Pooled verdict: the forecast tests on the stacked rows of every symbol (losses averaged across symbols per
  date for Diebold-Mariano; AUC and log loss over symbol-sessions), trading tests on the pooled books and
  the portfolio (:func:`~lab_v10.src.eval.verdict.build_verdict`).
"""
from __future__ import annotations

import pandas as pd

from lab_v10.src.config import LabConfig
from lab_v10.src.eval.results import BookRun
from lab_v10.src.eval.scoring import AssetScores, add_book_metrics, combine_portfolio, score_forecasts
from lab_v10.src.eval.verdict import build_verdict

POOLED_COLUMNS = ["gross_pnl", "costs", "net_pnl", "turnover"]


def pool_books(books: dict[str, BookRun], book: str) -> BookRun:
    """The symbols' runs of one book pooled per strategy (module docstring); skipped when no symbol ran it."""
    ran = {sym: b for sym, b in books.items() if b.skipped is None}
    if not ran:
        prefix = f"Book {book} skipped: "
        reasons = sorted({b.skipped.removeprefix(prefix) for b in books.values() if b.skipped})
        return BookRun(skipped=f"Book {book} skipped on every symbol ({'; '.join(reasons)})")
    pooled = BookRun()
    names = list(dict.fromkeys(n for b in ran.values() for n in b.daily))
    for name in names:
        frames = {sym: b.daily[name][POOLED_COLUMNS] for sym, b in ran.items() if name in b.daily}
        stacked = pd.concat(frames.values(), keys=list(frames))  # (symbol, date) rows
        pooled.daily[name] = stacked.groupby(level=1).mean().sort_index()
        trades = [b.trades[name].assign(symbol=sym) for sym, b in ran.items() if name in b.trades]
        pooled.trades[name] = pd.concat(trades, ignore_index=True) if trades else pd.DataFrame()
    return pooled


def score_universe(per_symbol: dict[str, AssetScores], forecasts_a: pd.DataFrame, forecasts_b: pd.DataFrame,
                   cfg: LabConfig, n_trials: int, sweep: dict | None) -> AssetScores:
    """The panel's scores from the symbols' (module docstring); forecast tables with a ``symbol`` column."""
    book_a = pool_books({s: sc.book_a for s, sc in per_symbol.items()}, "A")
    book_b = pool_books({s: sc.book_b for s, sc in per_symbol.items()}, "B")
    for book in (book_a, book_b):
        add_book_metrics(book, n_trials)
    streams = {f"{s}:{k}": b for s, sc in per_symbol.items() for k, b in (("a", sc.book_a), ("b", sc.book_b))
               if b.daily}
    count = {k: sum(name.endswith(f":{k}") for name in streams) for k in ("a", "b")}
    weight = {"a": cfg.portfolio.weight_a, "b": cfg.portfolio.weight_b}
    base = {name: weight[name[-1]] / count[name[-1]] for name in streams}
    portfolio, portfolio_metrics = combine_portfolio(streams, cfg, n_trials, base)
    scores = AssetScores(book_a, book_b, portfolio, portfolio_metrics, score_forecasts(forecasts_a, forecasts_b))
    scores.verdict = build_verdict(forecasts_a, forecasts_b, book_a, book_b, portfolio, cfg.labels.horizon_days, sweep)
    return scores


def symbol_table(per_symbol: dict[str, AssetScores], forecasts_a: pd.DataFrame) -> list[dict]:
    """One row per symbol: test days, the candidate's Book A R^2 and the best other model's, Book A net
    Sharpe of the candidate and of always-short, and the conclusion (Holm-adjusted, in words) of each
    section of the symbol's verdict."""
    rows = []
    for sym, scores in per_symbol.items():
        model = scores.verdict.get("model")
        r2 = {m: v["all"].get("r2_oos") for m, v in scores.forecast_metrics.get("A", {}).items()}
        others = {m: v for m, v in r2.items() if m != model and v is not None}
        best = max(others, key=others.get) if others else None
        sharpe = {m: v.get("net_sharpe") for m, v in scores.book_a.metrics.items()}
        test_days = int((forecasts_a["symbol"] == sym).sum() // max(forecasts_a["model"].nunique(), 1)) \
            if not forecasts_a.empty else 0
        sections = scores.verdict.get("sections", {})
        rows.append({
            "symbol": sym,
            "test_days": test_days,
            "candidate": model,
            "r2_candidate": r2.get(model),
            "best_other": best,
            "r2_best_other": others.get(best) if best else None,
            "net_sharpe_A_candidate": sharpe.get(model),
            "net_sharpe_A_always_short": sharpe.get("always_short"),
            **{f"verdict_{key}": section["versus"][section["best_baseline"]].get("conclusion_holm")
               for key, section in sections.items()},
        })
    return rows


def symbol_summary(scores: AssetScores) -> dict:
    """A symbol's scores for summary.json: forecast metrics, trading metrics per book, portfolio metrics and
    its verdict."""
    return {"forecast_metrics": scores.forecast_metrics,
            "trading_metrics": {"A": scores.book_a.metrics, "B": scores.book_b.metrics},
            "portfolio_metrics": scores.portfolio_metrics, "verdict": scores.verdict}

