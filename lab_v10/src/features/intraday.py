"""Causal intraday features ``X_intraday`` from :class:`~lab_v10.src.data.schema.MinuteBars`.

Time semantics (docs/design.md section 3): the row of minute *m* (labelled by the bar's start) is known at the
close of *m* and uses minutes ``<= m`` of its session and earlier sessions only. Sessions are the
exchange-time dates of the bars; bars may be missing (thin trading) and sessions may differ in length
(half days). Every session state (VWAP, running high/low, open, setup) resets at the session's first bar.

Model features (:data:`INTRADAY_MODEL_COLUMNS`, scale-free, always finite):

- ``ret_1m``: log return from the previous bar's close in the session; the session's first bar uses its
  own open (``ln(C/O)``), so no overnight gap enters. After missing minutes it spans the gap.
- ``vwap_distance_atr``: ``(close - vwap) / atr``.
- ``rel_volume``: volume over its time-of-day norm: the mean volume at the same exchange clock minute over
  the previous ``cfg.volume_lookback_days`` sessions that have a bar at that minute. Fallbacks, in order:
  the previous sessions' mean volume per bar (when none of them has that minute, or that mean is 0), and
  1.0 (when the previous sessions traded no volume at all).
- ``session_time``: minutes since the session's first bar / 390 (a full regular session spans 0..389/390).
- ``session_return``: ``ln(close / open of the session's first bar)``.
- ``session_range_atr``: ``(running session high - running session low) / atr``.
- ``setup_stretched``, ``setup_armed``, ``setup_signal``: 0/1 flags of the backside-short setup
  (:mod:`lab_v10.src.features.scanner`).
- ``setup_pivot_distance_atr``: ``(pivot_high - close) / atr`` while armed, 0 while disarmed (read it
  with ``setup_armed``).

State columns (:data:`INTRADAY_STATE_COLUMNS`, for simulators and labels): ``vwap`` (price units; the
volume-weighted mean of the typical price ``(H+L+C)/3`` since the session's first bar, or its plain mean
while the session's volume is still 0), ``atr`` (:func:`minute_atr`, price units), ``pivot_high`` (price
units, NaN while the setup is disarmed) and ``session`` (tz-naive session date).

Warm-up: the rows of the first :data:`WARMUP_SESSIONS` session are dropped (and the count logged on logger
``lab.features``): ``rel_volume`` needs a past session, and by then the ATR's EWM has seen a full session.
Raises DataValidationError when fewer than two sessions are given or the ATR is 0 on a kept row (no price
movement at all since the first bar).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab_v10.src.config import FeatureConfig
from lab_v10.src.data.schema import MinuteBars
from lab_v10.src.errors import DataValidationError
from lab_v10.src.features.daily import require_finite
from lab_v10.src.features.scanner import backside_short_setup

logger = logging.getLogger("lab.features")

INTRADAY_MODEL_COLUMNS: tuple[str, ...] = (
    "ret_1m",
    "vwap_distance_atr",
    "rel_volume",
    "session_time",
    "session_return",
    "session_range_atr",
    "setup_stretched",
    "setup_armed",
    "setup_pivot_distance_atr",
    "setup_signal",
)
INTRADAY_STATE_COLUMNS: tuple[str, ...] = ("vwap", "atr", "pivot_high", "session")
WARMUP_SESSIONS = 1  # leading sessions dropped: rel_volume needs at least one past session
REGULAR_SESSION_MINUTES = 390  # 09:30-16:00, the scale of session_time
NS_PER_MINUTE = 60_000_000_000


@dataclass(frozen=True)
class SessionLayout:
    """Where the sessions of a minute index lie. All arrays ``(n,)``, aligned with the bars.

    ``code``: session number 0..S-1 (ascending); ``date``: tz-naive session date (datetime64[ns]);
    ``first``: True on each session's first bar; ``epoch_ns``: bar start in ns since the epoch (UTC).
    """

    code: np.ndarray
    date: np.ndarray
    first: np.ndarray
    epoch_ns: np.ndarray

    @classmethod
    def of(cls, index: pd.DatetimeIndex) -> SessionLayout:
        date = index.tz_localize(None).normalize().as_unit("ns").to_numpy()
        first = np.r_[True, date[1:] != date[:-1]] if len(date) else np.zeros(0, bool)
        return cls(code=np.cumsum(first) - 1, date=date, first=first, epoch_ns=index.as_unit("ns").asi8)

    @property
    def n_sessions(self) -> int:
        return int(self.code[-1]) + 1 if len(self.code) else 0

    def session_first(self, values: np.ndarray) -> np.ndarray:
        """``values`` at the first bar of each row's session. ``(n,) -> (n,)``."""
        return values[np.flatnonzero(self.first)][self.code]

    def session_cumsum(self, values: np.ndarray) -> np.ndarray:
        """Running sum of ``values`` that restarts at every session's first bar. ``(n,) -> (n,)``."""
        return pd.Series(values).groupby(self.code).cumsum().to_numpy()


