"""The search space file of an Optuna sweep (``config/sweep_*.yaml``): settings, searched keys, pruner, sampler.

Read with ``yaml.safe_load``; an unknown key at any level is a ConfigError naming the file and the key::

    objectives: [loss]              # loss | yA_nll | yB_log_loss; two or more = multi-objective, no pruning
    pruner: {type: median, n_startup_trials: 4, n_warmup_steps: 0}    # median | hyperband | none
    sampler: {type: tpe, n_startup_trials: 8}                         # tpe | random
    validation: {scheme: walkforward, n_folds: 2, block_days: 60}    # walkforward | cpcv
    param_budget: false             # true: reject HRM widths outside the 27M budget (param_budget.py)
    params:                         # config keys under hrm. or train. -> an Optuna distribution
      train.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
      hrm.H_cycles: {type: int, low: 1, high: 3}
      train.loss_weighting: {type: categorical, choices: [uncertainty, gradnorm, fixed]}

``validation.scheme`` picks the folds a trial is scored on (:mod:`lab_v10.src.eval.sweep_folds`):
``walkforward`` (default) scores ``n_folds`` consecutive blocks of ``block_days`` rows; ``cpcv`` scores
every split of combinatorial purged CV with the lab config's ``walkforward.cpcv_groups`` and
``walkforward.cpcv_test_groups`` (``n_folds`` and ``block_days`` are then unused). Every bound and choice of
``params`` is checked against the lab config's own rules when the file is loaded.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Any, Literal, Union

import optuna
from optuna.trial import Trial

from lab_v10.src.config import (
    NON_NEGATIVE,
    POSITIVE,
    LabConfig,
    WalkForwardConfig,
    apply_overrides,
    checked,
    checked_list,
    config_from_dict,
    read_yaml,
)
from lab_v10.src.errors import ConfigError

TUNABLE_SECTIONS = ("hrm", "train")  # what the objective (the HRM's validation losses) depends on
FIT_TIME_KEYS = ("hrm.daily_features", "hrm.minute_features")  # set from the data when the HRM is fitted


@dataclass
class PrunerConfig:
    """Pruner of a single-objective sweep; its steps are the scored folds (:meth:`SweepSpace.n_steps`)."""

    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = checked(4, NON_NEGATIVE)  # median: trials finished before any is pruned
    n_warmup_steps: int = checked(0, NON_NEGATIVE)  # median: folds a trial runs before it can be pruned
    min_resource: int = checked(1, POSITIVE)  # hyperband: folds every trial runs (max: the scored folds)
    reduction_factor: int = checked(3, (lambda v: v >= 2, ">= 2"))  # hyperband: 1/factor survive each rung


@dataclass
class SamplerConfig:
    type: Literal["tpe", "random"] = "tpe"
    n_startup_trials: int = checked(8, POSITIVE)  # tpe: random trials before the model proposes


@dataclass
class ValidationConfig:
    """The folds a trial is scored on, all before the lab's first test block (lab_v10/src/eval/sweep_folds.py)."""

    scheme: Literal["walkforward", "cpcv"] = "walkforward"
    n_folds: int = checked(2, POSITIVE)  # walkforward: consecutive scored blocks
    block_days: int = checked(60, POSITIVE)  # walkforward: sample rows (trading days) per scored block


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

    def n_steps(self, wf: WalkForwardConfig) -> int:
        """Scored folds per trial (the pruner's steps): ``validation.n_folds`` for walkforward,
        ``C(wf.cpcv_groups, wf.cpcv_test_groups)`` splits for cpcv."""
        if self.settings.validation.scheme == "cpcv":
            return comb(wf.cpcv_groups, wf.cpcv_test_groups)
        return self.settings.validation.n_folds

    def make_pruner(self, n_steps: int) -> optuna.pruners.BasePruner:
        """The pruner over ``n_steps`` scored folds; ConfigError when Hyperband's ``min_resource`` exceeds them."""
        p = self.settings.pruner
        if p.type == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
        if p.type == "hyperband":
            if p.min_resource > n_steps:
                raise ConfigError(
                    f"{self.source}: pruner.min_resource: expected at most the {n_steps} scored folds of "
                    f"validation.scheme {self.settings.validation.scheme} (Hyperband's resource is the scored "
                    f"fold), got {p.min_resource}"
                )
            return optuna.pruners.HyperbandPruner(
                min_resource=p.min_resource, max_resource=n_steps, reduction_factor=p.reduction_factor
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
        apply_overrides(LabConfig(), {key: value}, where)


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
    return SweepSpace(str(path), settings, params)


def suggest_params(trial: Trial, space: SweepSpace) -> dict[str, Any]:
    """Draw every searched key of ``space`` for ``trial`` (Optuna parameter names are the config keys)."""
    return {key: spec.suggest(trial, key) for key, spec in space.params.items()}
