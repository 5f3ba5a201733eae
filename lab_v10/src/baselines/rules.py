"""Rule-only Book B baseline: the backside-short setup without a meta-label.

The probability is 1.0 on every minute where ``setup_signal`` is on and 0.0 elsewhere, so any probability
threshold in (0, 1] trades exactly the rule's signals: the benchmark the meta-label models must beat.
Nothing is learned; ``fit`` only checks the signal column. (Book A's rule strategies, always-short
straddle and no trade, are positions, not forecasts: the pipeline builds them.)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lab_v10.src.dataset.samples import feature_frame, fold_dates

SIGNAL_COLUMN = "setup_signal"


def setup_signal(X_intraday: pd.DataFrame) -> pd.Series:
    """The ``setup_signal`` column as 0.0/1.0; ValueError naming the first minute with another value."""
    signal = feature_frame(X_intraday, [SIGNAL_COLUMN], "X_intraday")[SIGNAL_COLUMN]
    odd = np.flatnonzero(~signal.isin([0.0, 1.0]).to_numpy())
    if odd.size:
        raise ValueError(
            f"X_intraday: {SIGNAL_COLUMN!r} at {signal.index[odd[0]]} is {signal.iloc[odd[0]]} (expected 0 or 1)"
        )
    return signal.rename("proba")


class RuleOnlySetup:
    """Probability 1.0 when ``setup_signal`` is on, else 0.0 (module docstring)."""

    name = "rule"

    def fit(
        self, X_intraday: pd.DataFrame, yB: pd.Series, train_idx: pd.DatetimeIndex, val_idx: pd.DatetimeIndex
    ) -> RuleOnlySetup:
        """Nothing to learn: checks the fold dates and that ``X_intraday`` carries a 0/1 ``setup_signal``."""
        fold_dates(train_idx, val_idx)
        setup_signal(X_intraday)
        return self

    def predict_intraday_proba(self, X_intraday: pd.DataFrame) -> pd.Series:
        return setup_signal(X_intraday)
