"""Multi-task loss weighting for the HRM heads: fixed, uncertainty (Kendall & Gal) or GradNorm (Chen et al.).

Every method is an ``nn.Module`` mapping the per-task losses of one optimizer step to the scalar to
back-propagate::

    combined = weighting(losses, present)       # losses (K,) float, present (K,) bool -> scalar
    combined.backward(); optimizer.step(); weighting.after_step()

``present`` marks the tasks that have labels in the batch (e.g. Head B on a daily-only data set has
none). An absent task contributes nothing: no loss, no regulariser and no GradNorm statistics, so a
weight cannot drift while its task is silent. The learnable state (``parameters()``) is meant for the
same optimizer as the network, without weight decay; ``weights()`` returns the current task weights
(K,) for logging.

Methods
    fixed        ``sum_k L_k``: every weight is 1.
    uncertainty  ``sum_k exp(-s_k) L_k + s_k`` with a learnable log-variance ``s_k`` per task (init 0),
                 Kendall, Gal & Cipolla (2018) in the common ``s = log sigma^2`` form. At the optimum
                 ``s_k = log L_k``, so the weight ``exp(-s_k) = 1 / L_k`` falls for the noisier task.
                 The method assumes positive losses: while ``L_k <= 0`` (a Gaussian NLL with a learned
                 variance gets there once the head fits its training samples) there is no optimum and
                 ``s_k`` keeps falling, so ``after_step`` clamps ``s`` to ``+-UNCERTAINTY_MAX_LOG_VAR``:
                 no weight leaves ``[exp(-c), exp(c)]``. The clamp never acts while every loss stays
                 between ``exp(-c)`` and ``exp(c)`` nats.
    gradnorm     ``sum_k w_k L_k`` with weights ``w_k`` (init 1) trained by GradNorm, Chen et al. (2018):
                 ``G_k = ||grad_W (w_k L_k)||_2`` on the shared parameters W, ``r_k = Lt_k / mean(Lt)``
                 with the inverse training rate ``Lt_k = L_k(t) / L_k(0)`` (``L_k(0)``: the task's first
                 loss), and ``L_grad = sum_k |G_k - mean(G) r_k^alpha|`` with the target held constant.
                 ``L_grad`` reaches only ``w`` (the task losses enter ``combined`` with ``w`` detached);
                 after each optimizer step ``after_step`` clamps ``w`` at ``GRADNORM_MIN_WEIGHT`` and
                 renormalises it to sum to K. A task that trains slower (larger ``r_k``) gets a larger
                 weight. Because ``G_k = w_k ||grad_W L_k||``
                 (w_k > 0), ``L_grad`` is written with the gradient norm ``||grad_W L_k||`` computed
                 without a second-order graph; its gradient in ``w`` equals the double-backward one of
                 the paper's formulation. Losses are floored at ``GRADNORM_LOSS_FLOOR`` in the ratio:
                 the training rate assumes positive losses, and a loss at or below zero (a Gaussian NLL
                 can be negative) counts as trained as far as the floor.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

WeightingKind = Literal["uncertainty", "gradnorm", "fixed"]
GRADNORM_LOSS_FLOOR = 1e-8  # smallest loss used in GradNorm's loss ratio L(t) / L(0)
GRADNORM_MIN_WEIGHT = 1e-3  # weights are clamped here before renormalising, so they stay positive
UNCERTAINTY_MAX_LOG_VAR = 10.0  # |s_k| bound: uncertainty weights stay within [exp(-10), exp(10)] = [4.5e-5, 2.2e4]


class LossWeighting(nn.Module, abc.ABC):
    """Base class: K tasks, ``forward(losses, present) -> scalar``, ``weights() -> (K,)``."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks: expected >= 1, got {n_tasks}")
        self.n_tasks = n_tasks

    def _check(self, losses: torch.Tensor, present: torch.Tensor) -> None:
        if losses.shape != (self.n_tasks,) or present.shape != (self.n_tasks,):
            raise ValueError(
                f"expected losses and present of shape ({self.n_tasks},), got {tuple(losses.shape)} and "
                f"{tuple(present.shape)}"
            )

    @abc.abstractmethod
    def weights(self) -> torch.Tensor:
        """(K,) current task weights, detached."""

    @abc.abstractmethod
    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """losses (K,), present (K,) bool -> the scalar to back-propagate."""

    def after_step(self) -> None:
        """Hook run after each optimizer step (GradNorm renormalises here); nothing for the others."""


class FixedWeighting(LossWeighting):
    """Sum of the present tasks' losses (every weight 1)."""

    def weights(self) -> torch.Tensor:
        return torch.ones(self.n_tasks)

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        self._check(losses, present)
        return torch.where(present, losses, 0.0).sum()


