"""Walk-forward and CPCV folds: disjoint sets, purging by label span, embargo, shapes and errors."""
from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pandas as pd
import pytest

from lab_v10.src.config import WalkForwardConfig
from lab_v10.src.errors import ConfigError
from lab_v10.src.dataset.folds import Fold, cpcv_paths, cpcv_splits, walk_forward_folds

HORIZON = 21  # rows a label looks ahead, like yA


def daily_samples(n: int, horizon: int = HORIZON, seed: int | None = None) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """n business-day samples; sample i's label ends `horizon` rows later (or a random 1..horizon with seed)."""
    dates = pd.bdate_range("2015-01-02", periods=n + horizon)
    ahead = np.full(n, horizon) if seed is None else np.random.default_rng(seed).integers(0, horizon + 1, n)
    return dates[:n], dates[np.arange(n) + ahead]


def spans_overlap(times, span_end, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Brute force over all pairs (i in a, j in b): does [t_i, e_i] intersect [t_j, e_j]?"""
    t, e = times.to_numpy(), span_end.to_numpy()
    return (t[a][:, None] <= e[b][None, :]) & (e[a][:, None] >= t[b][None, :])


def cfg(**overrides) -> WalkForwardConfig:
    base = dict(n_folds=3, min_train_days=200, train_days=250, val_days=40, test_days=60, embargo_days=5)
    return WalkForwardConfig(**{**base, **overrides})


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
@pytest.mark.parametrize("seed", [None, 7])
def test_folds_are_disjoint_purged_and_embargoed(scheme, seed):
    times, span_end = daily_samples(700, seed=seed)
    config = cfg(scheme=scheme)
    folds = walk_forward_folds(times, span_end, config)
    assert len(folds) == config.n_folds
    embargo_rows = set()
    for fold in folds:
        after = fold.test_idx[-1] + 1
        embargo_rows |= set(range(after, min(after + config.embargo_days, len(times))))
    for fold in folds:
        train, val, test = fold.train_idx, fold.val_idx, fold.test_idx
        assert train.size and val.size and test.size
        assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
        assert train.max() < val.min() and val.max() < test.min()  # walk-forward: train, then val, then test
        assert not spans_overlap(times, span_end, train, np.concatenate([val, test])).any()
        assert not spans_overlap(times, span_end, val, test).any()
        assert not set(train) & embargo_rows


def test_time_zone_aware_dates_give_the_same_folds():
    times, span_end = daily_samples(700, seed=5)
    naive = walk_forward_folds(times, span_end, cfg())
    aware = walk_forward_folds(times.tz_localize("America/New_York"), span_end.tz_localize("America/New_York"), cfg())
    for a, b in zip(naive, aware):
        assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.val_idx, b.val_idx)
    with pytest.raises(ValueError, match="span_end: expected the time zone of times"):
        walk_forward_folds(times.tz_localize("UTC"), span_end, cfg())


def test_purging_removes_only_what_overlaps():
    times, span_end = daily_samples(700)
    fold = walk_forward_folds(times, span_end, cfg(embargo_days=0))[0]
    # Fixed 21-row horizon: the last 21 training-window rows and the last 21 validation rows are purged.
    assert fold.purged_train == HORIZON and fold.purged_val == HORIZON and fold.embargoed == 0
    assert fold.train_idx.tolist() == list(range(fold.val_idx[0] - HORIZON))
    assert fold.val_idx.size == 40 - HORIZON


def test_expanding_walk_forward_embargoes_rows_after_earlier_test_blocks():
    times, span_end = daily_samples(700, horizon=3)
    config = cfg(embargo_days=5)
    folds = walk_forward_folds(times, span_end, config)
    first_block_end = folds[0].test_idx[-1] + 1
    embargo = set(range(first_block_end, first_block_end + 5))
    last = folds[-1]
    assert set(folds[0].test_idx) <= set(last.train_idx) | set(last.val_idx)  # later folds train on test 0
    assert not embargo & set(last.train_idx)
    assert last.embargoed == 5
    assert walk_forward_folds(times, span_end, cfg(embargo_days=0))[-1].train_idx.size == last.train_idx.size + 5


def test_expanding_train_grows_and_rolling_train_window_is_fixed():
    times, span_end = daily_samples(700)
    expanding = walk_forward_folds(times, span_end, cfg(scheme="expanding"))
    sizes = [f.train_idx.size for f in expanding]
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    assert expanding[0].train_idx[0] == 0

    config = cfg(scheme="rolling")
    rolling = walk_forward_folds(times, span_end, config)
    for fold in rolling:
        window_start = fold.test_idx[0] - config.val_days - config.train_days
        assert fold.train_idx.min() >= window_start
        assert fold.train_idx.size + fold.purged_train + fold.embargoed == config.train_days
    assert rolling[-1].train_idx[0] > rolling[0].train_idx[0]


def test_folds_in_time_order_with_consecutive_test_blocks_at_the_end():
    times, span_end = daily_samples(700)
    config = cfg()
    folds = walk_forward_folds(times, span_end, config)
    assert [f.number for f in folds] == list(range(config.n_folds))
    tests = np.concatenate([f.test_idx for f in folds])
    assert tests.tolist() == list(range(700 - config.n_folds * config.test_days, 700))
    assert all(f.test_idx.size == config.test_days for f in folds)
    for a, b in zip(folds, folds[1:]):
        assert a.test_period[1] < b.test_period[0]
    assert folds[0].test_period == (times[folds[0].test_idx[0]], times[folds[0].test_idx[-1]])


def test_fold_is_read_only_and_describes_itself():
    times, span_end = daily_samples(700)
    fold = walk_forward_folds(times, span_end, cfg())[1]
    assert isinstance(fold, Fold)
    with pytest.raises(ValueError):
        fold.train_idx[0] = 5
    text = fold.describe()
    assert text.startswith("fold 1: train 2015-01-02..")
    assert f"({fold.test_idx.size} rows)" in text and f"{fold.purged_train} purged" in text


def test_too_short_data_names_rows_needed_and_available():
    times, span_end = daily_samples(300)
    with pytest.raises(ConfigError, match=r"needs at least 420 daily rows .* only 300 are available"):
        walk_forward_folds(times, span_end, cfg())  # 200 + 40 + 3 x 60
    with pytest.raises(ConfigError, match=r"needs at least 470 daily rows \(train_days=250"):
        walk_forward_folds(times, span_end, cfg(scheme="rolling"))
    with pytest.raises(ConfigError, match="train_days: expected >= walkforward.min_train_days"):
        walk_forward_folds(times, span_end, cfg(scheme="rolling", train_days=100))


def test_labels_longer_than_validation_block_are_an_error():
    times, span_end = daily_samples(700, horizon=45)
    with pytest.raises(ConfigError, match="val_days: fold 0: all 40 validation rows"):
        walk_forward_folds(times, span_end, cfg())


# ----------------------------------------------------------------------------------------------
# mode: whole_history (the real-data protocol, config/real.yaml)


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
@pytest.mark.parametrize("seed", [None, 7])
@pytest.mark.parametrize("n", [700, 731, 300])
def test_whole_history_tiles_every_sample_after_the_warm_up(scheme, seed, n):
    times, span_end = daily_samples(n, seed=seed)
    config = cfg(scheme=scheme, mode="whole_history")
    folds = walk_forward_folds(times, span_end, config)
    window = config.train_days if scheme == "rolling" else config.min_train_days
    first_test = window + config.val_days
    # every sample after the warm-up is tested once, in consecutive blocks of at most test_days rows
    tests = np.concatenate([f.test_idx for f in folds])
    assert tests.tolist() == list(range(first_test, n))
    sizes = [f.test_idx.size for f in folds]
    assert len(folds) == -(-(n - first_test) // config.test_days) and max(sizes) <= config.test_days
    assert max(sizes) - min(sizes) <= 1  # nearly equal blocks: no tiny last block costing a whole refit
    assert [f.number for f in folds] == list(range(len(folds)))
    embargo_rows = set()
    for fold in folds:
        embargo_rows |= set(range(fold.test_idx[-1] + 1, min(fold.test_idx[-1] + 1 + config.embargo_days, n)))
    for fold in folds:
        train, val, test = fold.train_idx, fold.val_idx, fold.test_idx
        assert train.max() < val.min() and val.max() < test.min()
        assert val.min() >= test.min() - config.val_days  # the validation block is the val_days rows just before
        assert not spans_overlap(times, span_end, train, np.concatenate([val, test])).any()
        assert not spans_overlap(times, span_end, val, test).any()
        assert not set(train) & embargo_rows
        if scheme == "expanding":
            assert train[0] == 0
        else:
            assert fold.train_idx.size + fold.purged_train + fold.embargoed == config.train_days
    # the first fold's training window is exactly the warm-up
    assert folds[0].train_idx.size + folds[0].purged_train == window
    if scheme == "expanding" and len(folds) > 1:
        sizes = [f.train_idx.size for f in folds]
        assert all(a < b for a, b in zip(sizes, sizes[1:]))  # each refit trains on everything before it


def test_last_mode_is_the_default_and_ignores_nothing_it_used_to_read():
    times, span_end = daily_samples(700, seed=3)
    default = walk_forward_folds(times, span_end, cfg())
    last = walk_forward_folds(times, span_end, cfg(mode="last"))
    assert WalkForwardConfig().mode == "last" and len(default) == 3
    for a, b in zip(default, last, strict=True):
        for name in ("train_idx", "val_idx", "test_idx"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
    # whole_history ignores n_folds; its last blocks are not the last mode's (other lengths), its coverage is
    whole = walk_forward_folds(times, span_end, cfg(mode="whole_history", n_folds=1))
    assert whole[-1].test_idx[-1] == default[-1].test_idx[-1] == 699 and len(whole) == 8  # ceil(460 / 60)


def test_whole_history_too_short_data_names_rows_needed_and_available():
    times, span_end = daily_samples(240)
    with pytest.raises(ConfigError, match=r"whole-history walk-forward needs more than 240 daily rows \(warm-up "
                                          r"min_train_days=200 \+ val_days=40.*only 240 are available"):
        walk_forward_folds(times, span_end, cfg(mode="whole_history"))
    assert len(walk_forward_folds(*daily_samples(241), cfg(mode="whole_history"))) == 1


@pytest.mark.parametrize(
    "times, span_end, message",
    [
        (pd.bdate_range("2020-01-01", periods=3)[::-1], pd.bdate_range("2020-01-01", periods=3), "strictly increasing"),
        (pd.bdate_range("2020-01-01", periods=3), pd.bdate_range("2020-01-01", periods=2), "one label end per sample"),
        (pd.bdate_range("2020-01-02", periods=3), pd.bdate_range("2020-01-01", periods=3), "on or after the sample"),
        (pd.DatetimeIndex(["2020-01-01", None]), pd.DatetimeIndex(["2020-01-02", "2020-01-03"]), "no missing"),
    ],
)
def test_bad_sample_times_are_rejected(times, span_end, message):
    with pytest.raises(ValueError, match=message):
        walk_forward_folds(times, span_end, cfg())


@pytest.mark.parametrize("n_groups, k", [(6, 2), (5, 1), (4, 3)])
def test_cpcv_splits_count_coverage_purge_and_embargo(n_groups, k):
    times, span_end = daily_samples(300, horizon=5, seed=3)
    embargo = 4
    splits = cpcv_splits(times, span_end, n_groups, k, embargo)
    assert len(splits) == comb(n_groups, k)
    groups = np.array_split(np.arange(300), n_groups)
    tested = Counter()
    for train, test in splits:
        assert train.size and test.size
        assert not set(train) & set(test)
        assert not spans_overlap(times, span_end, train, test).any()
        test_groups = [g for g, rows in enumerate(groups) if set(rows) <= set(test)]
        assert len(test_groups) == k and sum(groups[g].size for g in test_groups) == test.size
        tested.update(test_groups)
        for g in test_groups:
            after = groups[g][-1] + 1
            assert not set(range(after, after + embargo)) & set(train)
    assert all(tested[g] == comb(n_groups - 1, k - 1) for g in range(n_groups))


def test_cpcv_trains_on_both_sides_of_a_test_group():
    times, span_end = daily_samples(300, horizon=5)
    train, test = cpcv_splits(times, span_end, 6, 1, 0)[2]  # the third group alone is tested
    assert train.min() < test.min() and train.max() > test.max()
    # Purged: the 5 rows before the test group (their labels run into it) and the 5 rows after it (their
    # dates lie inside the test labels' span, which ends 5 rows after the group); no embargo.
    assert train.size == 300 - test.size - 2 * 5
    assert set(range(95, 100)).isdisjoint(train) and set(range(150, 155)).isdisjoint(train)
    assert {94, 155} <= set(train)


def test_cpcv_paths_cover_every_group_once_per_path():
    n_groups, k = 6, 2
    splits = cpcv_splits(*daily_samples(120, horizon=2), n_groups, k, 0)
    groups = np.array_split(np.arange(120), n_groups)
    paths = cpcv_paths(n_groups, k)
    assert paths.shape == (comb(n_groups - 1, k - 1), n_groups)
    for path in paths:
        for g, split in enumerate(path):
            assert set(groups[g]) <= set(splits[split][1])  # the split chosen for group g tests it
    used = Counter((split, g) for path in paths for g, split in enumerate(path))
    assert len(used) == comb(n_groups, k) * k and set(used.values()) == {1}  # every test prediction used once


def test_cpcv_rejects_bad_group_counts():
    times, span_end = daily_samples(50)
    with pytest.raises(ConfigError, match="1 <= n_test_groups < n_groups"):
        cpcv_splits(times, span_end, 4, 4, 0)
    with pytest.raises(ConfigError, match="need at least 60 rows"):
        cpcv_splits(times, span_end, 60, 2, 0)
