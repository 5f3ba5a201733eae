"""The dataset of one run: causal features, labels and the sample dates the folds are built on.

Time semantics (docs/design.md section 3):

- A daily sample is a forecast date *t* (a close) whose label ``yA(t)`` (days t+1..t+h) is defined; the
  walk-forward folds (:mod:`lab_v10.src.dataset.folds`) are built over these dates and purged by the label
  span ``t..t+h``.
- Book B's samples for forecast date *t* are the minutes of the next session *d* after *t*: their labels lie
  inside the yA span of *t*, so the same purging covers them; a model reads daily rows <= t = d-1 for them.

Everything that trains or scores a model (the pipeline, the sweep, DDP training, the benchmarks) builds its
samples here, so they cannot drift apart. When the HRM will run, the data is checked against its config as
soon as the daily features exist (:func:`check_hrm_inputs`), before any model trains.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lab_v10.src.config import HRMConfig, LabConfig
from lab_v10.src.data.market import Market
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.hrm_tokens import next_session as paired_session
from lab_v10.src.errors import ConfigError
from lab_v10.src.features.daily import build_daily_features
from lab_v10.src.features.intraday import build_intraday_features
from lab_v10.src.features.labels import make_daily_labels, make_intraday_labels


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Features, labels and samples of one run (all causal; see module docstring)."""

    market: Market
    X_daily: pd.DataFrame  # index date
    yA: pd.Series | None  # index date, vol points (None without iv)
    X_intraday: pd.DataFrame | None  # index minute timestamp
    yB: pd.Series | None  # index minute timestamp, 0/1/NaN
    sample_dates: pd.DatetimeIndex  # forecast dates t with a defined label span
    span_end: pd.DatetimeIndex  # last date each sample's label looks at
    next_session: pd.Series  # date t -> its paired session: the first after t, no daily row between (NaT: none)


def check_hrm_inputs(market: Market, X_daily: pd.DataFrame, hrm: HRMConfig) -> None:
    """ConfigError naming the ``hrm`` key that ``market`` contradicts: with implied vol (so a Head-A target),
    ``gap_scale_column`` not a column of ``X_daily`` or not > 0 on some day (it divides yA); a minute session
    longer than ``minutes_per_day`` (the L-module's positions)."""
    column = hrm.gap_scale_column
    if column is not None and market.daily.has_iv:
        if column not in X_daily.columns:
            raise ConfigError(f"hrm.gap_scale_column: {column!r} is not a daily feature (expected one of: "
                              f"{', '.join(X_daily.columns)}; or null to forecast yA in vol points)")
        bad = X_daily.index[~(X_daily[column] > 0).to_numpy()]
        if len(bad):
            raise ConfigError(f"hrm.gap_scale_column: {column!r} is {X_daily.at[bad[0], column]} on {bad[0].date()} "
                              "(expected > 0 on every day, since it divides yA: e.g. 'iv', or null)")
    if market.minutes is not None:
        dates, counts = np.unique(market.minutes.session_labels(), return_counts=True)
        longest = int(np.argmax(counts))
        if counts[longest] > hrm.minutes_per_day:
            raise ConfigError(
                f"hrm.minutes_per_day: expected at least {counts[longest]}, the minutes of the longest session "
                f"({pd.Timestamp(dates[longest]).date()}; one L-module position per minute), got {hrm.minutes_per_day}"
            )


def build_dataset(market: Market, cfg: LabConfig, hrm: bool | None = None) -> Dataset:
    """Causal features and labels for ``market`` and the sample dates the folds are built on.

    ``hrm``: whether the HRM will train on it (default: ``"hrm" in cfg.models``); then :func:`check_hrm_inputs`
    runs on the daily features before anything else is built.
    """
    X_daily = build_daily_features(market.daily, cfg.features)
    if ("hrm" in cfg.models) if hrm is None else hrm:
        check_hrm_inputs(market, X_daily, cfg.hrm)
    yA = span = None
    if market.daily.has_iv:
        daily_labels = make_daily_labels(market.daily, cfg.labels).reindex(X_daily.index)
        yA, span = daily_labels["yA"], daily_labels["span_end"]
    X_intraday = yB = None
    if market.minutes is not None:
        X_intraday = build_intraday_features(market.minutes, cfg.features)
        yB = make_intraday_labels(market.minutes, X_intraday["atr"], cfg.labels)["yB"].reindex(X_intraday.index)
        if not yB.notna().any():
            raise ConfigError(f"labels.horizon_minutes: expected fewer minutes than a session holds, got "
                              f"{cfg.labels.horizon_minutes}: no minute has a Book B label")

    sessions = pd.DatetimeIndex([] if X_intraday is None else X_intraday["session"].unique()).sort_values()
    dates = X_daily.index
    # the session paired with t: the first one after t with no daily row in between (else NaT), so a date far
    # before the minute data never pairs with a session years later
    pos = paired_session(dates.as_unit("ns").to_numpy(), sessions.as_unit("ns").to_numpy())  # (n_dates,) -1: none
    after_last = np.append(sessions.to_numpy(), np.datetime64("NaT"))
    next_session = pd.Series(after_last[pos], index=dates)
    if yA is not None:
        keep = yA.notna().to_numpy()
        sample_dates, span_end = dates[keep], pd.DatetimeIndex(span[keep])
    else:
        # No implied vol: no yA. A sample is a date with a next minute session; its span is that session.
        keep = next_session.notna().to_numpy()
        sample_dates, span_end = dates[keep], pd.DatetimeIndex(next_session[keep])
    if len(sample_dates) == 0:
        raise ValueError("no labelled samples: the data is shorter than the label horizon")
    return Dataset(market, X_daily, yA, X_intraday, yB, sample_dates, span_end, next_session)


def sessions_for(data: Dataset, dates: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The minute sessions whose labels belong to forecast dates ``dates`` (the next session of each)."""
    nxt = data.next_session.reindex(dates).dropna()
    return pd.DatetimeIndex(nxt.unique()).sort_values()


def split_dates(data: Dataset, fold: Fold) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, pd.DatetimeIndex]:
    """The (train, validation, test) forecast dates of ``fold``."""
    dates = data.sample_dates
    return dates[fold.train_idx], dates[fold.val_idx], dates[fold.test_idx]


def session_minutes(data: Dataset, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The minute timestamps (rows of ``X_intraday``, in order) of ``sessions``; empty without minutes."""
    if data.X_intraday is None:
        return pd.DatetimeIndex([])
    return data.X_intraday.index[data.X_intraday["session"].isin(sessions).to_numpy()]
