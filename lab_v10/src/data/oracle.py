"""The synthetic market's oracle: true conditional expectations of the labels given the generator's state.

The :class:`Oracle` keeps the latent paths of a generated market (arrays, not per-bar objects) and answers
by Monte Carlo over the generator's own dynamics (:mod:`lab_v10.src.data.synthetic_process`), started from
the latent state stored at each information time. It conditions on that *latent* state (the log-vol
components, the run-up phase and its age, the day's volume level), which no model sees, so its scores are
an upper bound for any model trained on the bars.

Label definitions are those of :mod:`lab_v10.src.features.labels`:

- ``yA(t) = 100*sqrt(A/h * sum_{i=1..h} r_{t+i}^2) - IV(t)`` (vol points), daily close-to-close log returns.
- ``yB(d, m) = 1`` if within bars ``m+1..m+H`` of the session some bar's low reaches
  ``close_m - k_down*ATR_m`` before any bar's high reaches ``close_m + k_up*ATR_m`` (both in one bar: 0);
  NaN where ``m + H`` is past the session's last bar or ``ATR_m`` is not positive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from lab_v10.src.data.synthetic_params import TRADING_DAYS_PER_YEAR, ProcessParams, ProcessTables
from lab_v10.src.data.synthetic_process import (
    AGE,
    CUM_PV,
    CUM_V,
    FLOW,
    LOG_CLOSE,
    N_STATE,
    PHASE,
    PHASE_NAMES,
    SURGE,
    downside_first_paths,
    expected_gap_paths,
)

GAP_STREAM, PROBA_STREAM = 1, 2  # SeedSequence keys of the oracle's Monte Carlo streams


def stream_seed(*key: int) -> np.uint64:
    """Seed (uint64) of the splitmix64 stream keyed by ``key`` (non-negative ints): the first word of
    ``numpy.random.SeedSequence(key)``. The generator and the oracle derive every stream seed with it."""
    return np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0]


class DailyLatent(NamedTuple):
    """Latent state per session ``d``, arrays ``(N,)``. The log-vol components of session ``d+1`` are set
    at the close of ``d`` (so the state at the close of ``t`` is ``short_log_vol[t+1], long_log_vol[t+1]``)."""

    short_log_vol: np.ndarray  # s_d
    long_log_vol: np.ndarray  # l_d
    sigma: np.ndarray  # sigma_d = sigma_bar * exp(s_d + l_d): diffusive vol of the session, log units per day
    drift: np.ndarray  # log drift of the session, per day
    volume_level: np.ndarray  # expected volume of the session, shares
    regime: np.ndarray  # daily term of the reversal hazard logit (from IV and drawdown at d-1)
    drawdown: np.ndarray  # drawdown at the close of d, fraction
    jump_return: np.ndarray  # sum of the session's jump log returns
    jump_count: np.ndarray  # number of jumps in the session


def _history_peaks(
    log_close: np.ndarray, log_initial: float, starts: np.ndarray, horizon: int, window: int
) -> np.ndarray:
    """``(T, horizon)``: for start t and k = 1..horizon, the max log close over days ``t+k-window+1..t``
    (days before 0 at the initial price; -inf where that range is empty)."""
    padded = np.r_[np.full(window, log_initial), log_close]  # padded[i + window] = log_close[i]
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)[starts + 1]  # (T, window): days t-window+1..t
    suffix_max = np.maximum.accumulate(windows[:, ::-1], axis=1)[:, ::-1]  # (T, window): max over days >= t-window+1+i
    peaks = np.full((len(starts), horizon), -np.inf)
    usable = min(horizon, window - 1)
    peaks[:, :usable] = suffix_max[:, 1 : usable + 1]
    return peaks


@dataclass(frozen=True)
class Oracle:
    """Latent paths of one generated market and the label expectations they imply.

    ``daily`` holds :class:`DailyLatent` arrays ``(N,)``; ``minute_state`` is ``(N, M, N_STATE)``: the state
    vector of :mod:`lab_v10.src.data.synthetic_process` at the close of every minute. ``log_close`` and
    ``iv`` ``(N,)`` repeat the observed daily closes (log) and IVs (vol points). ``seed`` keys the Monte
    Carlo streams: the market's seed, or a universe symbol's own seed (``synthetic.generate_universe``).
    """

    dates: pd.DatetimeIndex  # (N,) session dates
    minute_index: pd.DatetimeIndex  # (N*M,) minute start labels, exchange time
    params: ProcessParams
    tables: ProcessTables
    seed: int
    log_initial_price: float
    log_close: np.ndarray
    iv: np.ndarray
    daily: DailyLatent
    minute_state: np.ndarray

    def _seed(self, stream: int, index: int) -> np.uint64:
        return stream_seed(self.seed, stream, index)

    def expected_gap_table(
        self, horizon_days: int = 21, n_paths: int = 128, annualization_days: int = 252
    ) -> pd.DataFrame:
        """``expected_gap`` = E[yA(t) | state at the close of t] and its Monte Carlo ``stderr``, vol points,
        indexed by date; NaN for the last ``horizon_days`` rows (t+h past the sample).

        Each row simulates ``n_paths`` paths of sessions t+1..t+h forward from the stored latent state
        (log-vol components, drawdown window, IV) with the generator's own kernels; minutes are stepped one
        by one only while a run-up is pending or running, the rest of a session is drawn in one step with
        the same law. Path streams are seeded from (seed, t), so a row does not depend on which other rows
        exist. With the default 128 paths the standard error (``stderr``, sd of the path gaps / sqrt(paths))
        has a median of about 0.35 vol points (90% below 0.65) against a conditional sd of yA of 3-8
        points; 1000 sessions of 390 minutes take about 15 s on two cores.
        """
        if horizon_days < 1 or n_paths < 2:
            raise ValueError(f"expected horizon_days >= 1 and n_paths >= 2, got {horizon_days} and {n_paths}")
        n, h = len(self.dates), horizon_days
        starts = np.arange(max(n - h, 0))
        seeds = np.array([self._seed(GAP_STREAM, t) for t in starts], dtype=np.uint64)
        peaks = _history_peaks(self.log_close, self.log_initial_price, starts, h, self.params.drawdown_window_days)
        mean, stderr = expected_gap_paths(
            starts, seeds, self.log_close, self.daily.short_log_vol, self.daily.long_log_vol,
            self.iv, self.daily.drawdown, peaks, h, n_paths, float(annualization_days), self.params, self.tables,
        )
        table = pd.DataFrame({"expected_gap": np.nan, "stderr": np.nan}, index=self.dates)
        table.iloc[starts, 0] = mean
        table.iloc[starts, 1] = stderr
        return table

    def expected_gap(self, horizon_days: int = 21, n_paths: int = 128, annualization_days: int = 252) -> pd.Series:
        """E[yA(t) | latent state at the close of t] in vol points, indexed by date (see
        :meth:`expected_gap_table` for the method, the path count and the Monte Carlo error)."""
        return self.expected_gap_table(horizon_days, n_paths, annualization_days)["expected_gap"]

    def downside_first_proba(
        self,
        day,
        atr: np.ndarray,
        horizon_minutes: int = 30,
        k_down: float = 1.5,
        k_up: float = 1.5,
        n_paths: int = 1000,
    ) -> pd.Series:
        """P(yB(day, m) = 1 | latent state at the close of minute m), indexed by the day's minute timestamps.

        ``atr``: ``(M,)`` minute ATR known at each minute's close (price units), the one the labels use.
        Each minute simulates ``n_paths`` continuations of minutes m+1..m+H from the stored state (price,
        VWAP sums, run-up phase and age, volume multipliers; a pending run-up onset is redrawn from its
        conditional law) with the generator's minute kernel; the binomial standard error is
        ``sqrt(p(1-p)/n_paths)``, at most 0.016 with the default 1000 paths. NaN where ``m + H`` is past the
        session's last minute or the ATR is not positive. One session of 390 minutes takes about 0.4 s.
        """
        if horizon_minutes < 1 or n_paths < 1:
            raise ValueError(f"expected horizon_minutes >= 1 and n_paths >= 1, got {horizon_minutes} and {n_paths}")
        position = self._day_position(day)
        minutes = self.tables.minutes_per_day
        atr = np.asarray(atr, dtype=float)
        if atr.shape != (minutes,):
            day_label = self.dates[position].date()
            raise ValueError(f"atr: expected shape ({minutes},), one value per minute of {day_label}, got {atr.shape}")
        state = self.minute_state[position]  # (M, N_STATE)
        close = np.exp(state[:, LOG_CLOSE])
        with np.errstate(invalid="ignore", divide="ignore"):
            log_down = np.log(np.clip(close - k_down * atr, 0.0, None))  # -inf: a barrier at or below 0
            log_up = np.log(close + k_up * atr)
        labelled = (atr > 0) & np.isfinite(atr) & (np.arange(minutes) + horizon_minutes <= minutes - 1)
        log_down = np.where(labelled, log_down, np.nan)
        d = self.daily
        proba = downside_first_paths(
            state, log_down, log_up, horizon_minutes, n_paths, self._seed(PROBA_STREAM, position),
            d.sigma[position], d.drift[position], d.volume_level[position], d.regime[position],
            self.params, self.tables,
        )
        index = self.minute_index[position * minutes : (position + 1) * minutes]
        return pd.Series(proba, index=index, name="downside_first_proba")

    def _day_position(self, day) -> int:
        date = pd.Timestamp(day).normalize()
        if date.tzinfo is not None:
            date = date.tz_localize(None)
        position = self.dates.get_indexer([date])[0]
        if position < 0:
            span = f"{self.dates[0].date()}..{self.dates[-1].date()}"
            raise ValueError(f"day {date.date()}: not a session of this synthetic market ({span})")
        return int(position)

    def latent_daily(self) -> pd.DataFrame:
        """Latent daily state for diagnostics, indexed by date: ``vol`` (annualized diffusive vol, %),
        ``short_log_vol``, ``long_log_vol`` (s_d, l_d of the session), ``regime_logit``, ``drawdown``,
        ``jump_return`` (log), ``jump_count``."""
        d = self.daily
        return pd.DataFrame(
            {
                "vol": 100.0 * d.sigma * math.sqrt(TRADING_DAYS_PER_YEAR),
                "short_log_vol": d.short_log_vol,
                "long_log_vol": d.long_log_vol,
                "regime_logit": d.regime,
                "drawdown": d.drawdown,
                "jump_return": d.jump_return,
                "jump_count": d.jump_count,
            },
            index=self.dates,
        )

    def latent_minutes(self) -> pd.DataFrame:
        """Latent minute state for diagnostics, indexed by minute: ``phase`` (categorical: quiet, runup,
        reversal, done), ``phase_age`` (minutes), ``vwap`` (price), ``stretch`` (log(close/VWAP) in
        minute-sigma units), ``volume_flow`` (episode volume multiplier), ``relative_volume`` (EWM of volume
        over its expected value)."""
        state = self.minute_state.reshape(-1, N_STATE)  # (N*M, N_STATE)
        minutes = self.tables.minutes_per_day
        unit = np.repeat(self.daily.sigma * self.tables.unit_scale, minutes)  # (N*M,)
        log_vwap = np.log(state[:, CUM_PV] / state[:, CUM_V])
        return pd.DataFrame(
            {
                "phase": pd.Categorical.from_codes(state[:, PHASE].astype(np.int8), PHASE_NAMES),
                "phase_age": state[:, AGE],
                "vwap": np.exp(log_vwap),
                "stretch": (state[:, LOG_CLOSE] - log_vwap) / unit,
                "volume_flow": state[:, FLOW],
                "relative_volume": state[:, SURGE],
            },
            index=self.minute_index,
        )
