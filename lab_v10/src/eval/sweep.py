"""Optuna sweeps of the HRM: the search space file, the purged walk-forward objective, storages and workers.

``scripts/sweep_optuna.py`` is the command line; everything it does is here.

Search space (``config/sweep_*.yaml``, read with ``yaml.safe_load``; an unknown key at any level is a
ConfigError naming the file and the key)::

    objectives: [loss]              # loss | yA_nll | yB_log_loss; two or more = multi-objective, no pruning
    pruner: {type: median, n_startup_trials: 4, n_warmup_steps: 0}    # median | hyperband | none
    sampler: {type: tpe, n_startup_trials: 8}                         # tpe | random
    validation: {n_folds: 2, block_days: 60}
    param_budget: false             # true: reject HRM widths outside the 27M budget (param_budget.py)
    params:                         # config keys under hrm. or train. -> an Optuna distribution
      train.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
      hrm.H_cycles: {type: int, low: 1, high: 3}
      train.loss_weighting: {type: categorical, choices: [uncertainty, gradnorm, fixed]}

Objective (:class:`WalkForwardObjective`). The lab's own walk-forward (``walkforward`` of the config) keeps
its test blocks for the final run, so a sweep never sees them: it uses only the samples whose label spans
end before the first test block (purged), and cuts from them ``validation.n_folds`` consecutive scored
blocks of ``validation.block_days`` rows (a walk-forward over that region with the config's scheme,
minimum training window, early-stopping rows ``val_days`` and embargo). For each block the HRM is fitted on
the rows before it, early-stopped on the ``val_days`` rows just before it, and scored on the block:

    yA_nll       mean Gaussian NLL of yA (nats, vol points), metrics.regression_metrics' ``gaussian_nll``
    yB_log_loss  mean log loss of yB over the labelled minutes of the block's sessions (classification_metrics)
    loss         their sum (just the one present when the data has no minutes or no iv); within a fold
                 yA's vol-point scale adds the same constant to every trial, so the ranking equals the
                 standardized one

A single-objective trial reports the running mean over the blocks after each block (step = block number),
so the median or Hyperband pruner can stop it; the value is the mean over all blocks. A configuration that
cannot be built (a head count that does not divide a width, or with ``param_budget`` a closed-form
parameter count outside the budget) is pruned before training with the reason in the trial's user
attribute ``rejected``; an exception in a trial marks it failed (user attribute ``error``) and the sweep
goes on.

Storage (:func:`open_storage`): a path is a journal file (``JournalStorage`` + ``JournalFileBackend``, safe for
several processes on one machine; the default is ``<out>/optuna_journal.log``); a URL with ``://`` is a
database Optuna's ``RDBStorage`` accepts (``postgresql://user:pass@host/db`` for several machines,
``sqlite:///file.db``), with a heartbeat so the trials of a killed worker are marked failed. Re-running the
same ``--study`` resumes it: ``--trials N`` is the number of finished trials (complete, pruned or failed)
the study should hold, and only the missing ones run. ``--workers K`` starts K processes on the same
storage and deals the missing trials between them, so one invocation finishes exactly N; concurrent
invocations (several machines) each stop once the study holds N, overshooting by at most the trials then
running.

Results in ``--out`` (:func:`write_results`): ``trials.csv`` (every trial: state, values, parameters, fold
scores, reasons), ``best_config.yaml`` (single objective) or ``best_config_trial<N>.yaml`` per Pareto-optimal
trial (multi-objective), each a full lab config for ``main_v3.py --config``, and ``sweep.json`` with
``n_trials``: the configurations evaluated (finished trials minus rejected ones), the trial count
``main_v3.py --n-trials`` gives the deflated Sharpe ratio.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import multiprocessing
import os
import tempfile
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, NoReturn, Union

import numpy as np
import optuna
import pandas as pd
import torch
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from lab_v10.src.config import (
    read_yaml,
    NON_NEGATIVE,
    POSITIVE,
    HRMConfig,
    LabConfig,
    WalkForwardConfig,
    checked,
    checked_list,
    config_from_dict,
    config_to_dict,
)
from lab_v10.src.data.market import load_market
from lab_v10.src.data.store import atomic_output
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.metrics import classification_metrics, regression_metrics
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.param_budget import BUDGET, param_counts
from lab_v10.src.dataset.dataset import Dataset, build_dataset, sessions_for

log = logging.getLogger("lab.sweep")

TUNABLE_SECTIONS = ("hrm", "train")  # what the objective (the HRM's validation losses) depends on
FIT_TIME_KEYS = ("hrm.daily_features", "hrm.minute_features")  # set from the data when the HRM is fitted
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
REJECTED_ATTR = "rejected"  # user attribute: why a configuration was pruned before training
ERROR_ATTR = "error"  # user attribute: the exception of a failed trial
HEARTBEAT_S, GRACE_S = 60, 180  # RDB storages: a running trial without a heartbeat for GRACE_S is failed
DEFAULT_JOURNAL = "optuna_journal.log"
CSV_FILE, JSON_FILE = "trials.csv", "sweep.json"

Objective = Callable[[Trial], Union[float, Sequence[float]]]


# ----------------------------------------------------------------------------------------------
# The search space file


@dataclass
class PrunerConfig:
    """Pruner of a single-objective sweep; its steps are the scored validation blocks."""

    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = checked(4, NON_NEGATIVE)  # median: trials finished before any is pruned
    n_warmup_steps: int = checked(0, NON_NEGATIVE)  # median: blocks a trial runs before it can be pruned
    min_resource: int = checked(1, POSITIVE)  # hyperband: blocks every trial runs (max: validation.n_folds)
    reduction_factor: int = checked(3, (lambda v: v >= 2, ">= 2"))  # hyperband: 1/factor survive each rung


@dataclass
class SamplerConfig:
    type: Literal["tpe", "random"] = "tpe"
    n_startup_trials: int = checked(8, POSITIVE)  # tpe: random trials before the model proposes


@dataclass
class ValidationConfig:
    """Scored blocks before the lab's first test block (module docstring)."""

    n_folds: int = checked(2, POSITIVE)
    block_days: int = checked(60, POSITIVE)  # sample rows (trading days) per scored block


