"""Generic two-level recurrent core: HRMNet's segment loop with the inputs left to the caller.

Choice. A slow H stack over a *coarse* view and a fast, causal L stack over the *fine* sequence, with
FiLM from H into L and no path from L to H -- exactly the loop of HRMNet (options/hrm_net.py), where the
coarse view is the daily rows and the fine one the day's minutes. A caller supplies the two injections:

    x_H (B, T_H, d_H)   coarse tokens (TimeSeriesHRM: patches of ``patch_len`` window rows; with
                        patch_len = 1 H and L read the same window, as in the original HRM)
    x_L (B, T_L, d_L)   fine tokens (TimeSeriesHRM: one per window row)

Segment (``segment``, hrm_net.one_step_segment): the loop of HRM27M.md, "Segment semantics" (cycles,
one-step gradient, detached carry). H attention is bidirectional, so its last token reads the whole coarse
view; L attention is causal, so position t depends on fine tokens <= t only.

Halting. ``act_loop`` runs segments with the ACT rules of options/act_halting.py (Q-head decides, capped
at ``max_segments``, exploration in training) for any ``step(carry) -> (carry, output)`` whose output
dataclass has ``q_halt`` and ``q_continue`` (B,); halted samples stop changing. Because nothing flows
from L to H, ``run_h`` gives the H state a segment ends in without running L: a cheap, exact bootstrap
for Q-learning targets.

The blocks are HRMNet's own: ``ReasoningModule`` (layers.TransformerBlock stacks with RoPE), ``FiLM``,
``HRMCarry`` and ``ACTRollout``; h_init and l_init are fixed truncated-normal buffers (std 1), as there.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

from lab_v10.src.config import ModuleConfig
from lab_v10.src.options.layers import RMSNorm, trunc_normal_
from lab_v10.src.options.act_halting import ACTRollout, EvalMode, freeze_halted, halting_decision, sample_min_steps
from lab_v10.src.options.hrm_net import FiLM, HRMCarry, ReasoningModule, one_step_segment

Output = TypeVar("Output")


class HierarchicalCore(nn.Module):
    """H (bidirectional, over T_H <= h_positions tokens) and L (causal, over T_L <= l_positions), FiLM H->L."""

    def __init__(
        self,
        h: ModuleConfig,
        l: ModuleConfig,  # noqa: E741 (the L-module, named as in HRMConfig)
        h_positions: int,
        l_positions: int,
        H_cycles: int,
        L_cycles: int,
        rope_base: float = 10000.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.H_cycles, self.L_cycles = H_cycles, L_cycles
        self.h_module = ReasoningModule(h, h_positions, rope_base, norm_eps, causal=False)
        self.l_module = ReasoningModule(l, l_positions, rope_base, norm_eps, causal=True)
        self.film = FiLM(h.d_model, l.d_model)
        self.norm_h = RMSNorm(h.d_model, norm_eps)
        self.register_buffer("h_init", trunc_normal_(torch.empty(h.d_model), std=1.0))
        self.register_buffer("l_init", trunc_normal_(torch.empty(l.d_model), std=1.0))

    def initial_carry(
        self, batch_size: int, t_h: int, t_l: int, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> HRMCarry:
        """h_init at each of t_h positions (B, T_H, d_H) and l_init at each of t_l (B, T_L, d_L)."""
        z_h = self.h_init.to(device=device, dtype=dtype).expand(batch_size, t_h, -1).clone()  # (B, T_H, d_H)
        z_l = self.l_init.to(device=device, dtype=dtype).expand(batch_size, t_l, -1).clone()  # (B, T_L, d_L)
        return HRMCarry(z_h, z_l)

    def summary(self, z_h: torch.Tensor) -> torch.Tensor:
        """h = norm_H(z_H[:, -1]): (B, T_H, d_H) -> (B, d_H)."""
        return self.norm_h(z_h[:, -1])

    def h_update(self, z_h: torch.Tensor, x_h: torch.Tensor) -> torch.Tensor:
        """z_H <- H(z_H + x_H): (B, T_H, d_H) -> (B, T_H, d_H)."""
        return self.h_module(z_h + x_h)

    def l_update(self, z_l: torch.Tensor, x_l: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z_L <- L(FiLM(z_L + x_L; h)): (B, T_L, d_L), h (B, d_H) -> (B, T_L, d_L)."""
        return self.l_module(self.film(z_l + x_l, h))

    def run_h(self, z_h: torch.Tensor, x_h: torch.Tensor) -> torch.Tensor:
        """The H state a segment from ``z_h`` ends in (H_cycles H-updates; L never feeds H): (B, T_H, d_H)."""
        for _ in range(self.H_cycles):
            z_h = self.h_update(z_h, x_h)
        return z_h

    def segment(
        self, carry: HRMCarry, x_h: torch.Tensor, x_l: torch.Tensor
    ) -> tuple[HRMCarry, torch.Tensor, torch.Tensor]:
        """One segment (module docstring) -> (detached new carry, z_H (B, T_H, d_H), z_L (B, T_L, d_L)).

        z_H and z_L carry the one-step gradient: only the last L- and the last H-update are on the graph.
        """
        z_h, z_l = one_step_segment(self, carry, x_h, x_l, self.H_cycles, self.L_cycles)
        return HRMCarry(z_h.detach(), z_l.detach()), z_h, z_l


def act_loop(
    step: Callable[[HRMCarry], tuple[HRMCarry, Output]],
    carry: HRMCarry,
    max_segments: int,
    *,
    training: bool = False,
    exploration_prob: float = 0.0,
    eval_mode: EvalMode = "learned",
    generator: torch.Generator | None = None,
) -> ACTRollout:
    """Run ``step`` from ``carry`` until every sample halts (act_halting.halting_decision).

    ``step(carry) -> (new carry, output)``, output a dataclass of (B, ...) tensors with q_halt and
    q_continue (B,). Returns ACTRollout(output at each sample's halting segment, steps (B,) long, final
    carry). Halted samples keep their carry and output. For evaluation and inference (wrap it in
    torch.no_grad); training backpropagates segment by segment to keep memory flat.
    """
    b, device = carry.z_H.shape[0], carry.z_H.device
    steps = torch.zeros(b, dtype=torch.long, device=device)  # (B,) segments run, 1-based after the first
    halted = torch.zeros(b, dtype=torch.bool, device=device)  # (B,)
    min_steps = sample_min_steps(b, max_segments, exploration_prob, generator, device) if training else None
    output = None
    for _ in range(max_segments):
        new_carry, new_output = step(carry)
        carry = freeze_halted(halted, carry, new_carry)
        output = new_output if output is None else freeze_halted(halted, output, new_output)
        steps = steps + (~halted).long()
        halted = halted | halting_decision(
            new_output.q_halt, new_output.q_continue, steps, max_segments,
            training=training, min_steps=min_steps, eval_mode=eval_mode,
        )
        if bool(halted.all()):
            break
    return ACTRollout(output, steps, carry)
