"""HRM trainer on tiny synthetic data: learning, logging, determinism, resume, non-finite handling,
checkpoints, daily-only data and the deep-supervision bookkeeping."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lab_v10.src.config import HRMConfig, ModuleConfig, TrainConfig
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.options import hrm_train, segment_loss
from lab_v10.src.options.act_halting import act_rollout, gaussian_nll, minute_bce
from lab_v10.src.options.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_train import HRMTensors, HRMTrainer, NonFiniteLossError, resolve_device
from lab_v10.src.options.optim import warmup_cosine
from lab_v10.src.options.segment_loss import masked_sums

T_H, T_L, F_D, F_M = 8, 16, 5, 4
HRM = HRMConfig(
    h=ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=16),
    l=ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=16),
    daily_features=F_D, minute_features=F_M, daily_window=T_H, minutes_per_day=T_L,
    H_cycles=1, L_cycles=2, max_segments=3,
)
TRAIN = TrainConfig(lr=3e-3, warmup_steps=2, batch_size=8, epochs=3, patience=5, device="cpu")


def make_data(n: int, seed: int, daily_only: bool = False) -> HRMTensors:
    """yA depends on the last daily row, yB on the minute's first feature; short days padded at the end."""
    g = torch.Generator().manual_seed(seed)
    x_daily = torch.randn(n, T_H, F_D, generator=g)
    x_minute = torch.randn(n, T_L, F_M, generator=g)
    lengths = torch.randint(T_L // 2, T_L + 1, (n,), generator=g)
    mask = torch.arange(T_L)[None] < lengths[:, None]  # (N, T_L)
    y_a = x_daily[:, -1, 0] + 0.3 * torch.randn(n, generator=g)
    y_a[::7] = float("nan")  # some days without a Head-A label
    y_b = (x_minute[..., 0] > 0).float()
    y_b[:, -3:] = float("nan")  # horizon past the close
    if daily_only:  # no minute bars: one fully masked minute per day, as hrm_tokens.minute_tokens packs it
        mask = torch.zeros(n, 1, dtype=torch.bool)
        x_minute = torch.zeros(n, 1, F_M)
        y_b = torch.full((n, 1), float("nan"))
    return HRMTensors(x_daily, x_minute, mask, y_a, y_b)


def make_trainer(out: Path, train_cfg: TrainConfig = TRAIN, seed: int = 0, init_seed: int = 0,
                 hrm_cfg: HRMConfig = HRM) -> HRMTrainer:
    torch.manual_seed(init_seed)
    return HRMTrainer(HRMNet(hrm_cfg), hrm_cfg, train_cfg, out, seed=seed, device="cpu")


def interrupt_after(trainer: HRMTrainer, epochs_done: int) -> None:
    """Make ``fit`` crash at the start of epoch ``epochs_done + 1`` (a killed job)."""
    original = trainer._train_epoch

    def train_epoch(train, epoch):
        if epoch > epochs_done:
            raise KeyboardInterrupt(f"killed before epoch {epoch}")
        return original(train, epoch)

    trainer._train_epoch = train_epoch


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------------------
# Small pieces


def test_hrm_tensors_checks_and_subset():
    data = make_data(10, 0)
    assert len(data) == 10
    part = data.subset(np.array([3, 1]))
    assert len(part) == 2 and torch.equal(part.x_daily[0], data.x_daily[3])
    assert torch.equal(torch.isnan(data.subset(slice(2, 5)).y_b), torch.isnan(data.y_b[2:5]))
    assert torch.equal(data.subset(torch.tensor([0, 9])).minute_mask, data.minute_mask[[0, 9]])
    with pytest.raises(ValueError, match="minute_mask: expected dtype bool"):
        HRMTensors(data.x_daily, data.x_minute, data.minute_mask.float(), data.y_a, data.y_b)
    with pytest.raises(ValueError, match="y_b"):
        HRMTensors(data.x_daily, data.x_minute, data.minute_mask, data.y_a, data.y_b[:, :-1])
    with pytest.raises(ValueError, match="x_daily: expected dtype float32"):
        HRMTensors(data.x_daily.double(), data.x_minute, data.minute_mask, data.y_a, data.y_b)
    with pytest.raises(ValueError, match="y_a: expected 1 dims with N=10"):
        HRMTensors(data.x_daily, data.x_minute, data.minute_mask, data.y_a[:9], data.y_b)
    assert data.subset([1]).symbol is None and data.to("cpu").symbol is None
    ids = dataclasses.replace(data, symbol=torch.arange(10) % 3)
    assert ids.subset(np.array([4, 2])).symbol.tolist() == [1, 2] and torch.equal(ids.to("cpu").symbol, ids.symbol)
    with pytest.raises(ValueError, match=r"HRMTensors.symbol: expected shape \(10,\) int64"):
        dataclasses.replace(data, symbol=torch.zeros(10, dtype=torch.int32))


def test_symbol_ids_reach_training_evaluation_and_prediction(tmp_path):
    hrm = dataclasses.replace(HRM, symbol_embedding=True, n_symbols=3)
    train, val = make_data(24, 1), make_data(8, 2)
    train, val = (dataclasses.replace(d, symbol=torch.arange(len(d)) % 2) for d in (train, val))  # ids 0, 1
    trainer = make_trainer(tmp_path / "run", dataclasses.replace(TRAIN, epochs=1), hrm_cfg=hrm)
    trainer.fit(train, val)
    norms = trainer.net.symbol_embedding.weight.detach().norm(dim=-1)  # zero-initialised rows
    assert norms[0] > 0 and norms[1] > 0 and norms[2] == 0  # id 2 is in no sample
    other = trainer.predict(dataclasses.replace(val, symbol=1 - val.symbol))  # the other id for each sample
    assert not np.allclose(trainer.predict(val).mu, other.mu)
    with pytest.raises(ValueError, match="^symbol: hrm.symbol_embedding is true"):
        trainer.evaluate(dataclasses.replace(val, symbol=None))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_warmup_cosine_schedule():
    f = warmup_cosine(4, 24)
    assert [f(b) for b in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(14) == pytest.approx(0.5) and f(24) == pytest.approx(0.0)
    after = [f(b) for b in range(4, 25)]
    assert all(x >= y for x, y in zip(after, after[1:]))
    assert warmup_cosine(0, 10)(0) == 1.0


def test_optimizer_groups_decay_only_weight_matrices(tmp_path):
    trainer = make_trainer(tmp_path)
    decay, no_decay, weighting = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and all(p.ndim == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])
    n_net = sum(1 for _ in trainer.net.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_net
    assert weighting["weight_decay"] == 0.0 and weighting["params"][0] is trainer.weighting.log_vars
    with pytest.raises(ValueError, match="hrm_cfg differs"):
        HRMTrainer(trainer.net, dataclasses.replace(HRM, max_segments=2), TRAIN, tmp_path, seed=0)


def test_masked_sums_exclude_halted_and_unlabelled_rows():
    losses = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    labelled = torch.tensor([[True, True], [True, False], [False, True]])
    active = torch.tensor([True, True, False])
    sums, counts = masked_sums(losses, labelled, active)
    assert sums.tolist() == [3.0, 10.0] and counts.tolist() == [2, 1]


# ----------------------------------------------------------------------------------------------
# Training runs


def test_fit_learns_logs_and_keeps_the_best_checkpoint(tmp_path):
    train, val = make_data(32, 1), make_data(16, 2)
    trainer = make_trainer(tmp_path / "run")
    untrained = trainer.evaluate(val)
    summary = trainer.fit(train, val)
    assert summary.best_val_loss < untrained["loss"] - 0.1  # it learned something real
    log = pd.read_csv(summary.log_path)
    assert summary.log_path == tmp_path / "run" / "train_log.csv"
    assert len(log) == summary.epochs_run == 3
    for column in ("train_head_a_nll", "train_head_b_bce", "train_q", "train_ponder", "weight_head_a_nll",
                   "weight_head_b_bce", "grad_norm", "train_segments", "lr", "val_loss", "val_segments"):
        assert np.isfinite(log[column]).all(), column
    assert summary.best_epoch == int(log["val_loss"].idxmin()) + 1
    assert summary.best_val_loss == pytest.approx(log["val_loss"].min())
    assert (log["val_loss"] == log["val_head_a_nll"] + log["val_head_b_bce"]).all()  # un-weighted, no Q
    assert summary.steps == log["step"].iloc[-1] and summary.skipped_steps == 0
    assert (1 <= log["train_segments"]).all() and (log["train_segments"] <= HRM.max_segments).all()
    assert log["lr"].iloc[-1] < TRAIN.lr  # cosine decay under way
    # best.pt holds the restored weights and loads with weights_only
    best = torch.load(summary.checkpoint_path, weights_only=True)
    assert best["epoch"] == summary.best_epoch
    assert_same_state(best["model"], trainer.net.state_dict())
    assert trainer.evaluate(val)["loss"] == pytest.approx(summary.best_val_loss, abs=1e-6)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 3 and last["step"] == summary.steps
    assert {"model", "optimizer", "scheduler", "loss_weighting", "rng", "config"} <= set(last)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_validation_loss_definition_and_predictions(tmp_path):
    val = make_data(12, 3)
    trainer = make_trainer(tmp_path, dataclasses.replace(TRAIN, autocast_bf16=False))
    metrics = trainer.evaluate(val, batch_size=5)
    with torch.no_grad():
        roll = act_rollout(trainer.net, val.x_daily, val.x_minute, val.minute_mask, training=False)
    has_a = torch.isfinite(val.y_a)
    nll = gaussian_nll(roll.output.mu, roll.output.log_var, val.y_a)[has_a].mean().item()
    bce = minute_bce(roll.output.logits_b, val.y_b, val.minute_mask).mean().item()  # every day has labels
    assert metrics["head_a_nll"] == pytest.approx(nll, rel=1e-5)
    assert metrics["head_b_bce"] == pytest.approx(bce, rel=1e-5)
    assert metrics["loss"] == pytest.approx(nll + bce, rel=1e-5)
    pred = trainer.predict(val, batch_size=5)
    assert pred.mu.shape == (12,) and pred.log_var.shape == (12,) and pred.steps.dtype == np.int64
    assert np.array_equal(np.isnan(pred.proba_b), ~val.minute_mask.numpy())
    real = pred.proba_b[val.minute_mask.numpy()]
    assert ((real > 0) & (real < 1)).all()
    np.testing.assert_allclose(pred.mu, roll.output.mu.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(pred.steps, roll.steps.numpy())
    empty = trainer.predict(val.subset([]))
    assert empty.mu.shape == (0,) and empty.proba_b.shape == (0, T_L) and empty.steps.dtype == np.int64
    with pytest.raises(ValueError, match="at least one sample"):
        trainer.evaluate(val.subset([]))
    # eval halting "max" always runs every segment
    hrm_max = dataclasses.replace(HRM, eval_halting="max")
    assert make_trainer(tmp_path, hrm_cfg=hrm_max).evaluate(val)["segments"] == HRM.max_segments


def test_same_seed_same_weights_and_predictions(tmp_path):
    train, val, test = make_data(24, 1), make_data(8, 2), make_data(6, 3)
    cfg = dataclasses.replace(TRAIN, epochs=2, deterministic=True)
    hrm = dataclasses.replace(HRM, halt_exploration_prob=0.5)  # exploration draws exercise the generator
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        trainer = make_trainer(tmp_path / name, cfg, seed=seed, hrm_cfg=hrm)
        trainer.fit(train, val)
        runs.append((trainer.net.state_dict(), trainer.predict(test)))
    (state_a, pred_a), (state_b, pred_b), (state_c, _) = runs
    assert_same_state(state_a, state_b)
    for f in dataclasses.fields(pred_a):
        np.testing.assert_array_equal(getattr(pred_a, f.name), getattr(pred_b, f.name))
    # the trainer seed drives shuffles and exploration: another seed, other weights
    assert any(not torch.equal(state_a[k], state_c[k]) for k in state_a)
    assert not torch.are_deterministic_algorithms_enabled()  # fit restored the global mode


@pytest.mark.parametrize(("weighting", "stopping"), [("uncertainty", "joint"), ("gradnorm", "joint"),
                                                      ("uncertainty", "per_head")])
def test_resume_from_mid_run_checkpoint_matches_uninterrupted(tmp_path, weighting, stopping):
    train, val = make_data(24, 1), make_data(8, 2)
    cfg = dataclasses.replace(TRAIN, epochs=3, loss_weighting=weighting, early_stopping=stopping)
    full = make_trainer(tmp_path / "full", cfg)
    full_summary = full.fit(train, val)

    first = make_trainer(tmp_path / "first", cfg)
    interrupt_after(first, 1)
    with pytest.raises(KeyboardInterrupt):
        first.fit(train, val)
    assert load_checkpoint(tmp_path / "first" / "last.pt")["epoch"] == 1

    resumed = make_trainer(tmp_path / "resumed", cfg, init_seed=99)  # other initial weights: all overwritten
    summary = resumed.fit(train, val, resume_from=tmp_path / "first" / "last.pt")

    assert_same_state(resumed.net.state_dict(), full.net.state_dict())  # best weights restored
    assert_same_state(resumed.head_b_net.state_dict(), full.head_b_net.state_dict())
    if stopping == "per_head":  # the interrupted run's best_head_b.pt was copied into the new folder
        assert load_checkpoint(tmp_path / "resumed" / "best_head_b.pt")["epoch"] == summary.head_b_best_epoch
    last_full = load_checkpoint(tmp_path / "full" / "last.pt")
    last_resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert_same_state(last_resumed["model"], last_full["model"])
    assert_same_state(last_resumed["loss_weighting"], last_full["loss_weighting"])
    opt_full, opt_resumed = last_full["optimizer"]["state"], last_resumed["optimizer"]["state"]
    for i in opt_full:
        for key in opt_full[i]:
            assert torch.equal(opt_full[i][key], opt_resumed[i][key])
    assert last_resumed["scheduler"] == last_full["scheduler"]
    for field in ("best_epoch", "best_val_loss", "epochs_run", "steps", "skipped_steps", "head_b_best_epoch",
                  "head_b_best_val"):
        assert getattr(summary, field) == getattr(full_summary, field), field
    log_full, log_resumed = (pd.read_csv(s.log_path).drop(columns="seconds") for s in (full_summary, summary))
    pd.testing.assert_frame_equal(log_full, log_resumed)


def scripted_validation(trainer: HRMTrainer, head_a: list[float], head_b: list[float]) -> None:
    """Make epoch e's validation losses head_a[e-1] and head_b[e-1] (the early-stopping inputs)."""
    epochs = iter(zip(head_a, head_b))

    def evaluate(data, batch_size=None):
        a, b = next(epochs)
        return {"head_a_nll": a, "head_b_bce": b, "loss": a + b, "segments": 1.0}

    trainer.evaluate = evaluate


@pytest.mark.parametrize("mode", ["joint", "per_head"])
def test_early_stopping_joint_or_per_head(tmp_path, mode):
    """joint stops on the sum and keeps one network; per_head stops when neither head improves for `patience`
    epochs and restores Head A's best epoch into net, Head B's into head_b_net, which predict reads."""
    train, val, test = make_data(24, 1), make_data(8, 2), make_data(6, 3)
    cfg = dataclasses.replace(TRAIN, epochs=10, patience=2, early_stopping=mode, autocast_bf16=False)
    trainer = make_trainer(tmp_path, cfg)
    # Head A is best at epoch 2, Head B at epoch 3, the sum at epoch 2
    scripted_validation(trainer, [1.0, 0.9, 1.1, 1.2, 1.3, 1.4], [0.70, 0.69, 0.68, 0.70, 0.71, 0.72])
    summary = trainer.fit(train, val)
    log = pd.read_csv(summary.log_path)
    best = load_checkpoint(tmp_path / "best.pt")
    assert summary.best_epoch == best["epoch"] == 2
    assert_same_state(best["model"], trainer.net.state_dict())
    if mode == "joint":
        assert summary.epochs_run == 4 and summary.best_val_loss == pytest.approx(1.59)
        assert summary.head_b_best_epoch is None and summary.head_b_checkpoint_path is None
        assert trainer.head_b_net is trainer.net and not (tmp_path / "best_head_b.pt").exists()
        assert "head_b_best_epoch" not in log
        return
    assert summary.epochs_run == 5 and summary.best_val_loss == pytest.approx(0.9)  # Head B improved at epoch 3
    head_b = load_checkpoint(summary.head_b_checkpoint_path)
    assert summary.head_b_checkpoint_path == tmp_path / "best_head_b.pt"
    assert summary.head_b_best_epoch == head_b["epoch"] == 3 and summary.head_b_best_val == pytest.approx(0.68)
    assert log["head_b_best_epoch"].tolist() == [1, 2, 3, 3, 3] and log["best_epoch"].tolist() == [1, 2, 2, 2, 2]
    assert_same_state(head_b["model"], trainer.head_b_net.state_dict())
    assert any(not torch.equal(best["model"][k], head_b["model"][k]) for k in best["model"])
    pred = trainer.predict(test)
    with torch.no_grad():
        roll_a, roll_b = (
            act_rollout(net.eval(), test.x_daily, test.x_minute, test.minute_mask, training=False)
            for net in (trainer.net, trainer.head_b_net)
        )
    np.testing.assert_allclose(pred.mu, roll_a.output.mu.float().numpy(), rtol=1e-5, atol=1e-6)
    proba_b = torch.sigmoid(roll_b.output.logits_b.float()).masked_fill(~test.minute_mask, float("nan"))
    np.testing.assert_allclose(pred.proba_b, proba_b.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(pred.steps, roll_a.steps.numpy()) and np.array_equal(pred.steps_b, roll_b.steps.numpy())


def test_resume_rejects_a_different_config(tmp_path):
    train, val = make_data(16, 1), make_data(8, 2)
    make_trainer(tmp_path / "a", dataclasses.replace(TRAIN, epochs=1)).fit(train, val)
    other = make_trainer(tmp_path / "b", dataclasses.replace(TRAIN, epochs=1, lr=1e-3))
    with pytest.raises(ValueError, match="train.lr"):
        other.fit(train, val, resume_from=tmp_path / "a" / "last.pt")
    again = make_trainer(tmp_path / "c", dataclasses.replace(TRAIN, epochs=1))
    with pytest.raises(ValueError, match="16 samples"):
        again.fit(make_data(24, 1), val, resume_from=tmp_path / "a" / "last.pt")


# ----------------------------------------------------------------------------------------------
# Non-finite values and checkpoints


def test_nonfinite_input_names_batch_segment_and_term_and_keeps_the_checkpoint(tmp_path):
    train, val = make_data(16, 1), make_data(8, 2)
    cfg = dataclasses.replace(TRAIN, epochs=2)
    first = make_trainer(tmp_path, cfg)
    interrupt_after(first, 1)
    with pytest.raises(KeyboardInterrupt):
        first.fit(train, val)
    last = tmp_path / "last.pt"
    before = last.read_bytes()

    bad = make_data(16, 1)
    bad.x_daily[5, 2, 1] = float("nan")  # sample 5: every output of it turns NaN
    named = r"head_a_nll .* epoch 2, batch \d+, segment 1, training samples \[5\]"
    with pytest.raises(NonFiniteLossError, match=named):
        make_trainer(tmp_path, cfg).fit(bad, val, resume_from=last)
    assert last.read_bytes() == before  # nothing was written over the good checkpoint
    state = load_checkpoint(last)
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())

    bad_minute = make_data(16, 1)
    bad_minute.x_minute[3, 0, 0] = float("inf")  # a real minute of sample 3: only Head B sees it
    with pytest.raises(NonFiniteLossError, match=r"head_b_bce .* batch \d+, segment 1, training samples \[3\]"):
        make_trainer(tmp_path / "m", cfg).fit(bad_minute, val)

    padded = make_data(16, 1)
    row = int(torch.nonzero(~padded.minute_mask.all(-1))[0])
    padded.x_minute[row, -1] = float("nan")  # a padded minute: zeroed by the network, harmless
    summary = make_trainer(tmp_path / "p", dataclasses.replace(cfg, epochs=1)).fit(padded, val)
    assert math.isfinite(summary.best_val_loss)


def test_diverged_fit_is_a_one_line_lab_error_and_leaves_no_empty_folder(tmp_path):
    """A fit that turns non-finite before its first last.pt removes the folders it created and says so; the
    message names epoch, batch, term, the run folder (so the fold or member) and what to try."""
    val = make_data(8, 2)
    bad = make_data(16, 1)
    bad.x_daily[:, 2, 1] = float("nan")  # every sample: the listed culprits are cut after eight
    run = tmp_path / "report" / "hrm" / "fold_3"
    with pytest.raises(NonFiniteLossError) as err:
        make_trainer(run, dataclasses.replace(TRAIN, epochs=1, batch_size=16)).fit(bad, val)
    message = str(err.value)
    assert isinstance(err.value, LabError) and "\n" not in message
    assert re.fullmatch(
        r"non-finite loss term head_a_nll \(nan\) at epoch 1, batch 1, segment 1, training samples \[(\d+, ){8}\.\.\. "
        rf"\(13 in all\)\]; run folder {re.escape(str(run))} \(removed: nothing valid was written\); try a lower "
        r"train.lr, train.skip_nonfinite: true, or check the inputs for NaN or extreme values", message)
    assert list(tmp_path.iterdir()) == []  # report/ and report/hrm/ were created by the fit: gone too

    bad_val = make_data(8, 2)
    bad_val.x_daily[3, 0, 0] = float("nan")
    (tmp_path / "kept").mkdir()
    with pytest.raises(NonFiniteLossError, match=r"^non-finite validation loss at validation samples \[3\] after "
                                                 r"epoch 1; run folder .*kept/run \(removed"):
        make_trainer(tmp_path / "kept" / "run", dataclasses.replace(TRAIN, epochs=1)).fit(make_data(16, 1), bad_val)
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"] and not any((tmp_path / "kept").iterdir())


def test_skip_nonfinite_counts_skips_and_stays_finite(tmp_path):
    train, val = make_data(16, 1), make_data(8, 2)
    train.x_daily[4, 0, 0] = float("nan")
    cfg = dataclasses.replace(TRAIN, epochs=2, skip_nonfinite=True)
    trainer = make_trainer(tmp_path, cfg)
    summary = trainer.fit(train, val)
    assert summary.skipped_steps == summary.epochs_run == 2  # the NaN sample spoils one batch per epoch
    assert summary.steps > 0
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters())
    for name in ("best.pt", "last.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert pd.read_csv(summary.log_path)["skipped_steps"].tolist() == [1, 2]
    assert np.isfinite(trainer.predict(val).mu).all()


def test_checkpoint_writes_are_atomic_and_never_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    good = {"model": {"w": torch.ones(3)}, "step": 1}
    save_checkpoint(path, good)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="non-finite weights in w"):
        save_checkpoint(path, {"model": {"w": torch.tensor([1.0, float("nan")])}, "step": 2})
    assert path.read_bytes() == before

    def crashing_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "step": 3})
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left
    truncated = tmp_path / "ck" / "truncated.pt"
    truncated.write_bytes(before[: len(before) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)


# ----------------------------------------------------------------------------------------------
# Daily-only data and deep-supervision bookkeeping


@pytest.mark.parametrize("weighting", ["uncertainty", "gradnorm"])
def test_daily_only_data_has_zero_head_b_loss_and_no_nan(tmp_path, weighting):
    train, val = make_data(16, 1, daily_only=True), make_data(8, 2, daily_only=True)
    trainer = make_trainer(tmp_path, dataclasses.replace(TRAIN, epochs=2, loss_weighting=weighting))
    summary = trainer.fit(train, val)
    log = pd.read_csv(summary.log_path)
    assert (log["train_head_b_bce"] == 0).all() and (log["val_head_b_bce"] == 0).all()
    assert np.isfinite(log.drop(columns="seconds").to_numpy(dtype=float)).all()
    assert (log["weight_head_b_bce"] == 1.0).all()  # an absent task's weight does not drift
    assert (log["val_loss"] == log["val_head_a_nll"]).all()
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters())
    assert np.isnan(trainer.predict(val).proba_b).all()


