"""Build baseline models by name (the ``models`` list of the lab config).

Names: ``har`` (HAR-RV, Book A), ``linear`` (ridge, Book A), ``lgbm`` (LightGBM for both books: one
daily and one intraday model), ``logistic`` (Book B), ``rule`` (rule-only setup, Book B). ``hrm`` is not a
baseline: the pipeline builds the HRM adapter and must drop ``hrm`` from the list before calling
:func:`make_baselines`, which rejects it like any unknown name so a missed filter cannot pass silently.
"""
from __future__ import annotations

from collections.abc import Callable

from lab_v10.src.baselines.base import DailyGapForecaster, IntradayProbaModel
from lab_v10.src.baselines.har import HARGapForecaster
from lab_v10.src.baselines.lgbm import LGBMGapForecaster, LGBMSetupModel
from lab_v10.src.baselines.linear import LinearGapForecaster, LogisticSetupModel
from lab_v10.src.baselines.rules import RuleOnlySetup
from lab_v10.src.config import BaselineConfig
from lab_v10.src.errors import ConfigError

Builder = Callable[[BaselineConfig, int], tuple[list[DailyGapForecaster], list[IntradayProbaModel]]]

BUILDERS: dict[str, Builder] = {
    "har": lambda cfg, seed: ([HARGapForecaster()], []),
    "linear": lambda cfg, seed: ([LinearGapForecaster(cfg)], []),
    "lgbm": lambda cfg, seed: ([LGBMGapForecaster(cfg, seed)], [LGBMSetupModel(cfg, seed)]),
    "logistic": lambda cfg, seed: ([], [LogisticSetupModel(cfg)]),
    "rule": lambda cfg, seed: ([], [RuleOnlySetup()]),
}
BASELINE_NAMES: tuple[str, ...] = tuple(BUILDERS)


def make_baselines(
    names: list[str], cfg: BaselineConfig, seed: int
) -> tuple[list[DailyGapForecaster], list[IntradayProbaModel]]:
    """Unfitted baselines for ``names``, in the order given: ``(Book A forecasters, Book B models)``.

    ``seed`` seeds the LightGBM models (the others are deterministic without one). Raises ConfigError on an
    unknown name (``hrm`` included, see the module docstring) or a name listed twice.
    """
    daily: list[DailyGapForecaster] = []
    intraday: list[IntradayProbaModel] = []
    for i, name in enumerate(names):
        if name not in BUILDERS:
            hint = " ('hrm' is built by the pipeline: filter it out first)" if name == "hrm" else ""
            raise ConfigError(
                f"models[{i}]: unknown baseline {name!r}{hint} (expected one of: {', '.join(BASELINE_NAMES)})"
            )
        if name in names[:i]:
            raise ConfigError(f"models[{i}]: baseline {name!r} is listed twice (expected each name once)")
        a, b = BUILDERS[name](cfg, seed)
        daily += a
        intraday += b
    return daily, intraday
