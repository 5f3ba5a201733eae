"""Out-of-sample metrics: Book A forecasts (yA), Book B probabilities (yB), trading returns, PSR and DSR.

Conventions:

- Inputs are aligned, finite arrays: a NaN label or prediction is an error (align and drop unlabeled rows
  before calling), never silently skipped.
- A metric that is mathematically undefined on the given data (a Sharpe ratio of a constant series, an AUC
  with one class present, ...) is ``None``, as each docstring states; it is never NaN.
- Trading returns are per day and per unit of capital (a P&L of 0.01 is 1% of capital); annualization
  multiplies means by ``periods_per_year`` and volatilities by its square root.
- The Sharpe ratios passed to :func:`probabilistic_sharpe_ratio` and :func:`deflated_sharpe_ratio` are
  per period (not annualized), and kurtosis is the non-excess kurtosis (3 for a Gaussian), as in
  Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", Journal of Portfolio Management 40(5).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.stats import kurtosis as sample_kurtosis
from scipy.stats import norm, spearmanr
from scipy.stats import skew as sample_skew
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score, root_mean_squared_error

COVERAGE_80_Z = float(norm.ppf(0.9))  # mu +- 1.2816 sigma holds 80% of a Gaussian
PROBA_CLIP = 1e-15  # log loss clips probabilities to [PROBA_CLIP, 1 - PROBA_CLIP]


# ----------------------------------------------------------------------------------------------
# Book A: Gaussian forecasts of yA


def regression_metrics(
    y_true: Any, mu: Any, sigma: Any, train_mean: float | Any
) -> dict[str, float | None]:
    """Metrics of a Gaussian forecast N(mu, sigma^2) of yA, in yA's units (annualized vol points).

    - ``r2_oos``: 1 - SSE(mu) / SSE(train_mean), the out-of-sample R^2 against the forecast that always
      predicts the training-set mean (a scalar, or one value per row when folds are pooled). 0 for the
      training mean itself, 1 for a perfect forecast, negative when worse than the mean.
    - ``rmse``: root mean squared error of mu.
    - ``gaussian_nll``: mean negative log density of y under N(mu, sigma^2), in nats.
    - ``coverage_80``: fraction of y inside mu +- 1.2816 sigma (0.8 when sigma is calibrated).
    - ``rank_ic``: Spearman correlation of mu and y; None when mu or y is constant (undefined).

    Raises ValueError on NaN/inf rows, sigma <= 0, fewer than 2 rows, or y equal to train_mean on every row
    (r2_oos undefined).
    """
    y = _finite_1d("y_true", y_true)
    if y.size < 2:
        raise ValueError(f"y_true: expected at least 2 rows, got {y.size}")
    mu = _finite_1d("mu", mu, y.size)
    sigma = _finite_1d("sigma", sigma, y.size)
    if (sigma <= 0).any():
        raise ValueError(f"sigma: expected > 0 on every row, got {sigma.min()} at row {int(sigma.argmin())}")
    benchmark = np.asarray(train_mean, dtype=float)
    benchmark = np.full(y.size, float(benchmark)) if benchmark.ndim == 0 else benchmark
    benchmark = _finite_1d("train_mean", benchmark, y.size)

    sse_benchmark = float(np.sum((y - benchmark) ** 2))
    if sse_benchmark == 0.0:
        raise ValueError("train_mean: r2_oos is undefined because y_true equals train_mean on every row")
    constant = np.ptp(mu) == 0 or np.ptp(y) == 0
    return {
        "r2_oos": 1.0 - float(np.sum((y - mu) ** 2)) / sse_benchmark,
        "rmse": float(root_mean_squared_error(y, mu)),
        "gaussian_nll": float(-np.mean(norm.logpdf(y, loc=mu, scale=sigma))),
        "coverage_80": float(np.mean(np.abs(y - mu) <= COVERAGE_80_Z * sigma)),
        "rank_ic": None if constant else float(spearmanr(mu, y).statistic),
    }


# ----------------------------------------------------------------------------------------------
# Book B: probabilities of the downside-first label yB


def classification_metrics(y_true: Any, proba: Any, n_bins: int = 10) -> dict[str, float | None]:
    """Metrics of probabilities ``proba`` of the binary label ``y_true`` (0/1).

    - ``auc``: ROC AUC (sklearn); None when only one class is present (undefined).
    - ``brier``: mean squared error of the probabilities (0 for a perfect forecast).
    - ``log_loss``: mean cross-entropy in nats, probabilities clipped to [1e-15, 1 - 1e-15].
    - ``ece``: expected calibration error over ``n_bins`` equal-width bins (see :func:`calibration_table`),
      sum over bins of count/n * |fraction positive - mean probability|.
    - ``positive_rate``: fraction of y equal to 1 (the Brier score of a constant forecast is its variance).
    """
    y, p = _binary_inputs(y_true, proba)
    table = calibration_table(y, p, n_bins)
    gaps = (table["frac_positive"] - table["mean_proba"]).abs()
    return {
        "auc": float(roc_auc_score(y, p)) if np.unique(y).size == 2 else None,
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "log_loss": float(log_loss(y, np.clip(p, PROBA_CLIP, 1.0 - PROBA_CLIP), labels=[0, 1])),
        "ece": float(np.sum(table["count"] / y.size * gaps)),
        "positive_rate": float(y.mean()),
    }


def calibration_table(y_true: Any, proba: Any, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table: one row per non-empty equal-width probability bin, in bin order.

    Bin ``k`` holds the probabilities with ``k <= p * n_bins < k + 1`` (p = 1 falls in the last bin).
    Columns: ``bin``, ``lower``, ``upper`` (bin edges), ``count``, ``mean_proba`` (mean forecast),
    ``frac_positive`` (observed frequency of y = 1). Empty bins are left out.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins: expected int >= 1, got {n_bins!r}")
    y, p = _binary_inputs(y_true, proba)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    k = np.flatnonzero(count)
    return pd.DataFrame(
        {
            "bin": k,
            "lower": k / n_bins,
            "upper": (k + 1) / n_bins,
            "count": count[k],
            "mean_proba": np.bincount(bins, weights=p, minlength=n_bins)[k] / count[k],
            "frac_positive": np.bincount(bins, weights=y, minlength=n_bins)[k] / count[k],
        }
    )


# ----------------------------------------------------------------------------------------------
# Trading returns


def equity_curve(returns: Any) -> np.ndarray:
    """Non-compounded equity per unit of capital: 1 + cumulative sum of daily returns (one value per day)."""
    return 1.0 + np.cumsum(_finite_1d("returns", returns))


def max_drawdown(returns: Any) -> float:
    """Largest fall of :func:`equity_curve` below its running peak, as a number <= 0 in units of capital.

    The peak starts at the initial equity 1, so a first-day loss is a drawdown. With non-compounded
    equity, -0.2 means the P&L fell 20% of initial capital below its best level.
    """
    equity = np.concatenate([[1.0], equity_curve(returns)])
    return float(np.min(equity - np.maximum.accumulate(equity)))


def sharpe_ratio(returns: Any, periods_per_year: int = 252) -> float | None:
    """Annualized Sharpe ratio mean / std (ddof=1) * sqrt(periods_per_year) of per-period returns.

    None when the returns are constant (zero volatility: the ratio is undefined). No risk-free rate is
    subtracted: the returns are P&L per unit of capital of a self-financed position.
    """
    r = _finite_1d("returns", returns)
    if r.size < 2:
        raise ValueError(f"returns: expected at least 2 periods for a Sharpe ratio, got {r.size}")
    if np.ptp(r) == 0:
        return None
    return float(r.mean() / r.std(ddof=1) * np.sqrt(periods_per_year))


def sortino_ratio(returns: Any, periods_per_year: int = 252) -> float | None:
    """Annualized Sortino ratio: mean / downside deviation * sqrt(periods_per_year).

    Downside deviation = sqrt(mean(min(r, 0)^2)) over all periods (target return 0). None when no period
    loses (zero downside deviation: undefined).
    """
    r = _finite_1d("returns", returns)
    downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    if downside == 0:
        return None
    return float(r.mean() / downside * np.sqrt(periods_per_year))


def trading_metrics(
    gross_returns: pd.Series,
    costs: pd.Series,
    turnover: pd.Series | None = None,
    periods_per_year: int = 252,
    *,
    n_trials: int = 1,
    sr_variance: float | None = None,
) -> dict[str, float | int | None]:
    """Performance of daily returns per unit of capital, before (``gross_*``) and after (``net_*``) costs.

    ``costs`` are the costs paid each day (>= 0, same units and index as ``gross_returns``); net = gross -
    costs. For each of gross and net: ``ann_return`` (mean * periods_per_year), ``ann_vol`` (std *
    sqrt(periods_per_year)), ``sharpe``, ``sortino``, ``max_drawdown`` (<= 0, on the non-compounded equity
    1 + cumsum(returns)), ``calmar`` (ann_return / |max_drawdown|, None without drawdown) and ``hit_rate``
    (fraction of nonzero-return days that are positive, None when no day has a nonzero return).
    Also ``n_days``, ``turnover`` (mean daily turnover, None when not given), ``total_costs`` (sum of costs),
    and on net returns ``psr`` (PSR against a Sharpe of 0) and ``dsr`` (DSR over ``n_trials`` strategies
    whose per-period Sharpe ratios have variance ``sr_variance``); both None when net returns are constant.
    """
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, (int, np.integer)):
        raise ValueError(f"periods_per_year: expected int >= 1 (252 for daily returns), got {periods_per_year!r}")
    if periods_per_year < 1:
        raise ValueError(f"periods_per_year: expected int >= 1 (252 for daily returns), got {periods_per_year!r}")
    gross = _aligned_series("gross_returns", gross_returns)
    if gross.size < 2:
        raise ValueError(f"gross_returns: expected at least 2 days, got {gross.size}")
    costs = _aligned_series("costs", costs, gross.index)
    if (costs < 0).any():
        raise ValueError(f"costs: expected costs paid >= 0 each day, got {costs.min()} on {costs.idxmin()}")
    net = gross - costs

    out: dict[str, float | int | None] = {"n_days": int(gross.size)}
    for name, r in (("gross", gross), ("net", net)):
        out.update({f"{name}_{key}": value for key, value in _return_stats(r.to_numpy(), periods_per_year).items()})
    out["turnover"] = None if turnover is None else float(_aligned_series("turnover", turnover, gross.index).mean())
    out["total_costs"] = float(costs.sum())
    if out["net_sharpe"] is None:
        out["psr"] = out["dsr"] = None
    else:
        moments = sharpe_moments(net)
        out["psr"] = probabilistic_sharpe_ratio(sr_benchmark=0.0, **moments)
        out["dsr"] = deflated_sharpe_ratio(n_trials=n_trials, sr_variance=sr_variance, **moments)
    return out


def _return_stats(r: np.ndarray, periods_per_year: int) -> dict[str, float | None]:
    ann_return = float(r.mean() * periods_per_year)
    drawdown = max_drawdown(r)
    nonzero = r[r != 0]
    return {
        "ann_return": ann_return,
        "ann_vol": float(r.std(ddof=1) * np.sqrt(periods_per_year)),
        "sharpe": sharpe_ratio(r, periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "max_drawdown": drawdown,
        "calmar": None if drawdown == 0 else ann_return / abs(drawdown),
        "hit_rate": float(np.mean(nonzero > 0)) if nonzero.size else None,
    }


# ----------------------------------------------------------------------------------------------
# Probabilistic and Deflated Sharpe Ratio (Bailey & López de Prado 2014)


def sharpe_moments(returns: Any) -> dict[str, float | int]:
    """The inputs of PSR/DSR from per-period returns: per-period Sharpe ``sr`` (mean / std, ddof=1),
    ``n_obs``, ``skew`` and non-excess ``kurtosis`` (scipy sample moments). Raises on constant returns."""
    r = _finite_1d("returns", returns)
    if r.size < 2 or np.ptp(r) == 0:
        raise ValueError("returns: expected at least 2 non-constant periods (the Sharpe ratio is undefined)")
    return {
        "sr": float(r.mean() / r.std(ddof=1)),
        "n_obs": int(r.size),
        "skew": float(sample_skew(r)),
        "kurtosis": float(sample_kurtosis(r, fisher=False)),
    }


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true Sharpe > ``sr_benchmark``) given an observed per-period Sharpe ``sr`` over ``n_obs`` returns:

    PSR = Phi((sr - sr_benchmark) * sqrt(n_obs - 1) / sqrt(1 - skew * sr + (kurtosis - 1) / 4 * sr^2)),
    with ``kurtosis`` non-excess (3 for Gaussian returns). Both Sharpe ratios are per period, not annualized.
    """
    if isinstance(n_obs, bool) or not isinstance(n_obs, (int, np.integer)) or n_obs < 2:
        raise ValueError(f"n_obs: expected int >= 2, got {n_obs!r}")
    if not np.isfinite([sr, sr_benchmark, skew, kurtosis]).all():
        raise ValueError(
            f"sr, sr_benchmark, skew, kurtosis: expected finite numbers, got {(sr, sr_benchmark, skew, kurtosis)}"
        )
    if kurtosis < 1:
        raise ValueError(f"kurtosis: expected the non-excess kurtosis (>= 1, 3 for a Gaussian), got {kurtosis}")
    variance_factor = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if variance_factor <= 0:
        raise ValueError(
            f"skew, kurtosis: 1 - skew*sr + (kurtosis-1)/4*sr^2 = {variance_factor} must be > 0 "
            f"(inconsistent moments: sample moments always satisfy kurtosis >= 1 + skew^2)"
        )
    return float(norm.cdf((sr - sr_benchmark) * np.sqrt(n_obs - 1) / np.sqrt(variance_factor)))


