"""Tests of the paired significance tests (lab_v10/src/eval/significance.py) and PBO (pbo.py).

Worked examples check each statistic against an independent computation; null-calibration tests simulate
many replications with a fixed seed and check the 5% rejection rate; power tests check that a clearly
better model is detected.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score

from lab_v10.src.eval.metrics import sharpe_ratio
from lab_v10.src.eval.pbo import probability_of_backtest_overfitting
from lab_v10.src.eval.significance import (
    _sorted_ties,
    _weighted_auc,
    auc_difference,
    binary_log_loss,
    diebold_mariano,
    dm_default_lags,
    gaussian_nll,
    log_loss_test,
    sharpe_difference,
    squared_error,
)

H = 21  # the lab's label horizon in trading days


def _moving_sum_errors(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """Overlapping 21-step forecast errors: a moving sum of iid shocks (MA(20)), unit variance * scale."""
    return scale * np.convolve(rng.standard_normal(n + H - 1), np.ones(H) / np.sqrt(H), "valid")


def _rejection_rate(p_values: list[float | None]) -> float:
    assert all(p is not None for p in p_values)
    return float(np.mean(np.asarray(p_values) < 0.05))


# ----------------------------------------------------------------------------------------------
# Diebold-Mariano


def test_dm_matches_hand_computation_on_a_tiny_series():
    d = [0.5, 1.0, 2.0, 1.5, 0.0, -0.5, 0.5, 1.0]  # positively autocorrelated: uniform variance > 0
    n, h = len(d), 2
    mean = sum(d) / n
    gamma = [sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n for k in range(2)]
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    for kernel, w1 in (("uniform", 1.0), ("bartlett", 0.5)):  # Bartlett weight of lag 1 of 1 is 1 - 1/2
        res = diebold_mariano(np.array(d), np.zeros(n), horizon=h, lags=1, kernel=kernel)
        stat = mean / math.sqrt((gamma[0] + 2 * w1 * gamma[1]) / n) * hln
        assert res.difference == pytest.approx(mean)
        assert res.statistic == pytest.approx(stat)
        assert res.p_value == pytest.approx(2 * stats.t.sf(abs(stat), n - 1))
        half = stats.t.ppf(0.975, n - 1) * mean / stat
        assert (res.ci_low, res.ci_high) == pytest.approx((mean - half, mean + half))
        assert res.kernel == kernel
    # alternating signs: the truncated (uniform) variance is negative, so Bartlett weights are used
    flipped = diebold_mariano(np.array(d) * np.tile([1, -1], 4), np.zeros(n), horizon=h, lags=1, kernel="uniform")
    assert flipped.kernel == "uniform->bartlett" and flipped.p_value is not None


def test_dm_variance_equals_statsmodels_ols_hac_on_a_constant():
    rng = np.random.default_rng(0)
    d = _moving_sum_errors(rng, 600) ** 2 - _moving_sum_errors(rng, 600) ** 2 + 0.05
    res = diebold_mariano(d, np.zeros_like(d), horizon=H)
    assert res.lags == dm_default_lags(H, d.size) == 40
    ols = sm.OLS(d, np.ones_like(d)).fit(cov_type="HAC", cov_kwds={"maxlags": 40, "use_correction": False})
    hln = np.sqrt((d.size + 1 - 2 * H + H * (H - 1) / d.size) / d.size)
    assert res.difference == pytest.approx(ols.params[0])
    assert res.se * hln == pytest.approx(ols.bse[0], rel=1e-10)


def test_dm_null_calibration_with_overlapping_21_day_errors():
    rng = np.random.default_rng(42)
    p = {"bartlett": [], "uniform": [], "no_lags": []}
    for _ in range(500):
        d = _moving_sum_errors(rng, 2000) ** 2 - _moving_sum_errors(rng, 2000) ** 2
        p["bartlett"].append(diebold_mariano(d, np.zeros_like(d), H).p_value)
        p["uniform"].append(diebold_mariano(d, np.zeros_like(d), H, kernel="uniform").p_value)
        p["no_lags"].append(diebold_mariano(d, np.zeros_like(d), H, lags=0).p_value)
    assert 0.02 <= _rejection_rate(p["bartlett"]) <= 0.09
    assert 0.02 <= _rejection_rate(p["uniform"]) <= 0.09
    assert _rejection_rate(p["no_lags"]) > 0.3  # ignoring the overlap is badly over-sized


def test_dm_null_calibration_identical_forecasters_with_independent_noise():
    rng = np.random.default_rng(1)
    p = []
    for _ in range(800):
        signal = rng.normal(size=300)
        y = signal + rng.normal(size=300)
        loss_a = squared_error(y, signal + 0.5 * rng.normal(size=300))
        loss_b = squared_error(y, signal + 0.5 * rng.normal(size=300))
        p.append(diebold_mariano(loss_a, loss_b, horizon=1).p_value)
    assert 0.02 <= _rejection_rate(p) <= 0.09


def test_dm_detects_a_clearly_better_forecaster():
    rng = np.random.default_rng(2)
    results = [diebold_mariano(_moving_sum_errors(rng, 1500, 0.7) ** 2, _moving_sum_errors(rng, 1500) ** 2, H)
               for _ in range(50)]
    assert np.mean([r.p_value < 0.05 for r in results]) > 0.8
    assert all(r.difference < 0 for r in results)  # model minus baseline: lower loss is negative


def test_dm_constant_differential_has_no_p_value():
    loss = np.linspace(0, 1, 100)
    res = diebold_mariano(loss, loss, horizon=1)
    assert res.difference == 0 and res.p_value is None and "constant" in res.reason
    json.dumps(res.to_dict())


def test_dm_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        diebold_mariano([1.0, np.nan] * 30, np.zeros(60))
    with pytest.raises(ValueError, match="aligned"):
        diebold_mariano(np.zeros(60), np.zeros(59))
    with pytest.raises(ValueError, match="same index"):
        diebold_mariano(pd.Series(np.ones(60)), pd.Series(np.ones(60), index=np.arange(1, 61)))
    with pytest.raises(ValueError, match="at least"):
        diebold_mariano(np.ones(30), np.zeros(30), horizon=21)


def test_loss_helpers_match_reference_definitions():
    rng = np.random.default_rng(3)
    y, mu, sigma = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.5, 2, size=50)
    nll = 0.5 * np.log(2 * np.pi * sigma**2) + (y - mu) ** 2 / (2 * sigma**2)
    assert gaussian_nll(y, mu, sigma) == pytest.approx(nll)
    assert squared_error(y, mu) == pytest.approx((y - mu) ** 2)
    labels, proba = rng.integers(0, 2, 50), rng.uniform(size=50)
    assert binary_log_loss(labels, proba).mean() == pytest.approx(log_loss(labels, proba))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_nll(y, mu, np.zeros(50))


def test_log_loss_test_with_groups_tests_per_session_mean_differences():
    rng = np.random.default_rng(4)
    sessions = np.repeat(pd.date_range("2024-01-01", periods=80).astype(str), 30)
    y = rng.integers(0, 2, sessions.size)
    p_model, p_base = rng.uniform(0.05, 0.95, (2, sessions.size))
    res = log_loss_test(y, p_model, p_base, groups=sessions)
    d = pd.Series(binary_log_loss(y, p_model) - binary_log_loss(y, p_base)).groupby(sessions).mean()
    ref = diebold_mariano(d.to_numpy(), np.zeros(len(d)), horizon=1)
    assert (res.unit, res.n) == ("group", 80)
    assert (res.difference, res.statistic, res.p_value) == pytest.approx((ref.difference, ref.statistic, ref.p_value))
    assert log_loss_test(y, p_model, p_base).n == sessions.size


# ----------------------------------------------------------------------------------------------
# AUC difference (DeLong and group bootstrap)


def _direct_delong_variance(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float, float]:
    """AUCs and Var(AUC1 - AUC2) from the pairwise kernel psi, DeLong et al. (1988) eqs. (2)-(5)."""
    def components(s):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (a1, v10_1, v01_1), (a2, v10_2, v01_2) = components(s1), components(s2)
    s10, s01 = np.cov(np.vstack([v10_1, v10_2])), np.cov(np.vstack([v01_1, v01_2]))
    m, n = v10_1.size, v01_1.size
    s = s10 / m + s01 / n
    return a1, a2, s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_delong_matches_direct_variance_and_sklearn_auc_with_ties():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 40)
    s1, s2 = np.round(y + rng.normal(size=40), 1), np.round(y + 2 * rng.normal(size=40), 0)  # many ties
    res = auc_difference(y, s1, s2)
    a1, a2, var = _direct_delong_variance(y, s1, s2)
    assert res.auc_model == pytest.approx(roc_auc_score(y, s1)) and res.auc_model == pytest.approx(a1)
    assert res.auc_baseline == pytest.approx(roc_auc_score(y, s2)) and res.auc_baseline == pytest.approx(a2)
    assert res.se == pytest.approx(np.sqrt(var))
    assert res.p_value == pytest.approx(2 * stats.norm.sf(abs(res.difference) / np.sqrt(var)))
    assert res.method == "delong" and res.n_positive + res.n_negative == 40


def test_weighted_auc_matches_sklearn_sample_weight():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.normal(size=(2, 300)) + y, 1)
    w = rng.integers(0, 4, 300).astype(float)  # bootstrap multiplicities, including 0
    got = _weighted_auc(_sorted_ties(y, scores), w)
    assert got == pytest.approx([roc_auc_score(y, s, sample_weight=w) for s in scores])


def test_delong_null_calibration_and_power():
    rng = np.random.default_rng(7)
    p_null, p_alt = [], []
    for _ in range(600):
        y = rng.integers(0, 2, 200)
        x = y + rng.normal(size=200)
        p_null.append(auc_difference(y, x + rng.normal(size=200), x + rng.normal(size=200)).p_value)
        if len(p_alt) < 100:
            p_alt.append(auc_difference(y, x, x + 1.5 * rng.normal(size=200)).p_value)
    assert 0.02 <= _rejection_rate(p_null) <= 0.09
    assert _rejection_rate(p_alt) > 0.8


def _clustered_sessions(rng: np.random.Generator, n_sessions: int = 50, minutes: int = 8):
    """Book-B-like rows: labels and each model's score errors share a per-session component."""
    g = np.repeat(np.arange(n_sessions), minutes)
    z = np.repeat(rng.normal(size=n_sessions), minutes)
    y = (rng.random(g.size) < 1 / (1 + np.exp(0.5 - 1.5 * z))).astype(int)
    x = y + rng.normal(size=g.size)
    s1 = x + np.repeat(rng.normal(size=n_sessions), minutes) + 0.5 * rng.normal(size=g.size)
    s2 = x + np.repeat(rng.normal(size=n_sessions), minutes) + 0.5 * rng.normal(size=g.size)
    return g, y, s1, s2


