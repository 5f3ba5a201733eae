"""Every forecaster of the lab by name (the ``models`` list of the config, ``--models`` on the CLI).

| name | books | model |
|---|---|---|
| ``hrm`` | A, B | the dual-book HRM (:class:`~lab_v10.src.options.hrm_model.HRMModel`) |
| ``tshrm`` | A | the TimeSeriesHRM as a gap forecaster (:class:`~lab_v10.src.models.ts_gap_model.TSHRMGapModel`) |
| ``har`` | A | HAR-RV |
| ``linear`` | A | ridge regression |
| ``lgbm`` | A, B | LightGBM (one regressor, one classifier) |
| ``logistic`` | B | logistic regression |
| ``rule`` | B | the rule-only setup (probability 1 when it fires) |

Each name builds a fresh, unfitted :class:`~lab_v10.src.dataset.forecasts.Forecaster`.

In a universe run, the names of ``panel.pooled_models`` also run pooled across symbols
(:class:`~lab_v10.src.dataset.forecasts.PooledForecaster`), reported as ``<name>_pooled``:

| name | books | pooled model |
|---|---|---|
| ``hrm`` | A, B | one HRM ensemble on every symbol (:class:`~lab_v10.src.options.hrm_model.PooledHRMModel`) |
| ``har``, ``linear``, ``lgbm`` | A | one regression on the stacked rows (:class:`~lab_v10.src.models.pooled.PooledGapModel`) |
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab_v10.src.baselines.base import BookModels
from lab_v10.src.baselines.har import HARGapForecaster
from lab_v10.src.baselines.lgbm import LGBMGapForecaster, LGBMSetupModel
from lab_v10.src.baselines.linear import LinearGapForecaster, LogisticSetupModel
from lab_v10.src.baselines.rules import RuleOnlySetup
from lab_v10.src.config import LabConfig
from lab_v10.src.dataset.forecasts import Forecaster, PooledForecaster
from lab_v10.src.errors import ConfigError
from lab_v10.src.models.pooled import PooledGapModel
from lab_v10.src.models.ts_gap_model import TSHRMGapModel
from lab_v10.src.options.hrm_model import HRMModel, PooledHRMModel

# name -> builder(config, run folder for models that write checkpoints)
MODELS: dict[str, Callable[[LabConfig, Path | None], Forecaster]] = {
    "hrm": lambda cfg, run_dir: HRMModel(cfg, run_dir),
    "tshrm": lambda cfg, run_dir: TSHRMGapModel(cfg),
    "har": lambda cfg, run_dir: BookModels("har", HARGapForecaster(), None),
    "linear": lambda cfg, run_dir: BookModels("linear", LinearGapForecaster(cfg.baselines), None),
    "lgbm": lambda cfg, run_dir: BookModels(
        "lgbm", LGBMGapForecaster(cfg.baselines, cfg.seed), LGBMSetupModel(cfg.baselines, cfg.seed)
    ),
    "logistic": lambda cfg, run_dir: BookModels("logistic", None, LogisticSetupModel(cfg.baselines)),
    "rule": lambda cfg, run_dir: BookModels("rule", None, RuleOnlySetup()),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def check_model_names(names: list[str]) -> None:
    """ConfigError unless ``names`` is a non-empty list of known model names, each listed once."""
    if not names:
        raise ConfigError(f"models: expected at least one model name (one of: {', '.join(MODEL_NAMES)}), got none")
    for i, name in enumerate(names):
        if name not in MODELS:
            raise ConfigError(f"models[{i}]: unknown model {name!r} (expected one of: {', '.join(MODEL_NAMES)})")
        if name in names[:i]:
            raise ConfigError(f"models[{i}]: model {name!r} is listed twice (expected each name once)")


def make_model(name: str, cfg: LabConfig, run_dir: Path | None = None) -> Forecaster:
    """A fresh model ``name`` for ``cfg``; ConfigError naming the unknown name and the known ones."""
    check_model_names([name])
    return MODELS[name](cfg, run_dir)


POOLED_MODELS: dict[str, Callable[[LabConfig, Path | None], PooledForecaster]] = {
    "hrm": lambda cfg, run_dir: PooledHRMModel(cfg, run_dir),
    "har": lambda cfg, run_dir: PooledGapModel("har_pooled", HARGapForecaster(), standardize=False),
    "linear": lambda cfg, run_dir: PooledGapModel("linear_pooled", LinearGapForecaster(cfg.baselines), standardize=True),
    "lgbm": lambda cfg, run_dir: PooledGapModel("lgbm_pooled", LGBMGapForecaster(cfg.baselines, cfg.seed),
                                                standardize=True),
}
POOLED_SUFFIX = "_pooled"


def check_pooled_names(names: list[str]) -> None:
    """ConfigError unless every name of ``panel.pooled_models`` can run pooled, each listed once."""
    for i, name in enumerate(names):
        if name not in POOLED_MODELS:
            raise ConfigError(f"panel.pooled_models[{i}]: {name!r} has no pooled version (expected one of: "
                              f"{', '.join(POOLED_MODELS)})")
        if name in names[:i]:
            raise ConfigError(f"panel.pooled_models[{i}]: model {name!r} is listed twice (expected each name once)")


def make_pooled_model(name: str, cfg: LabConfig, run_dir: Path | None = None) -> PooledForecaster:
    """A fresh pooled model ``name`` (reported as ``<name>_pooled``); ConfigError for a name with none."""
    check_pooled_names([name])
    return POOLED_MODELS[name](cfg, run_dir)