def minute_atr(bars_frame: pd.DataFrame, span: int) -> np.ndarray:
    """Causal minute ATR in price units: EWM (``span`` bars, ``adjust=True``) of true ranges across sessions.

    True range of bar *m*: ``max(H_m, C_{m-1}) - min(L_m, C_{m-1})`` with the previous bar of the same
    session; a session's first bar uses ``H - L`` (no overnight gap). The EWM runs on across sessions and
    starts at the first bar (a weighted mean of the ranges seen so far). ``bars_frame`` needs ``high, low,
    close`` and a tz-aware DatetimeIndex. ``(n,)``.
    """
    layout = SessionLayout.of(bars_frame.index)
    high, low, close = (bars_frame[c].to_numpy(dtype=float) for c in ("high", "low", "close"))
    prev_close = np.r_[np.nan, close[:-1]]
    prev_close[layout.first] = np.nan  # fmax/fmin below then fall back to the bar's own high and low
    true_range = np.fmax(high, prev_close) - np.fmin(low, prev_close)
    return pd.Series(true_range).ewm(span=span, adjust=True).mean().to_numpy()


def session_vwap(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, layout: SessionLayout
) -> np.ndarray:
    """Session VWAP of the typical price ``(H+L+C)/3`` at each bar's close; while the session's cumulative
    volume is 0 it is the plain mean of the typical prices so far. ``(n,)``, price units."""
    typical = (high + low + close) / 3.0
    cum_pv = layout.session_cumsum(typical * volume)
    cum_volume = layout.session_cumsum(volume)
    mean_typical = layout.session_cumsum(typical) / layout.session_cumsum(np.ones_like(typical))
    traded = cum_volume > 0
    return np.where(traded, cum_pv / np.where(traded, cum_volume, 1.0), mean_typical)


def _past_sessions_sum(per_session: np.ndarray, lookback: int) -> np.ndarray:
    """Sum over sessions ``s-lookback..s-1`` (the current one excluded) along axis 0. ``(S, ...) -> (S, ...)``."""
    running = np.concatenate([np.zeros((1, *per_session.shape[1:])), np.cumsum(per_session, axis=0)])  # (S+1, ...)
    sessions = np.arange(per_session.shape[0])
    return running[sessions] - running[np.maximum(sessions - lookback, 0)]


def relative_volume(volume: np.ndarray, minute_of_day: np.ndarray, layout: SessionLayout, lookback: int) -> np.ndarray:
    """Volume over its time-of-day norm from the previous ``lookback`` sessions (module docstring has the
    fallbacks). NaN on the first session's rows, which have no past. ``(n,)``, dimensionless."""
    tod_values, tod_code = np.unique(minute_of_day, return_inverse=True)
    shape = (layout.n_sessions, tod_values.size)
    tod_volume, tod_bars = np.zeros(shape), np.zeros(shape)  # (S, K)
    np.add.at(tod_volume, (layout.code, tod_code), volume)
    np.add.at(tod_bars, (layout.code, tod_code), 1.0)
    past_volume = _past_sessions_sum(tod_volume, lookback)[layout.code, tod_code]  # (n,)
    past_bars = _past_sessions_sum(tod_bars, lookback)[layout.code, tod_code]
    session_volume = np.bincount(layout.code, weights=volume, minlength=layout.n_sessions)  # (S,)
    session_bars = np.bincount(layout.code, minlength=layout.n_sessions).astype(float)
    past_session_volume = _past_sessions_sum(session_volume, lookback)[layout.code]  # (n,)
    past_session_bars = _past_sessions_sum(session_bars, lookback)[layout.code]

    with np.errstate(invalid="ignore", divide="ignore"):
        tod_norm = past_volume / past_bars  # NaN where no past session has this minute
        bar_norm = past_session_volume / past_session_bars
    norm = np.where(tod_norm > 0, tod_norm, bar_norm)
    rel = np.where(norm > 0, volume / np.where(norm > 0, norm, 1.0), 1.0)
    rel[layout.code == 0] = np.nan
    return rel


