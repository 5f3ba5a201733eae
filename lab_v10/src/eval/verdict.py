"""The run's verdict: does the model under test beat the baselines, after costs, beyond noise?

For each book the candidate (``hrm_pooled`` in a universe, else ``hrm``, else ``tshrm``, when it ran) is compared with every other model or
strategy on identical rows, and the comparison against the best of them (by the section's point metric,
chosen after the fact, which favours the baseline) is the headline. Differences are candidate minus
baseline, with a confidence interval and a two-sided p-value (:mod:`lab_v10.src.eval.significance`):

- Book A forecasts: Diebold-Mariano on squared error and on Gaussian NLL, with the uniform-kernel HAC
  variance at ``h - 1`` lags, since the ``h``-day labels overlap (its size is closest to nominal there).
- Book B forecasts (all labelled test minutes, and the setup minutes): AUC difference and log-loss test,
  both over sessions (minutes of one session are correlated: a session bootstrap, per-session means).
- Trading (each book and the portfolio): Ledoit-Wolf HAC test of the annualized net Sharpe difference.

The p-values of the headline comparisons are also given Holm-adjusted over all headline tests of the run,
so that one lucky section does not make a verdict. "No significant difference" is a valid outcome and the
text says it in words.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from lab_v10.src.eval.results import BookRun
from lab_v10.src.eval.significance import (
    auc_difference,
    diebold_mariano,
    gaussian_nll,
    log_loss_test,
    sharpe_difference,
    squared_error,
)

ALPHA = 0.05
CANDIDATES = ("hrm_pooled", "hrm", "tshrm")  # the model under test: the first of these that ran
UNTRADABLE = ("no_trade",)  # a strategy with no P&L has no Sharpe ratio to compare with


def candidate_model(models: list[str]) -> str | None:
    """The model the verdict is about: the pooled HRM of a universe (``hrm_pooled``) if it ran, else ``hrm``,
    else ``tshrm``, else None."""
    return next((m for m in CANDIDATES if m in models), None)


def _words(difference: float | None, p_value: float | None, better_when_positive: bool, model: str,
           baseline: str) -> str:
    if p_value is None or difference is None:
        return "not testable"
    if p_value >= ALPHA:
        return "no significant difference"
    winner = model if (difference > 0) == better_when_positive else baseline
    return f"{winner} is better"


def _comparison(model: str, baseline: str, tests: dict[str, dict], headline: str, better_when_positive: bool) -> dict:
    head = tests[headline]
    return {"model": model, "baseline": baseline, "headline_test": headline, "tests": tests,
            "higher_is_better": better_when_positive,
            "conclusion": _words(head["difference"], head["p_value"], better_when_positive, model, baseline)}


def _losses(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Squared error and Gaussian NLL per forecast date (sorted); with a ``symbol`` column (a universe), the
    mean over the symbols forecast on that date, so the series stays one value per date for the HAC test."""
    losses = {"squared_error": squared_error(rows["y_true"], rows["mu"]),
              "gaussian_nll": gaussian_nll(rows["y_true"], rows["mu"], rows["sigma"])}
    if "symbol" not in rows:
        return losses
    return {k: pd.Series(v).groupby(rows["date"].to_numpy()).mean().to_numpy() for k, v in losses.items()}


def _forecast_a(forecasts_a: pd.DataFrame, model: str, horizon: int) -> dict | None:
    if forecasts_a.empty or model not in set(forecasts_a["model"]):
        return None
    order = ["date", "symbol"] if "symbol" in forecasts_a else ["date"]
    rows = {m: g.sort_values(order).reset_index(drop=True) for m, g in forecasts_a.groupby("model", sort=False)}
    mine = rows.pop(model)
    losses = {m: _losses(g) for m, g in rows.items()}
    if not losses:
        return None
    own = _losses(mine)
    lags = max(horizon - 1, 0)
    versus = {
        m: _comparison(model, m, {k: diebold_mariano(own[k], loss[k], horizon=horizon, lags=lags,
                                                     kernel="uniform").to_dict() for k in own},
                       "squared_error", better_when_positive=False)
        for m, loss in losses.items()
    }
    best = min(losses, key=lambda m: float(np.mean(losses[m]["squared_error"])))
    return {"best_baseline": best, "chosen_by": "lowest mean squared error", "versus": versus}


def _forecast_b(forecasts_b: pd.DataFrame, model: str) -> dict | None:
    scored = forecasts_b[forecasts_b["y_true"].notna()]
    if scored.empty or model not in set(scored["model"]):
        return None
    order = ["symbol", "timestamp"] if "symbol" in scored else ["timestamp"]
    rows = {m: g.sort_values(order).reset_index(drop=True) for m, g in scored.groupby("model", sort=False)}
    mine = rows.pop(model)
    rows = {m: g for m, g in rows.items() if g["proba"].nunique() > 1}  # a constant score has no ranking
    if not rows or mine["y_true"].nunique() < 2:
        return None
    y = mine["y_true"].to_numpy()
    # sessions are the clusters; in a universe each symbol's session is its own
    sessions = (mine["symbol"].astype(str) + " " + mine["session"].astype(str) if "symbol" in mine
                else mine["session"]).to_numpy()
    versus = {
        m: _comparison(model, m, {
            "auc": auc_difference(y, mine["proba"], g["proba"], groups=sessions).to_dict(),
            "log_loss": log_loss_test(y, mine["proba"], g["proba"], groups=sessions).to_dict(),
        }, "auc", better_when_positive=True)
        for m, g in rows.items()
    }
    best = max(versus, key=lambda m: versus[m]["tests"]["auc"]["auc_baseline"])
    return {"best_baseline": best, "chosen_by": "highest AUC", "versus": versus}


