"""Paired significance tests of a model against a baseline scored on the same rows or dates.

Conventions shared by every test here:

- ``difference`` is always **model minus baseline**. For losses (Diebold-Mariano, log loss) a negative
  difference means the model is better; for AUC and Sharpe ratio a positive difference means the model is
  better. p-values are two-sided (H0: equal expected loss / AUC / Sharpe ratio); confidence intervals are
  for the difference, at ``confidence`` (default 0.95), and agree with the p-value (the interval excludes 0
  exactly when p < 1 - confidence).
- Inputs are aligned, finite 1-D arrays (numpy or pandas; two pandas Series must share an index). NaN/inf
  is a ValueError, never silently dropped. A result that is mathematically undefined on valid input (a
  constant loss differential, a strategy that never trades, one class present) has ``p_value`` None and a
  ``reason``; it never raises and is never NaN.
- Each test returns a frozen dataclass with ``to_dict()`` (plain Python types, ready for JSON).

Methods: Diebold & Mariano (1995), JBES 13(3); Harvey, Leybourne & Newbold (1997), IJF 13(2); Newey & West
(1987, 1994); DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44(3), with the fast algorithm of Sun &
Xu (2014), IEEE SPL 21(11); Ledoit & Wolf (2008), J. Empirical Finance 15(5). HAC covariances come from
statsmodels (``S_hac_simple``), the group bootstrap from ``arch.bootstrap``; DeLong is hand-written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from arch.bootstrap import CircularBlockBootstrap, IIDBootstrap
from scipy import stats
from statsmodels.stats.sandwich_covariance import (
    S_hac_simple,
    weights_bartlett,
    weights_uniform,
)

from lab_v10.src.eval.metrics import PROBA_CLIP

_KERNELS = {"bartlett": weights_bartlett, "uniform": weights_uniform}


class _Result:
    def to_dict(self) -> dict[str, Any]:
        items = dataclasses.asdict(self).items()
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in items}


# ----------------------------------------------------------------------------------------------
# Per-row losses (lower is better)


def squared_error(y: Any, mu: Any) -> np.ndarray:
    """Per-row squared error (y - mu)^2, in y's units squared."""
    y, mu = _pair("y", y, "mu", mu)
    return (y - mu) ** 2


def gaussian_nll(y: Any, mu: Any, sigma: Any) -> np.ndarray:
    """Per-row negative log density of y under N(mu, sigma^2), in nats. ValueError unless sigma > 0."""
    y, mu = _pair("y", y, "mu", mu)
    _, sigma = _pair("y", y, "sigma", sigma)
    if (sigma <= 0).any():
        raise ValueError(f"sigma: expected > 0 on every row, got {sigma.min()} at row {int(sigma.argmin())}")
    return -stats.norm.logpdf(y, loc=mu, scale=sigma)


def binary_log_loss(y: Any, proba: Any) -> np.ndarray:
    """Per-row log loss -[y log p + (1-y) log(1-p)] in nats, p clipped to [1e-15, 1 - 1e-15]."""
    y, p = _binary("y", y, "proba", proba)
    p = np.clip(p, PROBA_CLIP, 1 - PROBA_CLIP)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


# ----------------------------------------------------------------------------------------------
# Diebold-Mariano test of equal expected loss


@dataclass(frozen=True)
class DieboldMarianoResult(_Result):
    """``difference``: mean of d_t = loss_model_t - loss_baseline_t (negative: model has lower loss).
    ``statistic``: HLN-corrected DM statistic (t(n-1) reference); ``se``: the standard error of
    ``difference`` implied by it. ``unit``: what one of the ``n`` observations is ("row", or "group" when
    per-group mean differences were tested)."""

    difference: float
    statistic: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    n: int
    horizon: int
    lags: int
    kernel: str
    confidence: float
    unit: str = "row"
    reason: str | None = None


def dm_default_lags(horizon: int, n: int) -> int:
    """Default Bartlett lag count: max(2 * (horizon - 1), floor(4 (n / 100)^(2/9))).

    horizon - 1 lags is the minimum for h-step forecasts with overlapping labels (d_t is MA(h-1) under
    the null of optimal forecasts); Bartlett weights shrink those autocovariances, so twice that is used
    (simulated independent 21-step moving-sum errors, nominal 5%: rejection ~0.09 with h - 1 lags at any
    n; with 2(h - 1) lags 0.084 / 0.074 / 0.069 at n = 500 / 1000 / 2000). The second term is the
    Newey-West (1994) plug-in rule, which governs horizon 1."""
    return max(2 * (int(horizon) - 1), int(np.floor(4 * (n / 100.0) ** (2.0 / 9.0))))


