"""Training and validation rows of one fit, checked: the input checks every model shares (baselines, HRM).

Data conventions (docs/design.md sections 2 and 3):

- ``X_daily``: DataFrame indexed by session date (tz-naive); row *t* holds the features known at the close
  of day *t* (:mod:`lab_v10.src.features.daily`).
- ``yA``: Series indexed by session date, ``yA(t) = RV(t+1..t+h) - IV(t)`` in vol points (annualized %),
  NaN on the last ``h`` rows (:mod:`lab_v10.src.features.labels`). It may cover more dates than
  ``X_daily`` (the feature warm-up); only the sample dates are looked up.
- ``X_intraday``: DataFrame indexed by tz-aware minute timestamps (bar starts, exchange time) with the model
  columns :data:`~lab_v10.src.features.intraday.INTRADAY_MODEL_COLUMNS` and the state columns, including
  ``session`` (tz-naive session date). Row *m* is known at the close of minute *m*.
- ``yB``: Series indexed by minute timestamps, 0/1 (downside barrier first or not) or NaN (horizon runs past
  the close); it must have a row for every minute of ``X_intraday`` in the sample sessions.
- ``train_idx``, ``val_idx``: DatetimeIndex of session dates, the walk-forward fold's sample dates,
  disjoint. A pooled panel (:mod:`lab_v10.src.dataset.panel`) stacks symbols: its Book A tables and keys
  are indexed by a ``(symbol, date)`` MultiIndex instead, with the same checks. Book A samples are those dates (every one needs a finite label: purge unlabeled dates first).
  Book B samples are the minutes of those sessions whose ``yB`` is not NaN (NaN labels are masked, not an
  error); every date must be a session of ``X_intraday`` (intersect the fold's dates with the minute
  sessions first).

Bad input raises ValueError naming the column, date or minute and what was expected: NaN features,
duplicate or misaligned indexes, sample dates missing from the features or labels, NaN Book A labels on a
sample date, labels other than 0/1/NaN, overlapping train and validation dates.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

class Samples(NamedTuple):
    """Training and validation rows of one fit: features (float64, finite) and labels (finite)."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_val: pd.DataFrame
    y_val: pd.Series


def feature_frame(X: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    """``X[columns]`` as float64, checked: every column present, index unique, every value finite.

    ``name`` names the table in errors (``X_daily`` or ``X_intraday``). Raises ValueError naming the first
    missing column, duplicate index label, or NaN/inf cell (its column and index label).
    """
    if not isinstance(X, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(X).__name__}")
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"{name}: missing feature column {missing[0]!r} (expected columns {list(columns)})")
    if not X.index.is_unique:
        raise ValueError(f"{name}: duplicate index label {X.index[X.index.duplicated()][0]} (expected one row each)")
    try:
        values = X[list(columns)].to_numpy(dtype=float)  # (n, F)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: feature columns {list(columns)} must be numeric") from None
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: feature {columns[col]!r} at {X.index[row]} is {values[row, col]} (expected a finite number)"
        )
    return pd.DataFrame(values, index=X.index, columns=list(columns))


def show_key(key) -> str:
    """A sample key for a message: ``YYYY-MM-DD``, or ``SYMBOL YYYY-MM-DD`` for a panel's ``(symbol, date)``."""
    if isinstance(key, tuple):
        return " ".join(show_key(part) for part in key)
    return str(key.date()) if isinstance(key, pd.Timestamp) else str(key)


def sample_dates(dates: pd.DatetimeIndex, name: str) -> pd.DatetimeIndex:
    """``dates`` as a DatetimeIndex of unique session dates (or a panel's unique ``(symbol, date)``
    MultiIndex); ValueError on non-dates, NaT or duplicates."""
    if isinstance(dates, pd.MultiIndex):
        if not dates.is_unique:
            raise ValueError(f"{name}: duplicate sample {show_key(dates[dates.duplicated()][0])} (expected unique keys)")
        return dates
    try:
        dates = pd.DatetimeIndex(dates)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected session dates, got values that do not parse as dates") from None
    if dates.hasnans:
        raise ValueError(f"{name}: expected session dates, got NaT")
    if not dates.is_unique:
        dup = dates[dates.duplicated()][0]
        raise ValueError(f"{name}: duplicate session date {dup.date()} (expected unique dates)")
    return dates


