"""Parameters of the synthetic market's process and the per-minute tables derived from them.

:class:`ProcessParams` holds every parameter with its documented default (data/README.md, "Synthetic
market"); :func:`build_tables` derives the :class:`ProcessTables` that the numba kernels of
:mod:`lab_v10.src.data.synthetic_process` read. Plain numpy: nothing here is compiled.
"""
from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np

TRADING_DAYS_PER_YEAR = 252


class ProcessParams(NamedTuple):
    """Parameters of the generating process (defaults are the documented synthetic market).

    Units: "minute-sigma" is the session's mean diffusive minute volatility
    ``sigma_d * sqrt((1 - overnight_share) / minutes_per_day)`` (log units); hazards are per minute.
    """

    # daily price and volatility: log sigma_d = log(vol_level / sqrt(252)) + s_d + l_d
    annual_drift: float = 0.07  # expected price growth per year (jumps compensated), fraction
    vol_level: float = 0.13  # sigma_bar: median diffusive vol, annualized fraction
    short_persistence: float = 0.90  # phi_s, per day
    short_noise: float = 0.10  # theta_s: sd of the daily innovation of s
    short_leverage: float = -0.7  # rho_s: corr(innovation of s, diffusive shock of the day)
    long_persistence: float = 0.993  # phi_l, per day
    long_noise: float = 0.05  # theta_l
    long_leverage: float = -0.4  # rho_l
    overnight_share: float = 0.2  # share of the daily diffusive variance in the overnight gap
    jumps_per_day: float = 0.02  # expected intraday jumps per session
    jump_mean: float = -2.5  # mean jump, in units of sigma_d
    jump_sd: float = 1.5  # jump sd, in units of sigma_d
    jump_vol_feedback: float = 0.3  # added to s_{d+1} per jump on day d
    # implied vol and the variance risk premium
    iv_horizon_days: int = 21  # trading days the implied vol covers (30 calendar days)
    vrp_base: float = 0.12  # log premium of IV over the expected vol at zero drawdown
    vrp_drawdown: float = 1.0  # extra log premium per unit of drawdown
    drawdown_window_days: int = 63  # drawdown_d = 1 - close_d / max(close over the last 63 sessions)
    # volume
    mean_daily_volume: float = 1.0e6  # shares per session at sigma_d = sigma_bar
    volume_vol_elasticity: float = 0.8  # d log(volume level) / d log(sigma_d)
    daily_volume_noise: float = 0.25  # sd of the log volume level of a session
    minute_volume_noise: float = 0.35  # sd of the log noise of a minute's volume
    volume_abs_shock: float = 0.3  # log volume loading on |z| of the minute's price shock
    # intraday U shape over u = (j + 0.5) / minutes_per_day: 1 + a_open exp(-u/tau) + a_close exp(-(1-u)/tau)
    open_variance_boost: float = 2.0
    close_variance_boost: float = 1.0
    open_volume_boost: float = 3.0
    close_volume_boost: float = 2.5
    u_shape_decay: float = 0.05  # tau, fraction of the session
    # parabolic run-ups
    runup_probability: float = 0.4  # chance that a run-up starts in a session
    runup_window_start: float = 0.03  # onset minute uniform on [start, end) x minutes_per_day
    runup_window_end: float = 0.4
    runup_drift: float = 0.3  # excess drift at the run-up's first minute, minute-sigma per minute
    runup_acceleration: float = 10.0  # minutes for the excess drift to grow e-fold
    runup_drift_cap: float = 2.0  # cap of the excess drift, minute-sigma per minute
    runup_volume_growth: float = 0.08  # log volume multiplier added per run-up minute
    runup_volume_cap: float = 6.0  # cap of the volume multiplier
    stall_hazard: float = 0.05  # chance per minute that a run-up stalls (ends without reversal)
    reversal_logit: float = -4.5  # reversal hazard logit: intercept
    reversal_stretch: float = 0.2  # ... per minute-sigma of log(close / VWAP)
    reversal_surge: float = 1.5  # ... per unit of log smoothed relative volume
    reversal_iv: float = 3.0  # ... per unit of log(IV_{d-1} / regime_iv_pivot)
    regime_iv_pivot: float = 20.0  # IV level (vol points) where the IV term of the logit is 0
    reversal_drawdown: float = 10.0  # ... per unit of drawdown_{d-1}
    reversal_pull: float = 0.12  # share of log(close / VWAP) given back per reversal minute
    reversal_push: float = 0.3  # extra down-drift of a reversal minute, minute-sigma
    reversal_end_hazard: float = 0.05  # chance per minute that a reversal ends (it also ends at VWAP)
    reversal_volume_decay: float = 0.97  # volume multiplier decay toward 1 per reversal minute
    volume_decay: float = 0.85  # volume multiplier decay toward 1 per minute outside episodes
    surge_smoothing: float = 0.3  # EWM weight of the smoothed relative volume SURGE