def diebold_mariano(
    loss_model: Any,
    loss_baseline: Any,
    horizon: int = 1,
    lags: int | None = None,
    kernel: str = "bartlett",
    confidence: float = 0.95,
) -> DieboldMarianoResult:
    """Diebold-Mariano (1995) test of H0: E[loss_model - loss_baseline] = 0, two-sided.

    ``loss_*``: per-row losses of the same targets in time order (e.g. :func:`squared_error`,
    :func:`gaussian_nll`, :func:`binary_log_loss`); lower is better. ``horizon``: forecast horizon in
    rows (21 for 21-day labels on daily rows). The long-run variance of d_t is a HAC estimate
    (statsmodels ``S_hac_simple``) with ``kernel`` "bartlett" (Newey-West 1987; default ``lags`` from
    :func:`dm_default_lags`) or "uniform" (the truncated estimator of DM 1995; default ``lags`` =
    horizon - 1; when it is not positive, Bartlett weights are used and ``kernel`` says
    "uniform->bartlett"). The statistic carries the Harvey-Leybourne-Newbold (1997) small-sample factor
    sqrt((n + 1 - 2h + h(h - 1)/n) / n) and is referred to Student t(n - 1); the interval is
    difference +- t quantile * se. ValueError when n < max(2 * horizon, lags + 2).

    Which kernel: Bartlett is always positive but, at h = 21, rejects a true null somewhat too often
    (see :func:`dm_default_lags`); "uniform" with h - 1 lags is the estimator HLN's correction was derived
    for and held 0.053-0.065 at n = 500-2000 in the same simulation. Prefer "uniform" for h > 1 when a
    false "model beats baseline" is the costly error.
    """
    lm, lb = _pair("loss_model", loss_model, "loss_baseline", loss_baseline)
    return _dm(lm - lb, horizon, lags, kernel, confidence, "row")


def log_loss_test(
    y: Any,
    proba_model: Any,
    proba_baseline: Any,
    groups: Any = None,
    lags: int | None = None,
    confidence: float = 0.95,
) -> DieboldMarianoResult:
    """Paired test of equal expected log loss of two probability forecasts of binary ``y`` (Book B).

    d = log loss(model) - log loss(baseline) per row, in nats (negative: model better), tested with
    :func:`diebold_mariano` at horizon 1 (Bartlett, Newey-West lags). Rows in time order.
    ``groups`` (e.g. session dates; sorted labels give the time order): rows of one group are correlated
    (minutes of one session), so the series tested is the per-group mean of d, one value per group
    (``unit`` "group"; every group weighs equally). Without ``groups`` rows are the units, which is only
    right when their correlation dies out within the HAC lags.
    """
    d = binary_log_loss(y, proba_model) - binary_log_loss(y, proba_baseline)
    if groups is None:
        return _dm(d, 1, lags, "bartlett", confidence, "row")
    codes, _ = _group_codes(groups, d.size)
    d = np.bincount(codes, weights=d) / np.bincount(codes)
    return _dm(d, 1, lags, "bartlett", confidence, "group")


def _dm(d: np.ndarray, horizon: int, lags: int | None, kernel: str, confidence: float, unit: str):
    n, h = d.size, int(horizon)
    if h < 1:
        raise ValueError(f"horizon: expected an integer >= 1, got {horizon}")
    if kernel not in _KERNELS:
        raise ValueError(f"kernel: expected one of {sorted(_KERNELS)}, got {kernel!r}")
    _check_confidence(confidence)
    if lags is None:
        lags = h - 1 if kernel == "uniform" else dm_default_lags(h, n)
    lags = int(lags)
    if lags < 0 or n < max(2 * h, lags + 2):
        raise ValueError(f"loss differential: expected at least max(2*horizon, lags+2) = "
                         f"{max(2 * h, lags + 2)} rows for horizon {h} and {lags} lags, got {n} (lags >= 0)")
    base = {"difference": float(d.mean()), "n": n, "horizon": h, "lags": lags, "confidence": confidence,
            "unit": unit}
    variance = S_hac_simple(d - d.mean(), nlags=lags, weights_func=_KERNELS[kernel])[0, 0] / n
    if kernel == "uniform" and variance <= 0:
        kernel = "uniform->bartlett"
        variance = S_hac_simple(d - d.mean(), nlags=lags, weights_func=weights_bartlett)[0, 0] / n
    if not variance > 1e-14 * max(float(np.mean(d * d)), 1e-300):
        return DieboldMarianoResult(statistic=None, p_value=None, ci_low=None, ci_high=None, se=None,
                                    kernel=kernel, reason="loss differential is constant (zero variance)",
                                    **base)
    hln = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    se = float(np.sqrt(variance / n) / hln)
    stat = base["difference"] / se
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return DieboldMarianoResult(statistic=float(stat), p_value=float(2 * stats.t.sf(abs(stat), n - 1)),
                                ci_low=base["difference"] - half, ci_high=base["difference"] + half,
                                se=se, kernel=kernel, **base)


