"""The synthetic market's generating process: the numba step kernels and the simulators built on them
(parameters and per-minute tables: :mod:`lab_v10.src.data.synthetic_params`).

The dynamics are defined once, here (:func:`step_minute`, :func:`next_log_vol`, :func:`implied_vol`), and
both the generator (:func:`simulate_market`, wrapped by :mod:`lab_v10.src.data.synthetic`) and the oracle's
Monte Carlo (:func:`expected_gap_paths`, :func:`downside_first_paths`, wrapped by
:mod:`lab_v10.src.data.oracle`) call them, so the oracle simulates exactly the process that produced the
bars. data/README.md ("Synthetic market") states the equations; in short:

- Daily diffusive vol ``sigma_d = sigma_bar * exp(s_d + l_d)`` (log units per day) with a short-memory
  and a long-memory AR(1) log-vol component; both load on the day's standardized diffusive shock
  (leverage) and ``s`` jumps up after price jumps.
- Minute ``j`` of a session has log return ``drift_j + sigma_d*sqrt(w_j)*z_j + jump_j + episode drift``
  with a U-shaped variance profile ``w``; the session opens with an overnight gap carrying the share
  ``overnight_share`` of the daily variance. Minute high/low are Brownian-bridge extremes.
- Parabolic run-up episodes: a run-up starts at a random minute (path-independent onset law), its excess
  drift and volume accelerate, and each minute it reverses with a logistic hazard in the stretch above
  VWAP, the smoothed relative volume and the daily regime (previous close's IV and drawdown), or stalls.
- ``IV_d`` (vol points) = closed-form expected 21-day diffusive + jump vol given ``(s, l)`` times
  ``exp(vrp_base + vrp_drawdown * drawdown_d)``.
- The symbols of a universe share a market factor: a share of the variance of every diffusive shock and
  log-vol innovation (:func:`market_factor`, :func:`simulate_market`); each symbol keeps the lone market's law.

Randomness: every simulated path owns a splitmix64 stream (``uint64[1]`` state) seeded from
``numpy.random.SeedSequence``; there is no global random state.

Minute state vector (float64, ``(N_STATE,)``), the state at the close of a minute:
``LOG_CLOSE`` (log price), ``CUM_PV`` and ``CUM_V`` (session sums of typical price x volume and of volume),
``PHASE`` (QUIET, RUNUP, REVERSAL, DONE), ``AGE`` (minutes in the phase), ``FLOW`` (volume multiplier of
the episode), ``SURGE`` (EWM of volume over its expected value).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from lab_v10.src.data.synthetic_params import TRADING_DAYS_PER_YEAR, layout_digest

LOG_CLOSE, CUM_PV, CUM_V, PHASE, AGE, FLOW, SURGE = range(7)
N_STATE = 7
QUIET, RUNUP, REVERSAL, DONE = 0.0, 1.0, 2.0, 3.0  # values of state[PHASE]
PHASE_NAMES = ("quiet", "runup", "reversal", "done")

# numba's on-disk cache (cache=True) notices edits to this file only, but the kernels below compile in the
# field positions of ProcessParams/ProcessTables and TRADING_DAYS_PER_YEAR from synthetic_params. Pinning
# their digest here turns a change there into an edit of this file, which invalidates the cache.
_PARAMS_LAYOUT = "f3c81f2898b1908d"
if layout_digest() != _PARAMS_LAYOUT:
    raise RuntimeError(
        "synthetic_params changed the layout the numba kernels compile against: set _PARAMS_LAYOUT in "
        f"{__name__} to {layout_digest()!r} (the edit makes numba recompile its cached kernels)"
    )


# ----------------------------------------------------------------------------------------------
# Random numbers: splitmix64 streams

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


@njit(cache=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True)
def seed_stream(rng, seed, stream):
    """Set ``rng`` (uint64[1]) to the start of stream number ``stream`` (int >= 0) of ``seed`` (uint64)."""
    rng[0] = _mix64(seed ^ _mix64(np.uint64(stream) * _GOLDEN + _GOLDEN))


@njit(cache=True)
def uniform(rng):
    """Uniform on the open interval (0, 1)."""
    rng[0] = rng[0] + _GOLDEN
    return ((_mix64(rng[0]) >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def normal_pair(rng):
    """Two independent standard normals (Box-Muller)."""
    radius = math.sqrt(-2.0 * math.log(uniform(rng)))
    angle = 2.0 * math.pi * uniform(rng)
    return radius * math.cos(angle), radius * math.sin(angle)


@njit(cache=True)
def normal(rng):
    """One standard normal (Box-Muller)."""
    return normal_pair(rng)[0]


# ----------------------------------------------------------------------------------------------
# Daily layer


@njit(cache=True)
def daily_sigma(s, l, tab):
    """sigma_d (log units per day) from the log-vol components."""
    return tab.daily_sigma_bar * math.exp(s + l)


@njit(cache=True)
def daily_drift(sigma, prm):
    """Log drift of a session (overnight + minutes): growth minus Ito and jump compensation, per day."""
    mean_jump_growth = math.exp(sigma * prm.jump_mean + 0.5 * (sigma * prm.jump_sd) ** 2) - 1.0
    return prm.annual_drift / TRADING_DAYS_PER_YEAR - 0.5 * sigma * sigma - prm.jumps_per_day * mean_jump_growth


@njit(cache=True)
def next_log_vol(s, l, shock, jumps, prm, rng, own_load, common_s, common_l):
    """``(s_{d+1}, l_{d+1})`` from day d's standardized diffusive shock (N(0,1)) and jump count.

    The log-vol innovations are ``own_load * z + common`` with ``z`` drawn here and ``common_s, common_l`` the
    market factor's part (:func:`simulate_market`); ``1.0, 0.0, 0.0`` for a lone market."""
    s_own, l_own = normal_pair(rng)
    s_own = own_load * s_own + common_s
    l_own = own_load * l_own + common_l
    s_noise = prm.short_leverage * shock + math.sqrt(1.0 - prm.short_leverage**2) * s_own
    l_noise = prm.long_leverage * shock + math.sqrt(1.0 - prm.long_leverage**2) * l_own
    s_next = prm.short_persistence * s + prm.short_noise * s_noise + prm.jump_vol_feedback * jumps
    l_next = prm.long_persistence * l + prm.long_noise * l_noise
    return s_next, l_next