def expected_max_sharpe(n_trials: int, sr_variance: float | None) -> float:
    """Expected maximum of ``n_trials`` independent zero-skill Sharpe estimates with variance ``sr_variance``:

    SR0 = sqrt(sr_variance) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e))), g = Euler-Mascheroni.
    For one trial there is no selection: SR0 = 0 (the mean of a single zero-mean draw), and
    ``sr_variance`` may be None. Units follow ``sr_variance`` (per-period Sharpe variance gives a per-period
    SR0).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials: expected int >= 1, got {n_trials!r}")
    if n_trials == 1:
        return 0.0
    if sr_variance is None or not np.isfinite(sr_variance) or sr_variance < 0:
        raise ValueError(
            f"sr_variance: expected the variance (>= 0) of the {n_trials} trials' Sharpe ratios, got {sr_variance!r}"
        )
    g = np.euler_gamma
    max_z = (1 - g) * norm.ppf(1 - 1 / n_trials) + g * norm.ppf(1 - 1 / (n_trials * np.e))
    return float(np.sqrt(sr_variance) * max_z)


def deflated_sharpe_ratio(
    sr: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, sr_variance: float | None
) -> float:
    """DSR: the PSR of the selected strategy against the expected maximum Sharpe of ``n_trials`` trials.

    ``sr`` is the per-period Sharpe of the selected strategy, ``sr_variance`` the variance of the per-period
    Sharpe ratios across all trials (divide an annualized variance by periods per year). With
    ``n_trials=1`` it equals the PSR against 0. Use ``**sharpe_moments(returns)`` to fill the first four.
    """
    return probabilistic_sharpe_ratio(sr, expected_max_sharpe(n_trials, sr_variance), n_obs, skew, kurtosis)


# ----------------------------------------------------------------------------------------------
# Aggregation over folds and runs


def metrics_by_fold(frame: pd.DataFrame, fold_col: str, fn: Callable[[pd.DataFrame], dict]) -> pd.DataFrame:
    """``fn`` of each fold's rows (one row per fold, in fold order), then a last row ``"all"``: ``fn`` of
    every row pooled (not an average of fold metrics). Undefined metrics (None) show as missing values."""
    if fold_col not in frame.columns:
        raise ValueError(f"fold_col: expected a column of frame, got {fold_col!r} (columns: {list(frame.columns)})")
    if frame.empty:
        raise ValueError("frame: expected at least one row, got none")
    rows = {fold: fn(part) for fold, part in frame.groupby(fold_col, sort=True)}
    rows["all"] = fn(frame)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(fold_col)


def paired_differences(model: Any, baseline: Any) -> dict[str, Any]:
    """The scores of a model and a baseline paired by run (e.g. one per seed): ``per_run`` = model -
    baseline, their ``mean``, the standard error of the mean (sample sd with ddof 1 over sqrt(n); None for
    a single run), ``wins`` (runs where the model scores strictly higher) and ``n``. Higher is better."""
    m = _finite_1d("model", model)
    diffs = m - _finite_1d("baseline", baseline, m.size)
    return {
        "per_run": diffs.tolist(),
        "mean": float(diffs.mean()),
        "se": float(diffs.std(ddof=1) / np.sqrt(diffs.size)) if diffs.size > 1 else None,
        "wins": int((diffs > 0).sum()),
        "n": int(diffs.size),
    }


# ----------------------------------------------------------------------------------------------
# Input checks


def _finite_1d(name: str, values: Any, n: int | None = None) -> np.ndarray:
    """``values`` as a 1-D float array of length ``n`` (when given) with no NaN/inf, or a ValueError."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name}: expected {n} rows aligned with y_true/returns, got {arr.size}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one row, got none")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name}: expected finite values, got NaN/inf at {bad.size} rows (first: {bad[:5].tolist()}); "
            f"align labels and predictions and drop unlabeled rows before computing metrics"
        )
    return arr


def _binary_inputs(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _finite_1d("y_true", y_true)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"y_true: expected binary labels 0/1, got values {np.unique(y)[:5].tolist()}")
    p = _finite_1d("proba", proba, y.size)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"proba: expected probabilities in [0, 1], got range [{p.min()}, {p.max()}]")
    return y, p


def _aligned_series(name: str, series: pd.Series, index: pd.Index | None = None) -> pd.Series:
    if not isinstance(series, pd.Series):
        raise ValueError(f"{name}: expected a pandas Series indexed by date, got {type(series).__name__}")
    if index is not None and not series.index.equals(index):
        raise ValueError(f"{name}: expected the same index as gross_returns (align the series first)")
    return pd.Series(_finite_1d(name, series), index=series.index)
