"""What one pipeline run produces: the hand-off from ``pipeline.run`` to ``eval.report``.

Every model is scored on identical test rows: the forecast tables are long, one row per test sample and
model with the truth beside the forecast, and the pipeline refuses a model that misses a test row.

Units: forecasts of ``yA`` in vol points (annualized %); probabilities in [0, 1]; every P&L series is a
daily return per unit of capital (0.01 = +1% of capital), indexed by session date.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class BookRun:
    """One book's trading results for each strategy (a model's signals, or a rule such as always-short).

    ``daily[strategy]``: DataFrame indexed by date with ``gross_pnl``, ``costs``, ``net_pnl`` (fractions of
    capital) and ``turnover``; ``trades[strategy]``: the simulator's trade table; ``metrics[strategy]``: the
    dict from ``eval.metrics.trading_metrics``; ``skipped``: a sentence when the book could not run (e.g.
    no minute bars), else None.
    """

    daily: dict[str, pd.DataFrame] = field(default_factory=dict)
    trades: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class RunResult:
    """Everything the report needs.

    - ``config``: the resolved config as a plain dict; ``preset``: which preset file was used and why.
    - ``data``: description of the inputs (source, rows, date ranges, sessions, coverage, label balance).
    - ``folds``: one dict per walk-forward fold (number, train/val/test periods, sizes, purged, embargoed).
    - ``forecasts_a``: one row per test date and model: ``date``, ``fold``, ``model``, ``y_true``,
      ``train_mean`` (the fold's mean training label, the R^2 benchmark), ``mu``, ``sigma`` (vol points).
    - ``forecasts_b``: one row per test minute and model: ``timestamp``, ``session``, ``fold``, ``model``,
      ``y_true`` (0/1, NaN where the label horizon runs past the close: traded, not scored),
      ``setup_signal``, ``proba``.
    - ``forecast_metrics``: ``{"A"|"B": {model: {"fold_<k>": metrics, "all": metrics}}}``.
    - ``book_a``, ``book_b``: per-strategy trading results; ``portfolio``: per-strategy combined results
      (daily DataFrame with at least ``portfolio`` and the weights) and ``portfolio_metrics``.
    - ``verdict``: the candidate (the HRM) against the best baseline of each book, with differences,
      confidence intervals and p-values (:func:`lab_v10.src.eval.verdict.build_verdict`).
    - ``act_segments``: per model with learned halting (``hrm``, ``tshrm``), the ACT segments used per test
      sample and ensemble member.
    - ``n_trials``: the number of configurations tried (1 for a single run; a sweep's count otherwise),
      used for the deflated Sharpe ratio; ``n_trials_source``: where that count came from, in words.
    - Universe runs only (else empty): the forecast tables carry a ``symbol`` column, the books, portfolio,
      metrics and verdict above are the panel's (:mod:`lab_v10.src.eval.universe_scoring`), ``by_symbol``
      holds each symbol's metrics and verdict, ``symbol_table`` one summary row per symbol.
    """

    config: dict
    preset: str
    data: dict
    folds: list[dict]
    forecasts_a: pd.DataFrame
    forecasts_b: pd.DataFrame
    forecast_metrics: dict[str, dict[str, dict]]
    book_a: BookRun
    book_b: BookRun
    portfolio: dict[str, pd.DataFrame]
    portfolio_metrics: dict[str, dict]
    verdict: dict
    act_segments: dict[str, np.ndarray]
    n_trials: int = 1
    n_trials_source: str = "a single run"
    by_symbol: dict[str, dict] = field(default_factory=dict)
    symbol_table: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