@njit(cache=True)
def implied_vol(s_next, l_next, drawdown, prm, tab):
    """IV at a close (vol points): expected h_iv-day vol from ``(s_{d+1}, l_{d+1})`` times the VRP factor."""
    variance = 0.0
    for k in range(tab.iv_level_coef.shape[0]):
        log_vol_shift = tab.iv_short_coef[k] * s_next + tab.iv_long_coef[k] * l_next
        variance += tab.iv_level_coef[k] * math.exp(2.0 * log_vol_shift)
    return 100.0 * math.sqrt(variance) * math.exp(prm.vrp_base + prm.vrp_drawdown * drawdown)


@njit(cache=True)
def regime_logit(iv_prev, drawdown_prev, prm):
    """Daily term of the reversal hazard logit from the previous close's IV (points) and drawdown."""
    return prm.reversal_iv * math.log(iv_prev / prm.regime_iv_pivot) + prm.reversal_drawdown * drawdown_prev


@njit(cache=True)
def session_volume_level(s, l, prm, rng):
    """Expected volume of a session (shares), higher in high-vol regimes."""
    noise = prm.daily_volume_noise
    log_level = prm.volume_vol_elasticity * (s + l) + noise * normal(rng) - 0.5 * noise * noise
    return prm.mean_daily_volume * math.exp(log_level)


@njit(cache=True)
def draw_onset(after, u, onset_cdf):
    """Run-up onset minute given no onset at minutes <= ``after`` (-1: none yet), from uniform ``u``;
    ``len(onset_cdf)`` means no run-up in the rest of the session."""
    n = onset_cdf.shape[0]
    base = onset_cdf[after] if after >= 0 else 0.0
    target = base + u * (1.0 - base)
    if target > onset_cdf[n - 1]:
        return n
    return np.searchsorted(onset_cdf, target)