class UncertaintyWeighting(LossWeighting):
    """``sum_k exp(-s_k) L_k + s_k`` over present tasks; ``log_vars`` s (K,) learnable, init 0."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self.log_vars = nn.Parameter(torch.zeros(n_tasks))

    def weights(self) -> torch.Tensor:
        return torch.exp(-self.log_vars.detach().float())

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        self._check(losses, present)
        s = self.log_vars.float()  # (K,)
        per_task = torch.exp(-s) * losses.float() + s  # (K,)
        return torch.where(present, per_task, 0.0).sum()

    @torch.no_grad()
    def after_step(self) -> None:
        """Clamp the log-variances to +-UNCERTAINTY_MAX_LOG_VAR (a task loss <= 0 would drive s to -inf)."""
        self.log_vars.clamp_(-UNCERTAINTY_MAX_LOG_VAR, UNCERTAINTY_MAX_LOG_VAR)


class GradNormWeighting(LossWeighting):
    """GradNorm weights ``task_weights`` w (K,), init 1, sum K; gradient norms on ``shared`` parameters.

    ``initial_losses`` (K,) holds each task's first present loss (NaN until seen); it is a buffer, so it
    travels in ``state_dict`` and a resumed run keeps the same reference.
    """

    def __init__(self, n_tasks: int, shared: Sequence[nn.Parameter], alpha: float) -> None:
        super().__init__(n_tasks)
        self.shared = [p for p in shared if p.requires_grad]  # a plain list: not registered, not saved
        if not self.shared:
            raise ValueError("GradNorm needs at least one shared parameter that requires grad")
        self.alpha = alpha
        self.task_weights = nn.Parameter(torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.full((n_tasks,), float("nan")))

    def weights(self) -> torch.Tensor:
        return self.task_weights.detach().float().clone()

    def shared_grad_norms(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(K,) ``||grad_W L_k||_2`` over the shared parameters (0 for absent tasks); the graph is retained."""
        norms = []
        for k in range(self.n_tasks):
            if not bool(present[k]) or not losses[k].requires_grad:
                norms.append(losses.new_zeros(()))
                continue
            grads = torch.autograd.grad(losses[k], self.shared, retain_graph=True, allow_unused=True)
            squares = [g.float().pow(2).sum() for g in grads if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares else losses.new_zeros(()))
        return torch.stack(norms).float()  # (K,)

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        self._check(losses, present)
        losses = losses.float()
        with torch.no_grad():
            first = present & torch.isnan(self.initial_losses)
            self.initial_losses.copy_(torch.where(first, losses.detach(), self.initial_losses))
        w = self.task_weights.float()  # (K,)
        task_term = torch.where(present, w.detach() * losses, 0.0).sum()
        if int(present.sum()) < 2:
            return task_term  # one task alone has nothing to balance against
        grad_norms = self.shared_grad_norms(losses, present)  # (K,) constant in w
        g = w * grad_norms  # (K,) G_k = ||grad_W (w_k L_k)||
        with torch.no_grad():
            initial = torch.where(present, self.initial_losses, 1.0).clamp_min(GRADNORM_LOSS_FLOOR)
            ratio = losses.detach().clamp_min(GRADNORM_LOSS_FLOOR) / initial  # (K,) Lt_k
            rel_rate = ratio / ratio[present].mean()  # (K,) r_k
            target = g.detach()[present].mean() * rel_rate.pow(self.alpha)  # (K,) held constant
            target = torch.where(present, target, g.detach())  # absent: |G - G| = 0, zero gradient
        grad_loss = (g - target).abs().sum()
        return task_term + grad_loss

    def after_step(self) -> None:
        with torch.no_grad():
            w = self.task_weights.clamp_min(GRADNORM_MIN_WEIGHT)
            self.task_weights.copy_(w * (self.n_tasks / w.sum()))


def make_loss_weighting(
    kind: WeightingKind, n_tasks: int, *, shared: Sequence[nn.Parameter] = (), alpha: float = 1.5
) -> LossWeighting:
    """Build a weighting by name; ``shared`` and ``alpha`` are used by GradNorm only."""
    if kind == "fixed":
        return FixedWeighting(n_tasks)
    if kind == "uncertainty":
        return UncertaintyWeighting(n_tasks)
    if kind == "gradnorm":
        return GradNormWeighting(n_tasks, shared, alpha)
    raise ValueError(f"loss weighting: expected 'uncertainty', 'gradnorm' or 'fixed', got {kind!r}")
