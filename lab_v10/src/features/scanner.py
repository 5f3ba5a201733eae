"""The backside-short setup that Book B trades (docs/design.md section 1): a parabolic stretch above the session
VWAP, then a lower-high break.

Inputs are aligned 1-D arrays, one entry per minute bar in time order (sessions contiguous); entry *m* is
known at the close of minute *m*. The setup is a per-session state machine, evaluated bar by bar:

1. **Stretched** at *m*: ``close_m - vwap_m > cfg.stretch_k_atr * atr_m`` and
   ``rel_volume_m > cfg.stretch_volume_mult`` (NaN inputs are never stretched).
2. **Arm.** While disarmed, a stretched bar arms the setup; the top (pivot high) is that bar's high and the
   top time its clock minute.
3. **New top.** While armed, a bar with ``high >= pivot high`` moves the top to that bar (high and time) and
   forgets any lower-high candidate: ``pivot_high`` is the running high since the stretch began.
4. **Break.** Otherwise (``high < pivot high``), if a lower-high candidate exists and ``close_m`` is below
   the candidate bar's low, the setup **signals** at *m* and disarms after *m*.
5. **Lower high.** Otherwise, if the bar starts at least ``cfg.pivot_lookback_minutes`` clock minutes after
   the top, it is a lower high; the candidate is the highest such bar since the top (the latest on ties),
   and its low is the break level. A candidate is only ever broken by a *later* bar.
6. **Reset.** The state (armed, top, candidate) is cleared at every session start, so nothing carries over
   the close; after a signal a new stretch can arm again.

Outputs (``(n,)`` each): ``stretched`` (bool, rule 1), ``armed`` (bool, armed at the close of *m*, still True
on the signal bar), ``pivot_high`` (price units, the top while armed, NaN otherwise) and ``signal`` (bool).
Every output at *m* depends on inputs at bars ``<= m`` only.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from lab_v10.src.config import FeatureConfig

SETUP_OUTPUTS = ("stretched", "armed", "pivot_high", "signal")


@njit(cache=True)
def _backside_short_kernel(
    close, high, low, vwap, atr, rel_volume, session_id, clock_minute, stretch_k, volume_mult, lookback
):
    n = close.shape[0]
    stretched = np.zeros(n, np.bool_)
    armed = np.zeros(n, np.bool_)
    pivot_high = np.full(n, np.nan)
    signal = np.zeros(n, np.bool_)
    is_armed = False
    top = np.nan
    top_minute = 0
    candidate_high = -np.inf
    break_level = np.nan
    for m in range(n):
        if m == 0 or session_id[m] != session_id[m - 1]:
            is_armed = False
        stretched[m] = (close[m] - vwap[m] > stretch_k * atr[m]) and (rel_volume[m] > volume_mult)
        if not is_armed:
            if stretched[m]:
                is_armed = True
                top, top_minute = high[m], clock_minute[m]
                candidate_high, break_level = -np.inf, np.nan
        elif high[m] >= top:
            top, top_minute = high[m], clock_minute[m]
            candidate_high, break_level = -np.inf, np.nan
        elif close[m] < break_level:
            signal[m] = True
        elif clock_minute[m] - top_minute >= lookback and high[m] >= candidate_high:
            candidate_high, break_level = high[m], low[m]
        if is_armed:
            armed[m] = True
            pivot_high[m] = top
        if signal[m]:
            is_armed = False
    return stretched, armed, pivot_high, signal


def backside_short_setup(
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    vwap: np.ndarray,
    atr: np.ndarray,
    rel_volume: np.ndarray,
    session_id: np.ndarray,
    clock_minute: np.ndarray,
    cfg: FeatureConfig = FeatureConfig(),
) -> dict[str, np.ndarray]:
    """Evaluate the backside-short setup (module docstring) on aligned minute arrays.

    Args (all ``(n,)``, in time order, sessions contiguous):
        close, high, low: bar prices (price units).
        vwap: session VWAP at the close of each bar (price units).
        atr: minute ATR at the close of each bar (price units).
        rel_volume: volume over its time-of-day norm (dimensionless).
        session_id: any integer session key; a change between consecutive bars starts a new session.
        clock_minute: integer minutes on a common clock (e.g. epoch minutes of the bar start), so that
            missing minutes count as elapsed time.
        cfg: ``stretch_k_atr``, ``stretch_volume_mult``, ``pivot_lookback_minutes``.

    Returns ``{"stretched", "armed", "pivot_high", "signal"}``, each ``(n,)``.
    """
    prices = [np.ascontiguousarray(a, dtype=np.float64) for a in (close, high, low, vwap, atr, rel_volume)]
    keys = [np.ascontiguousarray(a, dtype=np.int64) for a in (session_id, clock_minute)]
    lengths = {a.shape for a in (*prices, *keys)}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(
            f"backside_short_setup: expected aligned 1-D arrays of one length, got shapes {sorted(lengths)}"
        )
    outputs = _backside_short_kernel(
        *prices, *keys, float(cfg.stretch_k_atr), float(cfg.stretch_volume_mult), int(cfg.pivot_lookback_minutes)
    )
    return dict(zip(SETUP_OUTPUTS, outputs))
