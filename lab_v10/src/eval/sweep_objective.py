"""The objective of an Optuna sweep: the HRM's validation losses on the sweep folds for a trial's parameters.

For each fold of :func:`lab_v10.src.eval.sweep_folds.tuning_folds` (walk-forward blocks or CPCV splits, all
before the lab's first test block) the HRM (``make_model("hrm", ...)``, the config's, ensemble included)
is fitted on the fold's training dates, early-stopped on its validation dates and scored on its scored
dates:

    yA_nll       mean Gaussian NLL of yA (nats, vol points), metrics.regression_metrics' ``gaussian_nll``
    yB_log_loss  mean log loss of yB over the labelled minutes of the scored dates' sessions
                 (classification_metrics)
    loss         their sum (just the one present when the data has no minutes or no iv); within a fold
                 yA's vol-point scale adds the same constant to every trial, so the ranking equals the
                 standardized one

Each fold's scores are the trial's user attributes ``fold_<k>_<name>``. A single-objective trial reports
the running mean over the folds after each fold (step = fold number), so the median or Hyperband pruner can
stop it; the value is the mean over all folds. A configuration that cannot be built (a head count that does
not divide a width, or with ``param_budget`` a closed-form parameter count outside the budget) is pruned
before training with the reason in the user attribute ``rejected``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import NoReturn

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, Trial, TrialState

from lab_v10.src.config import HRMConfig, LabConfig, apply_overrides
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import Dataset, build_dataset, split_dates
from lab_v10.src.dataset.folds import Fold
from lab_v10.src.dataset.forecasts import Forecasts
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.metrics import classification_metrics, regression_metrics
from lab_v10.src.eval.sweep_folds import tuning_folds
from lab_v10.src.eval.sweep_space import SweepSpace, suggest_params
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS
from lab_v10.src.models.registry import make_model
from lab_v10.src.options.param_budget import BUDGET, param_counts

log = logging.getLogger("lab.sweep")

REJECTED_ATTR = "rejected"  # user attribute: why a configuration was pruned before training
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def is_evaluated(trial: FrozenTrial) -> bool:
    """A finished trial that evaluated a configuration (a rejected one never trained): one of the deflated
    Sharpe's trials (sweep.json ``n_trials``, MLflow ``lab.counts_as_trial``)."""
    return trial.state in FINISHED and REJECTED_ATTR not in trial.user_attrs


def score_forecasts(forecasts: Forecasts, data: Dataset, train: pd.DatetimeIndex,
                    dates: pd.DatetimeIndex) -> dict[str, float]:
    """yA_nll (with implied vol), yB_log_loss (with minutes) and loss, their sum, of ``forecasts`` for the
    scored ``dates`` of a model fitted on the ``train`` dates (module docstring)."""
    scores = {}
    if forecasts.mu is not None:
        train_mean = float(data.yA.loc[train].mean())
        scores["yA_nll"] = regression_metrics(data.yA.loc[dates], forecasts.mu, forecasts.sigma,
                                              train_mean)["gaussian_nll"]
    if forecasts.proba is not None:
        minutes = forecasts.proba.index
        labelled = minutes[data.yB.reindex(minutes).notna().to_numpy()]
        scores["yB_log_loss"] = classification_metrics(data.yB.loc[labelled],
                                                       forecasts.proba.loc[labelled])["log_loss"]
    scores["loss"] = sum(scores.values())
    return scores


def param_budget_violation(hrm: HRMConfig) -> str | None:
    """Why ``hrm`` (with the data's feature widths) breaks the 27M budget (closed-form count of
    lab_v10/src/options/param_budget.py, input projections included), or None when it fits."""
    total = param_counts(hrm)["total"]
    if BUDGET[0] <= total <= BUDGET[1]:
        return None
    return f"{total:,} parameters, outside the budget {BUDGET[0]:,}..{BUDGET[1]:,}"


def reject(trial: Trial, reason: str) -> NoReturn:
    """Prune ``trial`` before training, recording ``reason`` (user attribute ``rejected``)."""
    trial.set_user_attr(REJECTED_ATTR, reason)
    raise optuna.TrialPruned(f"rejected: {reason}")


class SweepObjective:
    """The HRM's scores on the sweep folds (module docstring) for the trial's parameters on top of ``cfg``.

    The data and folds are built once per process, on first use.
    """

    def __init__(self, cfg: LabConfig, space: SweepSpace) -> None:
        self.cfg, self.space = cfg, space
        self._prepared: tuple[Dataset, list[Fold]] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_prepared"] = None  # each worker process rebuilds the data (small to send, deterministic)
        return state

    def prepare(self) -> tuple[Dataset, list[Fold]]:
        """The dataset and the sweep folds (built on the first call); ConfigError when they cannot be."""
        if self._prepared is None:
            data = build_dataset(load_market(self.cfg.data, self.cfg.seed), self.cfg, hrm=True)
            if "yA_nll" in self.space.objectives and data.yA is None:
                raise ConfigError(f"{self.space.source}: objectives: yA_nll needs implied vol (an iv column or --iv)")
            if "yB_log_loss" in self.space.objectives and data.X_intraday is None:
                raise ConfigError(f"{self.space.source}: objectives: yB_log_loss needs minute bars (--minutes)")
            folds = tuning_folds(data, self.cfg, self.space.settings.validation)
            for fold in folds:
                log.debug("sweep %s", fold.describe())
            self._prepared = data, folds
        return self._prepared

    def trial_config(self, trial: Trial, data: Dataset) -> LabConfig:
        """The trial's config; a configuration that cannot be built or breaks the budget is rejected."""
        try:
            cfg = apply_overrides(self.cfg, suggest_params(trial, self.space), f"trial {trial.number}")
        except ConfigError as exc:
            reject(trial, str(exc))
        if self.space.settings.param_budget:
            hrm = dataclasses.replace(
                cfg.hrm, daily_features=data.X_daily.shape[1], minute_features=len(INTRADAY_MODEL_COLUMNS)
            )
            violation = param_budget_violation(hrm)
            if violation is not None:
                reject(trial, violation)
        return cfg

    def __call__(self, trial: Trial) -> float | list[float]:
        data, folds = self.prepare()
        cfg = self.trial_config(trial, data)
        # every fold of a trial trains from scratch: CPCV splits are not in time order, so a warm start could
        # begin from networks that were trained on the split's own scored rows
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, warm_start=False))
        totals: dict[str, float] = collections.defaultdict(float)
        for fold in folds:
            train, _, scored = split_dates(data, fold)
            with tempfile.TemporaryDirectory(prefix="sweep_fold_") as run_dir:
                model = make_model("hrm", cfg, Path(run_dir))
                try:
                    model.fit(data, fold)
                except ConfigError as exc:  # e.g. a head count that does not divide the searched width
                    reject(trial, str(exc))
                scores = score_forecasts(model.predict(data, scored), data, train, scored)
            for key, value in scores.items():
                trial.set_user_attr(f"fold_{fold.number}_{key}", value)
                totals[key] += value
            if not self.space.multi_objective:
                (name,) = self.space.objectives
                running = totals[name] / (fold.number + 1)
                trial.report(running, fold.number)
                if fold.number < len(folds) - 1 and trial.should_prune():  # after the last fold it is done
                    raise optuna.TrialPruned(f"pruned after fold {fold.number}: mean {name} {running:.4f}")
        values = [totals[name] / len(folds) for name in self.space.objectives]
        return values[0] if len(values) == 1 else values