@njit(cache=True)
def open_session(state, prev_log_close, sigma, drift, prm, rng, own_load, common):
    """Reset ``state`` to the session open after the overnight gap; returns the overnight shock part. The gap's
    standardized shock is ``own_load * z + common`` (``z`` drawn here; ``1.0, 0.0`` for a lone market)."""
    z = own_load * normal(rng) + common
    state[LOG_CLOSE] = prev_log_close + prm.overnight_share * drift + sigma * math.sqrt(prm.overnight_share) * z
    state[CUM_PV] = 0.0
    state[CUM_V] = 0.0
    state[PHASE] = QUIET
    state[AGE] = 0.0
    state[FLOW] = 1.0
    state[SURGE] = 1.0
    return math.sqrt(prm.overnight_share) * z


@njit(cache=True)
def start_session(state, log_prev_close, s, l, iv_prev, drawdown_prev, prm, tab, rng, own_load, common):
    """Draw a session's inputs from the state at the previous close and open it (:func:`open_session`, which
    takes ``own_load, common``).
    Returns ``(sigma, drift, volume_level, regime, onset, shock)``: the day's diffusive vol, log drift,
    expected volume, reversal-logit term, run-up onset minute and the overnight shock part."""
    sigma = daily_sigma(s, l, tab)
    drift = daily_drift(sigma, prm)
    volume_level = session_volume_level(s, l, prm, rng)
    regime = regime_logit(iv_prev, drawdown_prev, prm)
    onset = draw_onset(-1, uniform(rng), tab.onset_cdf)
    shock = open_session(state, log_prev_close, sigma, drift, prm, rng, own_load, common)
    return sigma, drift, volume_level, regime, onset, shock


# ----------------------------------------------------------------------------------------------
# Minute layer


@njit(cache=True)
def step_minute(state, j, onset, sigma, drift, volume_level, regime, prm, tab, rng, own_load, common):
    """Advance ``state`` (the close of minute j-1, or the open) through minute ``j``.

    First the phase transition, decided from the state at the close of minute j-1 (run-up onset at
    ``onset``; reversal / stall hazards during a run-up; end of a reversal), then the bar of minute j.
    Returns the bar in log prices and shares, the minute's standardized diffusive shock part
    ``sqrt(w_j) z_j`` and its jump (log return, 0.0 without one):
    ``(log_open, log_high, log_low, log_close, volume, shock, jump)``. The minute's standardized diffusive
    shock is ``z_j = own_load * z + common`` (``z`` drawn here; ``1.0, 0.0`` for a lone market).
    """
    unit = sigma * tab.unit_scale  # minute-sigma
    log_open = state[LOG_CLOSE]
    previous_phase = state[PHASE]
    phase = previous_phase
    log_vwap = log_open  # only read in episodes, which start after the session's first minute
    if (phase == RUNUP or phase == REVERSAL) and state[CUM_V] > 0.0:
        log_vwap = math.log(state[CUM_PV] / state[CUM_V])
    if phase == QUIET:
        if j == onset:
            phase = RUNUP
    elif phase == RUNUP:
        stretch = (log_open - log_vwap) / unit
        surge = math.log(state[SURGE])
        logit = prm.reversal_logit + prm.reversal_stretch * stretch + prm.reversal_surge * surge + regime
        reverse = 1.0 / (1.0 + math.exp(-logit))
        u = uniform(rng)
        if u < reverse:
            phase = REVERSAL
        elif u < reverse + (1.0 - reverse) * prm.stall_hazard:
            phase = DONE
    elif phase == REVERSAL:
        if log_open <= log_vwap or uniform(rng) < prm.reversal_end_hazard:
            phase = DONE
    if phase != previous_phase:
        state[AGE] = 0.0
    state[PHASE] = phase

    excess = 0.0
    flow = state[FLOW]
    if phase == RUNUP:
        excess = unit * min(prm.runup_drift * math.exp(state[AGE] / prm.runup_acceleration), prm.runup_drift_cap)
        flow = min(flow * math.exp(prm.runup_volume_growth), prm.runup_volume_cap)
    elif phase == REVERSAL:
        excess = -prm.reversal_pull * (log_open - log_vwap) - prm.reversal_push * unit
        flow = 1.0 + (flow - 1.0) * prm.reversal_volume_decay
    else:
        flow = 1.0 + (flow - 1.0) * prm.volume_decay
    state[AGE] += 1.0

    sd = sigma * tab.minute_sd_weight[j]
    z, volume_z = normal_pair(rng)
    z = own_load * z + common
    jump = 0.0
    if uniform(rng) < tab.jump_prob:
        jump = sigma * (prm.jump_mean + prm.jump_sd * normal(rng))
    log_close = log_open + drift * tab.variance_weight[j] + excess + sd * z + jump
    move = log_close - log_open
    log_high = 0.5 * (log_open + log_close + math.sqrt(move * move - 2.0 * sd * sd * math.log(uniform(rng))))
    log_low = 0.5 * (log_open + log_close - math.sqrt(move * move - 2.0 * sd * sd * math.log(uniform(rng))))

    expected_volume = volume_level * tab.volume_weight[j]
    noise = prm.minute_volume_noise
    log_noise = noise * volume_z - 0.5 * noise * noise + prm.volume_abs_shock * (abs(z) - 0.7978845608028654)
    volume = float(round(expected_volume * flow * math.exp(log_noise)))
    typical = (math.exp(log_high) + math.exp(log_low) + math.exp(log_close)) / 3.0
    state[CUM_PV] += typical * volume
    state[CUM_V] += volume
    state[SURGE] += prm.surge_smoothing * (volume / expected_volume - state[SURGE])
    state[FLOW] = flow
    state[LOG_CLOSE] = log_close
    return log_open, log_high, log_low, log_close, volume, tab.minute_sd_weight[j] * z, jump