@dataclass
class SweepSettings:
    """Everything in a space file but ``params``."""

    objectives: list[Literal["loss", "yA_nll", "yB_log_loss"]] = checked_list(
        lambda: ["loss"], (lambda v: len(v) > 0 and len(set(v)) == len(v), "non-empty, no repeats")
    )
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    param_budget: bool = False


@dataclass
class ParamSpec:
    """One searched config key: ``float``/``int`` from ``low`` to ``high`` (``log`` scale or a ``step``), or
    ``categorical`` from ``choices``."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Union[bool, int, float, str]] | None = None

    def suggest(self, trial: Trial, key: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(key, self.choices)
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            return trial.suggest_int(key, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class SweepSpace:
    """A loaded search space: ``source`` (the file, for messages), the settings and the searched keys."""

    source: str
    settings: SweepSettings
    params: dict[str, ParamSpec]

    @property
    def objectives(self) -> list[str]:
        return self.settings.objectives

    @property
    def directions(self) -> list[str]:
        return ["minimize"] * len(self.objectives)  # every objective is a loss

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def make_pruner(self) -> optuna.pruners.BasePruner:
        p = self.settings.pruner
        if p.type == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
        if p.type == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=p.min_resource, max_resource=self.settings.validation.n_folds,
                reduction_factor=p.reduction_factor,
            )
        return optuna.pruners.NopPruner()

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        s = self.settings.sampler
        if s.type == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=s.n_startup_trials, seed=seed)


def _check_key(key: str, where: str) -> None:
    """Check that ``key`` is a tunable leaf of LabConfig (ConfigError naming ``where`` otherwise)."""
    parts = key.split(".")
    if parts[0] not in TUNABLE_SECTIONS or len(parts) < 2:
        raise ConfigError(
            f"{where}: expected a config key under {' or '.join(s + '.' for s in TUNABLE_SECTIONS)} (the sweep "
            "scores the HRM's validation losses, which nothing else changes)"
        )
    if key in FIT_TIME_KEYS:
        raise ConfigError(f"{where}: set from the data when the HRM is fitted, not searchable")
    cls: Any = LabConfig
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise ConfigError(
                f"{where}: {'.'.join(parts[:i + 1])} is not a config key (expected one of: {', '.join(fields)})"
            )
        hint = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(hint):
                raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])} is a value, not a section")
            cls = hint
        elif dataclasses.is_dataclass(hint):
            raise ConfigError(f"{where}: {key} is a section; expected one of its keys")


def _check_spec(key: str, spec: ParamSpec, where: str) -> None:
    """Range and shape rules of one searched key, and every bound or choice valid for the config."""
    if spec.type == "categorical":
        if not spec.choices:
            raise ConfigError(f"{where}: choices: expected a non-empty list for type categorical")
        if spec.low is not None or spec.high is not None or spec.log or spec.step is not None:
            raise ConfigError(f"{where}: type categorical takes choices only (no low, high, log or step)")
        candidates = list(spec.choices)
    else:
        if spec.choices is not None:
            raise ConfigError(f"{where}: choices: only for type categorical")
        if spec.low is None or spec.high is None or not spec.low < spec.high:
            raise ConfigError(f"{where}: expected low < high for type {spec.type}, got {spec.low} and {spec.high}")
        if spec.log and (spec.low <= 0 or spec.step is not None):
            raise ConfigError(f"{where}: log: needs low > 0 and no step")
        if spec.step is not None and spec.step <= 0:
            raise ConfigError(f"{where}: step: expected > 0, got {spec.step}")
        if spec.type == "int":
            bounds = [spec.low, spec.high] + ([spec.step] if spec.step is not None else [])
            if any(float(v) != int(v) for v in bounds):
                raise ConfigError(f"{where}: type int needs whole numbers for low, high and step")
            candidates = [int(spec.low), int(spec.high)]
        else:
            candidates = [float(spec.low), float(spec.high)]
    for value in candidates:
        apply_params(LabConfig(), {key: value}, where)


def load_space(path: str | Path) -> SweepSpace:
    """Read and check a search space file (module docstring); ConfigError names the file and the key."""
    path = Path(path)
    raw = read_yaml(path, "search space")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    allowed = sorted([f.name for f in dataclasses.fields(SweepSettings)] + ["params"])
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (expected one of: {', '.join(allowed)})")
    params_raw = raw.get("params")
    settings = config_from_dict({k: v for k, v in raw.items() if k != "params"}, str(path), SweepSettings)
    if not isinstance(params_raw, dict) or not params_raw:
        raise ConfigError(f"{path}: params: expected a mapping of config keys to distributions, got {params_raw!r}")
    params = {}
    for key, spec_raw in params_raw.items():
        where = f"{path}: params.{key}"
        _check_key(str(key), where)
        if not isinstance(spec_raw, dict) or "type" not in spec_raw:
            raise ConfigError(f"{where}: expected a mapping with a type (float, int or categorical), got {spec_raw!r}")
        spec = config_from_dict(spec_raw, where, ParamSpec)
        _check_spec(key, spec, where)
        params[key] = spec
    if len(settings.objectives) > 1 and settings.pruner.type != "none":
        raise ConfigError(
            f"{path}: pruner.type: expected none with several objectives (Optuna prunes single-objective "
            f"studies only), got {settings.pruner.type}"
        )
    if settings.pruner.type == "hyperband" and settings.pruner.min_resource > settings.validation.n_folds:
        raise ConfigError(
            f"{path}: pruner.min_resource: expected at most validation.n_folds={settings.validation.n_folds} "
            f"(Hyperband's resource is the scored block), got {settings.pruner.min_resource}"
        )
    return SweepSpace(str(path), settings, params)


def suggest_params(trial: Trial, space: SweepSpace) -> dict[str, Any]:
    """Draw every searched key of ``space`` for ``trial`` (Optuna parameter names are the config keys)."""
    return {key: spec.suggest(trial, key) for key, spec in space.params.items()}


def apply_params(cfg: LabConfig, params: dict[str, Any], source: str) -> LabConfig:
    """``cfg`` with each dotted key of ``params`` set, validated like a loaded config (errors name ``source``)."""
    data = config_to_dict(cfg)
    for key, value in params.items():
        *sections, leaf = key.split(".")
        node = data
        for section in sections:
            node = node[section]
        node[leaf] = value
    return config_from_dict(data, source)


# ----------------------------------------------------------------------------------------------
# The objective


class TuningFold(NamedTuple):
    """Forecast dates of one sweep fold: ``train`` fits, ``val`` early-stops, ``score`` is scored."""

    number: int
    train: pd.DatetimeIndex
    val: pd.DatetimeIndex
    score: pd.DatetimeIndex


def tuning_folds(data: Dataset, wf: WalkForwardConfig, validation: ValidationConfig) -> list[TuningFold]:
    """The sweep's folds: walk-forward over the samples whose labels end before the lab's first test block."""
    first_test = walk_forward_folds(data.sample_dates, data.span_end, wf)[0].test_period[0]
    keep = np.asarray(data.span_end < first_test)
    times, spans = data.sample_dates[keep], data.span_end[keep]
    inner = dataclasses.replace(wf, n_folds=validation.n_folds, test_days=validation.block_days)
    try:
        folds = walk_forward_folds(times, spans, inner)
    except ConfigError as exc:
        raise ConfigError(
            f"validation: the {times.size} samples whose labels end before the first test block "
            f"({first_test.date()}) cannot hold n_folds={validation.n_folds} scored blocks of "
            f"block_days={validation.block_days} ({exc})"
        ) from None
    return [TuningFold(f.number, times[f.train_idx], times[f.val_idx], times[f.test_idx]) for f in folds]


def score_forecasts(adapter: HRMAdapter, data: Dataset, dates: pd.DatetimeIndex) -> dict[str, float]:
    """yA_nll (with implied vol), yB_log_loss (with minutes) and loss, their sum, of a fitted adapter on the
    samples of ``dates``."""
    scores = {}
    if data.yA is not None:
        pred = adapter.predict_daily(data.X_daily.loc[: dates[-1]]).reindex(dates)
        scores["yA_nll"] = regression_metrics(data.yA.loc[dates], pred["mu"], pred["sigma"],
                                              adapter.train_mean_)["gaussian_nll"]
    if data.X_intraday is not None:
        sessions = sessions_for(data, dates)
        minutes = data.X_intraday.index[data.X_intraday["session"].isin(sessions).to_numpy()]
        proba = adapter.predict_intraday_proba(data.X_intraday.loc[minutes], data.X_daily)
        labelled = minutes[data.yB.reindex(minutes).notna().to_numpy()]
        scores["yB_log_loss"] = classification_metrics(data.yB.loc[labelled], proba.loc[labelled])["log_loss"]
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


class WalkForwardObjective:
    """The HRM's scores on the sweep folds (module docstring) for the trial's parameters on top of ``cfg``.

    The data and folds are built once per process, on first use.
    """

    def __init__(self, cfg: LabConfig, space: SweepSpace) -> None:
        self.cfg, self.space = cfg, space
        self._prepared: tuple[Dataset, list[TuningFold]] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_prepared"] = None  # each worker process rebuilds the data (small to send, deterministic)
        return state

    def prepare(self) -> tuple[Dataset, list[TuningFold]]:
        """The dataset and the sweep folds (built on the first call); ConfigError when they cannot be."""
        if self._prepared is None:
            data = build_dataset(load_market(self.cfg.data, self.cfg.seed), self.cfg)
            if "yA_nll" in self.space.objectives and data.yA is None:
                raise ConfigError(f"{self.space.source}: objectives: yA_nll needs implied vol (an iv column or --iv)")
            if "yB_log_loss" in self.space.objectives and data.X_intraday is None:
                raise ConfigError(f"{self.space.source}: objectives: yB_log_loss needs minute bars (--minutes)")
            self._prepared = data, tuning_folds(data, self.cfg.walkforward, self.space.settings.validation)
        return self._prepared

    def trial_config(self, trial: Trial, data: Dataset) -> LabConfig:
        """The trial's config; a configuration that cannot be built or breaks the budget is rejected."""
        try:
            cfg = apply_params(self.cfg, suggest_params(trial, self.space), f"trial {trial.number}")
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
        totals: dict[str, float] = collections.defaultdict(float)
        for fold in folds:
            with tempfile.TemporaryDirectory(prefix="sweep_fold_") as run_dir:
                adapter = HRMAdapter(cfg, out_dir=Path(run_dir))
                try:
                    adapter.fit(data.X_daily, data.X_intraday, data.yA, data.yB, fold.train, fold.val)
                except ConfigError as exc:  # e.g. a head count that does not divide the searched width
                    reject(trial, str(exc))
                scores = score_forecasts(adapter, data, fold.score)
            for key, value in scores.items():
                trial.set_user_attr(f"fold_{fold.number}_{key}", value)
                totals[key] += value
            if not self.space.multi_objective:
                (name,) = self.space.objectives
                running = totals[name] / (fold.number + 1)
                trial.report(running, fold.number)
                if fold.number < len(folds) - 1 and trial.should_prune():  # after the last block it is done
                    raise optuna.TrialPruned(f"pruned after block {fold.number}: mean {name} {running:.4f}")
        values = [totals[name] / len(folds) for name in self.space.objectives]
        return values[0] if len(values) == 1 else values


