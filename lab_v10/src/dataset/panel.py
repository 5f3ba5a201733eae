"""The panel of a universe run: one :class:`~lab_v10.src.dataset.dataset.Dataset` per symbol on one calendar
(docs/design.md section 3, "Panel").

- Every symbol's features and labels are built on its own bars exactly as for a single asset (causal per
  symbol); nothing crosses symbols before a model pools them.
- The walk-forward folds are built by **calendar date** on the union of the symbols' sample dates, and each
  union date carries the latest label end of any symbol's sample on it, so purging by date removes a training
  date whose label (of any symbol) overlaps the validation or test period: no symbol's label leaks into
  another's fold.
- A symbol takes part in a fold (:func:`symbol_folds`) when it has at least ``panel.min_train_days``
  training dates, one validation date and one test date in it: a symbol with a shorter history joins the
  walk-forward when its data allows. Its fold is the panel fold restricted to its own sample dates.

Preprocessing that pooled models share across symbols (scalers) is fitted per symbol on that symbol's
training rows only (:func:`standardized_daily`).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from lab_v10.src.config import LabConfig
from lab_v10.src.data.market import Market
from lab_v10.src.dataset.dataset import Dataset, build_dataset, split_dates
from lab_v10.src.dataset.folds import Fold, walk_forward_folds

log = logging.getLogger("lab.panel")


@dataclasses.dataclass(frozen=True)
class Panel:
    """The symbols' datasets and the calendar the folds are built on.

    ``datasets``: symbol -> Dataset, in manifest order. ``sample_dates``: the union of the symbols' sample
    dates, ascending; ``span_end``: per union date, the latest ``span_end`` of any symbol's sample on it.
    """

    datasets: dict[str, Dataset]
    sample_dates: pd.DatetimeIndex
    span_end: pd.DatetimeIndex

    @property
    def symbols(self) -> list[str]:
        return list(self.datasets)


def build_panel(markets: dict[str, Market], cfg: LabConfig) -> Panel:
    """Each symbol's Dataset (:func:`~lab_v10.src.dataset.dataset.build_dataset`; errors are prefixed with the
    symbol) and the union calendar with the latest label end per date."""
    datasets = {}
    for name, market in markets.items():
        try:
            datasets[name] = build_dataset(market, cfg)
        except ValueError as exc:
            raise type(exc)(f"universe symbol {name}: {exc}") from None
    spans = pd.concat([pd.Series(d.span_end, index=d.sample_dates) for d in datasets.values()])
    latest = spans.groupby(level=0).max().sort_index()
    return Panel(datasets, pd.DatetimeIndex(latest.index), pd.DatetimeIndex(latest.to_numpy()))


def panel_folds(panel: Panel, cfg: LabConfig) -> list[Fold]:
    """Purged walk-forward folds on the panel's calendar (:func:`~lab_v10.src.dataset.folds.walk_forward_folds`)."""
    return walk_forward_folds(panel.sample_dates, panel.span_end, cfg.walkforward)


def restrict_fold(fold: Fold, calendar: pd.DatetimeIndex, data: Dataset) -> Fold:
    """``fold`` (positions into ``calendar``) as positions into ``data.sample_dates``: the same dates, those
    the symbol has. Periods are the symbol's own first and last dates of each set."""
    parts = []
    for idx in (fold.train_idx, fold.val_idx, fold.test_idx):
        pos = data.sample_dates.get_indexer(calendar[idx])  # (n,) -1 where the symbol has no sample
        parts.append(np.sort(pos[pos >= 0]))

    def period(pos: np.ndarray) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        return (data.sample_dates[pos[0]], data.sample_dates[pos[-1]]) if pos.size else None

    return dataclasses.replace(fold, train_idx=parts[0], val_idx=parts[1], test_idx=parts[2],
                               train_period=period(parts[0]), val_period=period(parts[1]),
                               test_period=period(parts[2]))


def symbol_folds(panel: Panel, fold: Fold, min_train_days: int) -> dict[str, Fold]:
    """The symbols taking part in ``fold`` (module docstring) -> their restricted folds, in panel order."""
    out = {}
    for name, data in panel.datasets.items():
        restricted = restrict_fold(fold, panel.sample_dates, data)
        if restricted.train_idx.size >= min_train_days and restricted.val_idx.size and restricted.test_idx.size:
            out[name] = restricted
    return out


def standardized_daily(panel: Panel, folds: dict[str, Fold]) -> dict[str, pd.DataFrame]:
    """Per symbol of ``folds``: its daily features standardized by the mean and standard deviation of its own
    training rows (a column constant on them keeps scale 1), all rows. Never reads validation or test rows."""
    out = {}
    for name, fold in folds.items():
        data = panel.datasets[name]
        train, _, _ = split_dates(data, fold)
        scaler = StandardScaler().fit(data.X_daily.loc[train].to_numpy(dtype=float))
        values = scaler.transform(data.X_daily.to_numpy(dtype=float))  # (rows, features)
        out[name] = pd.DataFrame(values, index=data.X_daily.index, columns=data.X_daily.columns)
    return out
