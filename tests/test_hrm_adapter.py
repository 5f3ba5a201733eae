"""HRM token builders and HRMAdapter: sample layout, fit/predict, leakage (perturbation), scalers,
save/load, errors, daily-only data.

A small market from tests/bar_factories.py: 70 business days of daily bars (48 feature rows after the
warm-up) and 25 sessions of 40-minute minute bars (one 20-minute half day, 10% of minutes missing) in the
middle of it; labels with h = 5 days and H = 10 minutes. The network is a tiny preset (width 16, one layer,
an 8-row daily window), so every fit takes a second or two.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from bar_factories import random_daily_bars, random_minute_bars, random_minute_bars_on, splice_after
from lab_v10.src.config import FeatureConfig, HRMConfig, LabConfig, LabelConfig, ModuleConfig, TrainConfig
from lab_v10.src.dataset.hrm_tokens import daily_windows, minute_tokens, next_session, session_layout
from lab_v10.src.features.daily import build_daily_features
from lab_v10.src.features.intraday import INTRADAY_MODEL_COLUMNS, build_intraday_features
from lab_v10.src.features.labels import make_daily_labels, make_intraday_labels
from lab_v10.src.errors import LabError
from lab_v10.src.options.checkpoint import CheckpointError
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.hrm_ensemble import member_seeds
from lab_v10.src.options.hrm_train import HRMTensors, HRMTrainer

WINDOW = 8
SESSION_MINUTES = 40
FEATURES = FeatureConfig(atr_minutes=5)
LABELS = LabelConfig(horizon_days=5, horizon_minutes=10)


def tiny_config(**train) -> LabConfig:
    """Width 16, one layer per module, 2 segments at most; CPU fp32 so batched and per-day runs agree."""
    module = ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=24)
    hrm = HRMConfig(
        h=module, l=module, daily_window=WINDOW, minutes_per_day=SESSION_MINUTES, H_cycles=2, L_cycles=2,
        max_segments=2,
    )
    settings = dict(lr=3e-3, warmup_steps=2, batch_size=8, epochs=2, patience=2, autocast_bf16=False, device="cpu")
    settings.update(train)
    return LabConfig(seed=3, hrm=hrm, train=TrainConfig(**settings))


def _market(daily_seed: int = 1, minute_seed: int = 2):
    """Features and labels; the seeds change prices only (same dates, same minute timestamps)."""
    daily_bars = random_daily_bars(70, seed=daily_seed, start="2024-01-02")
    lengths = [SESSION_MINUTES] * 25
    lengths[10] = 20  # 2024-03-05 is a half day
    layout = random_minute_bars(lengths, seed=2, keep_fraction=0.9, start="2024-02-20").frame.index
    minute_bars = random_minute_bars_on(layout, seed=minute_seed)
    X_daily = build_daily_features(daily_bars, FEATURES)
    X_intraday = build_intraday_features(minute_bars, FEATURES)
    yA = make_daily_labels(daily_bars, LABELS)["yA"]
    yB = make_intraday_labels(minute_bars, X_intraday["atr"], LABELS)["yB"]
    return X_daily, X_intraday, yA, yB


@pytest.fixture(scope="module")
def market():
    X_daily, X_intraday, yA, yB = _market()
    dates = X_daily.index
    train = dates[(dates >= "2024-02-05") & (dates <= "2024-03-08")]  # the first 5 dates lack 8 rows of history
    val = dates[(dates >= "2024-03-11") & (dates <= "2024-03-15")]
    return X_daily, X_intraday, yA, yB, train, val


@pytest.fixture(scope="module")
def fitted(market, tmp_path_factory):
    X_daily, X_intraday, yA, yB, train, val = market
    return HRMAdapter(tiny_config(), tmp_path_factory.mktemp("hrm")).fit(X_daily, X_intraday, yA, yB, train, val)


def session_rows(X_intraday: pd.DataFrame, day: str) -> np.ndarray:
    return np.flatnonzero((X_intraday["session"] == pd.Timestamp(day)).to_numpy())


# ----------------------------------------------------------------------------------------------
# Token builders


def test_daily_windows_end_at_the_forecast_row_inclusive():
    values = np.arange(20.0).reshape(10, 2)  # row r = (2r, 2r+1)
    windows = daily_windows(values, np.array([2, 9]), 3)
    assert windows.shape == (2, 3, 2)
    np.testing.assert_array_equal(windows[0, :, 0], [0.0, 2.0, 4.0])  # rows 0..2
    np.testing.assert_array_equal(windows[1, :, 0], [14.0, 16.0, 18.0])  # rows 7..9
    with pytest.raises(ValueError, match=r"row positions must lie in \[2, 9\]"):
        daily_windows(values, np.array([1]), 3)


def test_next_session_pairs_each_session_with_the_last_daily_row_before_it():
    days = lambda *d: pd.to_datetime(list(d)).as_unit("ns").to_numpy()
    daily = days("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05", "2024-01-08")
    sessions = days("2024-01-03", "2024-01-04", "2024-01-05")
    # 01-01: the next session (01-03) comes after the daily row 01-02 -> none; 01-02 -> 01-03;
    # 01-03 -> 01-04 (no daily row 01-04); 01-05 -> none (01-08 is the next daily row, no session before it)
    np.testing.assert_array_equal(next_session(daily, sessions), [-1, 0, 1, -1, -1])
    np.testing.assert_array_equal(next_session(daily, sessions[:0]), [-1] * 5)


def test_minute_tokens_pack_each_session_and_pad_at_the_end():
    session = pd.DatetimeIndex(pd.to_datetime(["2024-01-03"] * 3 + ["2024-01-04"] * 2))
    sessions = session_layout(session)
    np.testing.assert_array_equal(sessions.lengths, [3, 2])
    values = np.arange(10.0).reshape(5, 2)
    labels = np.array([0.0, 1.0, np.nan, 1.0, 0.0])
    tokens = minute_tokens(values, labels, sessions, np.array([1, -1, 0]))
    assert tokens.x.shape == (3, 3, 2)
    np.testing.assert_array_equal(tokens.mask, [[True, True, False], [False, False, False], [True, True, True]])
    np.testing.assert_array_equal(tokens.x[0], [[6.0, 7.0], [8.0, 9.0], [0.0, 0.0]])
    np.testing.assert_array_equal(tokens.x[2], values[:3])
    np.testing.assert_array_equal(tokens.y[0], [1.0, 0.0, np.nan])
    assert np.isnan(tokens.y[1]).all() and not tokens.x[1].any()
    # no session selected at all: one fully masked position
    empty = minute_tokens(values, None, sessions, np.array([-1, -1]))
    assert empty.x.shape == (2, 1, 2) and not empty.mask.any()


def test_session_layout_rejects_sessions_out_of_time_order():
    session = pd.DatetimeIndex(pd.to_datetime(["2024-01-04", "2024-01-03"]))
    with pytest.raises(ValueError, match="session 2024-01-03 at row 1 follows session 2024-01-04"):
        session_layout(session)


# ----------------------------------------------------------------------------------------------
# Fit and predict


def test_fit_and_predict_both_books(fitted, market):
    X_daily, X_intraday, yA, yB, train, val = market
    assert fitted.name == "hrm"
    kept = train[X_daily.index.get_indexer(train) >= WINDOW - 1]
    assert fitted.train_mean_ == pytest.approx(float(yA.loc[kept].mean()))
    assert fitted.hrm_config_.daily_features == X_daily.shape[1]
    assert fitted.hrm_config_.minute_features == len(INTRADAY_MODEL_COLUMNS)

    daily = fitted.predict_daily(X_daily)
    assert daily.index.equals(X_daily.index[WINDOW - 1 :])  # rows without history are absent
    assert list(daily.columns) == ["mu", "sigma"]
    assert np.isfinite(daily.to_numpy()).all() and (daily["sigma"] > 0).all()
    assert daily["mu"].std() > 0  # the forecast varies with the window
    pd.testing.assert_series_equal(fitted.predict_daily_mu(X_daily), daily["mu"])
    steps = fitted.last_steps_
    assert steps.index.equals(daily.index) and list(steps.columns) == ["member_0"]
    assert ((steps >= 1) & (steps <= fitted.hrm_config_.max_segments)).all().all()

    proba = fitted.predict_intraday_proba(X_intraday, X_daily)
    pd.testing.assert_index_equal(proba.index, X_intraday.index)
    assert ((proba > 0) & (proba < 1)).all()
    assert fitted.last_steps_.shape == (X_intraday["session"].nunique(), 1)
    assert len(fitted.summaries_) == 1 and fitted.summaries_[0].best_epoch >= 1


def test_dates_without_a_full_daily_window_are_dropped_and_logged(market, tmp_path, caplog):
    X_daily, X_intraday, yA, yB, train, val = market
    with caplog.at_level(logging.INFO, logger="lab.hrm"):
        HRMAdapter(tiny_config(epochs=1), tmp_path).fit(X_daily, None, yA, None, train, val)
    assert "dropped 5 of 25 train dates with fewer than daily_window=8 rows of history" in caplog.text


def test_head_a_does_not_depend_on_minutes(fitted, market):
    """predict_daily feeds no minutes; a forward with each date's real next-session minutes gives the same
    mu and log_var, because nothing flows from the L-module to H."""
    X_daily, X_intraday, *_ = market
    daily = fitted.predict_daily(X_daily)
    values = fitted.daily_scaler_.transform(X_daily.to_numpy())
    ends = np.arange(WINDOW - 1, len(X_daily))
    sessions = session_layout(pd.DatetimeIndex(X_intraday["session"]))
    pair = next_session(X_daily.index.as_unit("ns").to_numpy(), sessions.dates)[ends]
    assert (pair >= 0).sum() >= 20  # most dates have real minutes here
    minute_values = fitted.minute_scaler_.transform(X_intraday[list(INTRADAY_MODEL_COLUMNS)].to_numpy())
    tokens = minute_tokens(minute_values, None, sessions, pair)
    with_minutes = fitted.trainers_[0].predict(HRMTensors(
        x_daily=torch.from_numpy(daily_windows(values, ends, WINDOW).astype(np.float32)),
        x_minute=torch.from_numpy(tokens.x.astype(np.float32)),
        minute_mask=torch.from_numpy(tokens.mask),
        y_a=torch.full((ends.size,), float("nan")),
        y_b=torch.from_numpy(tokens.y.astype(np.float32)),
    ))
    iv = X_daily["iv"].to_numpy()[ends]  # hrm.gap_scale_column: Head A forecasts yA / iv
    mu = (with_minutes.mu.astype(float) * fitted.y_std_ + fitted.y_mean_) * iv
    sigma = np.sqrt(np.exp(with_minutes.log_var.astype(float))) * fitted.y_std_ * iv
    np.testing.assert_array_equal(mu, daily["mu"].to_numpy())
    np.testing.assert_array_equal(sigma, daily["sigma"].to_numpy())
    assert np.isfinite(with_minutes.proba_b[tokens.mask]).all() and np.isnan(with_minutes.proba_b[~tokens.mask]).all()


def test_batched_intraday_probabilities_equal_the_per_day_method(fitted, market):
    X_daily, X_intraday, *_ = market
    batched = fitted.predict_intraday_proba(X_intraday, X_daily)
    days = pd.DatetimeIndex(X_intraday["session"].unique())
    per_day = pd.concat([fitted.predict_intraday_proba_for_day(X_intraday, day, X_daily) for day in days])
    pd.testing.assert_index_equal(per_day.index, batched.index)
    np.testing.assert_allclose(per_day.to_numpy(), batched.to_numpy(), rtol=1e-5, atol=1e-6)
    # the half day and a day with missing minutes
    half = fitted.predict_intraday_proba_for_day(X_intraday, "2024-03-05", X_daily)
    assert half.size == session_rows(X_intraday, "2024-03-05").size == 18
    # a tz-aware timestamp of the day names the same session
    noon = pd.Timestamp("2024-03-05 12:00", tz="America/New_York")
    aware = fitted.predict_intraday_proba_for_day(X_intraday, noon, X_daily)
    pd.testing.assert_series_equal(aware, half)


# ----------------------------------------------------------------------------------------------
# Leakage: perturbation tests


def test_predict_daily_at_t_ignores_daily_rows_after_t(fitted, market):
    X_daily = market[0]
    other = build_daily_features(random_daily_bars(70, seed=11, start="2024-01-02"), FEATURES)
    cut = 30  # rows 30.. replaced
    before = fitted.predict_daily(X_daily)
    after = fitted.predict_daily(splice_after(X_daily, other, cut))
    t = X_daily.index[cut - 1]
    pd.testing.assert_frame_equal(before.loc[:t], after.loc[:t])
    assert not np.allclose(before.loc[X_daily.index[cut] :].to_numpy(), after.loc[X_daily.index[cut] :].to_numpy())


def test_minute_probability_at_m_ignores_later_minutes(fitted, market):
    X_daily, X_intraday, *_ = market
    day = "2024-03-12"
    rows = session_rows(X_intraday, day)
    cut = 15  # minutes 15.. of the day replaced
    perturbed = X_intraday.copy()
    columns = list(INTRADAY_MODEL_COLUMNS)
    rng = np.random.default_rng(5)
    positions = [perturbed.columns.get_loc(c) for c in columns]
    perturbed.iloc[rows[cut:], positions] = rng.normal(0, 3, (rows.size - cut, len(columns)))
    before = fitted.predict_intraday_proba_for_day(X_intraday, day, X_daily)
    after = fitted.predict_intraday_proba_for_day(perturbed, day, X_daily)
    np.testing.assert_array_equal(before.iloc[:cut].to_numpy(), after.iloc[:cut].to_numpy())
    assert not np.allclose(before.iloc[cut:].to_numpy(), after.iloc[cut:].to_numpy())
    # the batched method too, and other days are untouched
    batched_before = fitted.predict_intraday_proba(X_intraday, X_daily)
    batched_after = fitted.predict_intraday_proba(perturbed, X_daily)
    untouched = np.setdiff1d(np.arange(len(X_intraday)), rows[cut:])
    np.testing.assert_array_equal(batched_before.iloc[untouched].to_numpy(), batched_after.iloc[untouched].to_numpy())


def test_minute_probabilities_of_day_d_ignore_daily_rows_from_d_on(fitted, market):
    X_daily, X_intraday, *_ = market
    day = pd.Timestamp("2024-03-12")
    cut = X_daily.index.get_loc(day)  # rows d, d+1, ... replaced
    other = build_daily_features(random_daily_bars(70, seed=12, start="2024-01-02"), FEATURES)
    before = fitted.predict_intraday_proba_for_day(X_intraday, day, X_daily)
    after = fitted.predict_intraday_proba_for_day(X_intraday, day, splice_after(X_daily, other, cut))
    pd.testing.assert_series_equal(before, after)
    # ... but they do read row d-1
    earlier = fitted.predict_intraday_proba_for_day(X_intraday, day, splice_after(X_daily, other, cut - 1))
    assert not np.allclose(before.to_numpy(), earlier.to_numpy())


def test_non_training_rows_never_reach_the_fitted_model(market, tmp_path):
    """Replacing every daily row, label and minute after the validation block leaves the scalers and the
    trained weights bit-identical (same seed: reproducible); replacing one training row changes the scaler."""
    X_daily, X_intraday, yA, yB, train, val = market
    other_daily, other_minutes, other_yA, other_yB = _market(daily_seed=21, minute_seed=22)
    cut_date = val[-1] + pd.Timedelta(days=1)
    cut = X_daily.index.searchsorted(cut_date)
    X_daily2 = splice_after(X_daily, other_daily, cut)
    yA2 = yA.copy()
    yA2.loc[cut_date:] = other_yA.loc[cut_date:]
    # 2024-03-15 (the last validation date) pairs with the session of 2024-03-18; keep it, change the rest
    minute_cut = session_rows(X_intraday, "2024-03-19")[0]
    X_intraday2 = splice_after(X_intraday, other_minutes, minute_cut)
    yB2 = splice_after(yB.to_frame(), other_yB.to_frame(), minute_cut)["yB"]

    cfg = tiny_config(epochs=1)
    a = HRMAdapter(cfg, tmp_path / "a").fit(X_daily, X_intraday, yA, yB, train, val)
    b = HRMAdapter(cfg, tmp_path / "b").fit(X_daily2, X_intraday2, yA2, yB2, train, val)
    for scaler in ("daily_scaler_", "minute_scaler_"):
        np.testing.assert_array_equal(getattr(a, scaler).mean_, getattr(b, scaler).mean_)
        np.testing.assert_array_equal(getattr(a, scaler).scale_, getattr(b, scaler).scale_)
    assert (a.y_mean_, a.y_std_) == (b.y_mean_, b.y_std_)
    for (name, wa), wb in zip(a.trainers_[0].net.state_dict().items(), b.trainers_[0].net.state_dict().values()):
        assert torch.equal(wa, wb), name
    before, after = a.predict_daily(X_daily), b.predict_daily(X_daily2)
    pd.testing.assert_frame_equal(before.iloc[: cut - WINDOW + 1], after.iloc[: cut - WINDOW + 1])
    assert not np.allclose(before.iloc[cut - WINDOW + 1 :].to_numpy(), after.iloc[cut - WINDOW + 1 :].to_numpy())

    # a training row, a training session's minute and a training label do move the fitted statistics
    X_daily3, X_intraday3, yA3 = X_daily.copy(), X_intraday.copy(), yA.copy()
    X_daily3.iloc[X_daily.index.get_loc(train[10]), 0] += 1.0
    X_intraday3.iloc[session_rows(X_intraday, "2024-02-27")[3], 0] += 0.01  # the session after 2024-02-26
    yA3.loc[train[10]] += 1.0
    c = HRMAdapter(cfg, tmp_path / "c").fit(X_daily3, X_intraday3, yA3, yB, train, val)
    assert c.daily_scaler_.mean_[0] != a.daily_scaler_.mean_[0]
    np.testing.assert_array_equal(c.daily_scaler_.mean_[1:], a.daily_scaler_.mean_[1:])
    assert c.minute_scaler_.mean_[0] != a.minute_scaler_.mean_[0]
    assert c.y_mean_ != a.y_mean_


# ----------------------------------------------------------------------------------------------
# Save and load


def test_save_load_gives_identical_predictions(fitted, market, tmp_path):
    X_daily, X_intraday, *_ = market
    path = fitted.save(tmp_path / "model" / "hrm.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["hrm.pt"]  # no temporary file left behind
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["daily_columns"] == list(X_daily.columns)
    loaded = HRMAdapter.load(path, tmp_path / "loaded")
    pd.testing.assert_frame_equal(loaded.predict_daily(X_daily), fitted.predict_daily(X_daily))
    pd.testing.assert_series_equal(
        loaded.predict_intraday_proba(X_intraday, X_daily), fitted.predict_intraday_proba(X_intraday, X_daily)
    )
    assert loaded.train_mean_ == fitted.train_mean_
    with pytest.raises(ValueError, match="not an HRM adapter checkpoint"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
        HRMAdapter.load(tmp_path / "other.pt")



def test_load_of_a_damaged_file_names_it_on_one_line(fitted, tmp_path):
    good = fitted.save(tmp_path / "hrm.pt").read_bytes()
    cases = {"truncated.pt": good[: len(good) // 2], "garbage.pt": b"not a torch file\n" * 10, "empty.pt": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            HRMAdapter.load(tmp_path / name)
        message = str(err.value)
        assert isinstance(err.value, LabError) and "\n" not in message
        assert message.startswith(f"{tmp_path / name}: not a readable HRM adapter file (truncated, damaged or not "
                                  "written by this lab: ")
    with pytest.raises(CheckpointError, match=r"missing.pt: HRM adapter file not found$"):
        HRMAdapter.load(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------------------------
# Head A's target scale


def test_head_a_forecasts_the_gap_in_units_of_the_days_implied_vol(market, tmp_path):
    """gap_scale_column 'iv' is the same fit as forecasting yA / iv in vol points and multiplying back."""
    X_daily, X_intraday, yA, yB, train, val = market
    cfg = tiny_config(epochs=1)
    scaled = HRMAdapter(cfg, tmp_path / "iv").fit(X_daily, X_intraday, yA, yB, train, val)
    plain_cfg = dataclasses.replace(cfg, hrm=dataclasses.replace(cfg.hrm, gap_scale_column=None))
    ratio = (yA / X_daily["iv"]).dropna()
    plain = HRMAdapter(plain_cfg, tmp_path / "plain").fit(X_daily, X_intraday, ratio, yB, train, val)
    assert scaled.y_mean_ == pytest.approx(plain.y_mean_) and scaled.y_std_ == pytest.approx(plain.y_std_)
    window_dates = X_daily.index[WINDOW - 1 :]
    assert scaled.train_mean_ == pytest.approx(yA.loc[train.intersection(window_dates)].mean())  # vol points
    a, b = scaled.predict_daily(X_daily), plain.predict_daily(X_daily)
    iv = X_daily["iv"].loc[a.index]
    np.testing.assert_allclose(a["mu"], b["mu"] * iv, rtol=1e-4)
    np.testing.assert_allclose(a["sigma"], b["sigma"] * iv, rtol=1e-4)

    with pytest.raises(ValueError, match=r"X_daily: no column 'iv' \(hrm.gap_scale_column"):
        HRMAdapter(cfg, tmp_path / "x").fit(X_daily.drop(columns="iv"), X_intraday, yA, yB, train, val)
    zero = X_daily.copy()
    zero.loc[train[10], "iv"] = 0.0  # a training date with a full window
    row = X_daily.index.get_loc(train[10])
    with pytest.raises(ValueError, match=rf"column 'iv' at row {row} \({train[10].date()}\) is 0.0 \(expected > 0"):
        HRMAdapter(cfg, tmp_path / "z").fit(zero, X_intraday, yA, yB, train, val)


# ----------------------------------------------------------------------------------------------
# Ensembles


def test_an_ensemble_is_the_mixture_of_independently_trained_members(market, tmp_path):
    """Member k equals a single network fitted with seed member_seeds(seed)[k]; mu, sigma^2 and the minute
    probabilities are the equally weighted mixture's; each member has its own run folder; save/load keeps it."""
    X_daily, X_intraday, yA, yB, train, val = market
    cfg = tiny_config(epochs=1, ensemble_size=2)
    seeds = member_seeds(cfg.seed, 2)
    assert seeds[0] == cfg.seed and seeds[1] != seeds[0] and seeds == member_seeds(cfg.seed, 2)
    ensemble = HRMAdapter(cfg, tmp_path / "ens").fit(X_daily, X_intraday, yA, yB, train, val)
    assert [(tmp_path / "ens" / f"member_{k}" / "best.pt").is_file() for k in range(2)] == [True, True]
    singles = [
        HRMAdapter(tiny_config(epochs=1), tmp_path / f"single_{k}")
        for k in range(2)
    ]
    for single, seed in zip(singles, seeds):
        single.config = dataclasses.replace(single.config, seed=seed)
        single.fit(X_daily, X_intraday, yA, yB, train, val)

    daily = ensemble.predict_daily(X_daily)
    members = [single.predict_daily(X_daily) for single in singles]
    mus = np.stack([m["mu"].to_numpy() for m in members])  # (2, N)
    assert not np.allclose(mus[0], mus[1])  # the members differ
    np.testing.assert_allclose(daily["mu"], mus.mean(axis=0), rtol=1e-6)
    variance = np.stack([m["sigma"].to_numpy() ** 2 for m in members]).mean(axis=0) + mus.var(axis=0)
    np.testing.assert_allclose(daily["sigma"] ** 2, variance, rtol=1e-5)
    steps = pd.concat([s.last_steps_["member_0"] for s in singles], axis=1, keys=["member_0", "member_1"])
    pd.testing.assert_frame_equal(ensemble.last_steps_, steps)

    proba = ensemble.predict_intraday_proba(X_intraday, X_daily)
    mean = np.mean([s.predict_intraday_proba(X_intraday, X_daily).to_numpy() for s in singles], axis=0)
    np.testing.assert_allclose(proba.to_numpy(), mean, rtol=1e-6)
    day = ensemble.predict_intraday_proba_for_day(X_intraday, "2024-03-05", X_daily)
    pd.testing.assert_series_equal(day, proba.loc[day.index])

    loaded = HRMAdapter.load(ensemble.save(tmp_path / "ens.pt"), tmp_path / "loaded")
    pd.testing.assert_frame_equal(loaded.predict_daily(X_daily), daily)
    pd.testing.assert_series_equal(loaded.predict_intraday_proba(X_intraday, X_daily), proba)
    state = torch.load(tmp_path / "ens.pt", map_location="cpu", weights_only=True)
    state["nets"] = state["nets"][:1]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"cut.pt: 1 networks stored, expected train.ensemble_size=2"):
        HRMAdapter.load(tmp_path / "cut.pt")