def fold_dates(train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """Checked ``(train_idx, val_idx)``: unique dates each, at least one training date, no date in both."""
    train, val = sample_dates(train_idx, "train_idx"), sample_dates(val_idx, "val_idx")
    if train.size == 0:
        raise ValueError("train_idx: expected at least one training date, got none")
    both = train.intersection(val)
    if both.size:
        raise ValueError(
            f"val_idx: date {show_key(both[0])} is also in train_idx (expected disjoint train and validation dates)"
        )
    return train, val


def _label_positions(labels: pd.Series, keys: pd.Index, label_name: str, what: str) -> np.ndarray:
    """Positions of ``keys`` in ``labels.index``; ValueError naming the first key without a label row."""
    if not isinstance(labels, pd.Series):
        raise ValueError(f"{label_name}: expected a pandas Series, got {type(labels).__name__}")
    if not labels.index.is_unique:
        dup = labels.index[labels.index.duplicated()][0]
        raise ValueError(f"{label_name}: duplicate index label {dup} (expected one label per {what})")
    pos = labels.index.get_indexer(keys)
    if (pos < 0).any():
        raise ValueError(
            f"{label_name}: no label row for {what} {keys[np.flatnonzero(pos < 0)[0]]} "
            f"(expected {label_name} indexed like the features)"
        )
    return pos


def daily_samples(
    X_daily: pd.DataFrame,
    yA: pd.Series,
    train_idx: pd.DatetimeIndex,
    val_idx: pd.DatetimeIndex,
    columns: Sequence[str],
    require_val: bool,
) -> Samples:
    """Book A rows: ``X_daily[columns]`` and ``yA`` on the train and validation dates.

    Every date must be a row of ``X_daily`` and of ``yA`` with a finite label and finite features, else
    ValueError naming the date (and column). ``require_val``: raise when ``val_idx`` is empty.
    """
    train, val = fold_dates(train_idx, val_idx)
    if require_val and val.size == 0:
        raise ValueError("val_idx: expected at least one validation date (hyper-parameters are chosen on it), got none")
    if not isinstance(X_daily, pd.DataFrame) or not isinstance(X_daily.index, (pd.DatetimeIndex, pd.MultiIndex)):
        raise ValueError("X_daily: expected a DataFrame indexed by session date (DatetimeIndex)")
    if not X_daily.index.is_unique:
        dup = X_daily.index[X_daily.index.duplicated()][0]
        raise ValueError(f"X_daily: duplicate date {show_key(dup)} (expected one feature row per session)")
    parts = []
    for dates, role in ((train, "train"), (val, "validation")):
        rows = X_daily.index.get_indexer(dates)
        if (rows < 0).any():
            missing = dates[np.flatnonzero(rows < 0)[0]]
            raise ValueError(f"X_daily: no feature row for {role} date {show_key(missing)} (expected every sample date)")
        X = feature_frame(X_daily.iloc[rows], columns, "X_daily")
        y = yA.iloc[_label_positions(yA, dates, "yA", f"{role} date")].astype(float)
        nan = np.flatnonzero(~np.isfinite(y.to_numpy()))
        if nan.size:
            raise ValueError(
                f"yA: label at {role} date {show_key(dates[nan[0]])} is {y.iloc[nan[0]]} (expected a finite label; "
                "dates whose horizon runs past the data must be purged from the fold)"
            )
        parts += [X, pd.Series(y.to_numpy(), index=X.index, name="yA")]
    return Samples(*parts)


def intraday_samples(
    X_intraday: pd.DataFrame,
    yB: pd.Series,
    train_idx: pd.DatetimeIndex,
    val_idx: pd.DatetimeIndex,
    columns: Sequence[str],
) -> Samples:
    """Book B rows: the labelled minutes (``yB`` 0 or 1) of the train and validation sessions.

    Raises ValueError when a date is not a session of ``X_intraday``, ``yB`` lacks a row for one of their
    minutes or holds a value other than 0/1/NaN, a feature is not finite, the training minutes hold one
    class only, or the validation sessions have no labelled minute.
    """
    train, val = fold_dates(train_idx, val_idx)
    if val.size == 0:
        raise ValueError("val_idx: expected at least one validation session (early stopping and selection use it)")
    if not isinstance(X_intraday, pd.DataFrame) or "session" not in X_intraday.columns:
        raise ValueError("X_intraday: expected a DataFrame with a 'session' column (session date of each minute)")
    sessions = pd.DatetimeIndex(X_intraday["session"])
    parts = []
    for dates, role in ((train, "train"), (val, "validation")):
        known = dates.isin(sessions)
        if not known.all():
            raise ValueError(
                f"X_intraday: no minutes for {role} session {dates[~known][0].date()} "
                "(expected every sample date to be a session of the minute features)"
            )
        minutes = X_intraday.loc[sessions.isin(dates)]
        X = feature_frame(minutes, columns, "X_intraday")
        y = yB.iloc[_label_positions(yB, minutes.index, "yB", "minute")].to_numpy(dtype=float)
        labelled = np.isfinite(y)
        odd = np.flatnonzero(labelled & (y != 0.0) & (y != 1.0))
        if odd.size:
            raise ValueError(f"yB: label at minute {minutes.index[odd[0]]} is {y[odd[0]]} (expected 0, 1 or NaN)")
        if not labelled.any():
            raise ValueError(f"yB: the {dates.size} {role} sessions have no labelled minute (expected some 0/1 labels)")
        parts += [X.loc[labelled], pd.Series(y[labelled], index=X.index[labelled], name="yB")]
    if parts[1].nunique() < 2:
        raise ValueError(
            f"yB: every labelled training minute is {parts[1].iloc[0]:.0f} (expected both classes 0 and 1 to fit)"
        )
    return Samples(*parts)


def require_fitted(model: object, attribute: str) -> None:
    """NotFittedError (a ValueError) when ``model`` has not been fitted (``attribute`` unset)."""
    if not hasattr(model, attribute):
        raise NotFittedError(f"{type(model).__name__}: call fit before predicting")
