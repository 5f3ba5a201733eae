"""Combine the books' daily P&L into one portfolio.

Inputs are daily returns per unit of capital (fractions: 0.01 = +1% of capital) of each book, indexed by
session date. A book that does not trade on a day earns exactly 0 that day; a date is only admitted if it is
a session of at least one book, and every book's index must be a subset of the given ``calendar`` — a date
outside it is an error, not a silent fill.

Weights applied on day *t* use returns up to day *t−1* only (the decision is made at the close of *t−1*):

- ``fixed``: constant weights ``weight_a``, ``weight_b``.
- ``vol_target``: weight_k(t) = base_k · target_vol / σ_k(t−1), with σ_k the annualized standard deviation of
  book k's returns over the previous ``vol_lookback_days`` days (252-day year), capped at ``max_leverage``;
  0 until a full lookback window exists and whenever σ_k is 0 (a book that has never traded gets no
  leverage).
- The drawdown guard (both methods) halves all weights on day *t* when the portfolio's drawdown at the close
  of *t−1*, measured on its own non-compounded equity curve 1 + cumsum(returns), exceeds ``drawdown_guard``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab_v10.src.config import PortfolioConfig

TRADING_DAYS = 252


@dataclass(frozen=True)
class PortfolioResult:
    """``daily``: index date; columns ``ret_<book>`` (book returns), ``w_<book>`` (weights applied that day),
    ``portfolio`` (weighted return, fraction of capital), ``guard_on`` (bool)."""

    daily: pd.DataFrame

    @property
    def returns(self) -> pd.Series:
        return self.daily["portfolio"]


def align_book_returns(books: dict[str, pd.Series], calendar: pd.DatetimeIndex) -> pd.DataFrame:
    """Put each book's daily returns on ``calendar``; days a book did not trade are 0.

    Raises ValueError if a book has a date outside ``calendar`` or a non-finite return.
    """
    columns = {}
    for name, series in books.items():
        outside = series.index.difference(calendar)
        if len(outside):
            raise ValueError(f"book {name!r}: {len(outside)} dates not in the portfolio calendar, first {outside[0].date()}")
        values = series.to_numpy(dtype=float)
        if not np.isfinite(values).all():
            bad = series.index[~np.isfinite(values)][0]
            raise ValueError(f"book {name!r}: non-finite return on {bad.date()}")
        columns[name] = series.reindex(calendar, fill_value=0.0)
    return pd.DataFrame(columns, index=calendar)


def _vol_target_weights(returns: np.ndarray, base: np.ndarray, cfg: PortfolioConfig) -> np.ndarray:
    """(T, K) weights for day t from returns of days t−lookback..t−1 (rolling std, shifted by one day)."""
    frame = pd.DataFrame(returns)
    sigma = frame.rolling(cfg.vol_lookback_days).std(ddof=1).shift(1).to_numpy() * np.sqrt(TRADING_DAYS)  # (T, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(np.isfinite(sigma) & (sigma > 0), base * cfg.target_vol / sigma, 0.0)
    return np.minimum(weights, cfg.max_leverage)


def combine_books(books: dict[str, pd.Series], calendar: pd.DatetimeIndex, cfg: PortfolioConfig,
                  base_weights: dict[str, float] | None = None) -> PortfolioResult:
    """Weight the books' returns into a portfolio (see module docstring for the rules and time semantics).

    ``books`` maps ``"a"``/``"b"`` (or any names) to daily returns per unit of capital. Base weights:
    ``base_weights[name]`` when given (e.g. a universe's symbol-book streams), else ``weight_a``/``weight_b``
    for ``a``/``b`` and 1 for other names.
    """
    if not books:
        raise ValueError("combine_books: no book returns given")
    aligned = align_book_returns(books, calendar)
    names = list(aligned.columns)
    default = {"a": cfg.weight_a, "b": cfg.weight_b}
    base = np.array([(base_weights or {}).get(n, default.get(n, 1.0)) for n in names])
    returns = aligned.to_numpy()  # (T, K)
    if cfg.method == "fixed":
        weights = np.broadcast_to(base, returns.shape).copy()
    else:
        weights = _vol_target_weights(returns, base, cfg)

    # The drawdown guard feeds back on the portfolio's own past, so it runs day by day (T steps, not per bar).
    portfolio = np.zeros(len(returns))
    guard_on = np.zeros(len(returns), dtype=bool)
    equity, peak = 1.0, 1.0
    for t in range(len(returns)):
        guard_on[t] = (peak - equity) > cfg.drawdown_guard
        if guard_on[t]:
            weights[t] *= 0.5
        portfolio[t] = float(weights[t] @ returns[t])
        equity += portfolio[t]
        peak = max(peak, equity)

    daily = pd.DataFrame(
        {**{f"ret_{n}": aligned[n] for n in names}, **{f"w_{n}": weights[:, i] for i, n in enumerate(names)}},
        index=calendar,
    )
    daily["portfolio"] = portfolio
    daily["guard_on"] = guard_on
    return PortfolioResult(daily=daily)
