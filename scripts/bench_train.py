"""HRM training throughput against the machine's matmul peak, and training memory of the one-step gradient
against full backpropagation, for the small and 27M presets.

    python scripts/bench_train.py [--presets small 27m] [--small-batch N] [--small-daily-window N]
                                  [--small-minutes N] [--27m-batch N] [--27m-daily-window N] [--27m-minutes N]
                                  [--batches N] [--warmup N] [--matmul-n N] [--matmul-repeats N]
                                  [--memory-batch N] [--memory-steps 2 4 8 16] [--no-allocator-peak]
                                  [--set KEY=VALUE ...] [--threads N] [--device cpu] [--seed N] [--quick]
                                  [--out FILE]

``--set`` overrides a key of every preset's config (config.apply_overrides), e.g. ``--set hrm.H_cycles=4``.
Inputs are random (:func:`random_tensors`): ``batch`` days of ``daily_window`` daily rows and ``minutes``
minutes, every minute labelled. The network has the preset's architecture (widths, RoPE tables, cycles,
max_segments); only the input lengths may be shorter than the preset's (the 27M preset defaults to 64
minutes and 32 daily rows so it finishes on a CPU; the JSON says so under ``shapes``).

Throughput (``train``). Timed calls of ``HRMTrainer.train_batch``, the trainer's own batch step (deep
supervision with one AdamW step per segment, Q-learning targets from ``HRMNet.halting_q``, halting, loss
weighting, clipping), after ``--warmup`` untimed calls. Training runs in fp32: ``train.autocast_bf16`` is
turned off because the peak is an fp32 matmul (and this CPU has no native bf16). The number of segments
a batch runs depends on the learned halting, so it is reported per batch and the FLOPs follow it:

    FLOPs of a batch = batch x (segments x (F(segment) + 2 F(one-step graph) - F(input projections)
                                            + 2 F(FiLM-context H-update))
                               + halting_q calls x (F(H side of a segment) - F(Head A)))

with ``F`` the closed-form forward matmul FLOPs of scripts/optimize_hrm27m.py (``segment_flops``, 2 per
multiply-add) at the run's input lengths. The one-step graph is one L-update, one H-update, the input
projections and the heads (a segment with one cycle of one L-update); its backward costs twice its forward,
except the input projections, whose inputs need no gradient (weight gradients only, once their forward).
With FiLM and two or more H cycles, Head B's gradient also runs through the H-update that made the last
cycle's FiLM context (HRM27M.md, "Segment semantics"): twice one H-update's layer FLOPs more.
``halting_q`` runs the H side under no_grad after every segment but the max_segments-th. Norms, RoPE,
activations, losses and AdamW are not counted (their time is in the timings). ``flop_check`` counts one more
batch with ``torch.utils.flop_counter.FlopCounterMode``; on CPU it counts matmuls only (not SDPA), so it is
compared with the closed form's projection FLOPs. ``achieved_over_peak`` = achieved GFLOP/s over the best of
``--matmul-repeats`` n x n fp32 ``torch.matmul`` calls, measured right before and right after the preset's
timings (the larger of the two), in the same process with the same threads.

Memory (``memory``). Peak memory of ``segments`` deep-supervision segments of ``H_cycles`` cycles, for
steps = segments x H_cycles in ``--memory-steps``, in two series: ``segments`` (the preset's H_cycles,
segments = steps / H_cycles) and ``cycles`` (one segment of ``steps`` H-cycles); L_cycles is the preset's.
Each point runs two gradients (:func:`rollout`), every segment's loss being the trainer's terms
(segment_loss.segment_losses: Head-A NLL + Head-B log loss + Q loss, un-weighted, no ponder cost):

- ``one_step``: the trainer's path: ``HRMNet.forward_segment`` (every update but the last L- and H-update
  under no_grad, carry detached), the segment's loss, ``backward`` per segment;
- ``full_backprop``: the same updates with gradients through all of them and no detach between segments
  (:func:`full_grad_segment`), the segments' losses summed and one ``backward`` at the end
  (backpropagation through time over every segment and cycle).

Two measures (bench_common.py): ``saved_bytes``, the peak bytes autograd holds for backward (exact), and
``allocator_peak_bytes``, measured with the parameters' gradients already allocated (for full
backpropagation it includes the engine's buffers that sum a weight's gradient over all the steps that use
it). The one-step curve is flat: its memory does not depend on segments or cycles.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import (
    SavedTensorMeter,
    add_torch_flags,
    allocator_peak,
    bench_parser,
    finish_document,
    load_average,
    new_document,
    summarize_ms,
    time_calls,
    torch_setup,
)
from optimize_hrm27m import segment_flops
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from lab_v10.src.config import HRMConfig, LabConfig, apply_overrides, load_config
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.hrm_tensors import HRMTensors
from lab_v10.src.options.hrm_train import HRMTrainer
from lab_v10.src.options.segment_loss import segment_losses

PRESETS = {"small": Path("config/small.yaml"), "27m": Path("config/default_hrm27m.yaml")}
GRADIENTS = ("one_step", "full_backprop")
# (batch, daily_window, minutes); None = the preset's own (train.batch_size, hrm.daily_window, hrm.minutes_per_day)
SHAPES = {"small": (None, None, None), "27m": (2, 32, 64)}
QUICK_SHAPES = {"small": (2, 16, 32), "27m": (1, 8, 16)}

NOTES = {
    "train": "HRMTrainer.train_batch timed per call (deep supervision, one AdamW step per segment, Q targets, "
    "halting, loss weighting, clipping), fp32 (train.autocast_bf16 turned off: the peak is an fp32 matmul and "
    "this CPU has no native bf16); segments per batch follow the learned halting.",
    "flops": "closed form (scripts/optimize_hrm27m.segment_flops, forward matmul FLOPs, 2 per multiply-add, at the "
    "run's input lengths): per segment the forward of all updates + 2x the forward of the one-step graph (one "
    "L-update, one H-update, heads, input projections; the input projections' backward is 1x, weight gradients "
    "only) + 2x one H-update's layers (Head B's gradient through the FiLM context's H-update, with FiLM and "
    "H_cycles >= 2) + HRMNet.halting_q (H side under no_grad) after every segment but the max_segments-th. Norms, "
    "RoPE, "
    "activations, losses and AdamW are not counted. flop_check: FlopCounterMode over one batch; on CPU it counts "
    "matmuls only (SDPA is not counted), so it is compared with the closed-form projection FLOPs.",
    "peak": "best of the timed n x n fp32 torch.matmul calls right before and right after each preset's training "
    "timings, same process and threads; achieved_over_peak uses the larger.",
    "memory": "saved_bytes: peak bytes of distinct storages autograd holds for backward "
    "(torch.autograd.graph.saved_tensors_hooks; parameters excluded; exact and deterministic: the activation memory "
    "a gradient method keeps). allocator_peak_bytes: peak allocated bytes above the start (CPU: torch.profiler "
    "profile_memory, the allocator's running total on each allocation event; CUDA: max_memory_allocated), "
    "measured with the gradients already allocated, so it is activations plus temporaries. Process RSS is not "
    "used: freed pages stay with the C allocator and the machine is shared, so RSS deltas are noise of the size "
    "of the effect. Loss per segment: the trainer's terms (segment_loss.segment_losses), un-weighted. "
    "one_step: HRMNet.forward_segment and a backward per segment (AdamW step left out); "
    "full_backprop: the same updates with gradients through all of them and no detach, losses summed, one "
    "backward; every segment runs (no halting, also beyond max_segments). Series 'segments': the preset's "
    "H_cycles, steps / H_cycles segments; 'cycles': one segment of steps H-cycles. The memory net is the one "
    "the throughput run trained.",
}


def preset_config(preset: str, overrides: list[str]) -> LabConfig:
    """The preset's config with the ``--set`` overrides applied."""
    return apply_overrides(load_config(PRESETS[preset]), overrides, source="--set")