def test_per_head_early_stopping_reads_each_head_from_its_own_network(market, tmp_path, monkeypatch):
    """Under per_head, mu/sigma come from the net at Head A's best validation epoch and the minute
    probabilities from the one at Head B's; save/load keeps both."""
    X_daily, X_intraday, yA, yB, train, val = market
    epochs = iter([(1.0, 0.7), (1.1, 0.6), (1.2, 0.5)])  # Head A best at epoch 1, Head B at epoch 3

    def scripted(self, data, batch_size=None):
        a, b = next(epochs)
        return {"head_a_nll": a, "head_b_bce": b, "loss": a + b, "segments": 1.0}

    monkeypatch.setattr(HRMTrainer, "evaluate", scripted)
    adapter = HRMAdapter(tiny_config(epochs=3, early_stopping="per_head"), tmp_path / "run").fit(
        X_daily, X_intraday, yA, yB, train, val
    )
    monkeypatch.undo()
    summary = adapter.summaries_[0]
    assert (summary.best_epoch, summary.head_b_best_epoch, summary.epochs_run) == (1, 3, 3)
    trainer, passes = adapter.trainers_[0], []
    run_network = trainer.predict_network
    trainer.predict_network = lambda net, data, batch_size=None: passes.append(net) or run_network(net, data)
    daily, proba = adapter.predict_daily(X_daily), adapter.predict_intraday_proba(X_intraday, X_daily)
    assert passes == [trainer.net, trainer.head_b_net]  # one pass each, with the network of the head read
    del trainer.predict_network

    loaded = HRMAdapter.load(adapter.save(tmp_path / "hrm.pt"), tmp_path / "loaded")
    pd.testing.assert_frame_equal(loaded.predict_daily(X_daily), daily)
    pd.testing.assert_series_equal(loaded.predict_intraday_proba(X_intraday, X_daily), proba)
    # each output moves only with its own network
    member = loaded.trainers_[0]
    member.head_b_net, head_b = member.net, member.head_b_net
    pd.testing.assert_frame_equal(loaded.predict_daily(X_daily), daily)
    assert not np.allclose(loaded.predict_intraday_proba(X_intraday, X_daily), proba)
    member.net, member.head_b_net = head_b, head_b
    assert not np.allclose(loaded.predict_daily(X_daily)["mu"], daily["mu"])
    pd.testing.assert_series_equal(loaded.predict_intraday_proba(X_intraday, X_daily), proba)

    state = torch.load(tmp_path / "hrm.pt", map_location="cpu", weights_only=True)
    state["head_b_nets"] = None
    torch.save(state, tmp_path / "cut.pt")
    expected = r"cut.pt: 0 Head-B networks stored, expected 1 for train.early_stopping=per_head"
    with pytest.raises(ValueError, match=expected):
        HRMAdapter.load(tmp_path / "cut.pt")