def test_group_bootstrap_is_calibrated_where_delong_is_not():
    rng = np.random.default_rng(3)
    p_delong, p_boot = [], []
    for _ in range(200):
        g, y, s1, s2 = _clustered_sessions(rng)
        p_delong.append(auc_difference(y, s1, s2).p_value)
        p_boot.append(auc_difference(y, s1, s2, groups=g, n_boot=80).p_value)
    assert _rejection_rate(p_delong) > 0.12  # DeLong treats correlated minutes as independent
    assert 0.02 <= _rejection_rate(p_boot) <= 0.09


def test_group_bootstrap_is_reproducible_and_reports_its_parameters():
    g, y, s1, s2 = _clustered_sessions(np.random.default_rng(9), n_sessions=30)
    labels = np.array([f"2024-02-{i + 1:02d}" for i in g])
    a = auc_difference(y, s1, s2, groups=labels, n_boot=200, seed=11)
    b = auc_difference(y, s1, s2, groups=labels, n_boot=200, seed=11)
    c = auc_difference(y, s1, s2, groups=labels, n_boot=200, seed=12, block_length=3)
    assert a == b and a.se != c.se
    assert (a.method, a.n_groups, a.n_boot, a.seed, c.block_length) == ("group_bootstrap", 30, 200, 11, 3)
    assert a.difference == pytest.approx(roc_auc_score(y, s1) - roc_auc_score(y, s2))
    json.dumps(c.to_dict())


