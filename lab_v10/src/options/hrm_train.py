"""HRM trainer: deep supervision over ACT segments, multi-task weighting, AdamW with warmup and cosine decay,
bf16 autocast, early stopping and atomic, resumable checkpoints.

Data. :class:`HRMTensors` (hrm_tensors.py) holds N samples (days) as CPU tensors; batches are moved to the
trainer's device. yA is standardized (train-only scaler, applied by the caller); NaN labels are masked.

One batch: the segment loop of HRM27M.md, "Segment semantics" (deep supervision, one optimizer step per segment);
per segment, ``segment_losses`` over the samples still running -> weighted total -> backward -> clip -> AdamW
step, then ``freeze_halted`` and ``halting_decision(..., training=True)``; stop when every sample has halted.

Losses of a segment: head_a_nll, head_b_bce and q (segment_loss.py). total = weighting([head_a_nll,
head_b_bce], present) + q_loss_weight * q, with the weighting from loss_weighting.py
(``train.loss_weighting``). GradNorm measures its gradient norms on the shared trunk: every network
parameter outside the heads (head_a, head_b, q_head). Both heads reach the H side (daily_proj, H-module, norm_H;
Head B through FiLM with H_cycles >= 2: zero at the start, as FiLM's weights start at zero; hrm_net.py).
The log reports ``ponder`` = the mean act_halting.ponder_cost charged per sample.

Validation and early stopping. After every epoch :meth:`HRMTrainer.evaluate` computes the validation
criterion (hrm_predict.py) and early_stopping.py decides, jointly or per head (``train.early_stopping``):
per head, Head B's best weights are restored into a second network, ``head_b_net``; with ``joint``,
``head_b_net`` is ``net``.

Optimisation. AdamW with linear warmup and cosine decay per batch (optim.py); bf16 autocast on CPU and
CUDA with fp32 master weights; gradient clipping of the network's global L2 norm.

Non-finite values. After the forward each term is checked (head_a_nll, head_b_bce, q, then the weighted
total), after the backward the gradient norm. A non-finite value raises :class:`NonFiniteLossError` naming
the epoch, batch, segment, term and (for the head terms) the offending training-sample indices; with
``skip_nonfinite`` the rest of the batch is skipped instead, no optimizer step is taken and
``skipped_steps`` counts it. A non-finite validation loss always raises (no early stopping on NaN). From
:meth:`HRMTrainer.fit` the error (a LabError: exit 2 from the CLIs) also names the run folder, so the fold or
ensemble member, and what to try.

A fit that fails (any exception) before ``last.pt`` exists removes the run folder it created, so a failed run
leaves no empty folder behind; once ``last.pt`` is written the folder stays, resumable.

Checkpoints (checkpoint.py) in ``out_dir``: ``last.pt`` after every epoch (for resuming), ``best.pt``
when the validation criterion improves and, per head, ``best_head_b.pt`` when Head B's does; each holds
model, optimizer, scheduler, loss-weighting state, RNG states, step, epoch, early-stopping state, the metric
history and both configs, and loads with ``weights_only=True``. ``train_log.csv`` (one row per epoch:
losses per term, task weights, mean gradient norm, mean segments used, learning rate, validation losses)
is rewritten from that history after every epoch; TensorBoard scalars go to ``out_dir/tensorboard`` when
the ``tensorboard`` package is installed. Distributed training (hrm_ddp.py) writes all of these on rank 0
only (``writes_files``). ``fit(..., resume_from=last.pt)`` continues the run: on the same machine it ends
with exactly the weights of the uninterrupted run. The best checkpoint of the interrupted run is expected
beside the resumed file (``best.pt``, and ``best_head_b.pt`` per head, in the same folder) and is copied
into ``out_dir``.

Reproducibility. The trainer's randomness (epoch shuffles, exploration draws) comes from one CPU
``torch.Generator`` seeded with ``seed``; the network's initial weights are the caller's (seed torch before
building it). On CPU, the same seed gives identical weights and predictions; ``train.deterministic`` also
turns on ``torch.use_deterministic_algorithms`` (warn-only) during fit, which matters on CUDA.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lab_v10.src.config import HRMConfig, TrainConfig
from lab_v10.src.data.store import write_bytes_atomic
from lab_v10.src.options.act_halting import freeze_halted, halting_decision, ponder_cost, sample_min_steps
from lab_v10.src.options.checkpoint import (
    BEST_CHECKPOINT,
    HEAD_B_BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    Stateful,
    copy_run,
    load_checkpoint,
    resume_training,
    run_config,
    save_checkpoint,
    training_payload,
)
from lab_v10.src.options.device import deterministic_algorithms, resolve_device
from lab_v10.src.options.early_stopping import Progress
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.hrm_predict import HRMPredictions, network_predictions, validation_metrics
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.loss_weighting import LossWeighting, make_loss_weighting
from lab_v10.src.options.optim import make_optimizer, trunk_parameters, warmup_cosine
from lab_v10.src.options.segment_loss import TASKS, NonFiniteLossError, bf16_autocast, segment_losses

LOG_FILE = "train_log.csv"
TENSORBOARD_DIR = "tensorboard"
NON_FINITE_HINT = "try a lower train.lr, train.skip_nonfinite: true, or check the inputs for NaN or extreme values"


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


# ----------------------------------------------------------------------------------------------
# Trainer


def _outermost_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (what mkdir(parents=True) creates)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            return missing
        missing = path
    return missing


def _tensorboard_writer(log_dir: Path):
    """A TensorBoard SummaryWriter, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


