"""The folds a sweep trial is scored on: purged folds over the samples before the lab's first test block.

The lab's own walk-forward (``walkforward`` of the config) keeps its test blocks for the final run, so a
sweep never sees them: it uses only the samples whose label spans end before the first test block, and
cuts its folds from them by ``validation.scheme`` (docs/design.md section 3 for purging and embargo):

- ``walkforward``: ``validation.n_folds`` consecutive scored blocks of ``validation.block_days`` rows, a
  walk-forward over that region with the config's scheme, minimum training window, ``val_days`` and
  embargo. Each block trains on the rows before it and early-stops on the ``val_days`` rows just before it.
- ``cpcv``: every split of combinatorial purged CV (:func:`lab_v10.src.dataset.folds.cpcv_splits`) with
  ``walkforward.cpcv_groups`` groups and ``walkforward.cpcv_test_groups`` of them scored, purged and
  embargoed. Only samples with ``hrm.daily_window`` daily rows of history take part (the HRM forecasts no
  earlier date). Early stopping uses the ``walkforward.val_days`` training rows just before the split's last
  scored group, or, when fewer training rows precede it, the ``val_days`` just after it; training rows whose
  labels reach into that validation period are purged and the ``embargo_days`` rows after it embargoed.
  Training rows lie on both sides of the scored groups, so the inputs (never the labels) of a training
  sample after a scored group may read its prices; the embargo drops the rows right after each group.

Every fold is a :class:`~lab_v10.src.dataset.folds.Fold` whose positions index ``Dataset.sample_dates``, so
:func:`~lab_v10.src.dataset.dataset.split_dates` and every model's ``fit`` take it as they are.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lab_v10.src.config import LabConfig, WalkForwardConfig
from lab_v10.src.dataset.dataset import Dataset
from lab_v10.src.dataset.folds import Fold, cpcv_splits, walk_forward_folds
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.sweep_space import ValidationConfig


def tuning_folds(data: Dataset, cfg: LabConfig, validation: ValidationConfig) -> list[Fold]:
    """The sweep's folds (module docstring); ConfigError when the pre-test samples cannot hold them."""
    first_test = walk_forward_folds(data.sample_dates, data.span_end, cfg.walkforward)[0].test_period[0]
    before = np.asarray(data.span_end < first_test)
    if validation.scheme == "cpcv":
        rows = data.X_daily.index.get_indexer(data.sample_dates)  # every sample date is a daily row
        keep = np.flatnonzero(before & (rows >= cfg.hrm.daily_window - 1))
        where = (f"validation.scheme cpcv: the {keep.size} samples with hrm.daily_window={cfg.hrm.daily_window} "
                 f"rows of history whose labels end before the first test block ({first_test.date()}) cannot "
                 f"hold walkforward.cpcv_groups={cfg.walkforward.cpcv_groups}")
    else:
        keep = np.flatnonzero(before)
        where = (f"validation: the {keep.size} samples whose labels end before the first test block "
                 f"({first_test.date()}) cannot hold n_folds={validation.n_folds} scored blocks of "
                 f"block_days={validation.block_days}")
    if keep.size == 0:
        raise ConfigError(f"{where} (there are none)")
    times, spans = data.sample_dates[keep], data.span_end[keep]
    try:
        if validation.scheme == "cpcv":
            folds = _cpcv_folds(times, spans, cfg.walkforward)
        else:
            inner = dataclasses.replace(cfg.walkforward, mode="last", n_folds=validation.n_folds,
                                        test_days=validation.block_days)
            folds = walk_forward_folds(times, spans, inner)
    except ConfigError as exc:
        raise ConfigError(f"{where} ({exc})") from None
    return [_on_all_samples(fold, keep) for fold in folds]


def _cpcv_folds(times: pd.DatetimeIndex, spans: pd.DatetimeIndex, wf: WalkForwardConfig) -> list[Fold]:
    """One fold per CPCV split of ``times``: its scored groups, its validation rows and the purged rest."""
    folds = []
    splits = cpcv_splits(times, spans, wf.cpcv_groups, wf.cpcv_test_groups, wf.embargo_days)
    for number, (train, test) in enumerate(splits):
        before, after = train[train < test[-1]], train[train > test[-1]]
        val = before[-wf.val_days:] if before.size >= wf.val_days else after[: wf.val_days]
        if val.size < wf.val_days:
            raise ConfigError(
                f"cpcv split {number}: {val.size} training rows next to the last scored group, expected "
                f"walkforward.val_days={wf.val_days} for early stopping (fewer cpcv_groups or val_days)"
            )
        rest = np.setdiff1d(train, val)
        purged = (times[rest] <= spans[val].max()) & (spans[rest] >= times[val[0]])
        embargoed = (rest > val[-1]) & (rest <= val[-1] + wf.embargo_days) & ~purged
        kept = rest[~purged & ~embargoed]
        if kept.size == 0:
            raise ConfigError(f"cpcv split {number}: purging against the validation rows left no training rows")
        folds.append(Fold(
            number=number, train_idx=kept, val_idx=val, test_idx=test,
            train_period=(times[kept[0]], times[kept[-1]]), val_period=(times[val[0]], times[val[-1]]),
            test_period=(times[test[0]], times[test[-1]]),
            purged_train=int(purged.sum()), embargoed=int(embargoed.sum()), purged_val=0,
        ))
    return folds


def _on_all_samples(fold: Fold, keep: np.ndarray) -> Fold:
    """``fold`` with its positions into the kept samples turned into read-only positions into all samples."""
    def moved(idx: np.ndarray) -> np.ndarray:
        out = keep[idx]
        out.setflags(write=False)
        return out

    return dataclasses.replace(
        fold, train_idx=moved(fold.train_idx), val_idx=moved(fold.val_idx), test_idx=moved(fold.test_idx)
    )
