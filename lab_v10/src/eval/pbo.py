"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV).

Bailey, Borwein, López de Prado & Zhu (2017), "The Probability of Backtest Overfitting", Journal of
Computational Finance 20(4). No installed library implements it, so it is written here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Any

import numpy as np
from scipy import stats

MAX_COMBINATIONS = 184_756  # C(20, 10): n_groups up to 20; the (splits x trials) arrays stay in memory


@dataclass(frozen=True)
class PBOResult:
    """``pbo``: share of CSCV splits whose in-sample best trial ranks at or below the out-of-sample
    median (logit <= 0); 0 is no sign of overfitting, about 0.5 is selection no better than chance, above
    0.5 is worse than chance. ``logit_*``: summary of lambda = ln(w / (1 - w)) over the splits, w = the
    out-of-sample relative rank of the in-sample winner in (0, 1) (higher: winner also strong OOS)."""

    pbo: float
    n_combinations: int
    n_groups: int
    n_blocks: int
    n_trials: int
    logit_mean: float
    logit_median: float
    logit_std: float
    logit_min: float
    logit_max: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def probability_of_backtest_overfitting(scores: Any, n_groups: int = 16) -> PBOResult:
    """PBO of choosing the best of ``n_trials`` configurations by in-sample score (CSCV, Bailey et al. 2017).

    ``scores``: (n_blocks x n_trials) array (or DataFrame, trials as columns), one score per time block
    (e.g. a fold or month) and trial, higher is better, in time order. The blocks are cut into
    ``n_groups`` (S, even) contiguous groups (sizes differ by at most one block when S does not divide
    n_blocks). For each of the C(S, S/2) choices of S/2 groups as in-sample (the rest out-of-sample), a
    trial's score on a side is the mean of its block scores there; the in-sample best trial (first one on
    ties) gets its out-of-sample rank r in 1..N (average rank on ties), w = r / (N + 1) and
    lambda = logit(w). PBO = share of lambda <= 0. With pure-noise trials PBO is about 0.5 (exactly
    floor((N + 1) / 2) / N in expectation); with one trial dominant in every block it is 0.
    ValueError on NaN/inf, n_trials < 2, S odd or < 2, n_blocks < S, or n_groups > 20.
    """
    m = np.asarray(scores, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"scores: expected a 2-D (n_blocks x n_trials) array, got shape {m.shape}")
    n_blocks, n_trials = m.shape
    s = int(n_groups)
    if not np.isfinite(m).all():
        raise ValueError("scores: expected finite values, got NaN/inf (drop or fill incomplete blocks first)")
    if n_trials < 2:
        raise ValueError(f"scores: expected at least 2 trials (columns), got {n_trials}")
    if s < 2 or s % 2:
        raise ValueError(f"n_groups: expected an even number >= 2, got {n_groups}")
    if n_blocks < s:
        raise ValueError(f"scores: expected at least n_groups = {s} blocks (rows), got {n_blocks}")
    n_comb = comb(s, s // 2)
    if n_comb > MAX_COMBINATIONS:
        raise ValueError(f"n_groups: {s} groups give {n_comb} splits, over {MAX_COMBINATIONS}; use fewer")

    parts = np.array_split(np.arange(n_blocks), s)
    sums = np.vstack([m[p].sum(axis=0) for p in parts])  # (S, N) per-group score sums
    sizes = np.array([p.size for p in parts], dtype=float)
    is_groups = np.array(list(combinations(range(s), s // 2)), dtype=np.intp)  # (C, S/2)
    is_sum, is_size = sums[is_groups].sum(axis=1), sizes[is_groups].sum(axis=1)
    is_mean = is_sum / is_size[:, None]
    oos_mean = (sums.sum(axis=0) - is_sum) / (n_blocks - is_size)[:, None]
    best = np.argmax(is_mean, axis=1)
    ranks = stats.rankdata(oos_mean, axis=1)[np.arange(n_comb), best]
    w = ranks / (n_trials + 1)
    logits = np.log(w / (1 - w))
    return PBOResult(
        pbo=float(np.mean(logits <= 0)),
        n_combinations=int(n_comb),
        n_groups=s,
        n_blocks=int(n_blocks),
        n_trials=int(n_trials),
        logit_mean=float(logits.mean()),
        logit_median=float(np.median(logits)),
        logit_std=float(logits.std(ddof=1)) if n_comb > 1 else 0.0,
        logit_min=float(logits.min()),
        logit_max=float(logits.max()),
    )
