"""TimeSeriesHRM: embedding, head modes, the generic core (one-step gradient, HRMNet parity, causality),
ACT rollouts, autoregressive vs one-shot agreement, train step device/dtype, and learning a noisy AR(2)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from lab_v10.src.config import HRMConfig, ModuleConfig
from lab_v10.src.dataset.windows import TimeSeriesWindows, TSBatch
from lab_v10.src.errors import ConfigError
from lab_v10.src.models.ts_embedding import TimeSeriesEmbedding, sinusoidal_table
from lab_v10.src.models.ts_head import TSForecast, TSRegressionHead, roll_autoregressive
from lab_v10.src.models.ts_hierarchical_core import HierarchicalCore
from lab_v10.src.models.ts_hrm_adapter import (
    NLL_UNINFORMED,
    TimeSeriesHRM,
    TimeSeriesHRMConfig,
    ts_train_step,
)
from lab_v10.src.options.act_halting import gaussian_nll
from lab_v10.src.options.hrm_net import HRMNet

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TINY_MODULE = ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=24)
TINY = TimeSeriesHRMConfig(
    n_features=2, n_targets=2, t_in=8, t_out=1, n_calendar=3, patch_len=2,
    h=TINY_MODULE, l=dataclasses.replace(TINY_MODULE, d_model=24, ffn_dim=32),
    H_cycles=2, L_cycles=2, max_segments=3,
)


def build(cfg: TimeSeriesHRMConfig = TINY, seed: int = 0) -> TimeSeriesHRM:
    """A model whose zero-initialised Q-head and FiLM are made non-zero, as after some training."""
    torch.manual_seed(seed)
    model = TimeSeriesHRM(cfg)
    with torch.no_grad():
        for w in (model.q_head.weight, model.core.film.gamma.weight, model.core.film.beta.weight):
            w.normal_(0.0, 0.3)
    return model


def window_inputs(cfg: TimeSeriesHRMConfig, batch: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.t_in, cfg.n_features, generator=g)
    calendar = torch.randn(batch, cfg.t_in + cfg.t_out, cfg.n_calendar, generator=g) if cfg.n_calendar else None
    return x, calendar


# ----------------------------------------------------------------------------------------------
# Embedding and head


def test_sinusoidal_table_values():
    table = sinusoidal_table(10, 8, base=10000.0)
    t = torch.arange(10, dtype=torch.float32)
    assert table.shape == (10, 8)
    torch.testing.assert_close(table[:, 0], torch.sin(t))
    torch.testing.assert_close(table[:, 1], torch.cos(t))
    torch.testing.assert_close(table[:, 2], torch.sin(t / 10000.0 ** (2 / 8)))
    torch.testing.assert_close(table[:, 7], torch.cos(t / 10000.0 ** (6 / 8)))
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_table(4, 7)


def test_embedding_adds_projection_position_and_calendar():
    torch.manual_seed(0)
    emb = TimeSeriesEmbedding(n_features=3, d_model=8, max_len=12, n_calendar=2)
    x, cal = torch.randn(4, 10, 3), torch.randn(4, 10, 2)
    expected = emb.value_proj(x) + sinusoidal_table(12, 8)[:10] + emb.calendar_proj(cal)
    torch.testing.assert_close(emb(x, cal), expected)
    with pytest.raises(ValueError, match="expects a calendar"):
        emb(x)
    with pytest.raises(ValueError, match="exceeds the embedding's max_len 12"):
        emb(torch.randn(1, 13, 3), torch.randn(1, 13, 2))
    plain = TimeSeriesEmbedding(3, 8, 12)
    torch.testing.assert_close(plain(x), plain.value_proj(x) + sinusoidal_table(12, 8)[:10])


@pytest.mark.parametrize("probabilistic", [False, True])
def test_head_shapes_and_losses(probabilistic):
    torch.manual_seed(0)
    h = torch.randn(5, 16)
    one_shot = TSRegressionHead(16, n_targets=2, horizon=4, mode="one_shot", probabilistic=probabilistic)
    autoregressive = TSRegressionHead(16, n_targets=2, horizon=4, mode="autoregressive", probabilistic=probabilistic)
    k = 2 if probabilistic else 1
    forecast = one_shot(h)
    assert forecast.params.shape == (5, 4, 2, k) and autoregressive(h).params.shape == (5, 1, 2, k)
    y = torch.randn(5, 4, 2)
    if probabilistic:
        expected = gaussian_nll(forecast.mean, forecast.log_var, y).mean(dim=(1, 2))
        torch.testing.assert_close(forecast.scale, torch.exp(0.5 * forecast.params[..., 1]))
    else:
        expected = (forecast.params[..., 0] - y).pow(2).mean(dim=(1, 2))
        with pytest.raises(ValueError, match="point forecast"):
            forecast.log_var
    torch.testing.assert_close(forecast.loss(y), expected)
    with pytest.raises(ValueError, match="targets: expected shape"):
        forecast.loss(y[:, :1])


def test_roll_autoregressive_feeds_each_mean_back_with_the_matching_calendar():
    x = torch.tensor([[[1.0], [2.0], [4.0]]])  # (1, T_in=3, F=1)
    calendar = torch.arange(6, dtype=torch.float32).view(1, 6, 1)  # rows r-2 .. r+3
    seen = []

    def step(window, cal):  # next = last / 2 + calendar of the window's last row
        seen.append((window.clone(), cal.clone()))
        return TSForecast((window[:, -1:] / 2 + cal[:, -1:]).unsqueeze(-1))  # (1, 1, 1, 1)

    out = roll_autoregressive(step, x, horizon=3, calendar=calendar)
    # 4/2 + 2 = 4; 4/2 + 3 = 5; 5/2 + 4 = 6.5
    assert out.params.shape == (1, 3, 1, 1) and out.mean.flatten().tolist() == [4.0, 5.0, 6.5]
    assert seen[2][0].flatten().tolist() == [4.0, 4.0, 5.0]  # the window after two fed-back means
    assert seen[2][1].flatten().tolist() == [2.0, 3.0, 4.0]  # calendar rows r .. r+2
    with pytest.raises(ValueError, match="one-step forecast of all 1 input columns"):
        roll_autoregressive(lambda w, c: TSForecast(torch.zeros(1, 2, 1, 1)), x, horizon=2)


# ----------------------------------------------------------------------------------------------
# The generic core


def tiny_core(seed=0) -> HierarchicalCore:
    torch.manual_seed(seed)
    core = HierarchicalCore(TINY.h, TINY.l, h_positions=4, l_positions=8, H_cycles=2, L_cycles=2)
    with torch.no_grad():
        core.film.gamma.weight.normal_(0.0, 0.3)
        core.film.beta.weight.normal_(0.0, 0.3)
    return core


def core_inputs(core, seed=2):
    g = torch.Generator().manual_seed(seed)
    return core.initial_carry(3, 4, 8, "cpu"), torch.randn(3, 4, 16, generator=g), torch.randn(3, 8, 24, generator=g)


def test_core_segment_has_the_one_step_gradient():
    core = tiny_core()
    carry, x_h, x_l = core_inputs(core)

    def grads(z_h, z_l):
        core.zero_grad()
        (z_h.square().sum() + z_l.sum()).backward()
        return [p.grad.clone() for p in core.parameters()]

    new_carry, z_h, z_l = core.segment(carry, x_h, x_l)
    assert not new_carry.z_H.requires_grad and torch.equal(new_carry.z_L, z_l.detach())
    one_step = grads(z_h, z_l)

    def schedule(track_all):  # cycle 0: L, L, H; cycle 1: L, (L, H on the graph)
        with torch.set_grad_enabled(track_all):
            zh, zl = carry.z_H, carry.z_L
            zl = core.l_update(zl, x_l, core.summary(zh))
            zl = core.l_update(zl, x_l, core.summary(zh))
            zh = core.h_update(zh, x_h)
            zl = core.l_update(zl, x_l, core.summary(zh))
        zl = core.l_update(zl, x_l, core.summary(zh))
        return core.h_update(zh, x_h), zl

    manual_h, manual_l = schedule(track_all=False)
    torch.testing.assert_close(manual_h, z_h, rtol=0, atol=0)
    torch.testing.assert_close(manual_l, z_l, rtol=0, atol=0)
    for a, b in zip(one_step, grads(manual_h, manual_l)):
        torch.testing.assert_close(a, b)
    full = grads(*schedule(track_all=True))  # backprop through every update differs
    assert any(not torch.allclose(a, b) for a, b in zip(one_step, full))


HRM_TINY = HRMConfig(
    h=ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=24),
    l=ModuleConfig(n_layers=2, d_model=24, n_heads=2, ffn_dim=16),
    daily_features=5, minute_features=3, daily_window=12, minutes_per_day=20, H_cycles=2, L_cycles=3,
)


def test_core_runs_the_same_loop_as_hrmnet():
    torch.manual_seed(0)
    net = HRMNet(HRM_TINY)
    with torch.no_grad():
        net.film.gamma.weight.normal_(0.0, 0.1)
        net.film.beta.weight.normal_(0.0, 0.1)
    cfg = HRM_TINY
    core = HierarchicalCore(cfg.h, cfg.l, cfg.daily_window, cfg.minutes_per_day, cfg.H_cycles, cfg.L_cycles,
                            cfg.rope_base, cfg.norm_eps)
    core.load_state_dict({k: v for k, v in net.state_dict().items() if k in core.state_dict()})
    g = torch.Generator().manual_seed(3)
    x_daily, x_minute = torch.randn(2, 12, 5, generator=g), torch.randn(2, 20, 3, generator=g)
    carry = net.initial_carry(2, 12, 20, "cpu")
    torch.testing.assert_close(core.initial_carry(2, 12, 20, "cpu").z_H, carry.z_H, rtol=0, atol=0)
    for _ in range(2):  # two segments, carry threaded through
        net_carry, _ = net.forward_segment(carry, x_daily, x_minute)
        core_carry, _, _ = core.segment(carry, *net.embed_inputs(x_daily, x_minute))
        torch.testing.assert_close(core_carry.z_H, net_carry.z_H, rtol=0, atol=0)
        torch.testing.assert_close(core_carry.z_L, net_carry.z_L, rtol=0, atol=0)
        carry = net_carry


def test_core_l_is_causal_and_h_never_reads_l():
    core = tiny_core()
    carry, x_h, x_l = core_inputs(core)
    _, z_h, z_l = core.segment(carry, x_h, x_l)
    x_l2 = x_l.clone()
    x_l2[:, -1] += 5.0
    _, z_h2, z_l2 = core.segment(carry, x_h, x_l2)
    torch.testing.assert_close(z_l2[:, :-1], z_l[:, :-1], rtol=0, atol=0)
    assert not torch.allclose(z_l2[:, -1], z_l[:, -1])
    torch.testing.assert_close(z_h2, z_h, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# TimeSeriesHRM: halting and modes


def test_rollout_stops_each_window_at_its_own_halting_segment():
    model = build()
    x, cal = window_inputs(TINY, batch=8)
    cal = cal[:, : TINY.t_in]
    with torch.no_grad():
        rollout = model.rollout(x, cal)
        assert rollout.steps.min() >= 1 and rollout.steps.max() <= TINY.max_segments
        assert len(set(rollout.steps.tolist())) > 1  # the Q-head halts windows at different segments
        carry = model.initial_carry(8, "cpu", torch.float32)
        per_segment = []
        for _ in range(TINY.max_segments):
            carry, out = model.forward_segment(carry, x, cal)
            per_segment.append(out.forecast.params)
        for i, s in enumerate(rollout.steps.tolist()):
            torch.testing.assert_close(rollout.output.forecast.params[i], per_segment[s - 1][i])
        # halting_q is exactly the q of the next segment, from H alone
        carry = model.initial_carry(8, "cpu", torch.float32)
        q_halt, q_continue = model.halting_q(carry, x, cal)
        _, out = model.forward_segment(carry, x, cal)
        torch.testing.assert_close(q_halt, out.q_halt, rtol=0, atol=0)
        torch.testing.assert_close(q_continue, out.q_continue, rtol=0, atol=0)
        always_max = TimeSeriesHRM(dataclasses.replace(TINY, eval_halting="max"))
        always_max.load_state_dict(model.state_dict())
        assert always_max.rollout(x, cal).steps.tolist() == [TINY.max_segments] * 8


@pytest.mark.parametrize("probabilistic", [False, True])
def test_autoregressive_and_one_shot_agree_on_t_out_1(probabilistic):
    cfg = dataclasses.replace(TINY, probabilistic=probabilistic)
    one_shot = build(cfg)
    autoregressive = TimeSeriesHRM(dataclasses.replace(cfg, head_mode="autoregressive"))
    autoregressive.load_state_dict(one_shot.state_dict())
    x, cal = window_inputs(cfg)
    with torch.no_grad():
        a, b = one_shot(x, cal), autoregressive(x, cal)
    assert a.params.shape == b.params.shape == (6, 1, 2, 2 if probabilistic else 1)
    torch.testing.assert_close(a.params, b.params, rtol=0, atol=0)
    # a longer autoregressive horizon is the one-step model applied to windows fed its own means
    longer = TimeSeriesHRM(dataclasses.replace(cfg, head_mode="autoregressive", t_out=3))
    longer.load_state_dict(one_shot.state_dict())
    x3, cal3 = window_inputs(longer.cfg)
    with torch.no_grad():
        rolled = longer(x3, cal3)
        first = one_shot(x3, cal3[:, : cfg.t_in + 1])
        second = one_shot(torch.cat((x3[:, 1:], first.mean), dim=1), cal3[:, 1 : cfg.t_in + 2])
    assert rolled.params.shape == (6, 3, 2, 2 if probabilistic else 1)
    torch.testing.assert_close(rolled.params[:, :1], first.params)
    torch.testing.assert_close(rolled.params[:, 1:2], second.params)


def test_config_rules_are_checked():
    with pytest.raises(ConfigError, match="patch_len: expected a divisor of t_in=8"):
        TimeSeriesHRM(dataclasses.replace(TINY, patch_len=3))
    with pytest.raises(ConfigError, match="needs n_targets == n_features=2"):
        TimeSeriesHRM(dataclasses.replace(TINY, head_mode="autoregressive", n_targets=1))
    with pytest.raises(ConfigError, match="h.n_heads"):
        TimeSeriesHRM(dataclasses.replace(TINY, h=ModuleConfig(1, 12, 4, 16)))
    with pytest.raises(ConfigError, match="max_segments: expected int > 0"):
        TimeSeriesHRM(dataclasses.replace(TINY, max_segments=0))
    model = build()
    with pytest.raises(ValueError, match=r"x: expected \(B, 8, 2\)"):
        model(torch.zeros(2, 7, 2), torch.zeros(2, 9, 3))


# ----------------------------------------------------------------------------------------------
# Training


def tiny_batch(cfg, batch=8, seed=5):
    x, cal = window_inputs(cfg, batch, seed)
    y = torch.randn(batch, cfg.t_out, cfg.n_targets, generator=torch.Generator().manual_seed(seed + 1))
    return TSBatch(x, y, cal)


@pytest.mark.parametrize("device", DEVICES)
def test_train_step_moves_model_and_batch_to_one_device_and_dtype_and_is_reproducible(device):
    def run():
        model = build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        before = [p.detach().clone() for p in model.parameters()]
        g = torch.Generator().manual_seed(0)
        stats = [ts_train_step(model, tiny_batch(TINY), optimizer, device=device, dtype=torch.float64, generator=g)
                 for _ in range(2)]
        return model, before, stats

    model, before, stats = run()
    params = list(model.parameters())
    assert {p.dtype for p in params} == {torch.float64} and {p.device.type for p in params} == {device}
    assert all(not torch.equal(p.cpu().double(), b.double()) for p, b in zip(params, before) if p.requires_grad)
    for s in stats:
        assert math.isfinite(s.loss) and math.isfinite(s.q_loss) and 1.0 <= s.segments <= TINY.max_segments
    again, _, stats_again = run()
    assert stats_again == stats
    for p, q in zip(again.parameters(), params):
        assert torch.equal(p, q)


def ar2_series(n: int, phi1: float, phi2: float, seed: int) -> np.ndarray:
    """y_t = phi1 y_{t-1} + phi2 y_{t-2} + e_t, e_t ~ N(0, 1), after a 200-step burn-in."""
    e = np.random.default_rng(seed).normal(size=n + 200)
    y = np.zeros(n + 200)
    for t in range(2, n + 200):
        y[t] = phi1 * y[t - 1] + phi2 * y[t - 2] + e[t]
    return y[200:]


def ar2_oracle(y: np.ndarray, origins: np.ndarray, horizon: int, phi1: float, phi2: float) -> np.ndarray:
    """Conditional means E[y_{r+k} | y_{<=r}] for k = 1..horizon: (N, horizon)."""
    prev, last = y[origins - 1], y[origins]
    out = []
    for _ in range(horizon):
        prev, last = last, phi1 * last + phi2 * prev
        out.append(last)
    return np.stack(out, axis=1)


def test_learns_a_noisy_ar2_and_beats_the_naive_forecast_out_of_sample():
    phi1, phi2, n, train_rows, t_in, t_out = 1.6, -0.9, 1600, 1200, 16, 3  # oscillating, period ~11 rows
    y = ar2_series(n, phi1, phi2, seed=0)
    ds = TimeSeriesWindows(y, t_in, t_out, train_rows)
    train, test = ds.target_range(0, train_rows), ds.target_range(train_rows, n)
    cfg = TimeSeriesHRMConfig(
        n_features=1, n_targets=1, t_in=t_in, t_out=t_out, patch_len=4, h=ModuleConfig(1, 16, 2, 16),
        l=ModuleConfig(1, 16, 2, 16), H_cycles=1, L_cycles=2, max_segments=2, probabilistic=True,
    )
    torch.manual_seed(0)
    model = TimeSeriesHRM(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    n_steps = 150
    for i in range(n_steps):
        for group in optimizer.param_groups:  # cosine decay from 5e-3
            group["lr"] = 5e-3 * 0.5 * (1.0 + math.cos(math.pi * i / n_steps))
        ts_train_step(model, ds.batch(train[torch.randint(len(train), (64,), generator=g)]), optimizer, generator=g)
    model.eval()
    batch = ds.batch(test)
    with torch.no_grad():
        forecast = model(batch.x)
    truth = ds.denormalise(batch.y)[..., 0].numpy()  # (N, 3) series units
    model_mse = ((ds.denormalise(forecast.mean)[..., 0].numpy() - truth) ** 2).mean(axis=0)
    naive_mse = ((y[ds.origins[test].numpy(), None] - truth) ** 2).mean(axis=0)
    oracle_mse = ((ar2_oracle(y, ds.origins[test].numpy(), t_out, phi1, phi2) - truth) ** 2).mean(axis=0)
    print(f"AR(2) test MSE by horizon: model {model_mse.round(2)}, naive {naive_mse.round(2)}, "
          f"oracle {oracle_mse.round(2)}")
    assert (model_mse < naive_mse).all() and model_mse.mean() < 0.5 * naive_mse.mean()
    assert model_mse.mean() < 2.0 * oracle_mse.mean()
    # the predictive distribution is informative and roughly calibrated
    assert forecast.loss(batch.y).mean().item() < NLL_UNINFORMED - 0.5
    coverage = ((batch.y - forecast.mean).abs() < 1.96 * forecast.scale).float().mean().item()
    assert 0.8 < coverage < 0.99