# ----------------------------------------------------------------------------------------------
# Memory: the one-step gradient against full backpropagation


def random_tensors(cfg: HRMConfig, n: int, t_h: int, t_l: int, seed: int) -> HRMTensors:
    """n random samples: N(0, 1) features and yA, a Bernoulli(1/2) yB at every minute, no padding."""
    g = torch.Generator().manual_seed(seed)
    return HRMTensors(
        x_daily=torch.randn(n, t_h, cfg.daily_features, generator=g),
        x_minute=torch.randn(n, t_l, cfg.minute_features, generator=g),
        minute_mask=torch.ones(n, t_l, dtype=torch.bool),
        y_a=torch.randn(n, generator=g),
        y_b=torch.randint(0, 2, (n, t_l), generator=g).float(),
    )


def full_grad_segment(
    net: HRMNet, carry: HRMCarry, x_daily: Tensor, x_minute: Tensor, minute_mask: Tensor | None = None
) -> tuple[HRMCarry, HRMSegmentOutput]:
    """``net.forward_segment`` with gradients through every update and the carry NOT detached.

    The same pieces in the same order (embed_inputs, then per cycle: summary, L_cycles l_update, h_update;
    then readout), so the values equal forward_segment's; only the graph differs.
    """
    x_h, x_l = net.embed_inputs(x_daily, x_minute, minute_mask)  # (B, T_H, d_H), (B, T_L, d_L)
    z_h, z_l = carry.z_H, carry.z_L
    for _ in range(net.cfg.H_cycles):
        h = net.summary(z_h)  # (B, d_H), the summary at the start of the cycle
        for _ in range(net.cfg.L_cycles):
            z_l = net.l_update(z_l, x_l, h)
        z_h = net.h_update(z_h, x_h)
    return HRMCarry(z_h, z_l), net.readout(z_h, z_l)


