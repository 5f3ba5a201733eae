"""HRMNet: shapes, one-step gradient, flat memory, causality, padding, streaming pieces, presets."""
from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from lab_v10.src.config import HRMConfig, ModuleConfig, load_config
from lab_v10.src.errors import ConfigError
from lab_v10.src.options.act_halting import gaussian_nll, minute_bce
from lab_v10.src.options.hrm_net import PARAM_GROUPS, HRMCarry, HRMNet
from lab_v10.src.options.param_budget import param_counts

TINY = HRMConfig(
    h=ModuleConfig(n_layers=2, d_model=32, n_heads=4, ffn_dim=48),
    l=ModuleConfig(n_layers=2, d_model=48, n_heads=4, ffn_dim=40),
    daily_features=5,
    minute_features=3,
    daily_window=12,
    minutes_per_day=20,
    H_cycles=2,
    L_cycles=2,
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_inputs(cfg, batch=3, t_h=None, t_l=None, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    t_h, t_l = t_h or cfg.daily_window, t_l or cfg.minutes_per_day
    x_daily = torch.randn(batch, t_h, cfg.daily_features, generator=g)
    x_minute = torch.randn(batch, t_l, cfg.minute_features, generator=g)
    return x_daily.to(device), x_minute.to(device)


def build(cfg=TINY, seed=0, device="cpu", trained_q=True):
    """A net whose zero-initialised FiLM and Q-head are made non-zero, as after some training."""
    torch.manual_seed(seed)
    net = HRMNet(cfg).to(device)
    if trained_q:
        with torch.no_grad():
            for w in (net.film.gamma.weight, net.film.beta.weight, net.q_head.weight):
                w.normal_(0.0, 0.05)
    return net


def run(net, x_daily, x_minute, mask=None, segments=1):
    carry = net.initial_carry(x_daily.shape[0], x_daily.shape[1], x_minute.shape[1], x_daily.device)
    for _ in range(segments):
        carry, out = net.forward_segment(carry, x_daily, x_minute, mask)
    return carry, out


def all_heads_loss(out):
    g = torch.Generator().manual_seed(99)
    y_a = torch.randn(out.mu.shape, generator=g).to(out.mu.device)
    y_b = (torch.rand(out.logits_b.shape, generator=g) < 0.5).float().to(out.mu.device)
    q_t = torch.rand(out.q_halt.shape, generator=g).to(out.mu.device)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    return (gaussian_nll(out.mu, out.log_var, y_a).mean() + minute_bce(out.logits_b, y_b).mean()
            + bce(out.q_halt, q_t) + bce(out.q_continue, 1 - q_t))


# ----------------------------------------------------------------------------------------------
# Shapes and bookkeeping


@pytest.mark.parametrize("device", DEVICES)
def test_segment_shapes_dtypes_and_detached_carry(device):
    net = build(device=device)
    x_daily, x_minute = make_inputs(TINY, batch=3, t_l=17, device=device)
    carry = net.initial_carry(3, 12, 17, device)
    assert carry.z_H.shape == (3, 12, 32) and carry.z_L.shape == (3, 17, 48)
    assert carry.z_H.device.type == device
    new_carry, out = net.forward_segment(carry, x_daily, x_minute)
    assert new_carry.z_H.shape == (3, 12, 32) and new_carry.z_L.shape == (3, 17, 48)
    assert not new_carry.z_H.requires_grad and not new_carry.z_L.requires_grad
    for name, shape in [("mu", (3,)), ("log_var", (3,)), ("logits_b", (3, 17)), ("q_halt", (3,)), ("q_continue", (3,))]:
        value = getattr(out, name)
        assert value.shape == shape and value.dtype == torch.float32 and torch.isfinite(value).all()
        assert value.requires_grad


def test_initial_carry_is_the_buffers_and_reset_restores_them():
    net = build()
    carry = net.initial_carry(2, 12, 20, "cpu", torch.float64)
    assert carry.z_H.dtype == torch.float64
    assert torch.equal(carry.z_H[1, 5], net.h_init.double()) and torch.equal(carry.z_L[0, 19], net.l_init.double())
    assert not any(p is net.h_init or p is net.l_init for p in net.parameters())
    assert {"h_init", "l_init"} <= set(net.state_dict())
    x_daily, x_minute = make_inputs(TINY, batch=2)
    moved, _ = net.forward_segment(net.initial_carry(2, 12, 20, "cpu"), x_daily, x_minute)
    reset = net.reset_carry(moved, torch.tensor([True, False]))
    assert torch.equal(reset.z_H[0], net.h_init.expand(12, -1)) and torch.equal(reset.z_L[1], moved.z_L[1])


@pytest.mark.parametrize("options", [{}, {"film": False, "symbol_embedding": True, "n_symbols": 4}])
def test_param_groups_cover_every_parameter_once(options):
    net = HRMNet(dataclasses.replace(TINY, **options))
    counts = net.param_counts()
    assert counts["total"] == sum(p.numel() for p in net.parameters())
    assert sum(counts[g] for g in PARAM_GROUPS) == counts["total"]
    grouped = [name for names in PARAM_GROUPS.values() for name in names]
    assert len(grouped) == len(set(grouped))
    assert {name for name, child in net.named_children() if any(True for _ in child.parameters())} <= set(grouped)
    assert (counts["FiLM H->L"] == 0) == ("film" in options)


def test_q_head_starts_tied_so_an_untrained_model_continues():
    net = build(trained_q=False)
    _, out = run(net, *make_inputs(TINY))
    assert torch.equal(out.q_halt, out.q_continue)


@pytest.mark.parametrize(
    "module, key, message",
    [
        (ModuleConfig(2, 30, 4, 8), "h", "hrm.h.n_heads: expected a divisor of hrm.h.d_model=30, got 4"),
        (ModuleConfig(2, 36, 12, 8), "l", "hrm.l.n_heads: expected an even head width"),
    ],
)
def test_bad_head_layout_names_the_key(module, key, message):
    with pytest.raises(ConfigError, match=message):
        HRMNet(dataclasses.replace(TINY, **{key: module}))


# ----------------------------------------------------------------------------------------------
# One-step gradient and memory


@pytest.mark.parametrize("fused_qkv", [True, False])
def test_every_parameter_gets_a_finite_nonzero_gradient(fused_qkv):
    cfg = dataclasses.replace(TINY, h=dataclasses.replace(TINY.h, fused_qkv=fused_qkv),
                              l=dataclasses.replace(TINY.l, fused_qkv=fused_qkv))
    net = build(cfg, trained_q=False)  # zero FiLM and Q-head weights as initialised must still learn
    _, out = run(net, *make_inputs(cfg))
    all_heads_loss(out).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("h_cycles", [2, 3])
def test_gradient_equals_the_final_updates_on_detached_inputs(h_cycles):
    cfg = dataclasses.replace(TINY, H_cycles=h_cycles)
    net = build(cfg)
    x_daily, x_minute = make_inputs(cfg)
    carry = net.initial_carry(3, 12, 20, "cpu")
    _, out = net.forward_segment(carry, x_daily, x_minute)
    all_heads_loss(out).backward()
    expected = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()

    # The same segment by hand: on the graph only the H-update that produces the last cycle's FiLM context,
    # the last L-update and the last H-update, each H-update from a detached z_H.
    with torch.no_grad():
        x_h, x_l = net.embed_inputs(x_daily, x_minute)
        z_h, z_l = carry.z_H, carry.z_L
        for c in range(h_cycles - 1):
            h = net.summary(z_h)
            for _ in range(cfg.L_cycles):
                z_l = net.l_update(z_l, x_l, h)
            if c < h_cycles - 2:
                z_h = net.h_update(z_h, x_h)
    x_h, x_l = net.embed_inputs(x_daily, x_minute)
    z_h = net.h_update(z_h.detach(), x_h)
    h = net.summary(z_h)
    with torch.no_grad():
        for _ in range(cfg.L_cycles - 1):
            z_l = net.l_update(z_l, x_l, h)
    z_l = net.l_update(z_l.detach(), x_l, h)
    z_h = net.h_update(z_h.detach(), x_h)
    all_heads_loss(net.readout(z_h, z_l)).backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-6, rtol=1e-5, msg=name)


def saved_activation_bytes(cfg):
    """Bytes autograd saves for backward in one segment (deterministic, device independent)."""
    net = build(cfg)
    x_daily, x_minute = make_inputs(cfg, batch=2)
    carry = net.initial_carry(2, cfg.daily_window, cfg.minutes_per_day, "cpu")
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net.forward_segment(carry, x_daily, x_minute)
    return total


def test_memory_does_not_grow_with_cycles():
    sizes = {(h, l): saved_activation_bytes(dataclasses.replace(TINY, H_cycles=h, L_cycles=l))
             for h, l in [(2, 1), (2, 2), (3, 4), (5, 1)]}
    assert len(set(sizes.values())) == 1, sizes
    # one H-update fewer on the graph: with one H cycle the FiLM context is the detached carry
    assert saved_activation_bytes(dataclasses.replace(TINY, H_cycles=1, L_cycles=1)) < sizes[(2, 1)]


# ----------------------------------------------------------------------------------------------
# Causality and padding


@pytest.mark.parametrize("m", [0, 7, 18])
def test_later_minutes_never_change_earlier_head_b_outputs(m):
    net = build()
    x_daily, x_minute = make_inputs(TINY)
    perturbed = x_minute.clone()
    perturbed[:, m + 1 :] += 5.0 * torch.randn_like(perturbed[:, m + 1 :])
    with torch.no_grad():
        _, out = run(net, x_daily, x_minute, segments=2)
        _, out_p = run(net, x_daily, perturbed, segments=2)
    torch.testing.assert_close(out_p.logits_b[:, : m + 1], out.logits_b[:, : m + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(out_p.logits_b[:, m + 1 :], out.logits_b[:, m + 1 :])


def test_minutes_never_change_head_a_or_the_q_head():
    net = build()
    x_daily, x_minute = make_inputs(TINY)
    with torch.no_grad():
        _, out = run(net, x_daily, x_minute, segments=2)
        _, out_p = run(net, x_daily, x_minute + 3.0 * torch.randn_like(x_minute), segments=2)
        _, out_d = run(net, x_daily + 1.0, x_minute, segments=2)
    for name in ("mu", "log_var", "q_halt", "q_continue"):
        assert torch.equal(getattr(out_p, name), getattr(out, name)), name
        assert not torch.allclose(getattr(out_d, name), getattr(out, name)), name  # daily rows do matter


def test_padding_at_the_end_never_reaches_real_minutes_even_when_nan():
    net = build()
    x_daily, x_minute = make_inputs(TINY, t_l=20)
    real = 13
    mask = torch.arange(20).expand(3, 20) < real
    padded = x_minute.clone()
    padded[:, real:] = float("nan")
    with torch.no_grad():
        _, out_padded = run(net, x_daily, padded, mask, segments=2)
        _, out_short = run(net, x_daily, x_minute[:, :real], segments=2)
    torch.testing.assert_close(out_padded.logits_b[:, :real], out_short.logits_b, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out_padded.logits_b).all()
    assert torch.equal(out_padded.mu, out_short.mu)


def test_padding_in_the_middle_is_rejected():
    net = build()
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[:, 5] = False
    with pytest.raises(ValueError, match="padded minutes must come after"):
        run(net, *make_inputs(TINY), mask)


# ----------------------------------------------------------------------------------------------
# Options: FiLM off, symbol embedding


def test_without_film_head_b_never_sees_the_daily_rows():
    net = build(dataclasses.replace(TINY, film=False), trained_q=False)
    assert net.film is None
    x_daily, x_minute = make_inputs(TINY)
    with torch.no_grad():
        _, out = run(net, x_daily, x_minute, segments=2)
        _, out_d = run(net, x_daily + 1.0, x_minute, segments=2)
    assert torch.equal(out_d.logits_b, out.logits_b)
    assert not torch.allclose(out_d.mu, out.mu)  # Head A still reads them


@pytest.mark.parametrize(
    "options",
    [
        {"film": False},
        {"symbol_embedding": True, "n_symbols": 5},
        {"film": False, "symbol_embedding": True, "n_symbols": 2},
    ],
)
def test_closed_form_count_equals_torch_with_the_options(options):
    cfg = dataclasses.replace(TINY, **options)
    assert param_counts(cfg) == HRMNet(cfg).param_counts()


def embedded(seed=0):
    """A net with a symbol embedding of 4 symbols, its zero-initialised vectors made non-zero."""
    net = build(dataclasses.replace(TINY, symbol_embedding=True, n_symbols=4), seed=seed)
    with torch.no_grad():
        assert torch.equal(net.symbol_embedding.weight, torch.zeros(4, TINY.h.d_model))  # every symbol starts alike
        net.symbol_embedding.weight.normal_(0.0, 0.5)
    return net


def test_symbol_ids_change_the_outputs_and_only_their_own_samples():
    net = embedded()
    x_daily, x_minute = make_inputs(TINY)
    x_daily, x_minute = x_daily[:1].expand(3, -1, -1), x_minute[:1].expand(3, -1, -1)  # one sample, three times
    with torch.no_grad():
        carry = net.initial_carry(3, 12, 20, "cpu")
        _, out = net.forward_segment(carry, x_daily, x_minute, symbol=torch.tensor([0, 1, 0]))
    for name in ("mu", "logits_b", "q_halt"):
        value = getattr(out, name)
        assert torch.equal(value[0], value[2]), name
        assert not torch.allclose(value[0], value[1]), name


def test_symbol_ids_are_required_and_checked():
    net = embedded()
    x_daily, x_minute = make_inputs(TINY)
    with pytest.raises(ValueError, match="^symbol: hrm.symbol_embedding is true"):
        run(net, x_daily, x_minute)
    carry = net.initial_carry(3, 12, 20, "cpu")
    with pytest.raises(ValueError, match=r"^symbol: expected ids in 0\.\.3"):
        net.forward_segment(carry, x_daily, x_minute, symbol=torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"^symbol: expected shape \(3,\) int64"):
        net.forward_segment(carry, x_daily, x_minute, symbol=torch.tensor([0, 1, 1], dtype=torch.int32))
    with pytest.raises(ConfigError, match="^hrm.n_symbols: expected int >= 1 with hrm.symbol_embedding true"):
        HRMNet(dataclasses.replace(TINY, symbol_embedding=True))
    with torch.no_grad():  # without the embedding the ids are ignored
        _, out = run(build(), x_daily, x_minute)
        _, out_ids = build().forward_segment(carry, x_daily, x_minute, symbol=torch.tensor([0, 4, 1]))
    assert torch.equal(out.logits_b, out_ids.logits_b)


# ----------------------------------------------------------------------------------------------
# Pieces for the trainer and the streamer


def test_halting_q_and_h_summaries_match_the_segment():
    net = build()
    x_daily, x_minute = make_inputs(TINY)
    carry = net.initial_carry(3, 12, 20, "cpu")
    with torch.no_grad():
        new_carry, out = net.forward_segment(carry, x_daily, x_minute)
        q_halt, q_continue = net.halting_q(carry, x_daily)
        _, z_h = net.h_summaries(carry.z_H, net.daily_proj(x_daily))
    assert torch.equal(q_halt, out.q_halt) and torch.equal(q_continue, out.q_continue)
    assert torch.equal(z_h, new_carry.z_H)


def test_streaming_one_minute_at_a_time_with_a_kv_cache_matches_the_segment():
    """The building blocks a streamer uses reproduce a whole segment's Head-B logits minute by minute."""
    net = build()
    x_daily, x_minute = make_inputs(TINY, batch=2)
    t_l = x_minute.shape[1]
    carry = net.initial_carry(2, 12, t_l, "cpu")
    with torch.no_grad():
        _, out = net.forward_segment(carry, x_daily, x_minute)
        x_h, x_l = net.embed_inputs(x_daily, x_minute)
        summaries, _ = net.h_summaries(carry.z_H, x_h)  # computed once per day, before the open
        cos, sin = net.l_module.rotary()
        updates = [(c, j) for c in range(TINY.H_cycles) for j in range(TINY.L_cycles)]
        cache = {(u, i): ([], []) for u in range(len(updates)) for i in range(TINY.l.n_layers)}
        logits = []
        for m in range(t_l):
            pos = torch.tensor([m])
            z = carry.z_L[:, m : m + 1]  # (B, 1, d_L)
            for u, (c, _) in enumerate(updates):
                x = net.film(z + x_l[:, m : m + 1], summaries[c])
                for i, block in enumerate(net.l_module.layers):
                    q, k, v = block.attn.qkv(x, cos, sin, pos)
                    keys, values = cache[(u, i)]
                    keys.append(k)
                    values.append(v)
                    a = block.attn.attend(q, torch.cat(keys, 1), torch.cat(values, 1), causal=True)
                    x = block.norm1(x + a)
                    x = block.norm2(x + block.mlp(x))
                z = x
            logits.append(net.head_b(net.norm_l(z)).squeeze(-1))
    torch.testing.assert_close(torch.cat(logits, 1), out.logits_b, atol=1e-5, rtol=1e-5)


def test_explicit_minute_positions_match_the_default():
    net = build()
    x_daily, x_minute = make_inputs(TINY)
    with torch.no_grad():
        x_h, x_l = net.embed_inputs(x_daily, x_minute)
        h = net.summary(net.initial_carry(3, 12, 20, "cpu").z_H)
        z_l = net.initial_carry(3, 12, 20, "cpu").z_L
        assert torch.equal(net.l_update(z_l, x_l, h), net.l_update(z_l, x_l, h, torch.arange(20).expand(3, 20)))


def test_bf16_autocast_on_cpu_gives_finite_fp32_outputs():
    net = build()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, out = run(net, *make_inputs(TINY))
    assert out.logits_b.dtype == torch.float32 and torch.isfinite(out.logits_b).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_segment_matches_cpu():
    cpu_net = build()
    cuda_net = build().to("cuda")
    x_daily, x_minute = make_inputs(TINY)
    with torch.no_grad():
        _, out_cpu = run(cpu_net, x_daily, x_minute, segments=2)
        _, out_gpu = run(cuda_net, x_daily.cuda(), x_minute.cuda(), segments=2)
    torch.testing.assert_close(out_gpu.logits_b.cpu(), out_cpu.logits_b, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Presets


def test_small_preset_forward_backward_well_under_a_second(repo_root):
    cfg = load_config(repo_root / "config" / "small.yaml").hrm
    net = HRMNet(cfg)
    x_daily, x_minute = make_inputs(cfg, batch=2)
    timings = []
    for _ in range(2):
        net.zero_grad()
        start = time.perf_counter()
        _, out = run(net, x_daily, x_minute)
        all_heads_loss(out).backward()
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_27m_preset_one_segment_forward_backward_smoke(repo_root):
    """The full widths of HRM-27M, shortened sequences (8 daily rows, 16 minutes), batch 1."""
    cfg = load_config(repo_root / "config" / "default_hrm27m.yaml").hrm
    net = HRMNet(dataclasses.replace(cfg, daily_window=8, minutes_per_day=16))
    assert net.param_counts()["core total"] == 26_821_632
    x_daily, x_minute = make_inputs(net.cfg, batch=1)
    carry, out = run(net, x_daily, x_minute)
    assert isinstance(carry, HRMCarry) and out.logits_b.shape == (1, 16)
    all_heads_loss(out).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.slow
def test_27m_preset_full_length_segment_forward_backward(repo_root):
    cfg = load_config(repo_root / "config" / "default_hrm27m.yaml").hrm
    net = HRMNet(cfg)
    x_daily, x_minute = make_inputs(cfg, batch=1)
    _, out = run(net, x_daily, x_minute)
    all_heads_loss(out).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in net.parameters())