@njit(cache=True)
def _binomial_small(trials, prob, rng):
    """Binomial(trials, prob) by inversion (fast when trials * prob is small)."""
    u = uniform(rng)
    pmf = (1.0 - prob) ** trials
    cdf = pmf
    k = 0
    while u > cdf and k < trials:
        pmf *= (trials - k) / (k + 1.0) * prob / (1.0 - prob)
        k += 1
        cdf += pmf
    return k


@njit(cache=True)
def rest_of_session(log_price, first, sigma, drift, prm, tab, rng):
    """Close after minutes ``first..M-1`` of a session with no episode left, drawn in one step (the sum of
    their drifts, diffusive shocks and jumps has this exact law). Returns ``(log_close, shock, jumps)``."""
    share = tab.variance_tail[first]
    z, jump_z = normal_pair(rng)
    jumps = _binomial_small(tab.minutes_per_day - first, tab.jump_prob, rng)
    jump_sum = sigma * (jumps * prm.jump_mean + math.sqrt(jumps) * prm.jump_sd * jump_z)
    log_close = log_price + drift * share + sigma * math.sqrt(share) * z + jump_sum
    return log_close, math.sqrt(share) * z, jumps


# ----------------------------------------------------------------------------------------------
# Simulators (the generator and the oracle's Monte Carlo). They live beside the step kernels because
# numba's on-disk cache only notices edits to the file of the function it compiled.


@njit(cache=True)
def market_factor(n_days, minutes, seed):
    """A universe's market factor: independent N(0,1) draws that every symbol shares, from stream 0 of
    ``seed`` (uint64), day by day (a longer sample extends a shorter one).

    Returns ``price`` ``(N, M + 1)`` (column 0: the shock of session d's overnight gap, column 1 + j: minute
    j's) and ``vol`` ``(N + 1, 2)`` (short, long log-vol; row 0: the stationary start, row d + 1: the
    innovations at the close of d), the layout :func:`simulate_market` reads.
    """
    rng = np.empty(1, np.uint64)
    seed_stream(rng, seed, 0)
    price = np.empty((n_days, minutes + 1))
    vol = np.empty((n_days + 1, 2))
    for d in range(n_days + 1):
        vol[d, 0], vol[d, 1] = normal_pair(rng)
        if d < n_days:
            for j in range(minutes + 1):
                price[d, j] = normal(rng)
    return price, vol