def test_auc_difference_undefined_cases():
    res = auc_difference(np.ones(10), np.arange(10.0), np.arange(10.0))
    assert res.auc_model is None and res.p_value is None and "one class" in res.reason
    res = auc_difference([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.8])
    assert res.difference == 0 and res.p_value is None and res.reason
    with pytest.raises(ValueError, match="binary"):
        auc_difference([0, 2], [0.1, 0.2], [0.3, 0.4])


# ----------------------------------------------------------------------------------------------
# Sharpe ratio difference (Ledoit-Wolf)


def test_sharpe_difference_equals_difference_of_plain_sharpe_ratios():
    rng = np.random.default_rng(10)
    r1, r2 = 0.0008 + 0.01 * rng.normal(size=500), 0.0002 + 0.012 * rng.normal(size=500)
    res = sharpe_difference(r1, r2)
    assert res.sharpe_model == pytest.approx(sharpe_ratio(r1))
    assert res.difference == pytest.approx(sharpe_ratio(r1) - sharpe_ratio(r2))
    assert res.ci_low < res.difference < res.ci_high
    weekly = sharpe_difference(r1, r2, periods_per_year=52)
    assert weekly.p_value == pytest.approx(res.p_value)  # annualization does not change the test
    assert weekly.difference == pytest.approx(res.difference * np.sqrt(52 / 252))