def rollout(net: HRMNet, batch: HRMTensors, segments: int, gradient: str) -> HRMSegmentOutput:
    """``segments`` segments of deep supervision with the ``gradient`` in GRADIENTS (module docstring).

    Every segment runs (no halting) and supervises every sample. ``one_step`` zeroes the gradients before
    each segment's backward (the trainer takes an AdamW step per segment; the step itself is left out),
    ``full_backprop`` accumulates its single backward into ``.grad``. Returns the last segment's outputs.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {GRADIENTS}, got {gradient!r}")
    if segments < 1:
        raise ValueError(f"segments: expected >= 1, got {segments}")
    n, t_h, t_l = batch.x_daily.shape[0], batch.x_daily.shape[1], batch.x_minute.shape[1]
    device = batch.x_daily.device
    carry = net.initial_carry(n, t_h, t_l, device)
    active = torch.ones(n, dtype=torch.bool, device=device)  # (B,)
    forward = net if gradient == "one_step" else partial(full_grad_segment, net)
    total = None
    for segment in range(1, segments + 1):
        carry, out = forward(carry, batch.x_daily, batch.x_minute, batch.minute_mask)
        steps = torch.full((n,), segment, dtype=torch.long, device=device)  # (B,)
        terms = segment_losses(net, out, carry, batch, steps, active, segment)
        loss = terms.task_means().sum() + terms.q
        if gradient == "one_step":
            net.zero_grad(set_to_none=False)
            loss.backward()
        else:
            total = loss if total is None else total + loss
    if total is not None:
        total.backward()
    return out


def rollout_memory(
    net: HRMNet, batch: HRMTensors, segments: int, gradient: str, allocator: bool = True
) -> dict[str, int]:
    """Peak memory of :func:`rollout`: ``saved_bytes`` and, with ``allocator``, ``allocator_peak_bytes`` (the
    CPU measure runs torch.profiler, which slows the rollout down).

    Measured from the state of a training step after the first: the gradients exist (zeros) before the
    rollout starts and are zeroed and accumulated in place, so the allocator peak is the memory above the
    weights and gradients (activations and temporaries) and does not depend on when ``.grad`` is allocated.
    """
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    peak = allocator_peak(batch.x_daily.device) if allocator else contextlib.nullcontext(None)
    with peak as allocated, SavedTensorMeter(exclude=net.parameters()) as meter:
        rollout(net, batch, segments, gradient)
    if meter.live_bytes:
        raise RuntimeError(f"{meter.live_bytes} saved bytes still held after backward ({gradient})")
    net.zero_grad(set_to_none=True)
    result = {"saved_bytes": meter.peak_bytes}
    if allocated is not None:
        result["allocator_peak_bytes"] = allocated.bytes
    return result


def with_cycles(net: HRMNet, h_cycles: int) -> HRMNet:
    """A twin of ``net`` (same weights, device and mode) that runs ``h_cycles`` H-cycles per segment."""
    if h_cycles == net.cfg.H_cycles:
        return net
    twin = HRMNet(dataclasses.replace(net.cfg, H_cycles=h_cycles))
    twin.load_state_dict(net.state_dict())
    return twin.to(next(net.parameters()).device).train(net.training)


def memory_point(
    net: HRMNet, batch: HRMTensors, segments: int, h_cycles: int, allocator: bool = True
) -> dict[str, Any]:
    """Both gradients' peak memory for ``segments`` segments of ``h_cycles`` H-cycles (steps = their product)."""
    twin = with_cycles(net, h_cycles)
    return {
        "segments": segments,
        "H_cycles": h_cycles,
        "L_cycles": net.cfg.L_cycles,
        "steps": segments * h_cycles,
        **{gradient: rollout_memory(twin, batch, segments, gradient, allocator) for gradient in GRADIENTS},
    }


