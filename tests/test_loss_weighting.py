"""Task weighting on a toy two-task regression: each method moves the weights the documented way."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lab_v10.src.options.loss_weighting import (
    UNCERTAINTY_MAX_LOG_VAR,
    FixedWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    make_loss_weighting,
)

BOTH = torch.tensor([True, True])


class Toy(nn.Module):
    """Shared layer (4 -> 16, tanh) and one linear head per task: x (N, 4) -> (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 16)
        self.heads = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(torch.tanh(self.shared(x)))


def toy_data(noise: tuple[float, float], n: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, 4); y (N, 2): the same kind of linear signal per task plus Gaussian noise of std ``noise``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    signal = x @ torch.randn(4, 2, generator=g) * 0.5
    return x, signal + torch.randn(n, 2, generator=g) * torch.tensor(noise)


def train_toy(kind: str, noise: tuple[float, float], steps: int = 400):
    """Full-batch Adam on both tasks' MSE under the weighting; returns (weighting, final losses (2,), log)."""
    torch.manual_seed(0)
    x, y = toy_data(noise)
    model = Toy()
    weighting = make_loss_weighting(kind, 2, shared=list(model.shared.parameters()), alpha=1.5)
    opt = torch.optim.Adam(list(model.parameters()) + list(weighting.parameters()), lr=0.03)
    history = []
    for _ in range(steps):
        losses = ((model(x) - y) ** 2).mean(0)  # (2,)
        opt.zero_grad()
        weighting(losses, BOTH).backward()
        opt.step()
        weighting.after_step()
        history.append(weighting.weights())
    with torch.no_grad():
        final = ((model(x) - y) ** 2).mean(0)
    return weighting, final, torch.stack(history)


def test_uncertainty_lowers_the_noisier_task_weight_towards_inverse_loss():
    weighting, final, history = train_toy("uncertainty", noise=(0.05, 2.0))
    assert torch.allclose(history[0], torch.ones(2), atol=0.05)  # exp(-s) starts at 1
    w_clean, w_noisy = weighting.weights().tolist()
    assert w_noisy < 0.5 and w_clean > 10.0  # the noisier task's weight exp(-s) went down, the clean one's up
    # stationary point of exp(-s) L + s is s = log L: the noisy task (loss ~ noise variance 4) is there
    assert final[1].item() == pytest.approx(4.0, rel=0.2)
    assert weighting.log_vars[1].item() == pytest.approx(math.log(final[1].item()), abs=0.1)


def test_uncertainty_weight_stays_bounded_when_a_loss_is_negative():
    # exp(-s) L + s has no minimum for L <= 0 (a Gaussian NLL with a learned variance can go there): without
    # the clamp s falls without end; with it, s stops at -UNCERTAINTY_MAX_LOG_VAR and the weight stays finite
    weighting = UncertaintyWeighting(2)
    opt = torch.optim.Adam(weighting.parameters(), lr=0.5)
    losses = torch.tensor([-0.5, 0.7])
    for _ in range(200):
        opt.zero_grad()
        weighting(losses, BOTH).backward()
        opt.step()
        weighting.after_step()
    assert weighting.log_vars[0].item() == pytest.approx(-UNCERTAINTY_MAX_LOG_VAR)
    assert weighting.weights()[0].item() == pytest.approx(math.exp(UNCERTAINTY_MAX_LOG_VAR))
    assert weighting.log_vars[1].item() == pytest.approx(math.log(0.7), abs=0.05)  # a positive loss: s = log L


def test_gradnorm_raises_the_slower_task_weight_and_keeps_the_sum():
    # task 0 is noise-free and trains towards 0 loss; task 1's loss stalls at its noise: higher L(t)/L(0)
    weighting, final, history = train_toy("gradnorm", noise=(0.0, 1.0))
    assert torch.allclose(history.sum(1), torch.full((len(history),), 2.0), atol=1e-5)  # renormalised to K
    ratio = final / weighting.initial_losses  # inverse training rates at the end
    assert ratio[1] > 2 * ratio[0]  # task 1 really is the slower one
    w_fast, w_slow = weighting.weights().tolist()
    assert w_slow > 1.2 and w_fast < 0.8