def build_intraday_features(bars: MinuteBars, cfg: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """Causal intraday feature table indexed by ``timestamp`` (the minute bars' index after the warm-up).

    Columns: :data:`INTRADAY_MODEL_COLUMNS` (float64, finite) then :data:`INTRADAY_STATE_COLUMNS`.
    """
    frame = bars.frame
    layout = SessionLayout.of(frame.index)
    if layout.n_sessions <= WARMUP_SESSIONS:
        raise DataValidationError(
            f"{bars.source}: {layout.n_sessions} session(s) of minute bars, expected at least "
            f"{WARMUP_SESSIONS + 1} (the first {WARMUP_SESSIONS} is the volume-norm warm-up)"
        )
    open_, high, low, close, volume = (
        frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")
    )
    clock = frame.index.hour.to_numpy() * 60 + frame.index.minute.to_numpy()  # exchange minute of day

    atr = minute_atr(frame, cfg.atr_minutes)
    vwap = session_vwap(high, low, close, volume, layout)
    rel_volume = relative_volume(volume, clock, layout, cfg.volume_lookback_days)
    running_high = pd.Series(high).groupby(layout.code).cummax().to_numpy()
    running_low = pd.Series(low).groupby(layout.code).cummin().to_numpy()
    prev_close = np.r_[np.nan, close[:-1]]
    prev_close[layout.first] = open_[layout.first]
    setup = backside_short_setup(
        close, high, low, vwap, atr, rel_volume, layout.code, layout.epoch_ns // NS_PER_MINUTE, cfg
    )

    keep = layout.code >= WARMUP_SESSIONS
    flat = np.flatnonzero(keep & ~(atr > 0))
    if flat.size:
        raise DataValidationError(
            f"{bars.source}: row {flat[0]} ({frame.index[flat[0]]}): minute ATR is {atr[flat[0]]} "
            "(expected > 0; the bars show no price movement up to here)"
        )
    armed = setup["armed"]
    minutes_since_open = (layout.epoch_ns - layout.session_first(layout.epoch_ns)) / NS_PER_MINUTE
    with np.errstate(invalid="ignore", divide="ignore"):  # the dropped warm-up rows may divide by a zero ATR
        columns = {
            "ret_1m": np.log(close / prev_close),
            "vwap_distance_atr": (close - vwap) / atr,
            "rel_volume": rel_volume,
            "session_time": minutes_since_open / REGULAR_SESSION_MINUTES,
            "session_return": np.log(close / layout.session_first(open_)),
            "session_range_atr": (running_high - running_low) / atr,
            "setup_stretched": setup["stretched"].astype(float),
            "setup_armed": armed.astype(float),
            "setup_pivot_distance_atr": np.where(armed, (setup["pivot_high"] - close) / atr, 0.0),
            "setup_signal": setup["signal"].astype(float),
            "vwap": vwap,
            "atr": atr,
            "pivot_high": setup["pivot_high"],
            "session": layout.date,
        }
    table = pd.DataFrame({c: v[keep] for c, v in columns.items()}, index=frame.index[keep].rename("timestamp"))
    require_finite(table[[*INTRADAY_MODEL_COLUMNS, "vwap", "atr"]], bars.source)
    logger.info(
        "intraday features: dropped %d warm-up rows (first %d session) of %d (%s)",
        int((~keep).sum()), WARMUP_SESSIONS, len(frame), bars.source,
    )
    return table