# ----------------------------------------------------------------------------------------------
# Paired AUC difference (Book B)


@dataclass(frozen=True)
class AUCDifferenceResult(_Result):
    """``difference`` = auc_model - auc_baseline (positive: the model ranks positives higher more often).
    ``method``: "delong" or "group_bootstrap"; the bootstrap fields are None for DeLong."""

    auc_model: float | None
    auc_baseline: float | None
    difference: float | None
    statistic: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    n: int
    n_positive: int
    n_negative: int
    method: str
    confidence: float
    n_groups: int | None = None
    n_boot: int | None = None
    block_length: int | None = None
    seed: int | None = None
    reason: str | None = None


def auc_difference(
    y: Any,
    score_model: Any,
    score_baseline: Any,
    groups: Any = None,
    n_boot: int = 1000,
    block_length: int = 1,
    seed: int = 0,
    confidence: float = 0.95,
) -> AUCDifferenceResult:
    """Paired test of H0: AUC(model) = AUC(baseline) on the same labelled rows, two-sided.

    ``y``: 0/1 labels; ``score_*``: any scores where higher means "more likely 1" (probabilities).
    Without ``groups``: DeLong, DeLong & Clarke-Pearson (1988) variance of the paired AUC difference via
    the structural components (midrank algorithm of Sun & Xu 2014), z = difference / se against N(0, 1).
    DeLong assumes rows are independent; use it for one row per session or day.
    With ``groups`` (session labels, one per row; sorted labels give time order): minutes of one session
    are correlated, which DeLong ignores (its p-values are then too small). Sessions are resampled with
    replacement, ``n_boot`` times with fixed ``seed`` (``arch.bootstrap.IIDBootstrap``: a cluster
    bootstrap; ``block_length`` > 1: ``CircularBlockBootstrap`` over consecutive sessions, for
    dependence across sessions), AUCs recomputed on the pooled rows of each draw; se = standard deviation
    of the bootstrap differences (draws with one class are skipped), z and the interval as for DeLong.
    AUCs are None (with ``reason``) when only one class is present.
    """
    y, s1 = _binary("y", y, "score_model", score_model, proba=False)
    _, s2 = _pair("y", y, "score_baseline", score_baseline)
    _check_confidence(confidence)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    base = {"n": int(y.size), "n_positive": n_pos, "n_negative": n_neg, "confidence": confidence}
    if groups is None:
        base["method"] = "delong"
    else:
        base.update(method="group_bootstrap", n_boot=int(n_boot), block_length=int(block_length), seed=seed)
    empty = {"statistic": None, "p_value": None, "ci_low": None, "ci_high": None, "se": None}
    if n_pos == 0 or n_neg == 0:
        return AUCDifferenceResult(auc_model=None, auc_baseline=None, difference=None, **empty, **base,
                                   reason="AUC undefined: only one class present in y")
    scores = np.vstack([s1, s2])
    if groups is None:
        aucs, cov = _delong(pos, scores)
        variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]) if min(n_pos, n_neg) > 1 else 0.0
    else:
        aucs = _delong(pos, scores)[0]
        codes, n_groups = _group_codes(groups, y.size)
        base["n_groups"] = n_groups
        diffs = _group_bootstrap_auc(pos, scores, codes, n_groups, int(n_boot), int(block_length), seed)
        variance = float(np.var(diffs, ddof=1)) if diffs.size > 1 else 0.0
    diff = float(aucs[0] - aucs[1])
    out = {"auc_model": float(aucs[0]), "auc_baseline": float(aucs[1]), "difference": diff}
    if not variance > 1e-20:
        return AUCDifferenceResult(**out, **empty, **base,
                                   reason="variance of the AUC difference is zero (identical rankings, or "
                                          "too few rows per class)")
    se = float(np.sqrt(variance))
    z, half = diff / se, float(stats.norm.ppf(0.5 + confidence / 2)) * se
    return AUCDifferenceResult(**out, statistic=z, p_value=float(2 * stats.norm.sf(abs(z))),
                               ci_low=diff - half, ci_high=diff + half, se=se, **base)


