"""HRM trainer: deep supervision over ACT segments, multi-task weighting, AdamW with warmup and cosine decay,
bf16 autocast, early stopping and atomic, resumable checkpoints.

Data. :class:`HRMTensors` holds N samples (days) as CPU tensors; batches are moved to the trainer's device.
yA is standardized (train-only scaler, applied by the caller); NaN labels are masked.

One batch (deep supervision, one optimizer step per segment; act_halting.py sketches the same loop)::

    carry = initial state; steps = 0; halted = False; min_steps = sample_min_steps(...)   # exploration
    for segment s = 1 .. max_segments:
        new_carry, out = net(carry, x_daily, x_minute, minute_mask)    # one-step gradient, carry detached
        active = ~halted                                               # samples that ran this segment
        losses over active samples -> backward -> clip -> AdamW step
        carry = freeze_halted(halted, carry, new_carry); halted |= halting_decision(..., training=True)
        stop when every sample has halted

Losses of a segment, over the active samples (fp32):
    head_a_nll  mean act_halting.gaussian_nll of yA over samples with a finite yA;
    head_b_bce  mean over days with at least one labelled minute of the day's mean minute log loss
                (act_halting.minute_bce); 0 with no gradient when no day has one (daily-only data);
    q           act_halting.q_learning_loss with targets from act_halting.q_learning_targets: halt target
                = halt_correctness of this segment, continue target bootstrapped from the next segment's
                Q values (HRMNet.halting_q on the new carry, no_grad) minus ``ponder_cost``. The ponder
                cost acts only through these targets (segment counts are discrete); the log reports it as
                ``ponder`` = the mean act_halting.ponder_cost charged per sample.
    total       = weighting([head_a_nll, head_b_bce], present) + q_loss_weight * q, with the weighting
                  from loss_weighting.py (``train.loss_weighting``); a task is present when the active
                  samples carry at least one label for it. GradNorm measures its gradient norms on the
                  shared trunk: every network parameter outside the heads (head_a, head_b, q_head). Under
                  the one-step gradient the only single layer both heads reach is norm_H's gain (Head B
                  through FiLM, whose weights start at zero), so its Head-B gradient is zero at the start.

Validation loss (early stopping): ``head_a_nll + head_b_bce``, un-weighted, each the mean over the whole
validation set (samples with a label for that head) of the sample's output at its halting segment under
``hrm_cfg.eval_halting`` (act_halting.act_rollout). The Q losses and the task weights are excluded, so the
criterion does not move when the weighting does. A lower value than the best so far is an improvement;
after ``patience`` epochs without one, training stops and the best weights are restored.

Per-head early stopping (``train.early_stopping: per_head``). The two validation terms are tracked apart:
``head_a_nll`` chooses ``best.pt`` (restored into ``net``: Head A's forecasts) and ``head_b_bce`` chooses
``best_head_b.pt`` (restored into ``head_b_net``: Head B's probabilities); training stops when neither has
improved for ``patience`` epochs. The heads share the trunk, so one set of weights cannot hold both best
epochs; the price is a second network at prediction. With ``joint``, ``head_b_net`` is ``net``.

Optimisation. AdamW (weight decay on weight matrices only, not on norm gains or biases; the weighting's
parameters without decay), learning rate per batch: linear warmup over ``warmup_steps`` batches, then
cosine decay to 0 at the last batch of ``epochs``; every segment steps at its batch's rate. bf16 autocast
on CPU and CUDA with fp32 master weights; gradient clipping of the network's global L2 norm.

Non-finite values. After the forward each term is checked (head_a_nll, head_b_bce, q, then the weighted
total), after the backward the gradient norm. A non-finite value raises :class:`NonFiniteLossError` naming
the epoch, batch, segment, term and (for the head terms) the offending training-sample indices; with
``skip_nonfinite`` the rest of the batch is skipped instead, no optimizer step is taken and
``skipped_steps`` counts it. A non-finite validation loss always raises (no early stopping on NaN).

Checkpoints (checkpoint.py) in ``out_dir``: ``last.pt`` after every epoch (for resuming), ``best.pt``
when the validation criterion improves and, per head, ``best_head_b.pt`` when Head B's does; each holds
model, optimizer, scheduler, loss-weighting state, RNG states, step, epoch, early-stopping state, the metric
history and both configs, is written atomically, never with non-finite weights, and loads with
``weights_only=True``. ``train_log.csv`` (one row per epoch:
losses per term, task weights, mean gradient norm, mean segments used, learning rate, validation losses)
is rewritten from that history after every epoch; TensorBoard scalars go to ``out_dir/tensorboard`` when
the ``tensorboard`` package is installed. Distributed training (hrm_ddp.py) writes all of these on rank 0
only (``writes_files``). ``fit(..., resume_from=last.pt)`` continues the run: on the same
machine it ends with exactly the weights of the uninterrupted run. The best checkpoint of the interrupted
run is expected beside the resumed file (``best.pt``, and ``best_head_b.pt`` per head, in the same folder) and
is copied into ``out_dir``.

Reproducibility. The trainer's randomness (epoch shuffles, exploration draws) comes from one CPU
``torch.Generator`` seeded with ``seed``; the network's initial weights are the caller's (seed torch before
building it). On CPU, the same seed gives identical weights and predictions; ``train.deterministic`` also
turns on ``torch.use_deterministic_algorithms`` (warn-only) during fit, which matters on CUDA.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lab_v10.src.config import HRMConfig, TrainConfig, config_to_dict
from lab_v10.src.errors import ConfigError
from lab_v10.src.options.act_halting import (
    ACTRollout,
    act_rollout,
    freeze_halted,
    gaussian_nll,
    halt_correctness,
    halting_decision,
    minute_bce,
    ponder_cost,
    q_learning_loss,
    q_learning_targets,
    sample_min_steps,
)
from lab_v10.src.options.checkpoint import (
    atomic_write,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from lab_v10.src.options.hrm_net import PARAM_GROUPS, HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.loss_weighting import LossWeighting, make_loss_weighting

TASKS = ("head_a_nll", "head_b_bce")  # the weighted tasks, in this order everywhere
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
HEAD_B_BEST_CHECKPOINT = "best_head_b.pt"  # per-head early stopping: the weights at Head B's best epoch
LOG_FILE = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"  # cuBLAS setting torch requires for deterministic matmuls


class NonFiniteLossError(RuntimeError):
    """A loss term or gradient became NaN or infinite; the message names where."""


# ----------------------------------------------------------------------------------------------
# Data and results


@dataclass
class HRMTensors:
    """N samples (days) as CPU tensors.

    x_daily (N, T_H, F_d) float32: standardized daily feature windows ending at day d-1.
    x_minute (N, T_L, F_m) float32: standardized minute features of day d, padded at the END.
    minute_mask (N, T_L) bool: True = real minute.
    y_a (N,) float32: standardized yA; NaN = no label (Head-A loss masked).
    y_b (N, T_L) float32 in {0, 1} or NaN (masked).
    """

    x_daily: Tensor
    x_minute: Tensor
    minute_mask: Tensor
    y_a: Tensor
    y_b: Tensor

    def __post_init__(self) -> None:
        n = self.x_daily.shape[0]
        for name, ndim in {"x_daily": 3, "x_minute": 3, "minute_mask": 2, "y_a": 1, "y_b": 2}.items():
            t = getattr(self, name)
            if t.dim() != ndim or t.shape[0] != n:
                raise ValueError(f"HRMTensors.{name}: expected {ndim} dims with N={n} rows, got {tuple(t.shape)}")
        t_l = self.x_minute.shape[1]
        if self.minute_mask.dtype != torch.bool:
            raise ValueError(f"HRMTensors.minute_mask: expected dtype bool, got {self.minute_mask.dtype}")
        if self.minute_mask.shape[1] != t_l or self.y_b.shape[1] != t_l:
            raise ValueError(
                f"HRMTensors: minute_mask {tuple(self.minute_mask.shape)} and y_b {tuple(self.y_b.shape)} must have "
                f"T_L={t_l} columns like x_minute"
            )
        for name in ("x_daily", "x_minute", "y_a", "y_b"):
            if getattr(self, name).dtype != torch.float32:
                raise ValueError(f"HRMTensors.{name}: expected dtype float32, got {getattr(self, name).dtype}")

    def __len__(self) -> int:
        return self.x_daily.shape[0]

    def subset(self, idx: Any) -> HRMTensors:
        """Rows ``idx`` (slice, index array/list/tensor or bool mask) of every tensor."""
        if not isinstance(idx, (slice, Tensor)):
            array = np.asarray(idx)
            idx = torch.as_tensor(array if array.size else array.astype(np.int64))  # [] is an empty index
        return HRMTensors(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))

    def to(self, device: torch.device | str) -> HRMTensors:
        """The same samples on ``device``."""
        return HRMTensors(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


@dataclass
class HRMPredictions:
    """Per-sample outputs at each sample's halting segment (eval halting).

    mu, log_var (N,) float32: Head A in standardized yA units; proba_b (N, T_L) float32: Head-B probability
    per minute, NaN where minute_mask is False; steps (N,) int64: segments ``net`` used (Head A);
    steps_b (N,) int64: segments ``head_b_net`` used (Head B; equal to steps under joint early stopping).
    """

    mu: np.ndarray
    log_var: np.ndarray
    proba_b: np.ndarray
    steps: np.ndarray
    steps_b: np.ndarray


@dataclass
class TrainSummary:
    """Result of :meth:`HRMTrainer.fit`; epochs and steps count the whole run, resumed parts included."""

    best_epoch: int  # 1-based epoch of best.pt: the lowest validation criterion
    best_val_loss: float  # nats at best_epoch: head_a_nll + head_b_bce (joint), head_a_nll (per_head)
    epochs_run: int
    steps: int  # optimizer steps taken (one per segment of a batch)
    skipped_steps: int  # batches cut short by a non-finite loss or gradient (skip_nonfinite)
    checkpoint_path: Path  # best.pt
    log_path: Path  # train_log.csv
    head_b_best_epoch: int | None  # per_head: 1-based epoch of best_head_b.pt (lowest head_b_bce); else None
    head_b_best_val: float | None  # per_head: validation head_b_bce (nats) at head_b_best_epoch; else None
    head_b_checkpoint_path: Path | None  # per_head: best_head_b.pt; else None


@dataclass
class _Progress:
    """Run bookkeeping stored in checkpoints (plain numbers, weights_only-safe)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    skipped_steps: int = 0
    best_val_loss: float = math.inf  # the criterion of best.pt (joint loss, or head_a_nll per head)
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement
    head_b_best_val: float = math.inf  # per_head only: head_b_bce of best_head_b.pt
    head_b_best_epoch: int = 0
    head_b_bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Helpers


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' or 'cuda:N' (ConfigError when CUDA is missing)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"train.device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"train.device: {name!r} requested but CUDA is not available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); use 'auto' or 'cpu'"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def per_sample_task_losses(out: HRMSegmentOutput, batch: HRMTensors) -> tuple[Tensor, Tensor]:
    """(losses (B, K) fp32 nats, labelled (B, K) bool) for K = TASKS.

    Head A: Gaussian NLL of yA (unlabelled rows use y = 0 so their gradient stays finite). Head B: the day's
    mean minute log loss over labelled minutes (finite y_b at a real minute), 0 for a day without one.
    """
    has_a = torch.isfinite(batch.y_a)  # (B,)
    nll = gaussian_nll(out.mu, out.log_var, torch.where(has_a, batch.y_a, 0.0))  # (B,)
    has_b = (torch.isfinite(batch.y_b) & batch.minute_mask).any(-1)  # (B,)
    bce = minute_bce(out.logits_b, batch.y_b, batch.minute_mask)  # (B,)
    return torch.stack([nll, bce], -1), torch.stack([has_a, has_b], -1)