@njit(cache=True)
def simulate_market(n_days, log_initial_price, seed, prm, tab, factor_price, factor_vol, factor_share):
    """Run the process for ``n_days`` sessions from a stationary log-vol draw.

    Each standardized diffusive shock (overnight gap, minutes) and log-vol innovation, the stationary start
    included, is ``sqrt(1 - factor_share) * z + sqrt(factor_share) * f`` with ``z`` from the symbol's own
    stream (``seed``) and ``f`` the matching market-factor draw of ``factor_price, factor_vol`` (layout of
    :func:`market_factor`): still N(0,1), so every symbol of a universe follows the single market's law.
    ``factor_share = 0`` gives the lone market bit for bit whatever the factor arrays hold (if finite).

    Returns ``bars`` ``(5, N, M)`` (log open, log high, log low, log close, volume), ``minute_state``
    ``(N, M, N_STATE)`` (state at each minute's close), ``daily`` ``(10, N)`` (rows: s_d, l_d, sigma_d,
    drift, volume level, regime logit, drawdown, IV, jump return, jump count).
    """
    own_load = math.sqrt(1.0 - factor_share)
    common_price = math.sqrt(factor_share) * factor_price  # (N, M + 1): the factor's part of each shock
    common_vol = math.sqrt(factor_share) * factor_vol  # (N + 1, 2)
    minutes = tab.minutes_per_day
    bars = np.empty((5, n_days, minutes))
    minute_state = np.empty((n_days, minutes, N_STATE))
    daily = np.empty((10, n_days))
    rng = np.empty(1, np.uint64)
    seed_stream(rng, seed, 0)
    state = np.empty(N_STATE)
    window = prm.drawdown_window_days
    s = prm.short_noise / math.sqrt(1.0 - prm.short_persistence**2) * (own_load * normal(rng) + common_vol[0, 0])
    l = prm.long_noise / math.sqrt(1.0 - prm.long_persistence**2) * (own_load * normal(rng) + common_vol[0, 1])
    iv_prev = implied_vol(s, l, 0.0, prm, tab)
    drawdown_prev = 0.0
    log_close = log_initial_price
    for d in range(n_days):
        sigma, drift, volume_level, regime, onset, shock = start_session(
            state, log_close, s, l, iv_prev, drawdown_prev, prm, tab, rng, own_load, common_price[d, 0]
        )
        jump_return = 0.0
        jumps = 0
        for j in range(minutes):
            common = common_price[d, j + 1]
            out = step_minute(state, j, onset, sigma, drift, volume_level, regime, prm, tab, rng, own_load, common)
            for field in range(5):
                bars[field, d, j] = out[field]
            minute_state[d, j] = state
            shock += out[5]
            if out[6] != 0.0:
                jumps += 1
                jump_return += out[6]
        log_close = state[LOG_CLOSE]
        peak = log_initial_price if d + 1 < window else -np.inf
        for i in range(max(0, d - window + 1), d + 1):
            peak = max(peak, bars[3, i, minutes - 1])
        drawdown = 1.0 - math.exp(log_close - peak)
        daily[0, d], daily[1, d], daily[2, d], daily[3, d] = s, l, sigma, drift
        daily[4, d], daily[5, d], daily[6, d] = volume_level, regime, drawdown
        daily[8, d], daily[9, d] = jump_return, jumps
        s, l = next_log_vol(s, l, shock, jumps, prm, rng, own_load, common_vol[d + 1, 0], common_vol[d + 1, 1])
        iv_prev = implied_vol(s, l, drawdown, prm, tab)
        drawdown_prev = drawdown
        daily[7, d] = iv_prev
    return bars, minute_state, daily


@njit(cache=True)
def session_close(log_prev_close, s, l, iv_prev, drawdown_prev, prm, tab, state, rng):
    """One session's close from the previous close and state, in distribution equal to the generator's
    session: minutes are stepped one by one only while a run-up episode is pending or running; once the
    session has no episode left, the remaining minutes are drawn in one step. Returns
    ``(log_close, shock, jumps)`` with the day's standardized diffusive shock and jump count."""
    sigma, drift, volume_level, regime, onset, shock = start_session(
        state, log_prev_close, s, l, iv_prev, drawdown_prev, prm, tab, rng, 1.0, 0.0
    )
    minutes = tab.minutes_per_day
    jumps = 0
    j = 0
    if onset < minutes:
        while j < minutes and state[PHASE] != DONE:
            out = step_minute(state, j, onset, sigma, drift, volume_level, regime, prm, tab, rng, 1.0, 0.0)
            shock += out[5]
            jumps += out[6] != 0.0
            j += 1
    log_close, rest_shock, rest_jumps = rest_of_session(state[LOG_CLOSE], j, sigma, drift, prm, tab, rng)
    return log_close, shock + rest_shock, jumps + rest_jumps