# ----------------------------------------------------------------------------------------------
# Bad input


def test_bad_prediction_inputs_raise_clear_errors(fitted, market, tmp_path):
    X_daily, X_intraday, *_ = market
    with pytest.raises(ValueError, match="HRMAdapter: call fit before predicting"):
        HRMAdapter(tiny_config(), tmp_path).predict_daily(X_daily)
    with pytest.raises(ValueError, match="X_daily: expected a DataFrame indexed by session date"):
        fitted.predict_daily(X_daily["rv_5d"])
    with pytest.raises(ValueError, match="X_daily: expected a DataFrame indexed by session date"):
        fitted.predict_daily(X_daily.reset_index(drop=True))
    with pytest.raises(ValueError, match="X_daily: missing feature column 'rv_5d'"):
        fitted.predict_daily(X_daily.drop(columns="rv_5d"))
    nan_daily = X_daily.copy()
    nan_daily.iloc[20, 3] = np.nan
    with pytest.raises(ValueError, match=f"X_daily: feature '{X_daily.columns[3]}' at {X_daily.index[20]} is nan"):
        fitted.predict_daily(nan_daily)
    with pytest.raises(ValueError, match="X_daily: date .* follows .* increasing order"):
        fitted.predict_daily(X_daily.iloc[::-1])
    with pytest.raises(ValueError, match="X_daily: 5 rows, expected at least hrm.daily_window=8"):
        fitted.predict_daily(X_daily.iloc[:5])
    with pytest.raises(ValueError, match="X_intraday: no minutes for session 2024-03-16"):
        fitted.predict_intraday_proba_for_day(X_intraday, "2024-03-16", X_daily)
    short_history = r"X_daily: 5 rows before session 2024-03-12 \(expected at least hrm.daily_window=8"
    with pytest.raises(ValueError, match=short_history):
        fitted.predict_intraday_proba_for_day(X_intraday, "2024-03-12", X_daily.loc["2024-03-05":])
    with pytest.raises(ValueError, match="X_intraday: missing feature column 'rel_volume'"):
        fitted.predict_intraday_proba(X_intraday.drop(columns="rel_volume"), X_daily)
    nan_minutes = X_intraday.copy()
    nan_minutes.iloc[7, 0] = np.inf
    with pytest.raises(ValueError, match=f"X_intraday: feature 'ret_1m' at {X_intraday.index[7]} is inf"):
        fitted.predict_intraday_proba(nan_minutes, X_daily)
    with pytest.raises(ValueError, match="X_intraday: expected a DataFrame with a 'session' column"):
        fitted.predict_intraday_proba(X_intraday.drop(columns="session"), X_daily)