# ----------------------------------------------------------------------------------------------
# Storage, workers, results


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file for a path, Optuna's RDBStorage (with a heartbeat) for a URL with ``://``."""
    if "://" in url:
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental; this use is the documented one
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as exc:  # a missing driver (ImportError) or a bad URL (SQLAlchemy's ArgumentError)
            raise ConfigError(f"--storage {url}: Optuna cannot open it ({type(exc).__name__}: {exc})") from None
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class _RecordErrors:
    """The objective, recording a failing trial's exception as its user attribute ``error``."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def __call__(self, trial: Trial) -> float | Sequence[float]:
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}")
            raise


@dataclass(frozen=True)
class _WorkerJob:
    """What one worker process runs: ``n_trials`` trials of the study, stopping when it holds ``target``."""

    storage: str
    study_name: str
    space: SweepSpace
    objective: Objective
    n_trials: int
    target: int
    timeout: float | None
    seed: int
    threads: int | None  # torch intra-op threads (None: leave torch's default)


def _run_worker(job: _WorkerJob) -> None:
    """Optimize in this process (the body of every worker)."""
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    study = optuna.load_study(
        study_name=job.study_name, storage=open_storage(job.storage),
        sampler=job.space.make_sampler(job.seed), pruner=job.space.make_pruner(),
    )
    study.optimize(
        _RecordErrors(job.objective), n_trials=job.n_trials, timeout=job.timeout, catch=(Exception,),
        callbacks=[MaxTrialsCallback(job.target, states=FINISHED)],
    )


@dataclass
class SweepResult:
    """What a sweep wrote: trial counts, the best configs and the commands to use them."""

    study_name: str
    storage: str
    n_trials: int  # configurations evaluated: the deflated-Sharpe trial count
    states: dict[str, int]
    best: list[dict]  # per best (or Pareto-optimal) trial: number, values, params, config path
    csv_path: Path
    json_path: Path
    commands: list[str]  # main_v3.py runs of the best configs
    dashboard_command: str


def run_sweep(
    cfg: LabConfig,
    space: SweepSpace,
    study_name: str,
    n_trials: int,
    out_dir: Path,
    storage: str | None = None,
    workers: int = 1,
    timeout: float | None = None,
    objective: Objective | None = None,
) -> SweepResult:
    """Run (or resume) ``study_name`` until it holds ``n_trials`` finished trials, then write the results.

    ``objective`` defaults to :class:`WalkForwardObjective` (built and prepared here, so data errors surface
    before any worker starts); a cheap callable of a trial can stand in for it. ``workers`` > 1 starts that
    many processes (spawned; the objective must be picklable) on the storage.
    """
    if n_trials < 1:
        raise ConfigError(f"--trials: expected int >= 1, got {n_trials}")
    if workers < 1:
        raise ConfigError(f"--workers: expected int >= 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout: expected seconds > 0, got {timeout}")
    out_dir = Path(out_dir)
    storage = storage or str(out_dir / DEFAULT_JOURNAL)
    if objective is None:
        objective = WalkForwardObjective(cfg, space)
        objective.prepare()
    study = optuna.create_study(
        study_name=study_name, storage=open_storage(storage), directions=space.directions, load_if_exists=True
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != space.directions:
        raise ConfigError(
            f"--study {study_name}: the stored study has directions {stored}, but {space.source} asks for "
            f"{space.directions} (objectives {space.objectives}); use another --study"
        )
    existing = study.get_trials(deepcopy=False)
    missing = max(0, n_trials - sum(t.state in FINISHED for t in existing))
    shares = [n for n in np.diff(np.linspace(0, missing, workers + 1).round().astype(int)) if n > 0]
    log.info("study %s: %d of %d trials finished, %d to run on %d worker(s)", study_name, n_trials - missing,
             n_trials, missing, len(shares))
    # a resumed study gets fresh seeds, so TPE's random start does not repeat earlier trials
    seeds = np.random.SeedSequence([cfg.seed, len(existing)]).generate_state(max(1, len(shares)))
    threads = max(1, (os.cpu_count() or 1) // len(shares)) if len(shares) > 1 else None
    jobs = [
        _WorkerJob(storage, study_name, space, objective, n, n_trials, timeout, int(seed), threads)
        for n, seed in zip(shares, seeds)
    ]
    if len(jobs) == 1:
        _run_worker(jobs[0])
    elif jobs:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_run_worker, args=(job,), name=f"sweep-worker-{i}")
                     for i, job in enumerate(jobs)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        failed = [f"{p.name} (exit code {p.exitcode})" for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"sweep workers failed: {', '.join(failed)}; see their messages above")
    return write_results(optuna.load_study(study_name=study_name, storage=open_storage(storage)), cfg, space,
                         out_dir, storage)


def evaluated_trials(trials: Sequence[FrozenTrial]) -> int:
    """Finished trials that evaluated a configuration (rejected ones never trained): the DSR trial count."""
    return sum(t.state in FINISHED and REJECTED_ATTR not in t.user_attrs for t in trials)


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_results(study: optuna.Study, cfg: LabConfig, space: SweepSpace, out_dir: Path, storage: str) -> SweepResult:
    """Write trials.csv, the best config(s) and sweep.json into ``out_dir`` (module docstring)."""
    out_dir = Path(out_dir)
    trials = study.get_trials(deepcopy=False)
    frame = study.trials_dataframe()
    value_columns = ["value"] if not space.multi_objective else [f"values_{i}" for i in range(len(space.objectives))]
    frame = frame.rename(columns=dict(zip(value_columns, space.objectives)))
    csv_path = out_dir / CSV_FILE
    _write_text(csv_path, frame.to_csv(index=False))

    n_evaluated = evaluated_trials(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    winners = (study.best_trials if space.multi_objective else [study.best_trial]) if complete else []
    best, commands = [], []
    for trial in winners:
        name = "best_config.yaml" if not space.multi_objective else f"best_config_trial{trial.number}.yaml"
        path = out_dir / name
        values = dict(zip(space.objectives, trial.values))
        header = (
            f"# Optuna study {study.study_name}, trial {trial.number}: "
            + ", ".join(f"{k} {v:.6g}" for k, v in values.items())
            + f"\n# search space {space.source}; {n_evaluated} configurations evaluated "
            "(main_v3.py --n-trials)\n"
        )
        config = apply_params(cfg, trial.params, f"trial {trial.number}")
        _write_text(path, header + yaml.safe_dump(config_to_dict(config), sort_keys=False))
        best.append({"number": trial.number, "values": values, "params": trial.params, "config": str(path)})
        commands.append(f"python main_v3.py --config {path} --n-trials {max(1, n_evaluated)}")
    states = collections.Counter(t.state.name for t in trials)
    states["REJECTED"] = sum(REJECTED_ATTR in t.user_attrs for t in trials)
    result = SweepResult(
        study_name=study.study_name, storage=storage, n_trials=n_evaluated, states=dict(states), best=best,
        csv_path=csv_path, json_path=out_dir / JSON_FILE, commands=commands,
        dashboard_command=f"optuna-dashboard {storage}",
    )
    summary = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()},
        "objectives": space.objectives,
        "directions": space.directions,
        "space": space.source,
    }
    _write_text(result.json_path, json.dumps(summary, indent=2))
    return result