def _trading(daily_net: dict[str, pd.Series], model: str) -> dict | None:
    if model not in daily_net:
        return None
    others = {m: pnl for m, pnl in daily_net.items() if m != model and m not in UNTRADABLE and pnl.std() > 0}
    if not others:
        return None
    mine = daily_net[model]
    versus = {}
    for m, pnl in others.items():
        both = pd.concat([mine, pnl], axis=1, join="inner")
        versus[m] = _comparison(model, m, {"net_sharpe": sharpe_difference(both.iloc[:, 0], both.iloc[:, 1]).to_dict()},
                                "net_sharpe", better_when_positive=True)
    best = max(versus, key=lambda m: versus[m]["tests"]["net_sharpe"]["sharpe_baseline"] or -np.inf)
    return {"best_baseline": best, "chosen_by": "highest net Sharpe", "versus": versus}


def build_verdict(
    forecasts_a: pd.DataFrame,
    forecasts_b: pd.DataFrame,
    book_a: BookRun,
    book_b: BookRun,
    portfolio: dict[str, pd.DataFrame],
    horizon_days: int,
    sweep: dict | None = None,
) -> dict:
    """The ``verdict`` section of summary.json (module docstring): per section the comparisons of the
    candidate with every baseline, the best baseline, the headline test with its Holm-adjusted p-value, and
    ``lines``, one sentence per section for the console and the report. ``sweep`` (the sweep the config was
    chosen by, with ``n_trials`` and ``pbo``) adds a line on the selection's probability of backtest
    overfitting."""
    models = list(dict.fromkeys([*forecasts_a.get("model", []), *forecasts_b.get("model", []),
                                 *book_a.daily, *book_b.daily]))
    model = candidate_model(models)
    if model is None:
        return {"model": None, "lines": ["No verdict: neither the HRM (hrm) nor the TimeSeriesHRM (tshrm) ran."]}
    sections = {
        "forecast_A": _forecast_a(forecasts_a, model, horizon_days),
        "forecast_B": _forecast_b(forecasts_b, model),
        "forecast_B_setup": None if forecasts_b.empty else _forecast_b(forecasts_b[forecasts_b["setup_signal"]], model),
        "trading_A": _trading({m: d["net_pnl"] for m, d in book_a.daily.items()}, model),
        "trading_B": _trading({m: d["net_pnl"] for m, d in book_b.daily.items()}, model),
        "portfolio": _trading({m: d["portfolio"] for m, d in portfolio.items()}, model),
    }
    sections = {k: v for k, v in sections.items() if v is not None}
    heads = [(k, s["versus"][s["best_baseline"]]) for k, s in sections.items()]
    p_values = [c["tests"][c["headline_test"]]["p_value"] for _, c in heads]
    testable = [i for i, p in enumerate(p_values) if p is not None]
    adjusted = multipletests([p_values[i] for i in testable], method="holm")[1] if testable else []
    for i, p_adj in zip(testable, adjusted):
        comparison = heads[i][1]
        comparison["p_value_holm"] = float(p_adj)
        difference = comparison["tests"][comparison["headline_test"]]["difference"]
        comparison["conclusion_holm"] = _words(difference, float(p_adj), comparison["higher_is_better"],
                                               comparison["model"], comparison["baseline"])
    lines = [f"Verdict for {model} against the best baseline of each section (difference = {model} - baseline, "
             f"95% CI, two-sided p; Holm-adjusted over {len(testable)} headline tests):"]
    lines += [_line(key, comparison) for key, comparison in heads]
    if sweep is not None:
        pbo = sweep["pbo"].get("pbo")
        lines.append(f"- Selection: this configuration is the best of {sweep['n_trials']} tried in sweep "
                     f"{sweep['path']}; " + ("probability of backtest overfitting not computed: "
                                             f"{sweep['pbo'].get('reason')}." if pbo is None else
                                             f"probability of backtest overfitting (CSCV) = {pbo:.2f}."))
    return {"model": model, "alpha": ALPHA, "sections": sections, "lines": lines, "sweep": sweep}


SECTION_TITLES = {
    "forecast_A": ("Book A forecast", "squared error, vol pts²"),
    "forecast_B": ("Book B forecast, all minutes", "AUC"),
    "forecast_B_setup": ("Book B forecast, setup minutes", "AUC"),
    "trading_A": ("Book A trading", "net Sharpe"),
    "trading_B": ("Book B trading", "net Sharpe"),
    "portfolio": ("Portfolio", "net Sharpe"),
}


def _line(key: str, comparison: dict) -> str:
    """One sentence: section, baseline, difference with CI, p-values, conclusion in words."""
    title, unit = SECTION_TITLES[key]
    test = comparison["tests"][comparison["headline_test"]]
    if test["p_value"] is None:
        return f"- {title} vs {comparison['baseline']}: not testable ({test.get('reason')})."
    return (f"- {title} vs {comparison['baseline']} ({unit}): {test['difference']:+.4g} "
            f"[{test['ci_low']:+.4g}, {test['ci_high']:+.4g}], p {_p(test['p_value'])} "
            f"(Holm {_p(comparison['p_value_holm'])}): {comparison['conclusion_holm']}.")


def _p(value: float) -> str:
    """A p-value as text: ``= 0.0123``, or ``< 0.0001`` below what the tests resolve."""
    return "< 0.0001" if value < 1e-4 else f"= {value:.3g}"