def _delong(pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k x k) for scores (k x n), Sun & Xu (2014) Algorithm."""
    x, yneg = scores[:, pos], scores[:, ~pos]
    m, n = x.shape[1], yneg.shape[1]
    tz = stats.rankdata(np.hstack([x, yneg]), axis=1)
    tx, ty = stats.rankdata(x, axis=1), stats.rankdata(yneg, axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives it outranks (ties count 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives that outrank it
    cov = (np.cov(v10) / m if m > 1 else 0.0) + (np.cov(v01) / n if n > 1 else 0.0)
    return aucs, np.atleast_2d(cov)


def _sorted_ties(pos: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Per score row: the ascending order of the rows, the tie-group id and the label of each sorted row."""
    out = []
    for s in scores:
        order = np.argsort(s, kind="stable")
        out.append((order, np.concatenate([[0], np.cumsum(np.diff(s[order]) != 0)]), pos[order]))
    return out


def _weighted_auc(sorted_scores: list, w: np.ndarray) -> np.ndarray:
    """Row-weighted AUC per score row (ties count 1/2), NaN when a class has zero weight:
    sum_i sum_j w_i w_j [s_i > s_j] / (W_pos W_neg) over positives i and negatives j."""
    aucs = []
    for order, tie, po in sorted_scores:
        wo = w[order]
        p_t, n_t = np.bincount(tie, weights=wo * po), np.bincount(tie, weights=wo * ~po)
        total = p_t.sum() * n_t.sum()
        aucs.append(float(p_t @ (np.cumsum(n_t) - 0.5 * n_t)) / total if total > 0 else np.nan)
    return np.array(aucs)


def _group_bootstrap_auc(pos, scores, codes, n_groups, n_boot, block_length, seed) -> np.ndarray:
    """AUC differences over bootstrap draws of whole groups. A draw weights each row by how many times
    its group was drawn, and the weighted Mann-Whitney AUC is computed from one sort made up front."""
    if n_boot < 2 or block_length < 1 or n_groups < 2:
        raise ValueError(f"group bootstrap: expected n_boot >= 2, block_length >= 1 and at least 2 groups, "
                         f"got n_boot={n_boot}, block_length={block_length}, groups={n_groups}")
    sorted_scores = _sorted_ties(pos, scores)

    def draw(g: np.ndarray) -> np.ndarray:
        a = _weighted_auc(sorted_scores, np.bincount(g, minlength=n_groups)[codes].astype(float))
        return np.array([a[0] - a[1]])

    ids = np.arange(n_groups)
    boot = (IIDBootstrap(ids, seed=seed) if block_length == 1
            else CircularBlockBootstrap(block_length, ids, seed=seed))
    diffs = boot.apply(draw, n_boot)[:, 0]
    return diffs[np.isfinite(diffs)]


# ----------------------------------------------------------------------------------------------
# Sharpe ratio difference (Ledoit & Wolf 2008)


@dataclass(frozen=True)
class SharpeDifferenceResult(_Result):
    """Annualized Sharpe ratios (mean / std with ddof 1, times sqrt(periods_per_year)); ``difference`` =
    sharpe_model - sharpe_baseline (positive: model better); ``se`` and the interval are annualized too."""

    sharpe_model: float | None
    sharpe_baseline: float | None
    difference: float | None
    statistic: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    n: int
    lags: int
    kernel: str
    periods_per_year: int
    confidence: float
    reason: str | None = None


