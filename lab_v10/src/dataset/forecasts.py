"""The one model interface of the lab: every forecaster (baselines, HRM, TimeSeriesHRM) is a
:class:`Forecaster` and answers with :class:`Forecasts`.

A model is fitted on one walk-forward fold of a :class:`~lab_v10.src.dataset.dataset.Dataset` and then asked
for forecast dates (the fold's test dates). Time semantics are the dataset's (docs/design.md section 3):

- Book A: for each forecast date *t*, ``mu`` and ``sigma`` of ``yA(t)`` in vol points, reading daily rows
  ``<= t`` only.
- Book B: for every minute *m* of the session *d* that follows each forecast date, ``P(yB(d, m) = 1)``,
  reading daily rows ``<= d-1`` and minutes ``<= m`` of *d*.

Models are built by name in :mod:`lab_v10.src.models.registry`; the pipeline runs them all in one loop and
scores them on identical rows. In a universe run, each model also runs pooled across symbols
(:class:`PooledForecaster`), beside its per-symbol fits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from lab_v10.src.dataset.dataset import Dataset
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.panel import Panel

BOOKS = ("A", "B")


@dataclass
class Forecasts:
    """One model's answer for a set of forecast dates.

    - ``mu``, ``sigma``: Series indexed by forecast date, vol points, ``sigma > 0``; None when the model
      does not forecast Book A or the data has no gap label.
    - ``proba``: Series indexed by minute timestamp, in [0, 1], one value per minute of the paired sessions;
      None when the model does not forecast Book B or there are no minute bars.
    - ``diagnostics``: optional per-sample tables keyed by name, e.g. ``act_segments_A`` (forecast date x
      ensemble member: ACT segments used) and ``act_segments_B`` (session date x member).
    """

    mu: pd.Series | None = None
    sigma: pd.Series | None = None
    proba: pd.Series | None = None
    diagnostics: dict[str, pd.DataFrame] = field(default_factory=dict)


class Forecaster(Protocol):
    """A model of one or both books.

    ``name``: the registry name (``hrm``, ``har``, ...). ``books``: the books it forecasts (``"A"``, ``"B"``).
    """

    name: str
    books: tuple[str, ...]

    def fit(self, data: Dataset, fold: Fold) -> Forecaster:
        """Fit on the fold's training dates (Book B: the minutes of their paired sessions); the validation
        dates may early-stop, select hyper-parameters and calibrate ``sigma``, never fit preprocessing.
        Books the data cannot support (no ``yA``, no minutes) are skipped. Returns ``self``."""
        ...

    def predict(self, data: Dataset, dates: pd.DatetimeIndex) -> Forecasts:
        """Forecasts for ``dates`` (sample dates of ``data``): Book A at each date, Book B at every minute of
        the sessions paired with them (module docstring for what each may read)."""
        ...


class PooledForecaster(Protocol):
    """A model fitted once per fold on every symbol of a universe panel (one network or regression for all;
    :mod:`lab_v10.src.dataset.panel`), then asked for each symbol's forecasts, with the time semantics above.

    ``fit(panel, folds)``: ``folds`` maps each symbol taking part in the panel fold to its restricted fold
    (:func:`~lab_v10.src.dataset.panel.symbol_folds`); the same training/validation rules as
    :meth:`Forecaster.fit` per symbol; preprocessing is fitted per symbol on its training rows.
    ``predict(panel, symbol, dates)``: as :meth:`Forecaster.predict` on that symbol's dataset.
    """

    name: str
    books: tuple[str, ...]

    def fit(self, panel: Panel, folds: dict[str, Fold]) -> PooledForecaster:
        ...

    def predict(self, panel: Panel, symbol: str, dates: pd.DatetimeIndex) -> Forecasts:
        ...