class HRMTrainer:
    """Train an :class:`HRMNet` (module docstring); one ``fit`` per trainer.

    net: the network (moved to ``device``; a warm start passes one holding earlier weights); hrm_cfg must
    equal ``net.cfg``. out_dir: the run folder for checkpoints and logs. seed: seeds the trainer's generator
    (shuffles, exploration). samples_per_epoch: train each epoch on that many samples of a fresh shuffle
    (None: all; the learning-rate schedule counts those batches). ``head_b_net``: the
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
        samples_per_epoch: int | None = None,
    ) -> None:
        if net.cfg != hrm_cfg:
            raise ValueError("hrm_cfg differs from the network's config (net.cfg); build the net from hrm_cfg")
        self.hrm_cfg, self.train_cfg = hrm_cfg, train_cfg
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.net = net.to(self.device)
        self.head_b_net = self.net
        self.out_dir = Path(out_dir)
        self.seed, self.samples_per_epoch = seed, samples_per_epoch
        self.generator = torch.Generator().manual_seed(seed)
        self.weighting: LossWeighting = make_loss_weighting(
            train_cfg.loss_weighting, len(TASKS), shared=trunk_parameters(net), alpha=train_cfg.gradnorm_alpha
        ).to(self.device)
        self.optimizer = make_optimizer(net, self.weighting, train_cfg)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.progress = Progress()
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
        B's into ``self.head_b_net``). A failure before the first ``last.pt`` removes the run folder this fit
        created; NonFiniteLossError names the run folder and what to try (module docstring)."""
        if self._fitted:
            raise RuntimeError("HRMTrainer.fit runs once per trainer; build a new trainer (and resume_from) instead")
        self._fitted = True
        if len(train) == 0 or len(val) == 0:
            raise ValueError(f"fit needs training and validation samples, got {len(train)} and {len(val)}")
        cfg = self.train_cfg
        self._n_train = len(train)
        n_batches = math.ceil(min(len(train), self.samples_per_epoch or len(train)) / cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(cfg.warmup_steps, cfg.epochs * n_batches)
        )
        created = _outermost_missing(self.out_dir) if self.writes_files else None
        if self.writes_files:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            if resume_from is not None:
                self._resume(Path(resume_from), len(train))
            self._run_epochs(train, val)
        except BaseException as exc:
            removed = created is not None and not self.last_checkpoint.is_file()
            if removed:
                shutil.rmtree(created, ignore_errors=True)
            if isinstance(exc, NonFiniteLossError):
                kept = " (its last.pt: the last good epoch)" if self.last_checkpoint.is_file() else ""
                note = " (removed: nothing valid was written)" if removed else kept
                raise NonFiniteLossError(f"{exc}; run folder {self.out_dir}{note}; {NON_FINITE_HINT}") from None
            raise
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

    def _run_epochs(self, train: HRMTensors, val: HRMTensors) -> None:
        """The epochs of fit from the first one not yet run until early stopping or ``train.epochs``."""
        cfg = self.train_cfg
        writer = _tensorboard_writer(self.out_dir / TENSORBOARD_DIR) if self.writes_files else None
        try:
            with deterministic_algorithms(cfg.deterministic, self.device):
                for epoch in range(self.progress.epoch + 1, cfg.epochs + 1):
                    if self.progress.stopped(cfg.patience, self.per_head):
                        break
                    self._run_epoch(train, val, epoch, writer)
        finally:
            if writer is not None:
                writer.close()

    def evaluate(self, data: HRMTensors, batch_size: int | None = None) -> dict[str, float]:
        """Validation metrics of ``net`` (hrm_predict.validation_metrics): head_a_nll, head_b_bce, loss,
        segments."""
        return validation_metrics(self.net, data, *self._eval_settings(batch_size))

    def predict(self, data: HRMTensors, batch_size: int | None = None) -> HRMPredictions:
        """Eval-mode outputs at each sample's halting segment (``hrm_cfg.eval_halting``): Head A from ``net``,
        Head B from ``head_b_net`` (one pass when they are the same network); see HRMPredictions."""
        pred = self.predict_network(self.net, data, batch_size)
        if self.head_b_net is self.net:
            return pred
        head_b = self.predict_network(self.head_b_net, data, batch_size)
        return dataclasses.replace(pred, proba_b=head_b.proba_b, steps_b=head_b.steps)

    def predict_network(self, net: HRMNet, data: HRMTensors, batch_size: int | None = None) -> HRMPredictions:
        """Every output of the one network ``net`` (``self.net`` or ``self.head_b_net``); ``steps_b`` equals
        ``steps``. For a caller that reads one head only."""
        return network_predictions(net, data, *self._eval_settings(batch_size))

    def _eval_settings(self, batch_size: int | None) -> tuple[int, torch.device, bool]:
        """(batch size, default ``train.batch_size``; device; bf16) of evaluation-mode passes."""
        return batch_size or self.train_cfg.batch_size, self.device, self.train_cfg.autocast_bf16

    # ------------------------------------------------------------------------------------------
    # Epochs and batches. The hooks below (_epoch_batches, _segment_forward, _step_losses, _all_halted,
    # _batch_row, _restore_best) are where distributed training (hrm_ddp.py) changes the single-process
    # behaviour.

    def _epoch_batches(self, n_train: int, epoch: int) -> list[Tensor]:
        """Training row indices of each batch of ``epoch``: a shuffle from the trainer's generator (its first
        ``samples_per_epoch`` rows when set), cut into ``batch_size`` rows."""
        order = torch.randperm(n_train, generator=self.generator)[: self.samples_per_epoch or n_train]
        return list(order.split(self.train_cfg.batch_size))

    def _segment_forward(self, carry: HRMCarry, batch: HRMTensors) -> tuple[HRMCarry, HRMSegmentOutput]:
        """One training segment of the network (the module whose backward is taken)."""
        return self.net(carry, batch.x_daily, batch.x_minute, batch.minute_mask, batch.symbol)

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

    def _batch_row(self, steps: Tensor) -> dict[str, float]:
        """Per batch metrics from the segments each sample ran: mean segments and mean ponder cost charged."""
        return {
            "train_segments": float(steps.float().mean()),
            "train_ponder": float(ponder_cost(steps, self.train_cfg.ponder_cost).mean()),
        }

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

    def _run_epoch(self, train: HRMTensors, val: HRMTensors, epoch: int, writer: Any) -> None:
        """Train one epoch, validate, update early stopping, write checkpoints and the log."""
        t0 = time.perf_counter()
        train_metrics = self._train_epoch(train, epoch)
        try:
            val_metrics = self.evaluate(val)
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"{exc} after epoch {epoch}") from None
        p = self.progress
        improved, improved_b = p.record_validation(val_metrics, epoch, self.per_head)
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
        write_bytes_atomic(pd.DataFrame(p.history).to_csv(index=False).encode(), self.log_path)
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch)
            writer.flush()

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
            with bf16_autocast(self.device, cfg.autocast_bf16):
                new_carry, out = self._segment_forward(carry, batch)
            steps = steps + active.long()
            terms = segment_losses(
                self.net, out, new_carry, batch, steps, active, s, cfg.ponder_cost, cfg.autocast_bf16
            )
            task_losses, q_loss, present = self._step_losses(terms.sums, terms.counts, terms.q, active)  # (K,) () (K,)
            values = torch.stack([task_losses[0], task_losses[1], q_loss]).tolist()
            for term, value in zip((*TASKS, "q"), values):
                if not math.isfinite(value):
                    culprits = self._culprits(term, terms.losses, terms.labelled, active, rows)
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

    @staticmethod
    def _culprits(term: str, losses: Tensor, labelled: Tensor, active: Tensor, rows: Tensor) -> str:
        """', training samples [...]' whose per-sample value of a head term is non-finite ('' for q)."""
        if term not in TASKS:
            return ""
        k = TASKS.index(term)
        bad = rows[(labelled[:, k] & active & ~torch.isfinite(losses[:, k].detach())).cpu()].tolist()
        more = f", ... ({len(bad)} in all)" if len(bad) > 8 else ""
        return f", training samples [{', '.join(map(str, bad[:8]))}{more}]"

    def _non_finite(self, message: str) -> None:
        """Raise NonFiniteLossError, or with skip_nonfinite drop the gradients and count a skipped step."""
        if not self.train_cfg.skip_nonfinite:
            raise NonFiniteLossError(message)
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.skipped_steps += 1

    # ------------------------------------------------------------------------------------------
    # Checkpoints (checkpoint.py)

    def _state_parts(self) -> dict[str, Stateful]:
        return {"model": self.net, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "loss_weighting": self.weighting}

    def _checkpoint_payload(self) -> dict[str, Any]:
        p = self.progress
        return training_payload(
            self._state_parts(), self.generator, step=p.step, epoch=p.epoch, progress=dataclasses.asdict(p),
            config=run_config(self.hrm_cfg, self.train_cfg), n_train=self._n_train, seed=self.seed,
        )

    def _resume(self, path: Path, n_train: int) -> None:
        """Restore everything from ``path`` (a last.pt) and copy it and the run's best checkpoints into out_dir
        if it lies elsewhere, so out_dir can itself be resumed even before its first epoch ends."""
        config = run_config(self.hrm_cfg, self.train_cfg)
        payload = resume_training(path, self._state_parts(), self.generator, config, n_train, self.device)
        self.progress = p = Progress(**payload["progress"])
        if self.writes_files:
            best_epochs = {BEST_CHECKPOINT: p.best_epoch, HEAD_B_BEST_CHECKPOINT: p.head_b_best_epoch}
            copy_run(path, self.out_dir, [name for name, epoch in best_epochs.items() if epoch])  # ones it wrote
