"""AdamW and its learning-rate schedule for the HRM trainer.

AdamW with weight decay on weight matrices only (not on norm gains; the network has no biases) and the loss
weighting's parameters, if any, without decay. Learning rate per batch: linear warmup over
``train.warmup_steps`` batches, then cosine decay to 0 at the last batch of ``train.epochs``; every segment
of a batch steps at the batch's rate.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lab_v10.src.config import TrainConfig
from lab_v10.src.options.hrm_net import PARAM_GROUPS, HRMNet


def head_parameter_names(net: HRMNet) -> set[str]:
    """Names of the parameters of the task and Q heads (hrm_net.PARAM_GROUPS['heads'])."""
    return {n for n, _ in net.named_parameters() if n.split(".")[0] in PARAM_GROUPS["heads"]}


def trunk_parameters(net: HRMNet) -> list[nn.Parameter]:
    """Every parameter outside the heads: the shared trunk on which GradNorm measures gradient norms."""
    heads = head_parameter_names(net)
    return [p for n, p in net.named_parameters() if n not in heads]


def make_optimizer(net: HRMNet, weighting: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``net`` (decay on weight matrices only) and ``weighting``'s parameters (no decay)."""
    decay = [p for p in net.parameters() if p.ndim >= 2]  # weight matrices
    no_decay = [p for p in net.parameters() if p.ndim < 2]  # norm gains (the net has no biases)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    weighting_params = list(weighting.parameters())
    if weighting_params:
        groups.append({"params": weighting_params, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(warmup: int, total: int):
    """LR multiplier per batch index b: (b + 1) / warmup during warmup, then cosine from 1 to 0 at ``total``."""

    def factor(b: int) -> float:
        if b < warmup:
            return (b + 1) / warmup
        progress = min(1.0, (b - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