def test_bad_fit_inputs_raise_clear_errors(market, tmp_path):
    X_daily, X_intraday, yA, yB, train, val = market
    model = HRMAdapter(tiny_config(epochs=1), tmp_path)
    unlabelled = yA.copy()
    unlabelled.loc[train[12]] = np.nan
    with pytest.raises(ValueError, match=f"yA: label at train date {train[12].date()} is nan"):
        model.fit(X_daily, X_intraday, unlabelled, yB, train, val)
    with pytest.raises(ValueError, match="X_intraday, yB: expected both"):
        model.fit(X_daily, X_intraday, yA, None, train, val)
    with pytest.raises(ValueError, match="X_daily: no feature row for train date 2024-01-05"):
        model.fit(X_daily, X_intraday, yA, yB, train.append(pd.DatetimeIndex(["2024-01-05"])), val)
    with pytest.raises(ValueError, match="yB: no label row for minute"):
        model.fit(X_daily, X_intraday, yA, yB.drop(X_intraday.index[:5]), train, val)
    with pytest.raises(ValueError, match="none of the 3 train dates has hrm.daily_window=8 rows of history"):
        model.fit(X_daily, X_intraday, yA, yB, train[:3], val)
    cfg = tiny_config()
    long_day = HRMAdapter(dataclasses.replace(cfg, hrm=dataclasses.replace(cfg.hrm, minutes_per_day=30)), tmp_path)
    too_long = r"X_intraday: session 2024-02-21 has 3\d minutes \(expected at most hrm.minutes_per_day=30\)"
    with pytest.raises(ValueError, match=too_long):
        long_day.fit(X_daily, X_intraday, yA, yB, train, val)
    assert not hasattr(model, "trainers_")


# ----------------------------------------------------------------------------------------------
# Daily-only data


def test_daily_only_fit_predicts_head_a_and_refuses_minutes(market, tmp_path):
    X_daily, X_intraday, yA, yB, train, val = market
    model = HRMAdapter(tiny_config(), tmp_path).fit(X_daily, None, yA, None, train, val)
    daily = model.predict_daily(X_daily)
    assert len(daily) == len(X_daily) - WINDOW + 1 and np.isfinite(daily.to_numpy()).all()
    assert model.minute_scaler_ is None
    with pytest.raises(ValueError, match="fitted on daily data only"):
        model.predict_intraday_proba(X_intraday, X_daily)
    loaded = HRMAdapter.load(model.save(tmp_path / "daily_only.pt"), tmp_path / "loaded")
    pd.testing.assert_frame_equal(loaded.predict_daily(X_daily), daily)