def test_sharpe_se_matches_direct_delta_method_without_lags():
    rng = np.random.default_rng(11)
    r1, r2 = 0.001 + 0.01 * rng.normal(size=400), 0.01 * rng.normal(size=400)
    res = sharpe_difference(r1, r2, lags=0, periods_per_year=1)
    v = np.column_stack([r1, r2, r1**2, r2**2])
    mu1, mu2, g1, g2 = v.mean(axis=0)
    s1, s2 = g1 - mu1**2, g2 - mu2**2
    grad = np.array([g1 / s1**1.5, -g2 / s2**1.5, -mu1 / (2 * s1**1.5), mu2 / (2 * s2**1.5)])
    assert res.se == pytest.approx(np.sqrt(grad @ np.cov(v.T, bias=True) @ grad / 400))


def test_sharpe_null_calibration_and_power():
    rng = np.random.default_rng(12)
    p_null, p_alt = [], []
    for i in range(800):
        f = rng.standard_t(5, size=750)  # common market factor, fat tails
        noise = rng.standard_t(5, size=(2, 750))
        p_null.append(sharpe_difference(0.0005 + 0.01 * (0.5 * f + noise[0]),
                                        0.0005 + 0.01 * (0.5 * f + noise[1])).p_value)
        if i < 100:
            p_alt.append(sharpe_difference(0.003 + 0.01 * (0.5 * f + noise[0]),
                                           0.01 * (0.5 * f + noise[1])).p_value)
    assert 0.02 <= _rejection_rate(p_null) <= 0.09
    assert _rejection_rate(p_alt) > 0.8


def test_sharpe_zero_variance_strategy_returns_reason_not_crash():
    r = 0.01 * np.random.default_rng(13).normal(size=300)
    res = sharpe_difference(r, np.zeros(300))
    assert res.sharpe_baseline is None and res.difference is None and res.p_value is None
    assert "returns_baseline" in res.reason
    json.dumps(res.to_dict())
    same = sharpe_difference(r, 2 * r)
    assert same.difference == pytest.approx(0) and same.p_value is None and same.reason


# ----------------------------------------------------------------------------------------------
# Probability of backtest overfitting (CSCV)


def test_pbo_tiny_example_by_hand():
    # 2 blocks -> S = 2 groups, C(2, 1) = 2 splits. Split 1: IS block 0, best trial 0, OOS (block 1)
    # scores [1, 2, 3] rank it 1 -> w = 1/4, logit < 0. Split 2: IS block 1, best trial 2, OOS (block 0)
    # scores [3, 2, 1] rank it 1 -> logit ln(1/3). PBO = 1.
    res = probability_of_backtest_overfitting([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], n_groups=2)
    assert (res.pbo, res.n_combinations) == (1.0, 2)
    assert res.logit_mean == pytest.approx(np.log(1 / 3))


def test_pbo_pure_noise_is_near_one_half():
    rng = np.random.default_rng(14)
    pbos = [probability_of_backtest_overfitting(rng.normal(size=(64, 10)), n_groups=8).pbo for _ in range(40)]
    assert 0.4 <= np.mean(pbos) <= 0.6


def test_pbo_dominant_trial_is_zero_and_zero_sum_trials_are_one():
    rng = np.random.default_rng(15)
    scores = rng.normal(size=(160, 20))
    scores[:, 7] += 5.0  # best in every block
    res = probability_of_backtest_overfitting(scores)
    assert (res.pbo, res.n_combinations, res.n_groups) == (0.0, 12870, 16)
    assert res.logit_min == pytest.approx(np.log(20))  # always ranked top out-of-sample: w = 20/21
    # every trial's scores sum to 0: in-sample best is out-of-sample worst, pure overfitting
    zero_sum = rng.normal(size=(80, 12))
    zero_sum -= zero_sum.mean(axis=0)
    assert probability_of_backtest_overfitting(zero_sum, n_groups=8).pbo == 1.0


def test_pbo_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), n_groups=5)
    with pytest.raises(ValueError, match="at least n_groups"):
        probability_of_backtest_overfitting(np.zeros((6, 3)), n_groups=8)
    with pytest.raises(ValueError, match="finite"):
        probability_of_backtest_overfitting(np.full((16, 3), np.nan), n_groups=4)
    with pytest.raises(ValueError, match="2 trials"):
        probability_of_backtest_overfitting(np.zeros((16, 1)), n_groups=4)
