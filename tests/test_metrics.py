"""Metrics against hand-computed values on tiny arrays and the worked example of the DSR paper."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from lab_v10.src.eval.metrics import (
    calibration_table,
    classification_metrics,
    deflated_sharpe_ratio,
    equity_curve,
    expected_max_sharpe,
    max_drawdown,
    metrics_by_fold,
    paired_differences,
    probabilistic_sharpe_ratio,
    regression_metrics,
    sharpe_moments,
    sharpe_ratio,
    sortino_ratio,
    trading_metrics,
)

# ----------------------------------------------------------------------------------------------
# Book A forecasts


def test_r2_oos_is_zero_for_the_training_mean_and_one_for_a_perfect_forecast():
    y = np.array([1.0, -2.0, 3.0, 0.5])
    ones = np.ones_like(y)
    assert regression_metrics(y, np.full(4, 0.25), ones, train_mean=0.25)["r2_oos"] == pytest.approx(0.0)
    perfect = regression_metrics(y, y, ones, train_mean=0.25)
    assert perfect["r2_oos"] == pytest.approx(1.0) and perfect["rmse"] == 0.0
    # SSE(mu) = 4 x 1^2 = 4; SSE(mean 0.25) = 0.5625 + 5.0625 + 7.5625 + 0.0625 = 13.25.
    assert regression_metrics(y, y + 1, ones, 0.25)["r2_oos"] == pytest.approx(1 - 4 / 13.25)


def test_r2_oos_pools_folds_with_one_training_mean_per_row():
    y = np.array([1.0, 2.0, 10.0, 12.0])
    train_mean = np.array([1.5, 1.5, 11.0, 11.0])  # two folds, each with its own training mean
    assert regression_metrics(y, train_mean, np.ones(4), train_mean)["r2_oos"] == pytest.approx(0.0)


def test_rmse_nll_coverage_and_rank_ic_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    m = regression_metrics(y, np.zeros(4), np.ones(4), train_mean=1.0)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4 + 9) / 4))
    assert m["gaussian_nll"] == pytest.approx(0.5 * np.log(2 * np.pi) + (0 + 1 + 4 + 9) / 4 / 2)
    assert m["coverage_80"] == 0.5  # |y - mu| <= 1.2816 holds for y = 0 and 1 only
    assert m["rank_ic"] is None  # a constant forecast has no ranking
    assert regression_metrics(y, y**3, np.ones(4), 1.0)["rank_ic"] == pytest.approx(1.0)
    assert regression_metrics(y, -y, np.ones(4), 1.0)["rank_ic"] == pytest.approx(-1.0)


def test_calibrated_gaussian_covers_80_percent():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=20000), rng.uniform(0.5, 2.0, 20000)
    y = mu + sigma * rng.normal(size=20000)
    assert regression_metrics(y, mu, sigma, 0.0)["coverage_80"] == pytest.approx(0.8, abs=0.01)


def test_regression_inputs_are_checked():
    with pytest.raises(ValueError, match=r"y_true: expected finite values, got NaN/inf at 1 rows \(first: \[2\]\)"):
        regression_metrics([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="sigma: expected > 0"):
        regression_metrics([1.0, 2.0], [1.0, 2.0], [1.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="mu: expected 2 rows"):
        regression_metrics([1.0, 2.0], [1.0], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="r2_oos is undefined"):
        regression_metrics([1.0, 1.0], [1.0, 2.0], [1.0, 1.0], 1.0)


# ----------------------------------------------------------------------------------------------
# Book B probabilities


def test_ece_on_two_bins_by_hand():
    y, p = [0, 1, 1, 0], [0.2, 0.4, 0.6, 0.9]
    table = calibration_table(y, p, n_bins=2)
    assert table["count"].tolist() == [2, 2]
    assert table["mean_proba"].tolist() == pytest.approx([0.3, 0.75])
    assert table["frac_positive"].tolist() == pytest.approx([0.5, 0.5])
    # ECE = 2/4 * |0.5 - 0.3| + 2/4 * |0.5 - 0.75| = 0.1 + 0.125
    assert classification_metrics(y, p, n_bins=2)["ece"] == pytest.approx(0.225)


def test_calibration_table_bins_edges_and_drops_empty_bins():
    table = calibration_table([0, 1, 1], [0.0, 0.95, 1.0], n_bins=10)
    assert table["bin"].tolist() == [0, 9]  # p = 1 falls in the last bin; bins 1..8 are empty
    assert table["lower"].tolist() == [0.0, 0.9] and table["upper"].tolist() == [0.1, 1.0]
    assert table["count"].tolist() == [1, 2]


def test_perfect_probabilities_and_a_single_class():
    y = np.array([0, 1, 1, 0, 1])
    perfect = classification_metrics(y, y.astype(float))
    assert perfect["brier"] == 0.0 and perfect["auc"] == 1.0 and perfect["ece"] == 0.0
    assert 0.0 <= perfect["log_loss"] < 1e-12  # clipped, so finite
    m = classification_metrics([0, 1, 0, 1], [0.1, 0.3, 0.35, 0.8])
    assert m["auc"] == 0.75  # pairs (positive, negative): only 0.3 < 0.35 is ranked wrong
    assert m["brier"] == pytest.approx((0.01 + 0.49 + 0.1225 + 0.04) / 4)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.3, 0.65, 0.8])))
    assert m["positive_rate"] == 0.5
    one_class = classification_metrics([0, 0, 0], [0.1, 0.2, 0.0])
    assert one_class["auc"] is None and one_class["brier"] == pytest.approx(0.05 / 3)


def test_classification_inputs_are_checked():
    with pytest.raises(ValueError, match="binary labels 0/1"):
        classification_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        classification_metrics([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="proba: expected finite values"):
        classification_metrics([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="n_bins: expected int >= 1"):
        calibration_table([0, 1], [0.1, 0.2], n_bins=0)


# ----------------------------------------------------------------------------------------------
# Trading returns


def test_sharpe_sortino_drawdown_by_hand():
    r = [0.01, -0.02, 0.03, 0.0]  # mean 0.005; squared deviations sum to 0.0013
    assert sharpe_ratio(r) == pytest.approx(0.005 / np.sqrt(0.0013 / 3) * np.sqrt(252))
    assert sharpe_ratio(r, periods_per_year=12) == pytest.approx(0.005 / np.sqrt(0.0013 / 3) * np.sqrt(12))
    # Downside deviation sqrt((0 + 0.0001 + 0 + 0.0004) / 4) over all four days.
    assert sortino_ratio([0.02, -0.01, 0.03, -0.02]) == pytest.approx(0.005 / np.sqrt(0.0005 / 4) * np.sqrt(252))
    # Equity 1.1, 1.05, 0.95, 1.15, 0.85: the worst fall is 1.15 -> 0.85.
    assert equity_curve([0.1, -0.05, -0.1, 0.2, -0.3]) == pytest.approx([1.1, 1.05, 0.95, 1.15, 0.85])
    assert max_drawdown([0.1, -0.05, -0.1, 0.2, -0.3]) == pytest.approx(-0.3)
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)  # the peak starts at the initial 1
    assert max_drawdown([0.01, 0.02]) == 0.0


def test_undefined_ratios_are_none():
    assert sharpe_ratio([0.01, 0.01, 0.01]) is None
    assert sortino_ratio([0.01, 0.0, 0.02]) is None
    idle = pd.Series(0.0, index=pd.bdate_range("2024-01-01", periods=5))
    m = trading_metrics(idle, idle)
    assert m["net_sharpe"] is None and m["net_sortino"] is None and m["net_calmar"] is None
    assert m["net_hit_rate"] is None and m["psr"] is None and m["dsr"] is None
    assert m["net_max_drawdown"] == 0.0 and m["net_ann_return"] == 0.0


def test_trading_metrics_gross_net_costs_and_turnover():
    idx = pd.bdate_range("2024-01-01", periods=5)
    gross = pd.Series([0.01, 0.0, -0.02, 0.03, 0.0], index=idx)
    costs = pd.Series([0.001, 0.0, 0.001, 0.0, 0.0], index=idx)
    turnover = pd.Series([1.0, 0.0, 2.0, 0.0, 0.0], index=idx)
    m = trading_metrics(gross, costs, turnover)
    net = [0.009, 0.0, -0.021, 0.03, 0.0]
    assert m["n_days"] == 5 and m["total_costs"] == pytest.approx(0.002) and m["turnover"] == pytest.approx(0.6)
    assert m["gross_ann_return"] == pytest.approx(0.02 / 5 * 252)
    assert m["net_ann_return"] == pytest.approx(0.018 / 5 * 252)
    assert m["net_ann_vol"] == pytest.approx(np.std(net, ddof=1) * np.sqrt(252))
    assert m["net_sharpe"] == pytest.approx(sharpe_ratio(net))
    assert m["gross_hit_rate"] == pytest.approx(2 / 3)  # 3 nonzero days, 2 positive
    assert m["net_max_drawdown"] == pytest.approx(-0.021)  # equity 1.009 -> 0.988
    assert m["net_calmar"] == pytest.approx(0.018 / 5 * 252 / 0.021)
    assert m["psr"] == pytest.approx(probabilistic_sharpe_ratio(sr_benchmark=0.0, **sharpe_moments(net)))
    assert m["dsr"] == pytest.approx(m["psr"])  # one trial
    assert trading_metrics(gross, costs)["turnover"] is None
    deflated = trading_metrics(gross, costs, n_trials=20, sr_variance=0.01)["dsr"]
    assert deflated < m["psr"]


def test_trading_inputs_are_checked():
    idx = pd.bdate_range("2024-01-01", periods=3)
    gross = pd.Series([0.01, 0.02, -0.01], index=idx)
    with pytest.raises(ValueError, match="costs: expected costs paid >= 0"):
        trading_metrics(gross, pd.Series([0.0, -0.001, 0.0], index=idx))
    with pytest.raises(ValueError, match="costs: expected the same index"):
        trading_metrics(gross, pd.Series([0.0, 0.0, 0.0], index=idx + pd.Timedelta(days=1)))
    with pytest.raises(ValueError, match="gross_returns: expected finite values"):
        trading_metrics(pd.Series([0.01, np.nan, 0.0], index=idx), pd.Series(0.0, index=idx))
    with pytest.raises(ValueError, match="sr_variance: expected the variance"):
        trading_metrics(gross, pd.Series(0.0, index=idx), n_trials=5)
    with pytest.raises(ValueError, match="periods_per_year: expected int >= 1"):
        trading_metrics(gross, pd.Series(0.0, index=idx), periods_per_year=0)


# ----------------------------------------------------------------------------------------------
# PSR and DSR


def test_psr_by_hand():
    # sr 0.1 over 101 Gaussian returns: z = 0.1 * sqrt(100) / sqrt(1 + (3 - 1) / 4 * 0.01)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(norm.cdf(1 / np.sqrt(1.005)))
    assert probabilistic_sharpe_ratio(0.1, 0.1, 101, -3.0, 10.0) == 0.5
    # Negative skew and fat tails widen the Sharpe's standard error and lower the PSR.
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, -3.0, 10.0) < probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0)


def test_dsr_matches_the_worked_example_of_bailey_and_lopez_de_prado_2014():
    """The paper's example: annualized SR 2.5 over 5 years of daily data (T = 1250, i.e. 250 days a year),
    100 trials whose annualized Sharpe ratios have variance 0.5, skew -3 and kurtosis 10. The paper
    de-annualizes with 250 days and reports E[max SR] = 0.1132 (per day) and DSR = 0.9004."""
    days = 250
    sr0 = expected_max_sharpe(100, 0.5 / days)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(2.5 / np.sqrt(days), 5 * days, -3.0, 10.0, n_trials=100, sr_variance=0.5 / days)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_dsr_with_one_trial_is_the_psr_against_zero():
    assert expected_max_sharpe(1, None) == 0.0
    assert deflated_sharpe_ratio(0.08, 500, -0.5, 5.0, n_trials=1, sr_variance=None) == pytest.approx(
        probabilistic_sharpe_ratio(0.08, 0.0, 500, -0.5, 5.0)
    )
    more_trials = [deflated_sharpe_ratio(0.08, 500, -0.5, 5.0, n, 1e-3) for n in (2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(more_trials, more_trials[1:]))  # more trials, higher bar


def test_sharpe_moments_match_scipy_conventions():
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.005])
    m = sharpe_moments(r)
    assert m["n_obs"] == 5 and m["sr"] == pytest.approx(r.mean() / r.std(ddof=1))
    z = (r - r.mean()) / r.std()
    assert m["skew"] == pytest.approx(np.mean(z**3)) and m["kurtosis"] == pytest.approx(np.mean(z**4))
    with pytest.raises(ValueError, match="non-constant"):
        sharpe_moments([0.01, 0.01])


def test_psr_dsr_inputs_are_checked():
    with pytest.raises(ValueError, match="n_obs: expected int >= 2"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ValueError, match="non-excess kurtosis"):
        probabilistic_sharpe_ratio(0.1, 0.0, 100, 0.0, 0.5)
    with pytest.raises(ValueError, match="n_trials: expected int >= 1"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="sr_variance"):
        expected_max_sharpe(10, -1.0)


# ----------------------------------------------------------------------------------------------
# Aggregation


def test_metrics_by_fold_has_one_row_per_fold_and_a_pooled_row():
    frame = pd.DataFrame({"fold": [1, 0, 0, 1, 1], "r": [1.0, 2.0, 4.0, 3.0, 5.0]})
    table = metrics_by_fold(frame, "fold", lambda d: {"mean": d["r"].mean(), "n": len(d)})
    assert table.index.tolist() == [0, 1, "all"] and table.index.name == "fold"
    assert table["mean"].tolist() == [3.0, 3.0, 3.0] and table["n"].tolist() == [2, 3, 5]
    with pytest.raises(ValueError, match="fold_col: expected a column"):
        metrics_by_fold(frame, "split", len)


def test_paired_differences_pairs_runs_and_counts_strict_wins():
    model, baseline = [0.30, 0.10, 0.50, 0.20], [0.10, 0.10, 0.20, 0.40]
    out = paired_differences(model, baseline)
    diffs = np.array(model) - np.array(baseline)
    assert out["per_run"] == pytest.approx(diffs.tolist())
    assert out["mean"] == pytest.approx(diffs.mean())
    assert out["se"] == pytest.approx(diffs.std(ddof=1) / 2.0)
    assert out["wins"] == 2 and out["n"] == 4  # a tie (run 2) is not a win
    assert paired_differences([0.4], [0.1])["se"] is None


def test_paired_differences_rejects_misaligned_or_missing_scores():
    with pytest.raises(ValueError, match="baseline: expected 2 rows"):
        paired_differences([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="model: expected finite values"):
        paired_differences([0.1, float("nan")], [0.1, 0.2])
