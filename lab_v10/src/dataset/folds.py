"""Purged and embargoed folds over daily samples: walk-forward and combinatorial purged CV.

Every sample ``i`` has a sample time ``t_i`` (the date of its daily row: what is known at that close) and a
label span end ``e_i >= t_i`` (the last date its label looks at; for ``yA`` the date of row ``t+h``).
Folds hold integer positions into the samples. Leakage control (López de Prado, *Advances in Financial
Machine Learning*, 2018, ch. 7, and docs/design.md section 3):

- **purging**: a training sample is dropped when its label span ``[t_i, e_i]`` intersects the evaluation
  period ``[first t, last e]`` of a validation or test block; a validation sample is dropped when its span
  reaches into the test period, so early stopping never sees a label computed from test-period prices;
- **embargo**: the ``embargo_days`` rows that follow each test block never train a model, in any fold of
  the schedule (in expanding walk-forward, later folds train on earlier test blocks, minus the rows right
  after each of them).

All lengths (``test_days``, ``val_days``, ``embargo_days``, ...) count sample rows (trading days), not
calendar days.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from lab_v10.src.config import WalkForwardConfig
from lab_v10.src.errors import ConfigError

Period = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward fold: read-only int positions into the samples, and what purging removed.

    ``*_period`` is (first, last) sample date of the rows kept in that set. ``purged_train`` counts training
    window rows dropped because their labels overlap the validation/test period, ``embargoed`` the window
    rows dropped only because they follow an earlier test block, ``purged_val`` the validation rows whose
    labels reach into the test period.
    """

    number: int  # 0-based, in time order
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    train_period: Period
    val_period: Period
    test_period: Period
    purged_train: int
    embargoed: int
    purged_val: int

    def describe(self) -> str:
        def span(period: Period) -> str:
            return f"{period[0]:%Y-%m-%d}..{period[1]:%Y-%m-%d}"

        return (
            f"fold {self.number}: train {span(self.train_period)} ({self.train_idx.size} rows, "
            f"{self.purged_train} purged, {self.embargoed} embargoed) | val {span(self.val_period)} "
            f"({self.val_idx.size} rows, {self.purged_val} purged) | test {span(self.test_period)} "
            f"({self.test_idx.size} rows)"
        )


