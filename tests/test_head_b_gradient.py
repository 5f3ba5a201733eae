"""Head B trains the daily context (issue 19): through FiLM its loss reaches the H-module and daily_proj.

The H-update that produces the last cycle's FiLM context keeps its graph (hrm_net.one_step_segment with
``context_grad``); these tests measure Head B's gradient on the H side of the CPU preset (config/small.yaml)
and show it is exactly zero where the context is detached: the old path, one H cycle, or ``hrm.film: false``.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lab_v10.src.config import HRMConfig, load_config
from lab_v10.src.options.act_halting import gaussian_nll, minute_bce
from lab_v10.src.options.hrm_net import HRMNet, one_step_segment

BATCH, T_L = 2, 30  # samples; minutes (a shortened day keeps the test fast)


@pytest.fixture(scope="module")
def small(repo_root) -> HRMConfig:
    return load_config(repo_root / "config" / "small.yaml").hrm


def make_net(cfg: HRMConfig, film_weights: bool = True) -> HRMNet:
    """The network from seed 0; ``film_weights`` makes FiLM's zero-initialised weights non-zero, as after training."""
    torch.manual_seed(0)
    net = HRMNet(cfg)
    if film_weights and net.film is not None:
        with torch.no_grad():
            net.film.gamma.weight.normal_(0.0, 0.1)
            net.film.beta.weight.normal_(0.0, 0.1)
    if net.symbol_embedding is not None:
        with torch.no_grad():
            net.symbol_embedding.weight.normal_(0.0, 0.5)
    return net


def segment(net: HRMNet, context_grad: bool | None = None):
    """One segment on fixed random inputs -> (outputs, minute labels (B, T_L), yA (B,)). ``context_grad``
    None: ``forward_segment`` itself; True/False: ``one_step_segment`` with it, then the heads."""
    cfg = net.cfg
    g = torch.Generator().manual_seed(1)
    x_daily = torch.randn(BATCH, cfg.daily_window, cfg.daily_features, generator=g)
    x_minute = torch.randn(BATCH, T_L, cfg.minute_features, generator=g)
    y_b = (torch.rand(BATCH, T_L, generator=g) < 0.5).float()
    y_a = torch.randn(BATCH, generator=g)
    symbol = torch.tensor([0, 2]) if cfg.symbol_embedding else None
    carry = net.initial_carry(BATCH, cfg.daily_window, T_L, "cpu")
    if context_grad is None:
        _, out = net.forward_segment(carry, x_daily, x_minute, symbol=symbol)
    else:
        x_h, x_l = net.embed_inputs(x_daily, x_minute, symbol=symbol)
        z_h, z_l = one_step_segment(net, carry, x_h, x_l, cfg.H_cycles, cfg.L_cycles, context_grad=context_grad)
        out = net.readout(z_h, z_l)
    return out, y_b, y_a


def h_side(net: HRMNet) -> dict[str, torch.nn.Parameter]:
    """Every parameter of the H-module and the daily projection (and the symbol embedding, when on)."""
    names = ("h_module", "daily_proj", "symbol_embedding")
    return {n: p for n, p in net.named_parameters() if n.split(".")[0] in names}


def head_b_grads(net: HRMNet, context_grad: bool | None = None) -> dict[str, torch.Tensor]:
    """Gradient of Head B's mean minute log loss alone w.r.t. the H side (zeros where no path exists)."""
    out, y_b, _ = segment(net, context_grad)
    params = h_side(net)
    grads = torch.autograd.grad(minute_bce(out.logits_b, y_b).mean(), list(params.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}


@pytest.mark.parametrize("symbols", [False, True], ids=["single", "symbol-embedding"])
def test_head_b_loss_reaches_every_h_module_and_daily_proj_parameter(small, symbols):
    cfg = dataclasses.replace(small, symbol_embedding=symbols, n_symbols=3 if symbols else 0)
    grads = head_b_grads(make_net(cfg))
    assert any(n.startswith("h_module.") for n in grads) and "daily_proj.weight" in grads
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
        if name == "symbol_embedding.weight":
            assert g[[0, 2]].abs().sum(-1).gt(0).all() and g[1].abs().sum() == 0  # the rows of the samples' ids
        else:
            assert g.abs().sum() > 0, name


@pytest.mark.parametrize("case", ["detached context", "one H cycle", "film off"])
def test_head_b_gives_the_h_side_nothing_when_the_context_is_detached(small, case):
    """The path these tests check exists only through the context's graph: cut it and the gradient is 0."""
    if case == "detached context":  # the schedule before issue 19: the context H-update under no_grad
        grads = head_b_grads(make_net(small), context_grad=False)
    else:
        options = {"H_cycles": 1} if case == "one H cycle" else {"film": False}
        grads = head_b_grads(make_net(dataclasses.replace(small, **options)))
    for name, g in grads.items():
        assert torch.equal(g, torch.zeros_like(g)), name


def test_head_a_and_q_gradients_are_the_one_step_gradient_as_before(small):
    """Keeping the context's graph adds Head B's path only: Head A's and the Q-head's gradients are unchanged."""
    net = make_net(small)
    grads = []
    for context_grad in (True, False):
        out, _, y_a = segment(net, context_grad)
        loss = gaussian_nll(out.mu, out.log_var, y_a).mean() + out.q_halt.sum() - out.q_continue.sum()
        grads.append(torch.autograd.grad(loss, list(net.parameters()), allow_unused=True))
    for (name, _), kept, detached in zip(net.named_parameters(), *grads):
        assert (kept is None) == (detached is None), name
        if kept is not None:
            torch.testing.assert_close(kept, detached, rtol=0, atol=0, msg=name)


def test_from_initialisation_one_step_on_film_opens_the_path(small):
    """FiLM starts as the identity (zero weights), so Head B's H-side gradient starts at zero; FiLM's own
    gradient is non-zero, and after one step on it Head B's gradient reaches the H side."""
    net = make_net(small, film_weights=False)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in head_b_grads(net).values())
    out, y_b, _ = segment(net)
    film = [net.film.gamma.weight, net.film.beta.weight]
    film_grads = torch.autograd.grad(minute_bce(out.logits_b, y_b).mean(), film)
    assert all(g.abs().sum() > 0 for g in film_grads)
    with torch.no_grad():
        for w, g in zip(film, film_grads):
            w -= 0.1 * g  # one SGD step on FiLM
    assert all(g.abs().sum() > 0 for g in head_b_grads(net).values())
