"""One symbol's HRM samples: preprocessing fitted on its training rows and its samples as tensors.

:class:`~lab_v10.src.options.hrm_adapter.HRMAdapter` fits one network (ensemble) on the samples of one or
several symbols (a pooled panel); everything here is per symbol, so pooling never lets one symbol's scale
enter another's preprocessing. Sample layout and time semantics: the adapter's module docstring and
:mod:`lab_v10.src.dataset.hrm_tokens`.

Per symbol, fitted on its training samples only: a StandardScaler of the daily features, one of the minute
features (:data:`~lab_v10.src.features.intraday.INTRADAY_MODEL_COLUMNS`), and the mean and standard deviation
of Head A's target ``yA / X_daily[hrm.gap_scale_column]`` (or ``yA`` with no scale column).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from lab_v10.src.config import HRMConfig
from lab_v10.src.dataset.hrm_tokens import (
    MinuteTable,
    MinuteTokens,
    Sessions,
    daily_table,
    daily_windows,
    minute_table,
    minute_tokens,
    next_session,
)
from lab_v10.src.dataset.samples import daily_samples, intraday_samples
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS
from lab_v10.src.options.hrm_tensors import HRMTensors

logger = logging.getLogger("lab.hrm")

NO_SESSIONS = Sessions(np.zeros(0, "datetime64[ns]"), np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclasses.dataclass(frozen=True)
class SymbolInputs:
    """What a fit reads of one symbol (conventions of :mod:`lab_v10.src.dataset.samples`): the daily features
    and gap labels (``yA`` None: no implied vol, Head A masked), the minute features and labels (both or
    neither), and the fold's training and validation forecast dates."""

    X_daily: pd.DataFrame
    X_intraday: pd.DataFrame | None
    yA: pd.Series | None
    yB: pd.Series | None
    train_idx: pd.DatetimeIndex
    val_idx: pd.DatetimeIndex


@dataclasses.dataclass
class SymbolScaling:
    """One symbol's fitted preprocessing. ``minute_scaler`` None: fitted without minutes. ``y_mean``,
    ``y_std``: Head A's target moments (0, 1 without gap labels); ``train_mean``: mean training ``yA`` in vol
    points (None without gap labels), the R^2 benchmark."""

    daily_scaler: StandardScaler
    minute_scaler: StandardScaler | None
    y_mean: float
    y_std: float
    train_mean: float | None


def gap_scale(X_daily: pd.DataFrame, rows: np.ndarray, column: str | None) -> np.ndarray | float:
    """``X_daily[column]`` at positions ``rows`` (N,), checked > 0; 1.0 without a scale column."""
    if column is None:
        return 1.0
    if column not in X_daily.columns:
        raise ValueError(
            f"X_daily: no column {column!r} (hrm.gap_scale_column: Head A forecasts yA / {column}; pass daily "
            f"features with implied vol, or set hrm.gap_scale_column: null to forecast yA in vol points)"
        )
    scale = X_daily[column].to_numpy(dtype=float)[rows]  # (N,)
    bad = np.flatnonzero(~(scale > 0))
    if bad.size:
        row = rows[bad[0]]
        raise ValueError(
            f"X_daily: column {column!r} at row {row} ({X_daily.index[row].date()}) is {scale[bad[0]]} "
            f"(expected > 0: hrm.gap_scale_column divides yA)"
        )
    return scale


