"""Regression head for time-series forecasts: one-shot multi-horizon or autoregressive, point or Gaussian.

Units. Forecasts are at least fp32, in the standardised units of the targets (dataset/windows.py; map
means back with ``TimeSeriesWindows.denormalise`` and scales with ``* TimeSeriesWindows.target_std``).

Modes (``TSRegressionHead``, reading one summary vector h (B, d) of a window that ends at origin r)
    one_shot        one projection gives all ``horizon`` steps r+1 .. r+horizon at once: (B, horizon, F_y, K).
    autoregressive  the projection gives step r+1 only: (B, 1, F_y, K). ``roll_autoregressive`` reaches
                    r+horizon by appending each forecast mean to the window and forecasting again, so it
                    needs the targets to be every input column in order (F_y == F).
    probabilistic   K = 2: (mean, log variance) of a Gaussian per step and target; else K = 1 (mean).
With ``horizon == 1`` the two modes have the same weights and give the same forecast.

``TSForecast.loss(y)`` is the per-window training loss (B,): the mean squared error (K = 1) or the mean
Gaussian NLL in nats (K = 2, act_halting.gaussian_nll) over steps and targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from lab_v10.src.options.layers import lecun_linear
from lab_v10.src.options.act_halting import gaussian_nll

HeadMode = Literal["one_shot", "autoregressive"]


@dataclass
class TSForecast:
    """params (B, S, F_y, K): S steps after the origin, F_y targets, K = 1 (mean) or 2 (mean, log variance)."""

    params: torch.Tensor

    @property
    def probabilistic(self) -> bool:
        return self.params.shape[-1] == 2

    @property
    def mean(self) -> torch.Tensor:  # (B, S, F_y)
        return self.params[..., 0]

    @property
    def log_var(self) -> torch.Tensor:  # (B, S, F_y)
        if not self.probabilistic:
            raise ValueError("log_var: this is a point forecast (K = 1); build the head with probabilistic=True")
        return self.params[..., 1]

    @property
    def scale(self) -> torch.Tensor:  # (B, S, F_y) standard deviation
        return torch.exp(0.5 * self.log_var)

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, S, F_y) -> (B,) mean Gaussian NLL (probabilistic) or mean squared error over steps and targets."""
        if y.shape != self.mean.shape:
            raise ValueError(f"targets: expected shape {tuple(self.mean.shape)}, got {tuple(y.shape)}")
        per_value = gaussian_nll(self.mean, self.log_var, y) if self.probabilistic else (y - self.mean).pow(2)
        return per_value.flatten(1).mean(1)


class TSRegressionHead(nn.Module):
    """h (B, d) -> TSForecast with ``steps`` = horizon (one_shot) or 1 (autoregressive); see the module docstring."""

    def __init__(self, d_model: int, n_targets: int, horizon: int, mode: HeadMode, probabilistic: bool) -> None:
        super().__init__()
        if mode not in ("one_shot", "autoregressive"):
            raise ValueError(f"mode: expected 'one_shot' or 'autoregressive', got {mode!r}")
        self.mode, self.horizon, self.n_targets = mode, horizon, n_targets
        self.steps = horizon if mode == "one_shot" else 1
        self.n_params = 2 if probabilistic else 1
        self.proj = lecun_linear(d_model, self.steps * n_targets * self.n_params)

    def forward(self, h: torch.Tensor) -> TSForecast:  # (B, d) -> params (B, steps, F_y, K)
        out = self.proj(h)  # (B, steps * F_y * K)
        out = out.to(torch.promote_types(out.dtype, torch.float32))  # fp16/bf16 -> fp32; fp32/fp64 kept
        return TSForecast(out.view(h.shape[0], self.steps, self.n_targets, self.n_params))


def roll_autoregressive(
    step: Callable[[torch.Tensor, torch.Tensor | None], TSForecast],
    x: torch.Tensor,
    horizon: int,
    calendar: torch.Tensor | None = None,
) -> TSForecast:
    """Forecast ``horizon`` steps by feeding each one-step forecast mean back as the newest input row.

    step: (window (B, T_in, F), window calendar (B, T_in, C) or None) -> one-step TSForecast (B, 1, F, K).
    x (B, T_in, F): rows r-T_in+1 .. r. calendar (B, T_in + horizon, C): rows r-T_in+1 .. r+horizon (the
    dates of future rows are known). Step k reads rows r-T_in+1+k .. r+k, the last k of them forecasts.
    Returns TSForecast (B, horizon, F, K) for rows r+1 .. r+horizon.
    """
    t_in = x.shape[1]
    if calendar is not None and calendar.shape[1] < t_in + horizon - 1:
        raise ValueError(f"calendar: expected at least {t_in + horizon - 1} rows, got {calendar.shape[1]}")
    window, params = x, []
    for k in range(horizon):
        forecast = step(window, None if calendar is None else calendar[:, k:k + t_in])
        if forecast.mean.shape[1:] != (1, x.shape[2]):
            raise ValueError(f"step: expected a one-step forecast of all {x.shape[2]} input columns, "
                             f"got means of shape {tuple(forecast.mean.shape)}")
        params.append(forecast.params)  # (B, 1, F, K)
        window = torch.cat((window[:, 1:], forecast.mean.to(window.dtype)), dim=1)  # (B, T_in, F)
    return TSForecast(torch.cat(params, dim=1))  # (B, horizon, F, K)