def sharpe_difference(
    returns_model: Any,
    returns_baseline: Any,
    periods_per_year: int = 252,
    lags: int | None = None,
    confidence: float = 0.95,
) -> SharpeDifferenceResult:
    """Ledoit & Wolf (2008) HAC test of H0: Sharpe(model) = Sharpe(baseline), two-sided.

    ``returns_*``: per-period (daily) returns of two strategies on the same dates, in time order.
    The difference of the plain Sharpe ratios (as ``metrics.sharpe_ratio``) gets a delta-method standard
    error: the gradient of SR1 - SR2 in the moments (mu1, mu2, E r1^2, E r2^2) times the Newey-West
    (Bartlett, statsmodels ``S_hac_simple``) long-run covariance of those moments; ``lags`` defaults to
    floor(4 (n / 100)^(2/9)). z = difference / se against N(0, 1) (LW 2008, Section 3.1, without
    prewhitening). A strategy with zero variance (e.g. never trades) has an undefined Sharpe ratio:
    its ratio, the difference and the p-value are None with a ``reason``. ValueError when n < lags + 3.
    """
    r1, r2 = _pair("returns_model", returns_model, "returns_baseline", returns_baseline)
    _check_confidence(confidence)
    n = r1.size
    lags = int(np.floor(4 * (n / 100.0) ** (2.0 / 9.0))) if lags is None else int(lags)
    if lags < 0 or n < lags + 3:
        raise ValueError(f"returns: expected at least lags + 3 = {lags + 3} rows (lags >= 0), got {n}")
    base = {"n": n, "lags": lags, "kernel": "bartlett", "periods_per_year": int(periods_per_year),
                "confidence": confidence}
    empty = {"statistic": None, "p_value": None, "ci_low": None, "ci_high": None, "se": None}
    ann = np.sqrt(periods_per_year)
    flat = [name for name, r in (("returns_model", r1), ("returns_baseline", r2)) if np.ptp(r) == 0]
    sr = [None if np.ptp(r) == 0 else float(r.mean() / r.std(ddof=1) * ann) for r in (r1, r2)]
    if flat:
        return SharpeDifferenceResult(sharpe_model=sr[0], sharpe_baseline=sr[1], difference=None, **empty,
                                      **base, reason=f"zero variance in {' and '.join(flat)} (e.g. never "
                                                     f"trades): Sharpe ratio undefined")
    diff = sr[0] - sr[1]
    moments = np.column_stack([r1, r2, r1**2, r2**2])
    mu1, mu2, g1, g2 = moments.mean(axis=0)
    v1, v2 = g1 - mu1**2, g2 - mu2**2
    grad = np.array([g1 / v1**1.5, -g2 / v2**1.5, -mu1 / (2 * v1**1.5), mu2 / (2 * v2**1.5)])
    psi = S_hac_simple(moments - moments.mean(axis=0), nlags=lags) / n
    variance = float(grad @ psi @ grad) / n
    if not variance > 1e-14 * float(grad**2 @ np.diag(psi)) / n:
        return SharpeDifferenceResult(sharpe_model=sr[0], sharpe_baseline=sr[1], difference=diff, **empty,
                                      **base, reason="variance of the Sharpe difference is zero (the two "
                                                     "return series are proportional)")
    se = float(np.sqrt(variance) * ann)
    z, half = diff / se, float(stats.norm.ppf(0.5 + confidence / 2)) * se
    return SharpeDifferenceResult(sharpe_model=sr[0], sharpe_baseline=sr[1], difference=diff, statistic=z,
                                  p_value=float(2 * stats.norm.sf(abs(z))), ci_low=diff - half,
                                  ci_high=diff + half, se=se, **base)


# ----------------------------------------------------------------------------------------------
# Input checks


def _finite(name: str, values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}: expected finite values, got NaN/inf at {bad.size} rows "
                         f"(first: {bad[:5].tolist()}); align the series and drop missing rows first")
    return arr


def _pair(name_a: str, a: Any, name_b: str, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two aligned finite 1-D arrays; two pandas Series must have equal indexes."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series) and not a.index.equals(b.index):
        raise ValueError(f"{name_b}: expected the same index as {name_a} (align the series first)")
    x, y = _finite(name_a, a), _finite(name_b, b)
    if x.size != y.size:
        raise ValueError(f"{name_b}: expected {x.size} rows aligned with {name_a}, got {y.size}")
    return x, y


def _binary(name_y: str, y: Any, name_p: str, p: Any, proba: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y, p = _pair(name_y, y, name_p, p)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{name_y}: expected binary labels 0/1, got values {np.unique(y)[:5].tolist()}")
    if proba and ((p < 0) | (p > 1)).any():
        raise ValueError(f"{name_p}: expected probabilities in [0, 1], got range [{p.min()}, {p.max()}]")
    return y, p


def _group_codes(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 of ``groups`` in sorted label order, and G."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != n:
        raise ValueError(f"groups: expected one label per row ({n}), got shape {g.shape}")
    if pd.isna(g).any():
        raise ValueError("groups: expected a label on every row, got missing values")
    codes, uniques = pd.factorize(g, sort=True)
    return codes.astype(np.intp), len(uniques)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