def with_history(dates: pd.DatetimeIndex, y: pd.Series, role: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions in ``dates`` (ascending) and labels ``(N,)`` of the sample dates of ``y`` with ``window``
    daily rows up to and including them; drops (and logs) the others; ValueError when none is left."""
    pos = dates.get_indexer(y.index)  # (N,) every date is a row (checked by daily_samples)
    keep = pos >= window - 1
    if not keep.any():
        raise ValueError(
            f"X_daily: none of the {pos.size} {role} dates has hrm.daily_window={window} rows of history "
            f"(the latest has {int(pos.max(initial=-1)) + 1}); expected earlier daily rows"
        )
    if not keep.all():
        logger.info("hrm: dropped %d of %d %s dates with fewer than daily_window=%d rows of history",
                    int((~keep).sum()), pos.size, role, window)
    order = np.argsort(pos[keep], kind="stable")
    return pos[keep][order], y.to_numpy(dtype=float)[keep][order]


def to_tensors(x_daily: np.ndarray, tokens: MinuteTokens, y_a: np.ndarray, symbol: int) -> HRMTensors:
    """HRMTensors (float32 CPU) from windows ``(N, T_H, F_d)``, L tokens and standardized ``y_a`` ``(N,)``, all
    of symbol id ``symbol``."""
    n = x_daily.shape[0]
    return HRMTensors(
        x_daily=torch.from_numpy(np.ascontiguousarray(x_daily, dtype=np.float32)),
        x_minute=torch.from_numpy(np.ascontiguousarray(tokens.x, dtype=np.float32)),
        minute_mask=torch.from_numpy(tokens.mask),
        y_a=torch.from_numpy(np.asarray(y_a, dtype=np.float32)),
        y_b=torch.from_numpy(np.asarray(tokens.y, dtype=np.float32)),
        symbol=torch.full((n,), symbol, dtype=torch.int64),
    )


def concat_tensors(parts: list[HRMTensors]) -> HRMTensors:
    """The samples of ``parts`` one after the other, minute dimensions padded at the end to the longest
    ``T_L`` (masked, NaN labels), as one HRMTensors."""
    t_l = max(p.x_minute.shape[1] for p in parts)

    def pad(t: torch.Tensor, value: float | bool) -> torch.Tensor:
        extra = t_l - t.shape[1]
        if extra == 0:
            return t
        filler = torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype)
        return torch.cat([t, filler], dim=1)

    return HRMTensors(
        x_daily=torch.cat([p.x_daily for p in parts]),
        x_minute=torch.cat([pad(p.x_minute, 0.0) for p in parts]),
        minute_mask=torch.cat([pad(p.minute_mask, False) for p in parts]),
        y_a=torch.cat([p.y_a for p in parts]),
        y_b=torch.cat([pad(p.y_b, float("nan")) for p in parts]),
        symbol=torch.cat([p.symbol for p in parts]),
    )


def sample_tensors(scaling: SymbolScaling, hrm: HRMConfig, daily: np.ndarray, ends: np.ndarray,
                   minutes: MinuteTable | None, labels: np.ndarray | None, sessions: np.ndarray, y_a: np.ndarray,
                   symbol: int) -> HRMTensors:
    """Standardized samples of one symbol: daily windows ending at rows ``ends`` ``(N,)`` of ``daily``
    ``(n, F_d)``, the minutes of session positions ``sessions`` ``(N,)`` (-1: none) and Head A's target
    ``y_a`` ``(N,)`` in label units (NaN: no label), standardized here."""
    x_daily = daily_windows(scaling.daily_scaler.transform(daily), ends, hrm.daily_window)
    if minutes is None:
        tokens = minute_tokens(np.zeros((0, hrm.minute_features)), None, NO_SESSIONS, sessions)
    else:
        tokens = minute_tokens(scaling.minute_scaler.transform(minutes.values), labels, minutes.sessions, sessions)
    return to_tensors(x_daily, tokens, (y_a - scaling.y_mean) / scaling.y_std, symbol)


def fit_symbol(inputs: SymbolInputs, hrm: HRMConfig, symbol: int) -> tuple[SymbolScaling, HRMTensors, HRMTensors]:
    """Fit one symbol's preprocessing on its training samples and build its (train, validation) tensors.

    ``hrm`` must carry the table widths (``daily_features``, ``minute_features``). Input checks are the
    adapter's ``fit`` contract (ValueError naming the table, date or label).
    """
    X_daily, X_intraday, yA, yB = inputs.X_daily, inputs.X_intraday, inputs.yA, inputs.yB
    if (X_intraday is None) != (yB is None):
        raise ValueError("X_intraday, yB: expected both (minute features and their labels) or neither")
    columns = list(X_daily.columns) if isinstance(X_daily, pd.DataFrame) else []
    daily = daily_table(X_daily, columns)  # (n, F_d)
    has_gap_label = yA is not None
    if not has_gap_label and X_intraday is None:
        raise ValueError("yA, X_intraday: expected the gap labels, the minutes, or both (nothing to learn)")
    # Without yA, a zero label series only lets daily_samples check the dates and features; the labels
    # themselves are replaced by NaN below, which masks Head A's loss.
    labels_a = yA if has_gap_label else pd.Series(0.0, index=X_daily.index)
    samples = daily_samples(X_daily, labels_a, inputs.train_idx, inputs.val_idx, columns, require_val=True)
    train_pos, y_train = with_history(X_daily.index, samples.y_train, "train", hrm.daily_window)
    val_pos, y_val = with_history(X_daily.index, samples.y_val, "validation", hrm.daily_window)

    daily_scaler = StandardScaler().fit(daily[train_pos])
    if has_gap_label:
        train_mean = float(np.mean(y_train))
        y_train = y_train / gap_scale(X_daily, train_pos, hrm.gap_scale_column)
        y_val = y_val / gap_scale(X_daily, val_pos, hrm.gap_scale_column)
        y_mean, y_std = float(np.mean(y_train)), float(np.std(y_train))
        if not y_std > 0:
            raise ValueError(f"yA: all {y_train.size} training targets equal {y_mean} (expected a spread to standardize)")
    else:
        y_train, y_val = np.full(y_train.shape, np.nan), np.full(y_val.shape, np.nan)
        y_mean, y_std, train_mean = 0.0, 1.0, None

    minutes, labels, minute_scaler = None, None, None
    train_sessions = np.full(train_pos.shape, -1)
    val_sessions = np.full(val_pos.shape, -1)
    if X_intraday is not None:
        minutes = minute_table(X_intraday, hrm.minutes_per_day)
        pair = next_session(X_daily.index.as_unit("ns").to_numpy(), minutes.sessions.dates)  # (n,)
        train_sessions, val_sessions = pair[train_pos], pair[val_pos]
        if (train_sessions < 0).all():
            raise ValueError(
                "X_intraday: no session follows any training date (expected the minutes of the sessions "
                "after the training dates; pass X_intraday=None, yB=None for daily-only data)"
            )
        session_dates = pd.DatetimeIndex(minutes.sessions.dates)
        # the shared Book B checks on the paired sessions: yB rows present, 0/1/NaN, both classes in training
        intraday_samples(
            X_intraday, yB, session_dates[train_sessions[train_sessions >= 0]],
            session_dates[val_sessions[val_sessions >= 0]], INTRADAY_MODEL_COLUMNS,
        )
        starts = minutes.sessions.starts[train_sessions[train_sessions >= 0]]
        stops = minutes.sessions.stops[train_sessions[train_sessions >= 0]]
        train_rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
        minute_scaler = StandardScaler().fit(minutes.values[train_rows])
        labels = yB.reindex(X_intraday.index).to_numpy(dtype=float)  # (n_min,)

    scaling = SymbolScaling(daily_scaler, minute_scaler, y_mean, y_std, train_mean)
    train = sample_tensors(scaling, hrm, daily, train_pos, minutes, labels, train_sessions, y_train, symbol)
    val = sample_tensors(scaling, hrm, daily, val_pos, minutes, labels, val_sessions, y_val, symbol)
    return scaling, train, val


def scaler_state(scaler: StandardScaler) -> dict:
    """A fitted StandardScaler as tensors and ints (for a weights_only checkpoint)."""
    return {
        "mean": torch.from_numpy(scaler.mean_.copy()),
        "var": torch.from_numpy(scaler.var_.copy()),
        "scale": torch.from_numpy(scaler.scale_.copy()),
        "n_samples_seen": int(scaler.n_samples_seen_),
    }


def scaler_from_state(state: dict) -> StandardScaler:
    """The StandardScaler that :func:`scaler_state` saved (same mean_, var_, scale_: same transform)."""
    scaler = StandardScaler()
    scaler.mean_ = state["mean"].numpy().astype(np.float64)
    scaler.var_ = state["var"].numpy().astype(np.float64)
    scaler.scale_ = state["scale"].numpy().astype(np.float64)
    scaler.n_samples_seen_ = state["n_samples_seen"]
    scaler.n_features_in_ = scaler.mean_.shape[0]
    return scaler


def scaling_state(scaling: SymbolScaling) -> dict:
    """``scaling`` as tensors and primitives (for a weights_only checkpoint)."""
    return {
        "daily_scaler": scaler_state(scaling.daily_scaler),
        "minute_scaler": None if scaling.minute_scaler is None else scaler_state(scaling.minute_scaler),
        "y_mean": scaling.y_mean,
        "y_std": scaling.y_std,
        "train_mean": scaling.train_mean,
    }


def scaling_from_state(state: dict) -> SymbolScaling:
    """The SymbolScaling that :func:`scaling_state` saved."""
    return SymbolScaling(
        daily_scaler=scaler_from_state(state["daily_scaler"]),
        minute_scaler=None if state["minute_scaler"] is None else scaler_from_state(state["minute_scaler"]),
        y_mean=float(state["y_mean"]),
        y_std=float(state["y_std"]),
        train_mean=None if state["train_mean"] is None else float(state["train_mean"]),
    )