@njit(cache=True, parallel=True)
def expected_gap_paths(
    starts, seeds, log_close, short_log_vol, long_log_vol, iv, drawdown, history_peak,
    horizon, n_paths, annualization, prm, tab,
):
    """Monte Carlo mean and standard error of yA (vol points) for each start day ``t = starts[i]``.

    ``starts, seeds``: ``(T,)`` start days and their stream seeds; ``log_close, short_log_vol,
    long_log_vol, iv, drawdown``: ``(N,)`` per session (the state at the close of t is
    ``short_log_vol[t+1], long_log_vol[t+1]``); ``history_peak``: ``(T, horizon)``, the max log close over
    the part of day t+k+1's drawdown window that lies at or before t (-inf where none). Returns two ``(T,)``.
    """
    count = starts.shape[0]
    mean = np.empty(count)
    stderr = np.empty(count)
    for i in prange(count):
        rng = np.empty(1, np.uint64)
        state = np.empty(N_STATE)
        t = starts[i]
        total = 0.0
        total_sq = 0.0
        for path in range(n_paths):
            seed_stream(rng, seeds[i], path)
            x, s, l = log_close[t], short_log_vol[t + 1], long_log_vol[t + 1]
            iv_prev, drawdown_prev = iv[t], drawdown[t]
            peak = -np.inf
            sum_sq = 0.0
            for k in range(horizon):
                close, shock, jumps = session_close(x, s, l, iv_prev, drawdown_prev, prm, tab, state, rng)
                sum_sq += (close - x) ** 2
                x = close
                s, l = next_log_vol(s, l, shock, jumps, prm, rng, 1.0, 0.0, 0.0)
                peak = max(peak, x)
                drawdown_prev = 1.0 - math.exp(x - max(peak, history_peak[i, k]))
                iv_prev = implied_vol(s, l, drawdown_prev, prm, tab)
            gap = 100.0 * math.sqrt(annualization / horizon * sum_sq) - iv[t]
            total += gap
            total_sq += gap * gap
        average = total / n_paths
        variance = max(total_sq / n_paths - average**2, 0.0) * n_paths / max(n_paths - 1, 1)
        mean[i] = average
        stderr[i] = math.sqrt(variance / n_paths)
    return mean, stderr


@njit(cache=True, parallel=True)
def downside_first_paths(
    minute_state, log_down, log_up, horizon, n_paths, seed, sigma, drift, volume_level, regime, prm, tab
):
    """P(yB = 1) for every minute m of one session; ``(M,)``, NaN where ``log_down[m]`` is NaN (no label).

    ``minute_state``: ``(M, N_STATE)`` the session's stored states; ``log_down, log_up``: ``(M,)`` log
    barriers ``log(close_m -/+ k ATR_m)``; ``horizon``: H minutes; the day's inputs as in the generator.
    """
    minutes = minute_state.shape[0]
    proba = np.full(minutes, np.nan)
    for m in prange(minutes):
        if np.isnan(log_down[m]):
            continue
        rng = np.empty(1, np.uint64)
        state = np.empty(N_STATE)
        hits = 0
        for path in range(n_paths):
            seed_stream(rng, seed, m * n_paths + path)
            state[:] = minute_state[m]
            onset = draw_onset(m, uniform(rng), tab.onset_cdf) if state[PHASE] == QUIET else minutes
            for j in range(m + 1, m + horizon + 1):
                bar = step_minute(state, j, onset, sigma, drift, volume_level, regime, prm, tab, rng, 1.0, 0.0)
                log_high, log_low = bar[1], bar[2]
                down = log_low <= log_down[m]
                if down or log_high >= log_up[m]:
                    if down and log_high < log_up[m]:
                        hits += 1
                    break
        proba[m] = hits / n_paths
    return proba
