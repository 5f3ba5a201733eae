"""TimeSeriesWindows: rows of each window, train-only scaling, numpy/torch backends, calendar hook, splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab_v10.src.dataset import windows_numpy, windows_torch
from lab_v10.src.dataset.windows import TimeSeriesWindows, TSBatch, select_backend
from lab_v10.src.errors import DataValidationError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_series(n=60, f=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)).cumsum(axis=0)


def day_of_week(index: pd.DatetimeIndex) -> np.ndarray:
    """Calendar hook: one-hot weekday (T, 7), Monday first."""
    return np.eye(7)[index.day_of_week.to_numpy()]


# ----------------------------------------------------------------------------------------------
# Rows and scaling


def test_windows_hold_the_rows_around_each_origin_standardised_by_training_rows():
    values = random_series(n=40, f=2)
    ds = TimeSeriesWindows(values, t_in=5, t_out=3, train_rows=25, dtype=torch.float64)
    mean, std = values[:25].mean(axis=0), values[:25].std(axis=0)
    scaled = (values - mean) / std
    # origins r = 4 .. 36: inputs r-4..r, targets r+1..r+3 (the last target is row 39)
    assert ds.origins.tolist() == list(range(4, 37)) and len(ds) == 33
    batch = ds.batch()
    for i, r in enumerate(ds.origins.tolist()):
        np.testing.assert_allclose(batch.x[i].numpy(), scaled[r - 4 : r + 1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(batch.y[i].numpy(), scaled[r + 1 : r + 4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ds.mean.numpy(), mean, rtol=1e-13)
    np.testing.assert_allclose(ds.std.numpy(), std, rtol=1e-13)
    assert batch.calendar is None and ds.n_calendar == 0 and batch.x.dtype == torch.float64


def test_stride_skips_origins_and_default_dtype_is_float32():
    ds = TimeSeriesWindows(random_series(n=30, f=1), t_in=4, t_out=2, train_rows=20, stride=3)
    assert ds.origins.tolist() == [3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert ds.batch().x.shape == (9, 4, 1) and ds.batch().y.shape == (9, 2, 1) and ds.batch().x.dtype == torch.float32


def test_scaler_sees_training_rows_only():
    values = random_series(n=50, f=2)
    changed_after = values.copy()
    changed_after[30:] = changed_after[30:] * 10.0 + 5.0
    a = TimeSeriesWindows(values, 6, 2, train_rows=30)
    b = TimeSeriesWindows(changed_after, 6, 2, train_rows=30)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    train = a.target_range(0, 30)
    assert torch.equal(a.batch(train).x, b.batch(train).x) and torch.equal(a.batch(train).y, b.batch(train).y)
    test = a.target_range(30, 50)
    assert not torch.equal(a.batch(test).y, b.batch(test).y)  # rows after the split did change
    changed_before = values.copy()
    changed_before[3] += 4.0
    assert not torch.equal(a.mean, TimeSeriesWindows(changed_before, 6, 2, train_rows=30).mean)


def test_target_range_splits_without_straddling_windows():
    ds = TimeSeriesWindows(random_series(n=50, f=1), t_in=8, t_out=4, train_rows=30)
    train, test = ds.target_range(0, 30), ds.target_range(30, 50)
    origins = ds.origins
    assert int((origins[train] + 4).max()) == 29  # last training target row
    assert int((origins[test] + 1).min()) == 30  # first test target row
    # windows whose targets straddle row 30 (origins 26..28) belong to neither split
    assert sorted(set(origins.tolist()) - set(origins[train].tolist()) - set(origins[test].tolist())) == [26, 27, 28]
    assert len(train) + len(test) + 3 == len(ds)


def test_target_columns_by_name_and_denormalise_back_to_series_units():
    values = random_series(n=40, f=3)
    frame = pd.DataFrame(values, columns=["a", "b", "c"], index=pd.bdate_range("2024-01-01", periods=40))
    ds = TimeSeriesWindows(frame, 5, 2, train_rows=30, target_columns=["c", "a"], dtype=torch.float64)
    assert ds.target_positions == [2, 0] and ds.n_targets == 2 and ds.batch().y.shape == (len(ds), 2, 2)
    restored = ds.denormalise(ds.batch().y)  # (N, 2, 2)
    r = int(ds.origins[7])
    np.testing.assert_allclose(restored[7].numpy(), values[r + 1 : r + 3][:, [2, 0]], rtol=1e-12)
    assert torch.equal(ds.target_std, ds.std[[2, 0]])
    by_position = TimeSeriesWindows(values, 5, 2, train_rows=30, target_columns=[2, 0], dtype=torch.float64)
    assert torch.equal(by_position.batch().y, ds.batch().y)


# ----------------------------------------------------------------------------------------------
# Backends


def test_backend_is_picked_from_the_input_type():
    values = random_series(n=20, f=1)
    assert select_backend(torch.from_numpy(values)) is windows_torch
    assert select_backend(values) is windows_numpy and select_backend(values.tolist()) is windows_numpy
    assert TimeSeriesWindows(torch.from_numpy(values), 4, 1, 15).backend == "torch"
    assert TimeSeriesWindows(pd.Series(values[:, 0]), 4, 1, 15).backend == "numpy"


@pytest.mark.parametrize("device", DEVICES)
def test_numpy_and_torch_backends_cut_identical_windows(device):
    values = random_series(n=80, f=3, seed=4)
    index = pd.bdate_range("2023-06-01", periods=80)
    kwargs = dict(t_in=12, t_out=3, train_rows=50, target_columns=[1], index=index, calendar=day_of_week, stride=2)
    a = TimeSeriesWindows(values, dtype=torch.float64, **kwargs)
    b = TimeSeriesWindows(torch.from_numpy(values).to(device), dtype=torch.float64, **kwargs)
    assert (a.backend, b.backend) == ("numpy", "torch")
    assert torch.equal(a.origins, b.origins)
    ba, bb = a.batch(), b.batch()
    assert bb.x.device.type == device and bb.calendar.device.type == device and b.mean.device.type == device
    assert torch.equal(ba.calendar, bb.calendar.cpu())
    # the moments may differ in the last float64 bit (different summation order), nothing more
    torch.testing.assert_close(b.mean.cpu(), a.mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(bb.x.cpu(), ba.x, rtol=0, atol=1e-12)
    torch.testing.assert_close(bb.y.cpu(), ba.y, rtol=0, atol=1e-12)
    a32 = TimeSeriesWindows(values, **kwargs).batch()
    b32 = TimeSeriesWindows(torch.from_numpy(values).to(device), **kwargs).batch()
    torch.testing.assert_close(b32.x.cpu(), a32.x)
    torch.testing.assert_close(b32.y.cpu(), a32.y)


# ----------------------------------------------------------------------------------------------
# Calendar hook


def test_day_of_week_calendar_covers_input_and_target_rows():
    values = random_series(n=30, f=1)
    index = pd.bdate_range("2024-03-04", periods=30)  # a Monday; business days only
    frame = pd.DataFrame(values, index=index)
    ds = TimeSeriesWindows(frame, t_in=6, t_out=2, train_rows=20, calendar=day_of_week)
    calendar = ds.batch().calendar  # (N, 8, 7)
    assert ds.n_calendar == 7 and calendar.shape == (len(ds), 8, 7)
    for i, r in enumerate(ds.origins.tolist()):
        expected = index[r - 5 : r + 3].day_of_week.to_numpy()  # rows r-5 .. r+2
        assert calendar[i].argmax(dim=1).tolist() == expected.tolist()
    assert set(calendar.argmax(dim=2).flatten().tolist()) == {0, 1, 2, 3, 4}  # business days: Mon..Fri
    # the calendar is not standardised and does not touch the values
    assert torch.equal(ds.batch().x, TimeSeriesWindows(frame, 6, 2, train_rows=20).batch().x)


def test_calendar_hook_needs_dates_and_a_well_formed_result():
    values = random_series(n=30, f=1)
    with pytest.raises(ValueError, match="index="):
        TimeSeriesWindows(values, 6, 2, 20, calendar=day_of_week)
    with pytest.raises(ValueError, match="index: expected a DatetimeIndex of 30 rows, got DatetimeIndex of 29"):
        TimeSeriesWindows(values, 6, 2, 20, index=pd.bdate_range("2024-03-04", periods=29), calendar=day_of_week)
    index = pd.bdate_range("2024-03-04", periods=30)
    with pytest.raises(ValueError, match=r"shape \(30, C\)"):
        TimeSeriesWindows(values, 6, 2, 20, index=index, calendar=lambda idx: np.ones((29, 2)))
    with pytest.raises(DataValidationError, match="calendar hook: non-finite value at row 3, column 1"):
        bad = np.ones((30, 2))
        bad[3, 1] = np.nan
        TimeSeriesWindows(values, 6, 2, 20, index=index, calendar=lambda idx: bad)


# ----------------------------------------------------------------------------------------------
# Errors and batches


def test_bad_inputs_raise_errors_naming_what_is_wrong():
    values = random_series(n=30, f=2)
    nan = values.copy()
    nan[17, 1] = np.inf
    with pytest.raises(DataValidationError, match="row 17, column 1"):
        TimeSeriesWindows(torch.from_numpy(nan), 4, 2, 20)
    constant = values.copy()
    constant[:20, 0] = 3.0
    with pytest.raises(DataValidationError, match=r"column\(s\) \[0\] are constant over the 20 training rows"):
        TimeSeriesWindows(constant, 4, 2, 20)
    with pytest.raises(ValueError, match="train_rows"):
        TimeSeriesWindows(values, 4, 2, 5)
    with pytest.raises(ValueError, match="'z' is not in the series columns"):
        TimeSeriesWindows(pd.DataFrame(values, columns=["a", "b"]), 4, 2, 20, target_columns=["z"])


def test_batch_select_and_to_move_every_tensor():
    ds = TimeSeriesWindows(random_series(n=30, f=2), 4, 2, 20, index=pd.bdate_range("2024-01-01", periods=30),
                           calendar=day_of_week)
    picked = ds.batch(torch.tensor([5, 2]))
    assert isinstance(picked, TSBatch) and len(picked) == 2
    assert torch.equal(picked.x[1], ds.batch().x[2]) and torch.equal(picked.calendar[0], ds.batch().calendar[5])
    moved = picked.to("cpu", torch.float64)
    assert {moved.x.dtype, moved.y.dtype, moved.calendar.dtype} == {torch.float64}
    torch.testing.assert_close(moved.y, picked.y.double())
