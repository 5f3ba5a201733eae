"""Ensembles of HRM networks (``train.ensemble_size`` = K): the members' seeds and their combined forecast.

Member *k* trains from its own seed (:func:`member_seeds`: initialisation and batch order) on the same
samples and scalers. The forecasts are the mixture of the members' (Lakshminarayanan et al. 2017,
:func:`combine_members`): ``mu`` is the members' mean, ``sigma^2`` their mean variance plus the variance of
their ``mu``, and the minute probability the mean of theirs.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lab_v10.src.options.hrm_predict import HRMPredictions


def member_seeds(seed: int, ensemble_size: int) -> list[int]:
    """The seed of each ensemble member: ``seed`` itself for member 0 (so K = 1 is the plain network), then
    independent draws ``SeedSequence([seed, k])`` for member k >= 1 (uint32, fit for torch.manual_seed)."""
    return [seed] + [int(np.random.SeedSequence([seed, k]).generate_state(1)[0]) for k in range(1, ensemble_size)]


@dataclasses.dataclass
class EnsemblePredictions:
    """The members' outputs combined; standardized yA units for ``mu`` and ``var``.

    mu, var (N,) float64: mixture mean and variance of Head A; proba_b (N, T_L) float64: mean Head-B
    probability per minute (NaN at padded minutes); steps (N, K) int64: ACT segments each member used.
    """

    mu: np.ndarray
    var: np.ndarray
    proba_b: np.ndarray
    steps: np.ndarray


def combine_members(preds: list[HRMPredictions]) -> EnsemblePredictions:
    """Mixture of equally weighted members: mean mu, mean variance + variance of mu, mean probability."""
    mu = np.stack([p.mu for p in preds]).astype(np.float64)  # (K, N)
    var = np.exp(np.stack([p.log_var for p in preds]).astype(np.float64))  # (K, N)
    proba = np.stack([p.proba_b for p in preds]).astype(np.float64)  # (K, N, T_L)
    mean = mu.mean(axis=0)  # (N,)
    return EnsemblePredictions(
        mu=mean,
        var=var.mean(axis=0) + ((mu - mean) ** 2).mean(axis=0),
        proba_b=proba.mean(axis=0),
        steps=np.stack([p.steps for p in preds], axis=1).astype(np.int64),
    )