def masked_sums(losses: Tensor, labelled: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per task, the sum of losses (B, K) and the count over labelled rows among ``rows`` (B,): (K,), (K,)."""
    use = labelled & rows.unsqueeze(-1)  # (B, K)
    return torch.where(use, losses, 0.0).sum(0), use.sum(0)


def warmup_cosine(warmup: int, total: int):
    """LR multiplier per batch index b: (b + 1) / warmup during warmup, then cosine from 1 to 0 at ``total``."""

    def factor(b: int) -> float:
        if b < warmup:
            return (b + 1) / warmup
        progress = min(1.0, (b - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def head_parameter_names(net: HRMNet) -> set[str]:
    """Names of the parameters of the task and Q heads (hrm_net.PARAM_GROUPS['heads'])."""
    return {n for n, _ in net.named_parameters() if n.split(".")[0] in PARAM_GROUPS["heads"]}


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """Turn on torch.use_deterministic_algorithms (warn-only) inside the block; restore the previous mode."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _tensorboard_writer(log_dir: Path):
    """A TensorBoard SummaryWriter, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


# ----------------------------------------------------------------------------------------------
# Trainer


class HRMTrainer:
    """Train an :class:`HRMNet` (module docstring); one ``fit`` per trainer.

    net: the network (moved to ``device``); hrm_cfg must equal ``net.cfg``. out_dir: the run folder for
    checkpoints and logs. seed: seeds the trainer's generator (shuffles, exploration). ``head_b_net``: the
    network whose Head B :meth:`predict` reads; ``net`` itself unless per-head early stopping restored a
    second one at the end of :meth:`fit` (assign one to predict from saved per-head weights).
    """

    def __init__(
        self,
        net: HRMNet,
        hrm_cfg: HRMConfig,
        train_cfg: TrainConfig,
        out_dir: Path,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if net.cfg != hrm_cfg:
            raise ValueError("hrm_cfg differs from the network's config (net.cfg); build the net from hrm_cfg")
        self.hrm_cfg, self.train_cfg = hrm_cfg, train_cfg
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.net = net.to(self.device)
        self.head_b_net = self.net
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        heads = head_parameter_names(net)
        trunk = [p for n, p in net.named_parameters() if n not in heads]
        self.weighting: LossWeighting = make_loss_weighting(
            train_cfg.loss_weighting, len(TASKS), shared=trunk, alpha=train_cfg.gradnorm_alpha
        ).to(self.device)
        decay = [p for p in net.parameters() if p.ndim >= 2]  # weight matrices
        no_decay = [p for p in net.parameters() if p.ndim < 2]  # norm gains (the net has no biases)
        groups = [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        weighting_params = list(self.weighting.parameters())
        if weighting_params:
            groups.append({"params": weighting_params, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.progress = _Progress()
        self._n_train = 0  # training samples of the fit (checked on resume)
        self._fitted = False
        self.writes_files = True  # checkpoints, train_log.csv, TensorBoard (distributed: rank 0 only)

    # ------------------------------------------------------------------------------------------
    # Public API

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / BEST_CHECKPOINT

    @property
    def head_b_best_checkpoint(self) -> Path:
        return self.out_dir / HEAD_B_BEST_CHECKPOINT

    @property
    def per_head(self) -> bool:
        """Whether each head early-stops on its own validation loss (``train.early_stopping: per_head``)."""
        return self.train_cfg.early_stopping == "per_head"

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_FILE

    def fit(self, train: HRMTensors, val: HRMTensors, resume_from: Path | None = None) -> TrainSummary:
        """Train with early stopping on ``val``; restore the best weights into ``self.net`` (and, per head, Head
        B's into ``self.head_b_net``); see module docstring."""
        if self._fitted:
            raise RuntimeError("HRMTrainer.fit runs once per trainer; build a new trainer (and resume_from) instead")
        self._fitted = True
        if len(train) == 0 or len(val) == 0:
            raise ValueError(f"fit needs training and validation samples, got {len(train)} and {len(val)}")
        cfg = self.train_cfg
        self._n_train = len(train)
        n_batches = math.ceil(len(train) / cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(cfg.warmup_steps, cfg.epochs * n_batches)
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_from is not None:
            self._resume(Path(resume_from), len(train))
        writer = _tensorboard_writer(self.out_dir / TENSORBOARD_DIR) if self.writes_files else None
        try:
            with deterministic_algorithms(cfg.deterministic, self.device):
                for epoch in range(self.progress.epoch + 1, cfg.epochs + 1):
                    if self._stopped():
                        break
                    self._run_epoch(train, val, epoch, writer)
        finally:
            if writer is not None:
                writer.close()
        self._restore_best()
        p = self.progress
        return TrainSummary(
            best_epoch=p.best_epoch,
            best_val_loss=p.best_val_loss,
            epochs_run=p.epoch,
            steps=p.step,
            skipped_steps=p.skipped_steps,
            checkpoint_path=self.best_checkpoint,
            log_path=self.log_path,
            head_b_best_epoch=p.head_b_best_epoch if self.per_head else None,
            head_b_best_val=p.head_b_best_val if self.per_head else None,
            head_b_checkpoint_path=self.head_b_best_checkpoint if self.per_head else None,
        )

    @torch.no_grad()
    def evaluate(self, data: HRMTensors, batch_size: int | None = None) -> dict[str, float]:
        """Validation metrics (nats): head_a_nll, head_b_bce (means over labelled samples, 0 without any),
        loss = their un-weighted sum, segments = mean segments used; outputs at eval halting."""
        if len(data) == 0:
            raise ValueError("evaluate needs at least one sample")
        sums = torch.zeros(len(TASKS), dtype=torch.float64)
        counts = torch.zeros(len(TASKS), dtype=torch.long)
        steps_total = 0
        for start, batch, rollout in self._rollouts(self.net, data, batch_size):
            losses, labelled = per_sample_task_losses(rollout.output, batch)  # (B, K), (B, K)
            bad = (labelled & ~torch.isfinite(losses)).any(-1)  # (B,)
            if bool(bad.any()):
                rows = (start + torch.nonzero(bad).flatten()).tolist()
                raise NonFiniteLossError(f"non-finite validation loss at validation samples {rows}")
            s, c = masked_sums(losses, labelled, torch.ones_like(bad))
            sums += s.double().cpu()
            counts += c.cpu()
            steps_total += int(rollout.steps.sum())
        means = (sums / counts.clamp_min(1)).tolist()
        metrics = dict(zip(TASKS, means))
        metrics["loss"] = sum(means)
        metrics["segments"] = steps_total / len(data)
        return metrics

    def predict(self, data: HRMTensors, batch_size: int | None = None) -> HRMPredictions:
        """Eval-mode outputs at each sample's halting segment (``hrm_cfg.eval_halting``): Head A from ``net``,
        Head B from ``head_b_net`` (one pass when they are the same network); see HRMPredictions."""
        pred = self.predict_network(self.net, data, batch_size)
        if self.head_b_net is self.net:
            return pred
        head_b = self.predict_network(self.head_b_net, data, batch_size)
        return dataclasses.replace(pred, proba_b=head_b.proba_b, steps_b=head_b.steps)

    @torch.no_grad()
    def predict_network(self, net: HRMNet, data: HRMTensors, batch_size: int | None = None) -> HRMPredictions:
        """Every output of the one network ``net`` (``self.net`` or ``self.head_b_net``), eval mode, at each
        sample's halting segment; ``steps_b`` equals ``steps``. For a caller that reads one head only."""
        if len(data) == 0:
            empty = np.zeros(0, dtype=np.float32)
            t_l = data.x_minute.shape[1]
            no_steps = np.zeros(0, np.int64)
            return HRMPredictions(empty, empty.copy(), np.zeros((0, t_l), np.float32), no_steps, no_steps.copy())
        mu, log_var, proba, steps = [], [], [], []
        for _, batch, rollout in self._rollouts(net, data, batch_size):
            out = rollout.output
            mu.append(out.mu.float().cpu())
            log_var.append(out.log_var.float().cpu())
            p = torch.sigmoid(out.logits_b.float()).masked_fill(~batch.minute_mask, float("nan"))  # (B, T_L)
            proba.append(p.cpu())
            steps.append(rollout.steps.cpu())
        counts = torch.cat(steps).numpy().astype(np.int64)
        return HRMPredictions(
            mu=torch.cat(mu).numpy(),
            log_var=torch.cat(log_var).numpy(),
            proba_b=torch.cat(proba).numpy(),
            steps=counts,
            steps_b=counts.copy(),
        )

    # ------------------------------------------------------------------------------------------
    # Epochs and batches. The hooks below (_epoch_batches, _segment_forward, _step_losses, _all_halted,
    # _restore_best) are where distributed training (hrm_ddp.py) changes the single-process behaviour.

    def _epoch_batches(self, n_train: int, epoch: int) -> list[Tensor]:
        """Training row indices of each batch of ``epoch``: a shuffle from the trainer's generator, cut into
        ``batch_size`` rows."""
        return list(torch.randperm(n_train, generator=self.generator).split(self.train_cfg.batch_size))

    def _segment_forward(self, carry: HRMCarry, batch: HRMTensors) -> tuple[HRMCarry, HRMSegmentOutput]:
        """One training segment of the network (the module whose backward is taken)."""
        return self.net(carry, batch.x_daily, batch.x_minute, batch.minute_mask)

    def _step_losses(
        self, sums: Tensor, counts: Tensor, q_loss: Tensor, active: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(task losses (K,), Q loss, tasks present (K,) bool) of one optimizer step from the batch's
        per-task loss sums and labelled counts over the active samples (K,) and its Q loss (mean over the
        ``active`` (B,) samples): each task loss is the mean over its labelled active samples."""
        return sums / counts.clamp_min(1), q_loss, counts > 0

    def _all_halted(self, halted: Tensor) -> bool:
        """Whether every sample of the batch has halted (the batch's last segment)."""
        return bool(halted.all())

    def _restore_best(self) -> None:
        """End of fit: load ``best.pt`` into ``net`` and, per head, ``best_head_b.pt`` into a second network,
        ``head_b_net`` (built here). A trainer that writes no files (a distributed rank > 0) loads nothing."""
        if self.per_head:
            with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep torch's stream
                self.head_b_net = HRMNet(self.hrm_cfg).to(self.device)
            self.head_b_net.load_state_dict(self.net.state_dict())
        if not self.writes_files:
            return
        if self.best_checkpoint.is_file():
            self.net.load_state_dict(load_checkpoint(self.best_checkpoint, self.device)["model"])
        if self.per_head and self.head_b_best_checkpoint.is_file():
            self.head_b_net.load_state_dict(load_checkpoint(self.head_b_best_checkpoint, self.device)["model"])

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.train_cfg.autocast_bf16)

    def _rollouts(
        self, net: HRMNet, data: HRMTensors, batch_size: int | None
    ) -> Iterator[tuple[int, HRMTensors, ACTRollout]]:
        """(first row, batch on device, act_rollout result of ``net``) per batch, in data order, eval mode,
        no_grad."""
        bs = batch_size or self.train_cfg.batch_size
        was_training = net.training
        net.eval()
        try:
            for start in range(0, len(data), bs):
                batch = data.subset(slice(start, start + bs)).to(self.device)
                with torch.no_grad(), self._autocast():
                    rollout = act_rollout(net, batch.x_daily, batch.x_minute, batch.minute_mask, training=False)
                yield start, batch, rollout
        finally:
            net.train(was_training)

    def _run_epoch(self, train: HRMTensors, val: HRMTensors, epoch: int, writer: Any) -> None:
        """Train one epoch, validate, update early stopping, write checkpoints and the log."""
        t0 = time.perf_counter()
        train_metrics = self._train_epoch(train, epoch)
        val_metrics = self.evaluate(val)
        p = self.progress
        criterion = val_metrics["head_a_nll" if self.per_head else "loss"]
        improved = criterion < p.best_val_loss
        if improved:
            p.best_val_loss, p.best_epoch, p.bad_epochs = criterion, epoch, 0
        else:
            p.bad_epochs += 1
        improved_b = self.per_head and val_metrics["head_b_bce"] < p.head_b_best_val
        if improved_b:
            p.head_b_best_val, p.head_b_best_epoch, p.head_b_bad_epochs = val_metrics["head_b_bce"], epoch, 0
        elif self.per_head:
            p.head_b_bad_epochs += 1
        p.epoch = epoch
        row = {
            "epoch": epoch, "step": p.step, **train_metrics,
            **{f"val_{k}": v for k, v in val_metrics.items()},
            "best_epoch": p.best_epoch,
            **({"head_b_best_epoch": p.head_b_best_epoch} if self.per_head else {}),
            "skipped_steps": p.skipped_steps, "seconds": time.perf_counter() - t0,
        }
        p.history.append(row)
        if not self.writes_files:
            return
        payload = self._checkpoint_payload()
        if improved:
            save_checkpoint(self.best_checkpoint, payload)
        if improved_b:
            save_checkpoint(self.head_b_best_checkpoint, payload)
        save_checkpoint(self.last_checkpoint, payload)
        csv = pd.DataFrame(p.history).to_csv(index=False)
        atomic_write(self.log_path, lambda handle: handle.write(csv.encode()))
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
            writer.flush()

    def _stopped(self) -> bool:
        """Early stopping: ``patience`` epochs without improvement of the criterion (of both heads' per head)."""
        patience, p = self.train_cfg.patience, self.progress
        return p.bad_epochs >= patience and (not self.per_head or p.head_b_bad_epochs >= patience)

    def _train_epoch(self, train: HRMTensors, epoch: int) -> dict[str, float]:
        """One shuffled pass; returns the epoch's mean metrics (means over optimizer steps or batches)."""
        self.net.train()
        batches = self._epoch_batches(len(train), epoch)
        totals: dict[str, float] = {}
        n_steps = n_batches = 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{self.train_cfg.epochs}", unit="batch", leave=False, disable=None)
        for b, idx in enumerate(bar):
            lr = self.optimizer.param_groups[0]["lr"]
            step_rows, batch_row = self.train_batch(train.subset(idx).to(self.device), idx, epoch, b + 1)
            for r in step_rows:
                for k, v in r.items():
                    totals[k] = totals.get(k, 0.0) + v
            for k, v in batch_row.items():
                totals[k] = totals.get(k, 0.0) + v
            n_steps += len(step_rows)
            n_batches += 1
            self.scheduler.step()
            if step_rows:
                bar.set_postfix(loss=f"{step_rows[-1]['train_total']:.4f}", segs=f"{batch_row['train_segments']:.2f}")
        per_step = {"train_" + k for k in ("head_a_nll", "head_b_bce", "q", "total")} | {"grad_norm"}
        metrics = {k: v / (n_steps if k in per_step else n_batches) for k, v in totals.items()}
        weights = self.weighting.weights().tolist()
        metrics.update({f"weight_{t}": w for t, w in zip(TASKS, weights)})
        metrics["lr"] = lr
        return metrics

    def train_batch(
        self, batch: HRMTensors, rows: Tensor, epoch: int, b: int
    ) -> tuple[list[dict[str, float]], dict[str, float]]:
        """Deep supervision over one batch: (per optimizer step metrics, per batch metrics).

        ``batch`` is already on the trainer's device; ``rows`` (B,) are its training-sample indices (named in
        non-finite errors); ``epoch`` and ``b`` (1-based batch number) locate the batch in those errors. One
        optimizer step per segment until every sample halts or ``max_segments``; the scheduler is not stepped
        (the epoch loop does that). Public for scripts/bench_train.py, which times exactly this step.
        """
        cfg, hrm = self.train_cfg, self.hrm_cfg
        n, t_h, t_l = batch.x_daily.shape[0], batch.x_daily.shape[1], batch.x_minute.shape[1]
        carry = self.net.initial_carry(n, t_h, t_l, self.device)
        steps = torch.zeros(n, dtype=torch.long, device=self.device)  # (B,)
        halted = torch.zeros(n, dtype=torch.bool, device=self.device)  # (B,)
        min_steps = sample_min_steps(n, hrm.max_segments, hrm.halt_exploration_prob, self.generator, self.device)
        step_rows: list[dict[str, float]] = []
        for s in range(1, hrm.max_segments + 1):
            where = f"epoch {epoch}, batch {b}, segment {s}"
            active = ~halted  # (B,)
            with self._autocast():
                new_carry, out = self._segment_forward(carry, batch)
            steps = steps + active.long()
            losses, labelled = per_sample_task_losses(out, batch)  # (B, K), (B, K)
            sums, counts = masked_sums(losses, labelled, active)  # (K,), (K,)
            correct = halt_correctness(
                out.mu, out.log_var, out.logits_b, batch.y_a, batch.y_b, batch.minute_mask,
                nll_threshold=hrm.halt_nll_threshold, bce_threshold=hrm.halt_bce_threshold,
            )
            if s < hrm.max_segments:
                with torch.no_grad(), self._autocast():
                    next_q = self.net.halting_q(new_carry, batch.x_daily)  # (B,), (B,)
            else:  # no continue target after the last segment allowed (cont_valid is False)
                next_q = (torch.zeros_like(out.q_halt), torch.zeros_like(out.q_halt))
            targets = q_learning_targets(correct, *next_q, steps, hrm.max_segments, cfg.ponder_cost)
            q_loss = q_learning_loss(out.q_halt, out.q_continue, targets, active)
            task_losses, q_loss, present = self._step_losses(sums, counts, q_loss, active)  # (K,), (), (K,)
            values = torch.stack([task_losses[0], task_losses[1], q_loss]).tolist()
            for term, value in zip((*TASKS, "q"), values):
                if not math.isfinite(value):
                    culprits = self._culprits(term, losses, labelled, active, rows)
                    self._non_finite(f"non-finite loss term {term} ({value}) at {where}{culprits}")
                    return step_rows, self._batch_row(steps)
            total = self.weighting(task_losses, present) + cfg.q_loss_weight * q_loss
            total_value = float(total.detach())
            if not math.isfinite(total_value):
                self._non_finite(
                    f"non-finite loss term total ({total_value}, weighting {cfg.loss_weighting}) at {where}"
                )
                return step_rows, self._batch_row(steps)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip))
            weighting_grads = [p.grad for p in self.weighting.parameters() if p.grad is not None]
            weighting_ok = all(bool(torch.isfinite(g).all()) for g in weighting_grads)
            if not math.isfinite(grad_norm) or not weighting_ok:
                self._non_finite(
                    f"non-finite gradient of loss term total (network grad norm {grad_norm}, weighting grads "
                    f"finite: {weighting_ok}) at {where}"
                )
                return step_rows, self._batch_row(steps)
            self.optimizer.step()
            self.weighting.after_step()
            self.progress.step += 1
            step_rows.append({
                "train_head_a_nll": values[0], "train_head_b_bce": values[1], "train_q": values[2],
                "train_total": total_value, "grad_norm": grad_norm,
            })
            carry = freeze_halted(halted, carry, new_carry)
            halted = halted | halting_decision(
                out.q_halt.detach(), out.q_continue.detach(), steps, hrm.max_segments,
                training=True, min_steps=min_steps,
            )
            if self._all_halted(halted):
                break
        return step_rows, self._batch_row(steps)

    def _batch_row(self, steps: Tensor) -> dict[str, float]:
        """Per batch metrics from the segments each sample ran: mean segments and mean ponder cost charged."""
        return {
            "train_segments": float(steps.float().mean()),
            "train_ponder": float(ponder_cost(steps, self.train_cfg.ponder_cost).mean()),
        }

    @staticmethod
    def _culprits(term: str, losses: Tensor, labelled: Tensor, active: Tensor, rows: Tensor) -> str:
        """', training samples [...]' whose per-sample value of a head term is non-finite ('' for q)."""
        if term not in TASKS:
            return ""
        k = TASKS.index(term)
        bad = labelled[:, k] & active & ~torch.isfinite(losses[:, k].detach())  # (B,)
        return f", training samples {rows[bad.cpu()].tolist()}"

    def _non_finite(self, message: str) -> None:
        """Raise NonFiniteLossError, or with skip_nonfinite drop the gradients and count a skipped step."""
        if not self.train_cfg.skip_nonfinite:
            raise NonFiniteLossError(message)
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.skipped_steps += 1

    # ------------------------------------------------------------------------------------------
    # Checkpoints

    def _config_dict(self) -> dict[str, Any]:
        train = config_to_dict(self.train_cfg)
        train.pop("device")  # where a run executes does not change what it computes
        return {"hrm": config_to_dict(self.hrm_cfg), "train": train}

    def _checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss_weighting": self.weighting.state_dict(),
            "rng": rng_state(self.generator),
            "step": self.progress.step,
            "epoch": self.progress.epoch,
            "progress": dataclasses.asdict(self.progress),
            "config": self._config_dict(),
            "n_train": self._n_train,
            "seed": self.seed,
        }

    def _resume(self, path: Path, n_train: int) -> None:
        """Restore everything from ``path`` (a last.pt) and copy it and the run's best checkpoints into out_dir
        if it lies elsewhere, so out_dir can itself be resumed even before its first epoch ends."""
        payload = load_checkpoint(path, self.device)
        mismatched = [
            f"{section}.{key}"
            for section, values in self._config_dict().items()
            for key in sorted(set(values) | set(payload["config"][section]))
            if values.get(key) != payload["config"][section].get(key)
        ]
        if mismatched:
            raise ValueError(f"{path}: checkpoint config differs from this trainer's in {', '.join(mismatched)}")
        if payload["n_train"] != n_train:
            raise ValueError(f"{path}: checkpoint trained on {payload['n_train']} samples, this fit has {n_train}")
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.weighting.load_state_dict(payload["loss_weighting"])
        restore_rng_state(payload["rng"], self.generator)
        self.progress = _Progress(**payload["progress"])
        if not self.writes_files:
            return
        copies = [(path, self.last_checkpoint)]
        for name, epoch in ((BEST_CHECKPOINT, self.progress.best_epoch),
                            (HEAD_B_BEST_CHECKPOINT, self.progress.head_b_best_epoch)):
            if epoch:  # the interrupted run wrote this best checkpoint
                source = path.parent / name
                if not source.is_file():
                    raise ValueError(f"{path}: the run's best checkpoint {source} is missing")
                copies.append((source, self.out_dir / name))
        for source, target in copies:
            if source.resolve() != target.resolve():
                data = source.read_bytes()
                atomic_write(target, lambda handle, data=data: handle.write(data))
