"""Data-parallel HRM training: the HRM trainer under torch.distributed (torchrun) and DistributedDataParallel.

``scripts/train_hrm.py`` runs :func:`train_hrm` in one process, or in every process that
``torchrun --nproc-per-node N`` starts; :func:`distributed_context` reads torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group with NCCL on
CUDA (one GPU per rank, ``cuda:LOCAL_RANK``) or gloo on CPU.

What makes W ranks train like one process (:class:`DistributedHRMTrainer`, over the single-process
:class:`~lab_v10.src.options.hrm_train.HRMTrainer`):

- **Batch.** ``train.batch_size`` is the global batch: each rank takes ``batch_size / W`` samples per step
  (W must divide it). The learning-rate schedule counts global batches, so one config means the same
  optimisation at any world size, and a run can resume on a different number of ranks.
- **Data.** Every rank holds all samples. A ``DistributedSampler`` (shuffle seeded by the trainer seed,
  ``set_epoch`` each epoch) deals rank r the positions r, r+W, r+2W, ... of the epoch's permutation, so the
  ranks' j-th batches together are the j-th global batch of that permutation; with W = 1 it is the
  single-process order. When W does not divide the sample count, the sampler repeats up to W-1 samples per
  epoch (torch's padding) so every rank runs the same number of steps.
- **Losses.** Each rank computes its segment's terms with the trainer's segment_loss.segment_losses; each
  optimizer step's task losses and Q loss are means over the labelled active samples of all ranks: the
  terms' sums and counts are all-reduced, and each rank back-propagates
  ``(W * own_sum - W * own_sum.detach() + global_sum) / global_count``, whose value is the global mean on
  every rank and whose gradient, averaged by DDP, is the gradient of the global mean. (A mean of per-rank
  means differs from it whenever per-sample halting or unlabelled rows leave the ranks different counts.)
  The Q loss of a step is one mean over the active samples, because every active sample has run the same
  number of segments (the continue target is valid for all of them or for none).
- **Halting.** A batch runs another segment while any sample on any rank is active, since every segment is
  a collective forward/backward.
- **Loss weighting.** Its inputs are the global means, identical on every rank; its parameters' gradients
  are averaged over the ranks (a separate process group, during the backward), so the task weights stay
  identical. This is exact for ``fixed`` and ``uncertainty``; GradNorm measures each rank's share of the
  shared-trunk gradient (scaled by W), so it matches a single process only approximately.
- **Exploration.** At each epoch start the trainer generator is reseeded from (seed, rank, epoch): ranks
  draw independent minimum segment counts, and a resumed run draws what the uninterrupted one did.
- **Validation.** Every rank evaluates the whole validation set (identical weights) and rank 0's numbers
  are broadcast, so early stopping decides the same everywhere. Validation is not sharded.
- **Files.** Rank 0 alone writes ``best.pt`` (``best_head_b.pt`` too under per-head early stopping),
  ``last.pt``, ``train_log.csv`` and TensorBoard scalars; at the end it loads the best weights and broadcasts
  them. ``--resume`` reads the checkpoint on every rank
  (a shared filesystem, or a copy at the same path on each node).
- **Ensembles.** With ``train.ensemble_size`` K > 1 the K members train one after the other, every rank
  taking part in each, member k writing into ``member_k/`` of the run folder; ``--resume`` then names the
  interrupted run's folder (:meth:`DistributedHRMAdapter.member_resume_path`).

With ``halt_exploration_prob`` 0 (or a fixed segment count), the fixed or uncertainty weighting and a sample
count that W divides (no sampler padding), W ranks with a global batch B follow the single-process run with
batch B up to float summation order (tests/test_train_ddp.py checks it to 1e-5).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from lab_v10.src.config import (
    HRMConfig,
    LabConfig,
    TrainConfig,
    WalkForwardConfig,
    config_to_dict,
)
from lab_v10.src.data.market import load_market
from lab_v10.src.data.store import write_bytes_atomic
from lab_v10.src.data.universe import is_universe, load_universe
from lab_v10.src.dataset.dataset import Dataset, build_dataset
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.dataset.panel import Panel, build_panel
from lab_v10.src.errors import ConfigError
from lab_v10.src.options.checkpoint import LAST_CHECKPOINT
from lab_v10.src.options.device import resolve_device
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.hrm_symbol import SymbolInputs
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.hrm_train import HRMTrainer, TrainSummary
from lab_v10.src.options.segment_loss import TASKS

log = logging.getLogger("lab.ddp")

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}  # process-group backend per device type
ADAPTER_FILE = "hrm_adapter.pt"  # the fitted adapter (HRMAdapter.load reads it)
SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        return BACKENDS[self.device.type] if self.distributed else None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment {name}: expected an int (set by torchrun), got {value!r}") from None


@contextlib.contextmanager
def distributed_context(device: str = "auto") -> Iterator[DistContext]:
    """Join the process group torchrun describes (a single process without torchrun) and leave it on exit.

    ``device``: ``train.device``. Under torchrun with CUDA each rank uses ``cuda:LOCAL_RANK`` (name ``auto``
    or ``cuda``, not ``cuda:N``) and NCCL; on CPU, gloo. ConfigError for a device that cannot be used.
    """
    world, rank, local_rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world > 1:
        if device not in ("auto", "cuda"):
            raise ConfigError(
                f"train.device: {device!r} names one GPU, but under torchrun each rank uses cuda:LOCAL_RANK; "
                "use 'cuda' or 'auto'"
            )
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA device(s) on this node "
                "(expected --nproc-per-node at most the GPU count)"
            )
        resolved = torch.device("cuda", local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    ctx = DistContext(rank, world, local_rank, resolved)
    if ctx.distributed:
        dist.init_process_group(
            backend=ctx.backend, rank=rank, world_size=world, device_id=resolved if resolved.type == "cuda" else None
        )
    try:
        yield ctx
    finally:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A 64-bit seed for rank ``rank``'s exploration draws in ``epoch`` (numpy SeedSequence of the three)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, np.uint64)[0])


class DistributedHRMTrainer(HRMTrainer):
    """:class:`HRMTrainer` under DistributedDataParallel (module docstring); single process when
    ``ctx.world_size`` is 1 (then only the batch order and exploration seeding differ from HRMTrainer).

    ``resume_from``: a ``last.pt`` that :meth:`fit` resumes when its own argument is None (so a caller that
    builds the trainer and calls ``fit(train, val)``, like HRMAdapter, can resume).
    """

    def __init__(
        self,
        net: HRMNet,
        hrm_cfg: HRMConfig,
        train_cfg: TrainConfig,
        out_dir: Path,
        seed: int,
        ctx: DistContext,
        resume_from: Path | None = None,
    ) -> None:
        if train_cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"train.batch_size: expected a multiple of the world size {ctx.world_size} (the global batch is "
                f"split evenly over the ranks), got {train_cfg.batch_size}"
            )
        super().__init__(net, hrm_cfg, train_cfg, out_dir, seed, device=ctx.device)
        self.ctx = ctx
        self.local_batch_size = train_cfg.batch_size // ctx.world_size
        self.resume_from = resume_from
        self.writes_files = ctx.is_main
        self._ddp: DistributedDataParallel | None = None
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # the buffers (initial states, RoPE tables) never change, so they need no per-step broadcast
            self._ddp = DistributedDataParallel(self.net, device_ids=device_ids, broadcast_buffers=False)
            # the weighting's gradients are averaged during the backward, beside DDP's own all-reduces
            self._weighting_group = dist.new_group(backend=ctx.backend)
            for p in self.weighting.parameters():
                p.register_hook(self._average_over_ranks)

    def fit(self, train: HRMTensors, val: HRMTensors, resume_from: Path | None = None) -> TrainSummary:
        """:meth:`HRMTrainer.fit` on every rank (each holding all samples), resuming ``self.resume_from``
        unless ``resume_from`` is given."""
        padded = -len(train) % self.ctx.world_size
        if padded and self.ctx.is_main:
            log.warning("%d training samples over %d ranks: the sampler repeats %d sample(s) per epoch",
                        len(train), self.ctx.world_size, padded)
        return super().fit(train, val, resume_from if resume_from is not None else self.resume_from)

    @torch.no_grad()
    def evaluate(self, data: HRMTensors, batch_size: int | None = None) -> dict[str, float]:
        """:meth:`HRMTrainer.evaluate` on the whole set; every rank returns rank 0's numbers."""
        metrics = super().evaluate(data, batch_size)
        if not self.ctx.distributed:
            return metrics
        keys = list(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.broadcast(values, src=0)
        return dict(zip(keys, values.tolist()))

    # ------------------------------------------------------------------------------------------
    # HRMTrainer hooks

    def _epoch_batches(self, n_train: int, epoch: int) -> list[Tensor]:
        """This rank's batches: DistributedSampler positions (``set_epoch(epoch)``), ``batch_size / W`` each."""
        sampler = DistributedSampler(
            range(n_train), num_replicas=self.ctx.world_size, rank=self.ctx.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        self.generator.manual_seed(epoch_seed(self.seed, self.ctx.rank, epoch))
        return list(torch.tensor(list(sampler), dtype=torch.long).split(self.local_batch_size))

    def _segment_forward(self, carry: HRMCarry, batch: HRMTensors) -> tuple[HRMCarry, HRMSegmentOutput]:
        """The training segment through DDP (gradients are averaged over the ranks in its backward)."""
        module = self._ddp if self._ddp is not None else self.net
        return module(carry, batch.x_daily, batch.x_minute, batch.minute_mask, batch.symbol)

    def _step_losses(
        self, sums: Tensor, counts: Tensor, q_loss: Tensor, active: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Means over every rank's labelled active samples (module docstring, "Losses")."""
        if not self.ctx.distributed:
            return super()._step_losses(sums, counts, q_loss, active)
        k, w = len(TASKS), self.ctx.world_size
        n_active = active.sum().to(sums.dtype)
        own = torch.cat([sums, (q_loss * n_active).reshape(1)])  # (K+1,) this rank's loss sums
        totals = torch.cat([own.detach(), counts.to(sums.dtype), n_active.reshape(1)])  # (2K+2,)
        dist.all_reduce(totals)
        global_sums, global_counts = totals[: k + 1], totals[k + 1:]
        means = (w * own - (w * own).detach() + global_sums) / global_counts.clamp_min(1)  # (K+1,)
        return means[:k], means[k], global_counts[:k] > 0

    def _all_halted(self, halted: Tensor) -> bool:
        """Whether every sample on every rank has halted."""
        if not self.ctx.distributed:
            return super()._all_halted(halted)
        flag = halted.all().to(torch.int32).reshape(1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _batch_row(self, steps: Tensor) -> dict[str, float]:
        """Mean segments and ponder cost over the global batch (the ranks' local batches have equal sizes)."""
        if self.ctx.distributed:
            parts = [torch.empty_like(steps) for _ in range(self.ctx.world_size)]
            dist.all_gather(parts, steps)
            steps = torch.cat(parts)
        return super()._batch_row(steps)

    def _restore_best(self) -> None:
        """Rank 0 loads ``best.pt`` (and ``best_head_b.pt`` per head); every other rank receives the weights."""
        super()._restore_best()  # loads on the rank that writes files only
        if self.ctx.distributed:
            nets = [self.net] if self.head_b_net is self.net else [self.net, self.head_b_net]
            for net in nets:
                for tensor in net.state_dict().values():
                    dist.broadcast(tensor, src=0)

    def _average_over_ranks(self, grad: Tensor) -> Tensor:
        """Gradient hook of the loss-weighting parameters: the mean over the ranks."""
        total = grad.detach().clone()
        dist.all_reduce(total, group=self._weighting_group)
        return total / self.ctx.world_size


class DistributedHRMAdapter(HRMAdapter):
    """:class:`HRMAdapter` whose trainers are :class:`DistributedHRMTrainer` for ``ctx``, resuming the
    interrupted run ``resume_from`` when given (:meth:`member_resume_path`). Its saved file is an ordinary
    adapter file for :meth:`HRMAdapter.load`."""

    def __init__(
        self,
        config: LabConfig,
        out_dir: Path | None = None,
        ctx: DistContext = DistContext(),
        resume_from: Path | None = None,
    ) -> None:
        super().__init__(config, out_dir)
        self.ctx = ctx
        self.resume_from = resume_from

    def member_resume_path(self, member: int) -> Path | None:
        """The ``last.pt`` member ``member`` resumes from, or None (it trains from the start).

        A single network resumes ``resume_from`` itself (a ``last.pt``, or a run folder holding one). An
        ensemble resumes from the interrupted run's folder: member k from ``member_k/last.pt`` when that
        member had begun (a finished member only restores its best weights), else from the start; its seed
        is the same as in the interrupted run, so the result equals the uninterrupted run's. ConfigError naming
        the path when the folder lacks the checkpoint the run needs.
        """
        if self.resume_from is None:
            return None
        run = Path(self.resume_from)
        if self.config.train.ensemble_size == 1:
            if run.is_dir() and not (run / LAST_CHECKPOINT).is_file():
                ensemble = " (it holds member_0/: an ensemble run's folder)" if (run / "member_0").is_dir() else ""
                raise ConfigError(f"--resume: {run}: no {LAST_CHECKPOINT} in this folder{ensemble}; expected the "
                                  "folder of an interrupted single-network run, or its last.pt")
            return run / LAST_CHECKPOINT if run.is_dir() else run
        if not run.is_dir():
            raise ConfigError(
                f"--resume: {run}: expected the interrupted run's folder (it holds member_0/, member_1/, ...) "
                f"for train.ensemble_size={self.config.train.ensemble_size}"
            )
        path = run / f"member_{member}" / LAST_CHECKPOINT
        if member == 0 and not path.is_file():
            raise ConfigError(f"--resume: {path}: checkpoint not found (expected member 0 of an ensemble run)")
        return path if path.is_file() else None

    def _trainer(self, net: HRMNet, member: int, seed: int) -> DistributedHRMTrainer:
        return DistributedHRMTrainer(
            net, self.hrm_config_, self.config.train, self.member_dir(member), seed=seed, ctx=self.ctx,
            resume_from=self.member_resume_path(member),
        )


# ----------------------------------------------------------------------------------------------
# The training run of scripts/train_hrm.py


@dataclass(frozen=True)
class TrainSplit:
    """Forecast dates that train and validate (early-stop) the HRM, and how they were chosen."""

    train: pd.DatetimeIndex
    val: pd.DatetimeIndex
    description: str


def holdout_split(
    data: Dataset | Panel, wf: WalkForwardConfig, train_end: pd.Timestamp | None = None, val_days: int | None = None
) -> TrainSplit:
    """The training and validation sample dates (of a universe's panel: calendar dates, purged by the latest
    label end of any symbol).

    Without ``train_end``: the training and validation rows of the first walk-forward fold (``wf``; purged
    and embargoed as in the pipeline). With it: validation is the ``val_days`` (default ``wf.val_days``) sample
    dates after ``train_end``, training the sample dates up to ``train_end`` whose label span ends before the
    first validation date (purged). ConfigError names the flag when the data cannot hold the split.
    """
    dates = data.sample_dates
    if train_end is None:
        if val_days is not None:
            raise ConfigError("--val-days: needs --train-end (without it the first walk-forward fold is used)")
        fold = walk_forward_folds(dates, data.span_end, wf)[0]
        return TrainSplit(dates[fold.train_idx], dates[fold.val_idx], fold.describe())
    val_days = wf.val_days if val_days is None else val_days
    if val_days < 1:
        raise ConfigError(f"--val-days: expected int >= 1, got {val_days}")
    n_window = int(np.searchsorted(dates.to_numpy(), np.datetime64(train_end), side="right"))
    val = dates[n_window: n_window + val_days]
    if len(val) < val_days:
        raise ConfigError(
            f"--val-days: {len(val)} sample dates follow --train-end {train_end.date()} (last sample date "
            f"{dates[-1].date()}), expected {val_days}"
        )
    keep = data.span_end[:n_window] < val[0]  # labels that end before validation starts
    train = dates[:n_window][keep]
    if len(train) == 0:
        raise ConfigError(
            f"--train-end: no sample date on or before {train_end.date()} has a label that ends before the "
            f"validation period ({val[0].date()}); first sample date {dates[0].date()}"
        )
    description = (
        f"train {train[0].date()}..{train[-1].date()} ({len(train)} rows, {n_window - len(train)} purged) | "
        f"val {val[0].date()}..{val[-1].date()} ({len(val)} rows)"
    )
    return TrainSplit(train, val, description)


def train_hrm(
    cfg: LabConfig,
    out_dir: Path,
    ctx: DistContext,
    train_end: pd.Timestamp | None = None,
    val_days: int | None = None,
    resume_from: Path | None = None,
) -> dict:
    """Fit the HRM of ``cfg`` on its data (every rank), rank 0 writing ``out_dir``: the trainer's ``best.pt``,
    ``last.pt`` and ``train_log.csv`` (per ensemble member in ``member_k/`` when ``train.ensemble_size`` > 1),
    the fitted adapter ``hrm_adapter.pt`` and ``train_summary.json``.

    Returns the summary (the JSON's content) on every rank; ``members`` holds each member's TrainSummary.
    """
    t0 = time.perf_counter()
    adapter = DistributedHRMAdapter(cfg, out_dir, ctx, resume_from)
    adapter.member_resume_path(0)  # a resume folder without the checkpoint it needs fails before the data loads
    if is_universe(cfg):
        # a universe: one pooled network on every symbol, split by calendar date (dataset/panel.py)
        panel = build_panel(load_universe(cfg.data, cfg.seed), cfg)
        split = holdout_split(panel, cfg.walkforward, train_end, val_days)
        inputs = {}
        for sym, data in panel.datasets.items():
            train, val = data.sample_dates.intersection(split.train), data.sample_dates.intersection(split.val)
            if len(train) and len(val):
                inputs[sym] = SymbolInputs(data.X_daily, data.X_intraday, data.yA, data.yB, train, val)
    else:
        data = build_dataset(load_market(cfg.data, cfg.seed), cfg, hrm=True)
        split = holdout_split(data, cfg.walkforward, train_end, val_days)
    if ctx.is_main:
        log.info("split: %s", split.description)
        log.info("world size %d (%s), global batch %d", ctx.world_size, ctx.backend or "single process",
                 cfg.train.batch_size)
    if is_universe(cfg):
        if ctx.is_main:
            log.info("pooled over %d symbols: %s", len(inputs), ", ".join(inputs))
        adapter.fit_pooled(inputs, universe=panel.symbols)
    else:
        adapter.fit(data.X_daily, data.X_intraday, data.yA, data.yB, split.train, split.val)
    summary = {
        "members": [
            {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(summary).items()}
            for summary in adapter.summaries_
        ],
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "device": str(ctx.device),
        "global_batch": cfg.train.batch_size,
        "rank_batch": cfg.train.batch_size // ctx.world_size,
        "split": split.description,
        "train_rows": len(split.train),
        "val_rows": len(split.val),
        "resumed_from": None if resume_from is None else str(resume_from),
        "adapter_path": str(Path(out_dir) / ADAPTER_FILE),
        "seconds": round(time.perf_counter() - t0, 3),
        "config": config_to_dict(cfg),
    }
    if ctx.is_main:
        adapter.save(Path(out_dir) / ADAPTER_FILE)
        write_bytes_atomic(json.dumps(summary, indent=2).encode(), Path(out_dir) / SUMMARY_FILE)
    return summary