class ProcessTables(NamedTuple):
    """Per-minute tables and constants derived from :class:`ProcessParams` for one session length M."""

    variance_weight: np.ndarray  # (M,) w_j: share of the daily diffusive variance in minute j
    minute_sd_weight: np.ndarray  # (M,) sqrt(w_j)
    variance_tail: np.ndarray  # (M + 1,) sum of w over minutes j..M-1
    volume_weight: np.ndarray  # (M,) share of the session's expected volume in minute j, sums to 1
    onset_cdf: np.ndarray  # (M,) P(run-up onset at a minute <= j)
    iv_level_coef: np.ndarray  # (h_iv,) IV^2 term k: coef * exp(2 short_coef*s + 2 long_coef*l)
    iv_short_coef: np.ndarray  # (h_iv,)
    iv_long_coef: np.ndarray  # (h_iv,)
    minutes_per_day: int
    unit_scale: float  # minute-sigma / sigma_d
    jump_prob: float  # chance of a jump in a minute
    daily_sigma_bar: float  # vol_level / sqrt(252), log units per day


def _u_shape(minutes_per_day: int, open_boost: float, close_boost: float, decay: float) -> np.ndarray:
    u = (np.arange(minutes_per_day) + 0.5) / minutes_per_day  # (M,)
    return 1.0 + open_boost * np.exp(-u / decay) + close_boost * np.exp(-(1.0 - u) / decay)


def build_tables(params: ProcessParams, minutes_per_day: int) -> ProcessTables:
    """Tables for sessions of ``minutes_per_day`` minutes (1..390)."""
    p, m = params, minutes_per_day
    variance_shape = _u_shape(m, p.open_variance_boost, p.close_variance_boost, p.u_shape_decay)
    variance_weight = (1.0 - p.overnight_share) * variance_shape / variance_shape.sum()  # (M,)
    volume_shape = _u_shape(m, p.open_volume_boost, p.close_volume_boost, p.u_shape_decay)
    first = min(max(1, int(round(p.runup_window_start * m))), m - 1)  # onset needs a previous minute
    last = max(first + 1, int(round(p.runup_window_end * m)))
    onset_cdf = p.runup_probability * np.clip((np.arange(m) - first + 1) / (last - first), 0.0, 1.0)  # (M,)
    jump_prob = p.jumps_per_day / m
    level, short, long_ = _iv_coefficients(p, m, jump_prob)
    return ProcessTables(
        variance_weight=variance_weight,
        minute_sd_weight=np.sqrt(variance_weight),
        variance_tail=np.r_[np.cumsum(variance_weight[::-1])[::-1], 0.0],
        volume_weight=volume_shape / volume_shape.sum(),
        onset_cdf=onset_cdf,
        iv_level_coef=level,
        iv_short_coef=short,
        iv_long_coef=long_,
        minutes_per_day=m,
        unit_scale=math.sqrt((1.0 - p.overnight_share) / m),
        jump_prob=jump_prob,
        daily_sigma_bar=p.vol_level / math.sqrt(TRADING_DAYS_PER_YEAR),
    )


def _iv_coefficients(
    p: ProcessParams, minutes_per_day: int, jump_prob: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form of ``(252/h) * sum_{k=1..h} E[sigma_{d+k}^2 * m2 | s_{d+1}, l_{d+1}]``.

    ``log sigma_{d+k} = log sigma_bar + phi_s^(k-1) s_{d+1} + phi_l^(k-1) l_{d+1} + G_k + kappa*sum_i
    phi_s^(k-1-i) n_{d+i}``, with ``G_k`` Gaussian (the log-vol innovations, correlated through the common
    shock) and ``n`` the daily jump counts (Binomial(M, p), independent). ``m2 = E[(shock + jumps/sigma)^2]``
    is the second moment of a day's standardized diffusive + jump return; drift and run-up episodes are
    left out of this expected vol.
    """
    h = p.iv_horizon_days
    lag = np.arange(h)  # k-1 for the days d+1..d+h; also the innovation lags 0..h-1
    phi_s, phi_l = p.short_persistence, p.long_persistence
    cross = p.short_noise * p.long_noise * p.short_leverage * p.long_leverage
    short_var, long_var = phi_s ** (2 * lag) * p.short_noise**2, phi_l ** (2 * lag) * p.long_noise**2
    step_var = short_var + long_var + 2 * (phi_s * phi_l) ** lag * cross  # (h,) from the innovation `lag` days back
    gauss_var = np.r_[0.0, np.cumsum(step_var)[:-1]]  # (h,) Var(G_k): k-1 innovations
    jump_mgf_log = minutes_per_day * np.log1p(jump_prob * np.expm1(2.0 * p.jump_vol_feedback * phi_s**lag))  # (h,)
    jump_term = np.r_[0.0, np.cumsum(jump_mgf_log)[:-1]]  # (h,) sum over the k-1 earlier days
    mean_jumps = minutes_per_day * jump_prob
    second_moment_jumps = mean_jumps * (1.0 - jump_prob) + mean_jumps**2
    m2 = 1.0 + mean_jumps * p.jump_sd**2 + second_moment_jumps * p.jump_mean**2
    sigma_bar = p.vol_level / math.sqrt(TRADING_DAYS_PER_YEAR)
    level = (TRADING_DAYS_PER_YEAR / h) * sigma_bar**2 * m2 * np.exp(2.0 * gauss_var + jump_term)  # (h,)
    return level, phi_s**lag, phi_l**lag


def layout_digest() -> str:
    """Digest of what the compiled kernels take from this module at compile time: the field order of
    :class:`ProcessParams` and :class:`ProcessTables` and :data:`TRADING_DAYS_PER_YEAR`."""
    layout = repr((ProcessParams._fields, ProcessTables._fields, TRADING_DAYS_PER_YEAR))
    return hashlib.sha256(layout.encode()).hexdigest()[:16]