def test_halted_samples_are_frozen_and_excluded(tmp_path, monkeypatch):
    """Halting is forced for the even rows of each batch after segment 1: later segments must average over
    the odd rows only and keep the halted rows' carry."""

    def decision(q_halt, q_continue, steps, max_segments, **kwargs):
        forced = torch.zeros_like(q_halt, dtype=torch.bool)
        forced[::2] = True
        return forced | (steps >= max_segments)

    seen_rows = []
    real_sums = segment_loss.masked_sums

    def spy_sums(losses, labelled, rows):
        seen_rows.append(rows.clone())
        return real_sums(losses, labelled, rows)

    frozen_checks = []
    real_freeze = hrm_train.freeze_halted

    def spy_freeze(halted, previous, current):
        out = real_freeze(halted, previous, current)
        frozen_checks.append(torch.equal(out.z_H[halted], previous.z_H[halted]) and torch.equal(
            out.z_H[~halted], current.z_H[~halted]))
        return out

    monkeypatch.setattr(hrm_train, "halting_decision", decision)
    monkeypatch.setattr(segment_loss, "masked_sums", spy_sums)
    monkeypatch.setattr(hrm_train, "freeze_halted", spy_freeze)
    train, val = make_data(8, 1), make_data(4, 2)
    trainer = make_trainer(tmp_path, dataclasses.replace(TRAIN, epochs=1))
    summary = trainer.fit(train, val)
    assert summary.steps == HRM.max_segments  # one batch of 8: the odd rows ran every segment
    train_calls = seen_rows[: HRM.max_segments]  # evaluate() calls follow with all rows
    assert train_calls[0].all()
    odd = torch.tensor([False, True] * 4)
    for rows in train_calls[1:]:
        assert torch.equal(rows, odd)
    assert frozen_checks and all(frozen_checks)
    assert pd.read_csv(summary.log_path)["train_segments"].iloc[0] == pytest.approx((1 + HRM.max_segments) / 2)


def test_tensorboard_scalars_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    trainer = make_trainer(tmp_path, dataclasses.replace(TRAIN, epochs=1))
    trainer.fit(make_data(8, 1), make_data(4, 2))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