def memory_sweep(net: HRMNet, batch: HRMTensors, steps: list[int], allocator: bool = True) -> dict[str, Any]:
    """Both gradients' peak memory as steps = segments x H_cycles grows, in two series.

    ``segments``: the net's H_cycles, steps / H_cycles segments; ``cycles``: one segment of ``steps``
    H-cycles. L_cycles is the net's. ``summary`` gives, per series and measure, the one-step curve's
    max / min (1.0 = flat), full backpropagation's last / first point and full / one-step at the last.
    """
    h_cycles = net.cfg.H_cycles
    if any(s % h_cycles for s in steps):
        raise ValueError(f"steps: each must be a multiple of H_cycles={h_cycles}, got {steps}")
    series = {
        "segments": [memory_point(net, batch, s // h_cycles, h_cycles, allocator) for s in steps],
        "cycles": [memory_point(net, batch, 1, s, allocator) for s in steps],
    }
    summary = {}
    for measure in series["segments"][0]["one_step"]:
        for name, points in series.items():
            one = [p["one_step"][measure] for p in points]
            full = [p["full_backprop"][measure] for p in points]
            summary[f"{name}/{measure}"] = {
                "one_step_max_over_min": round(max(one) / min(one), 4),
                "full_backprop_last_over_first": round(full[-1] / full[0], 4),
                "full_over_one_step_at_last": round(full[-1] / one[-1], 4),
            }
    return {"batch": batch.x_daily.shape[0], "steps": list(steps), "series": series, "summary": summary}


# ----------------------------------------------------------------------------------------------
# FLOPs


def train_batch_flops(hrm: HRMConfig, t_h: int, t_l: int, batch: int, segments: int) -> dict[str, float]:
    """Closed-form matmul FLOPs of one ``HRMTrainer.train_batch`` call that ran ``segments`` segments.

    ``projections`` and ``attention`` (q.k and the weighted sum of v) separately, and their ``total``; see
    the module docstring for the formula.
    """
    at = dataclasses.replace(hrm, daily_window=t_h, minutes_per_day=t_l)
    forward = segment_flops(at)  # every update of a segment
    one_step = segment_flops(dataclasses.replace(at, H_cycles=1, L_cycles=1))  # the graph backward runs through
    h_side = segment_flops(dataclasses.replace(at, L_cycles=0, minutes_per_day=0))  # inputs: daily rows only
    input_projections = 2 * (t_h * hrm.daily_features * hrm.h.d_model + t_l * hrm.minute_features * hrm.l.d_model)
    head_a = 2 * 2 * hrm.h.d_model  # halting_q reads the Q-head only
    halting_calls = segments if segments < hrm.max_segments else segments - 1
    # Head B's gradient also runs back through the H-update that made the last cycle's FiLM context (with FiLM
    # and at least two H cycles; HRM27M.md, "Segment semantics"): its backward, 2x one H-update's forward
    context = 2 if hrm.film and hrm.H_cycles >= 2 else 0
    h_update_proj, h_update_attn = segment_flops(dataclasses.replace(at, H_cycles=1, L_cycles=0, minutes_per_day=0))
    h_update_proj -= 2 * t_h * hrm.daily_features * hrm.h.d_model + 2 * 4 * hrm.h.d_model  # no inputs, no heads
    projections = (segments * (forward[0] + 2 * one_step[0] - input_projections + context * h_update_proj)
                   + halting_calls * (h_side[0] - head_a))
    attention = segments * (forward[1] + 2 * one_step[1] + context * h_update_attn) + halting_calls * h_side[1]
    return {
        "projections": batch * projections,
        "attention": batch * attention,
        "total": batch * (projections + attention),
    }


# ----------------------------------------------------------------------------------------------
# Measurements


def matmul_peak(n: int, repeats: int, device: torch.device, sync) -> dict[str, Any]:
    """GFLOP/s of an n x n fp32 ``torch.matmul`` into a preallocated output (2 n^3 FLOPs), after one warm-up."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device) for _ in range(2))
    out = torch.empty(n, n, device=device)
    torch.matmul(a, b, out=out)
    seconds = time_calls(lambda: torch.matmul(a, b, out=out), repeats, sync)
    gflops = [2 * n**3 / s / 1e9 for s in seconds]
    return {
        "n": n,
        "dtype": "float32",
        "gflops_best": round(max(gflops), 2),
        "gflops_median": round(float(np.median(gflops)), 2),
        "time": summarize_ms(seconds),
    }


def make_trainer(cfg: LabConfig, batch: int, args, out_dir: Path) -> HRMTrainer:
    """An HRMTrainer on a freshly seeded HRMNet(cfg.hrm), fp32, with the preset's other train settings."""
    torch.manual_seed(args.seed)
    net = HRMNet(cfg.hrm)
    train_cfg = dataclasses.replace(cfg.train, autocast_bf16=False, batch_size=batch, device=args.device)
    return HRMTrainer(net, cfg.hrm, train_cfg, out_dir, seed=args.seed, device=args.device)


def train_throughput(trainer: HRMTrainer, data: HRMTensors, args, sync) -> dict[str, Any]:
    """Timed ``train_batch`` calls on ``data`` (one batch): samples/s and achieved GFLOP/s (closed form)."""
    hrm = trainer.hrm_cfg
    batch, t_h, t_l = data.x_daily.shape[0], data.x_daily.shape[1], data.x_minute.shape[1]
    rows = torch.arange(batch)
    segments: list[int] = []

    def one_batch() -> None:
        step_rows, _ = trainer.train_batch(data, rows, 1, len(segments) + 1)
        segments.append(len(step_rows))

    for _ in range(args.warmup):
        one_batch()
    segments.clear()
    seconds = time_calls(one_batch, args.batches, sync)
    flops = [train_batch_flops(hrm, t_h, t_l, batch, s)["total"] for s in segments]
    total_s = sum(seconds)
    return {
        "batches": len(seconds),
        "segments_per_batch": segments,
        "per_batch": summarize_ms(seconds),
        "per_segment_ms": round(1e3 * total_s / sum(segments), 3),
        "samples_per_s": round(batch * len(seconds) / total_s, 4),
        "sample_segments_per_s": round(batch * sum(segments) / total_s, 4),
        "gflop_per_batch": [round(f / 1e9, 3) for f in flops],
        "achieved_gflops": round(sum(flops) / total_s / 1e9, 3),
    }


def flop_check(trainer: HRMTrainer, data: HRMTensors) -> dict[str, Any]:
    """FlopCounterMode over one more ``train_batch`` call, against the closed form for its segments."""
    batch, t_h, t_l = data.x_daily.shape[0], data.x_daily.shape[1], data.x_minute.shape[1]
    with FlopCounterMode(display=False) as counter:
        step_rows, _ = trainer.train_batch(data, torch.arange(batch), 1, 0)
    closed = train_batch_flops(trainer.hrm_cfg, t_h, t_l, batch, len(step_rows))
    counted = counter.get_total_flops()
    return {
        "segments": len(step_rows),
        "counted_ops": sorted(map(str, counter.get_flop_counts()["Global"])),
        "counted": counted,
        "closed_form_projections": closed["projections"],
        "closed_form_attention": closed["attention"],
        "counted_over_closed_form_projections": round(counted / closed["projections"], 6),
    }


def bench_preset(preset: str, args, sync) -> dict[str, Any]:
    """Matmul peak, training throughput, flop check and memory sweep of one preset."""
    cfg = preset_config(preset, args.overrides)
    hrm = cfg.hrm
    batch, t_h, t_l = getattr(args, f"shape_{preset}")
    batch = batch or cfg.train.batch_size
    t_h, t_l = t_h or hrm.daily_window, t_l or hrm.minutes_per_day
    if t_h > hrm.daily_window or t_l > hrm.minutes_per_day:
        raise SystemExit(f"{preset}: at most {hrm.daily_window} daily rows and {hrm.minutes_per_day} minutes")
    device = torch.device(args.device)
    data = random_tensors(hrm, batch, t_h, t_l, args.seed).to(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # HRMTrainer wants a run folder; train_batch writes nothing
        trainer = make_trainer(cfg, batch, args, Path(tmp))
        peak_before = matmul_peak(args.matmul_n, args.matmul_repeats, device, sync)
        train = train_throughput(trainer, data, args, sync)
        peak_after = matmul_peak(args.matmul_n, args.matmul_repeats, device, sync)
        peak = max(peak_before["gflops_best"], peak_after["gflops_best"])
        train["achieved_over_peak"] = round(train["achieved_gflops"] / peak, 4)
        check = flop_check(trainer, data)
        net = trainer.net
        del trainer
    gc.collect()
    memory_data = random_tensors(hrm, args.memory_batch, t_h, t_l, args.seed + 1).to(device)
    memory = memory_sweep(net, memory_data, args.memory_steps, allocator=not args.no_allocator_peak)
    shortened = t_h < hrm.daily_window or t_l < hrm.minutes_per_day
    return {
        "config": str(PRESETS[preset]),
        "model": {
            "parameters": net.param_counts()["total"],
            "h": dataclasses.asdict(hrm.h),
            "l": dataclasses.asdict(hrm.l),
            "H_cycles": hrm.H_cycles,
            "L_cycles": hrm.L_cycles,
            "max_segments": hrm.max_segments,
            "loss_weighting": cfg.train.loss_weighting,
        },
        "shapes": {
            "batch": batch,
            "daily_window": t_h,
            "minutes": t_l,
            "preset_daily_window": hrm.daily_window,
            "preset_minutes": hrm.minutes_per_day,
            "shortened": shortened,
            "note": (
                f"inputs shortened to {t_h} daily rows and {t_l} minutes (preset {hrm.daily_window} and "
                f"{hrm.minutes_per_day}) so the run finishes on this machine; the architecture is the preset's"
                if shortened else "the preset's full input lengths"
            ),
        },
        "flops_per_sample_segment_forward": round(
            sum(segment_flops(dataclasses.replace(hrm, daily_window=t_h, minutes_per_day=t_l))), 1
        ),
        "matmul_peak": {"before": peak_before, "after": peak_after, "gflops": peak},
        "train": train,
        "flop_check": check,
        "memory": memory,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_after": load_average(),
    }


def shape_option(parser, preset: str, quick_note: str) -> None:
    """--PRESET-batch, --PRESET-daily-window and --PRESET-minutes, into args.shape_PRESET (see SHAPES)."""
    for name in ("batch", "daily-window", "minutes"):
        parser.add_argument(f"--{preset}-{name}", type=int, dest=f"{preset}_{name.replace('-', '_')}",
                            help=f"{preset} preset {name} (default {quick_note})")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["small", "27m"])
    for preset in PRESETS:
        shape_option(parser, preset, f"{SHAPES[preset]}, quick {QUICK_SHAPES[preset]}; None = the preset's")
    parser.add_argument("--batches", type=int, help="timed training batches (default 3, quick 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training batches first")
    parser.add_argument("--matmul-n", type=int, help="matmul size for the peak (default 2048, quick 256)")
    parser.add_argument("--matmul-repeats", type=int, help="timed matmuls (default 5, quick 2)")
    parser.add_argument("--memory-batch", type=int, default=1, help="samples in the memory sweep")
    parser.add_argument("--memory-steps", type=int, nargs="+", default=[2, 4, 8, 16],
                        help="segments x H_cycles of each memory point")
    parser.add_argument("--no-allocator-peak", action="store_true",
                        help="skip the allocator peak (on CPU it runs torch.profiler, slow); saved bytes only")
    add_torch_flags(parser)
    args = parser.parse_args(argv)
    args.batches = args.batches or (1 if args.quick else 3)
    args.matmul_n = args.matmul_n or (256 if args.quick else 2048)
    args.matmul_repeats = args.matmul_repeats or (2 if args.quick else 5)
    for preset in PRESETS:
        defaults = (QUICK_SHAPES if args.quick else SHAPES)[preset]
        given = (getattr(args, f"{preset}_{name}") for name in ("batch", "daily_window", "minutes"))
        setattr(args, f"shape_{preset}", tuple(g if g is not None else d for g, d in zip(given, defaults)))
    sync = torch_setup(args)
    for preset in args.presets:
        h_cycles = preset_config(preset, args.overrides).hrm.H_cycles
        if any(s % h_cycles for s in args.memory_steps):
            parser.error(f"--memory-steps: each must be a multiple of {preset}'s H_cycles={h_cycles}")

    document = new_document("bench_train", args, notes=NOTES, gradients=list(GRADIENTS), results={})
    started = time.perf_counter()
    for preset in args.presets:
        document["results"][preset] = bench_preset(preset, args, sync)
        gc.collect()
    return finish_document(document, started, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