def test_gradnorm_weight_gradient_matches_the_papers_double_backward():
    torch.manual_seed(1)
    x, y = toy_data((0.1, 0.5), n=64)
    model = Toy()
    shared = list(model.shared.parameters())
    weighting = GradNormWeighting(2, shared, alpha=1.5)
    with torch.no_grad():
        weighting.task_weights.copy_(torch.tensor([0.7, 1.3]))
        weighting.initial_losses.copy_(torch.tensor([2.0, 1.5]))
    losses = ((model(x) - y) ** 2).mean(0)
    weighting(losses, BOTH).backward(retain_graph=True)
    ours = weighting.task_weights.grad.clone()
    expected_model_grad = torch.autograd.grad(
        (torch.tensor([0.7, 1.3]) * losses).sum(), model.shared.weight, retain_graph=True
    )[0]

    # the paper: G_k = ||grad_W (w_k L_k)|| with a second-order graph; target held constant
    w = weighting.task_weights.detach().clone().requires_grad_(True)
    g = []
    for k in range(2):
        grads = torch.autograd.grad(w[k] * losses[k], shared, retain_graph=True, create_graph=True)
        g.append(torch.sqrt(sum(gr.pow(2).sum() for gr in grads)))
    g = torch.stack(g)
    ratio = losses.detach() / torch.tensor([2.0, 1.5])
    target = (g.mean() * (ratio / ratio.mean()) ** 1.5).detach()
    (paper,) = torch.autograd.grad((g - target).abs().sum(), w)
    assert torch.allclose(ours, paper, rtol=1e-5, atol=1e-7)
    assert ours.abs().min() > 0  # both weights are actually pushed
    # the model gradient is sum_k w_k dL_k: weights detached there, and L_grad reaches only the weights
    assert torch.allclose(model.shared.weight.grad, expected_model_grad, rtol=1e-5, atol=1e-7)


def test_absent_task_neither_contributes_nor_drifts():
    losses = torch.tensor([2.0, 5.0], requires_grad=True)
    present = torch.tensor([True, False])
    fixed = FixedWeighting(2)
    assert fixed(losses, present).item() == 2.0
    assert fixed(losses, BOTH).item() == 7.0

    unc = UncertaintyWeighting(2)
    unc(losses, present).backward()
    assert unc.log_vars.grad[1].item() == 0.0 and unc.log_vars.grad[0].item() == pytest.approx(-1.0)  # 1 - L

    torch.manual_seed(0)
    x, y = toy_data((0.1, 0.1), n=32)
    model = Toy()
    gn = GradNormWeighting(2, list(model.shared.parameters()), alpha=1.5)
    toy_losses = ((model(x) - y) ** 2).mean(0)
    gn(toy_losses, present).backward(retain_graph=True)
    assert math.isnan(gn.initial_losses[1].item())  # never seen: no reference loss yet
    assert gn.initial_losses[0].item() == pytest.approx(toy_losses[0].item())
    assert gn.task_weights.grad is None  # a single present task has nothing to balance
    gn(toy_losses, BOTH).backward()
    assert gn.initial_losses[1].item() == pytest.approx(toy_losses[1].item())  # recorded on first sight
    assert torch.isfinite(gn.task_weights.grad).all()


def test_make_loss_weighting_rejects_unknown_kind_and_empty_shared():
    with pytest.raises(ValueError, match="loss weighting"):
        make_loss_weighting("pcgrad", 2)
    with pytest.raises(ValueError, match="shared parameter"):
        make_loss_weighting("gradnorm", 2, shared=[])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        UncertaintyWeighting(2)(torch.ones(3), torch.ones(3, dtype=torch.bool))