def walk_forward_folds(
    times: pd.DatetimeIndex, span_end: pd.DatetimeIndex, cfg: WalkForwardConfig
) -> list[Fold]:
    """Purged, embargoed walk-forward folds in time order; ``cfg.mode`` places the test blocks.

    ``mode="last"``: fold ``k`` tests on the ``k``-th of ``n_folds`` consecutive blocks of ``test_days`` rows
    that end the sample. ``mode="whole_history"``: the test blocks tile every sample after the warm-up (the
    first training window, then ``val_days`` rows): ``ceil(rest / test_days)`` consecutive blocks of nearly
    equal length, at most ``test_days`` rows each, the last ending with the last sample, so a run scores the
    whole history after the warm-up with a refit per block. Either way the ``val_days`` rows before a test
    block validate it (early stopping); training uses the rows before that: all of them
    (``scheme="expanding"``) or the last ``train_days`` (``"rolling"``). The first fold's training window
    must hold at least ``min_train_days`` rows before purging (for ``rolling``, ``train_days >=
    min_train_days`` is required). Purging and embargo follow the module docstring.

    Raises ConfigError when the data is too short for the requested folds, or when purging empties a
    training or validation set (labels that look further ahead than the validation block is long).
    """
    times, t, e = _sample_times(times, span_end)
    rolling = cfg.scheme == "rolling"
    if rolling and cfg.train_days < cfg.min_train_days:
        raise ConfigError(
            f"walkforward.train_days: expected >= walkforward.min_train_days ({cfg.min_train_days}) for the "
            f"rolling scheme, got {cfg.train_days}"
        )
    window_name, window = ("train_days", cfg.train_days) if rolling else ("min_train_days", cfg.min_train_days)
    if cfg.mode == "whole_history":
        first_test = window + cfg.val_days
        if t.size <= first_test:
            raise ConfigError(
                f"walkforward: whole-history walk-forward needs more than {first_test} daily rows (warm-up "
                f"{window_name}={window} + val_days={cfg.val_days}, then at least one test row), but only "
                f"{t.size} are available"
            )
        n_blocks = -(-(t.size - first_test) // cfg.test_days)  # ceil
        test_blocks = np.array_split(np.arange(first_test, t.size), n_blocks)
    else:
        needed = window + cfg.val_days + cfg.n_folds * cfg.test_days
        if t.size < needed:
            raise ConfigError(
                f"walkforward: {cfg.scheme} walk-forward needs at least {needed} daily rows ({window_name}={window} "
                f"+ val_days={cfg.val_days} + n_folds={cfg.n_folds} x test_days={cfg.test_days}), but only "
                f"{t.size} are available"
            )
        first_test = t.size - cfg.n_folds * cfg.test_days
        test_blocks = [
            np.arange(first_test + k * cfg.test_days, first_test + (k + 1) * cfg.test_days)
            for k in range(cfg.n_folds)
        ]
    embargoed = _embargo_mask(t.size, test_blocks, cfg.embargo_days)

    folds = []
    for k, test_idx in enumerate(test_blocks):
        val_start = int(test_idx[0]) - cfg.val_days
        window_idx = np.arange(val_start - cfg.train_days if rolling else 0, val_start)
        val_block = np.arange(val_start, test_idx[0])
        test_end = e[test_idx].max()

        val_purged = _overlaps(t[val_block], e[val_block], t[test_idx[0]], test_end)
        train_purged = _overlaps(t[window_idx], e[window_idx], t[val_start], test_end)
        train_embargoed = embargoed[window_idx] & ~train_purged
        train_idx = window_idx[~train_purged & ~train_embargoed]
        val_idx = val_block[~val_purged]
        if val_idx.size == 0:
            raise ConfigError(
                f"walkforward.val_days: fold {k}: all {cfg.val_days} validation rows have labels reaching into "
                f"the test block; expected val_days longer than the label horizon"
            )
        if train_idx.size == 0:
            raise ConfigError(
                f"walkforward: fold {k}: purging and embargo removed all {window_idx.size} training rows; "
                f"expected a longer training window ({window_name}) than the label horizon"
            )
        folds.append(
            Fold(
                number=k,
                train_idx=_read_only(train_idx),
                val_idx=_read_only(val_idx),
                test_idx=_read_only(test_idx),
                train_period=_period(times, train_idx),
                val_period=_period(times, val_idx),
                test_period=_period(times, test_idx),
                purged_train=int(train_purged.sum()),
                embargoed=int(train_embargoed.sum()),
                purged_val=int(val_purged.sum()),
            )
        )
    return folds


def cpcv_splits(
    times: pd.DatetimeIndex, span_end: pd.DatetimeIndex, n_groups: int, n_test_groups: int, embargo_days: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Combinatorial purged cross-validation (López de Prado 2018, section 12.4): ``(train_idx, test_idx)``.

    The samples are cut into ``n_groups`` contiguous groups of (nearly) equal row count; every combination of
    ``n_test_groups`` groups is one test set, in ``itertools.combinations`` order (the order
    :func:`cpcv_paths` refers to), ``C(n_groups, n_test_groups)`` splits in all. Training is every other
    sample whose label span does not intersect the period ``[first t, last e]`` of any test group, minus the
    ``embargo_days`` rows after each test group. Train may lie on both sides of a test group.
    """
    _, t, e = _sample_times(times, span_end)
    _check_cpcv(n_groups, n_test_groups)
    if embargo_days < 0:
        raise ConfigError(f"cpcv: embargo_days: expected int >= 0, got {embargo_days}")
    if t.size < n_groups:
        raise ConfigError(f"cpcv: {n_groups} groups need at least {n_groups} rows, but only {t.size} are available")
    groups = np.array_split(np.arange(t.size), n_groups)

    splits = []
    for test_groups in combinations(range(n_groups), n_test_groups):
        blocks = [groups[g] for g in test_groups]
        excluded = _embargo_mask(t.size, blocks, embargo_days)
        for block in blocks:
            excluded |= _overlaps(t, e, t[block[0]], e[block].max())
        train_idx = np.flatnonzero(~excluded)
        if train_idx.size == 0:
            raise ConfigError(
                f"cpcv: test groups {test_groups} leave no training rows after purging and embargo; "
                f"expected groups longer than the label horizon"
            )
        splits.append((_read_only(train_idx), _read_only(np.concatenate(blocks))))
    return splits


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """Backtest paths of CPCV: an int array (n_paths, n_groups) of split numbers from :func:`cpcv_splits`.

    Each group is tested in ``C(n_groups - 1, n_test_groups - 1)`` splits; path ``p`` takes, for every group,
    the prediction of the ``p``-th split (in split order) that tests it, so stitching the test predictions
    of one path covers every sample once. There are ``n_paths = C(n_groups - 1, n_test_groups - 1)`` paths,
    each a full out-of-sample history for a Sharpe distribution in model selection.
    """
    _check_cpcv(n_groups, n_test_groups)
    test_sets = list(combinations(range(n_groups), n_test_groups))
    paths = np.empty((comb(n_groups - 1, n_test_groups - 1), n_groups), dtype=int)
    for g in range(n_groups):
        paths[:, g] = [split for split, tested in enumerate(test_sets) if g in tested]
    return paths


# ----------------------------------------------------------------------------------------------


def _sample_times(
    times: pd.DatetimeIndex, span_end: pd.DatetimeIndex
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Validate the sample dates and label span ends; return the dates and both as datetime64 arrays."""
    try:
        times, span_end = pd.DatetimeIndex(times), pd.DatetimeIndex(span_end)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"times/span_end: expected dates, got values that do not parse as dates ({exc})") from None
    if times.size == 0:
        raise ValueError("times: expected at least one sample, got none")
    if times.size != span_end.size:
        raise ValueError(f"span_end: expected one label end per sample ({times.size}), got {span_end.size}")
    if times.hasnans or span_end.hasnans:
        raise ValueError("times/span_end: expected no missing dates (drop unlabeled samples first), got NaT")
    if str(times.tz) != str(span_end.tz):
        raise ValueError(f"span_end: expected the time zone of times ({times.tz}), got {span_end.tz}")
    if not (times.is_monotonic_increasing and times.is_unique):
        raise ValueError("times: expected strictly increasing sample dates (one row per date, sorted)")
    before = np.flatnonzero(span_end < times)
    if before.size:
        i = before[0]
        raise ValueError(
            f"span_end: expected label ends on or after the sample date, got {span_end[i]} < {times[i]} at row {i}"
        )
    return times, _utc_datetime64(times), _utc_datetime64(span_end)


def _utc_datetime64(dates: pd.DatetimeIndex) -> np.ndarray:
    """Naive dates as they are, time-zone-aware dates in UTC: comparable datetime64 values either way."""
    return (dates if dates.tz is None else dates.tz_convert(None)).to_numpy()


def _overlaps(t: np.ndarray, e: np.ndarray, start: np.datetime64, end: np.datetime64) -> np.ndarray:
    """Mask of samples whose label span ``[t_i, e_i]`` intersects the closed interval ``[start, end]``."""
    return (t <= end) & (e >= start)


def _embargo_mask(n: int, test_blocks: list[np.ndarray], embargo_days: int) -> np.ndarray:
    """Mask of the ``embargo_days`` rows that follow each (contiguous) test block."""
    mask = np.zeros(n, dtype=bool)
    for block in test_blocks:
        after = int(block[-1]) + 1
        mask[after : after + embargo_days] = True
    return mask


def _check_cpcv(n_groups: int, n_test_groups: int) -> None:
    if not 1 <= n_test_groups < n_groups:
        raise ConfigError(
            f"cpcv: expected 1 <= n_test_groups < n_groups, got n_test_groups={n_test_groups}, n_groups={n_groups}"
        )


def _period(times: pd.DatetimeIndex, idx: np.ndarray) -> Period:
    return pd.Timestamp(times[idx[0]]), pd.Timestamp(times[idx[-1]])


def _read_only(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    idx.setflags(write=False)
    return idx
