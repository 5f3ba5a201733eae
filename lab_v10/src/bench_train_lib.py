"""Measurement pieces of ``scripts/bench_train.py``: full backpropagation through HRM segments, the bytes
autograd holds for backward, the allocator's peak, and the memory of a deep-supervision rollout.

They live in the package (not in scripts/) so tests import them directly. The script adds the timings, the
closed-form FLOP counts (scripts/optimize_hrm27m.py) and the JSON document.

Two gradients through ``segments`` HRM segments of ``H_cycles x L_cycles`` updates each, with the trainer's
loss terms per segment (:func:`segment_loss`):

- ``one_step``: the trainer's path (hrm_train.py): ``HRMNet.forward_segment`` (every update but the last L-
  and H-update under no_grad, carry detached), the segment's loss, ``backward`` per segment;
- ``full_backprop``: the same updates with gradients through all of them and no detach between segments
  (:func:`full_grad_segment`), the segments' losses summed and one ``backward`` at the end (backpropagation
  through time over every segment and cycle).

Memory measures (see :func:`rollout_memory`):

- ``saved_bytes``: the peak over the rollout of the bytes of distinct storages autograd holds for backward
  (:class:`SavedTensorMeter`, via ``torch.autograd.graph.saved_tensors_hooks``), parameters excluded: the
  activation memory a gradient method keeps, temporaries left out. It does not depend on timing, load or
  values (the same shapes give the same bytes on every run of a torch build and device), so tests compare
  it exactly.
- ``allocator_peak_bytes``: the peak of the allocator's running total above its value at the start
  (:func:`allocator_peak`), measured with the parameters' gradients already allocated: activations plus
  temporaries (for full backpropagation these include the engine's buffers that sum a weight's gradient
  over all the steps that use it). On CPU it is read from torch.profiler's memory events
  (``profile_memory=True``: every allocation event carries the CPU allocator's running total), on CUDA from
  ``torch.cuda.max_memory_allocated``. Process RSS is not used: the C allocator keeps freed pages and the
  machine is shared, so RSS deltas mix in noise of the order of the effect.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch._C._profiler import _ExtraFields_Allocation

from lab_v10.src.config import HRMConfig
from lab_v10.src.options.act_halting import halt_correctness, q_learning_loss, q_learning_targets
from lab_v10.src.options.hrm_net import HRMCarry, HRMNet, HRMSegmentOutput
from lab_v10.src.options.hrm_train import HRMTensors, per_sample_task_losses

GRADIENTS = ("one_step", "full_backprop")


# ----------------------------------------------------------------------------------------------
# Full backpropagation


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


# ----------------------------------------------------------------------------------------------
# Memory meters


class _Saved:
    """A tensor autograd saved, registered with its meter until autograd drops it."""

    __slots__ = ("meter", "key", "nbytes", "tensor")

    def __init__(self, meter: SavedTensorMeter, key: int, nbytes: int, tensor: Tensor) -> None:
        self.meter, self.key, self.nbytes, self.tensor = meter, key, nbytes, tensor

    def __del__(self) -> None:
        self.meter._release(self.key, self.nbytes)


def _unpack(packed: Any) -> Tensor:
    return packed.tensor if isinstance(packed, _Saved) else packed


class SavedTensorMeter:
    """Bytes of distinct storages that autograd holds for backward while the meter is entered.

    Each tensor saved for backward inside the ``with`` block is counted by its storage (a storage saved
    several times, or through several views, counts once) until autograd drops it (after ``backward``, or
    when the graph is freed), so ``live_bytes`` is what the graph holds now and ``peak_bytes`` the most it
    held. Storages of ``exclude`` (the parameters: their memory does not depend on the gradient method)
    are not counted.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._saves: dict[int, int] = {}  # storage address -> live saves of it
        self.live_bytes = 0
        self.peak_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: Tensor) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self._excluded:
            return tensor
        if key not in self._saves:
            self._saves[key] = 0
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._saves[key] += 1
        return _Saved(self, key, storage.nbytes(), tensor)

    def _release(self, key: int, nbytes: int) -> None:
        self._saves[key] -= 1
        if self._saves[key] == 0:
            del self._saves[key]
            self.live_bytes -= nbytes


@dataclass
class PeakBytes:
    """Filled in when :func:`allocator_peak` exits."""

    bytes: int = 0


def _cpu_peak(prof: torch.profiler.profile) -> int:
    """Peak of the CPU allocator's running total above its value before the first allocation event."""
    events: list[tuple[int, int, int]] = []  # (time ns, bytes allocated (< 0: freed), running total after)
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        fields = node.extra_fields
        if isinstance(fields, _ExtraFields_Allocation) and fields.device.type == "cpu":
            events.append((node.start_time_ns, fields.alloc_size, fields.total_allocated))
        stack.extend(node.children)
    if not events:
        return 0
    events.sort()
    start = events[0][2] - events[0][1]
    return max(total for _, _, total in events) - start


@contextlib.contextmanager
def allocator_peak(device: torch.device) -> Iterator[PeakBytes]:
    """Peak allocated bytes inside the block above the amount allocated at its start (module docstring)."""
    result = PeakBytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.bytes = torch.cuda.max_memory_allocated(device) - start
        return
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        yield result
    result.bytes = _cpu_peak(prof)


# ----------------------------------------------------------------------------------------------
# Rollouts


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


def segment_loss(net: HRMNet, out: HRMSegmentOutput, new_carry: HRMCarry, batch: HRMTensors, segment: int) -> Tensor:
    """The trainer's loss terms of one segment, un-weighted: Head-A NLL + Head-B log loss (batch means) + the
    Q-learning loss with the trainer's targets (halt: halt_correctness; continue: ``HRMNet.halting_q`` on the
    new carry, no_grad; no ponder cost). Every head is in the loss, so a backward frees the segment's graph.
    ``segment`` is 1-based."""
    cfg = net.cfg
    losses, _ = per_sample_task_losses(out, batch)  # (B, 2)
    correct = halt_correctness(
        out.mu, out.log_var, out.logits_b, batch.y_a, batch.y_b, batch.minute_mask,
        nll_threshold=cfg.halt_nll_threshold, bce_threshold=cfg.halt_bce_threshold,
    )  # (B,)
    with torch.no_grad():
        next_q = net.halting_q(new_carry, batch.x_daily)  # (B,), (B,)
    steps = torch.full_like(correct, segment, dtype=torch.long)  # (B,)
    targets = q_learning_targets(correct, *next_q, steps, cfg.max_segments)
    return losses.sum(-1).mean() + q_learning_loss(out.q_halt, out.q_continue, targets)


def rollout(net: HRMNet, batch: HRMTensors, segments: int, gradient: str) -> HRMSegmentOutput:
    """``segments`` segments of deep supervision with the ``gradient`` in GRADIENTS (module docstring).

    Every segment runs (no halting). ``one_step`` zeroes the gradients before each segment's backward (the
    trainer takes an AdamW step per segment; the step itself is left out), ``full_backprop`` accumulates
    its single backward into ``.grad``. Returns the last segment's outputs.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {GRADIENTS}, got {gradient!r}")
    if segments < 1:
        raise ValueError(f"segments: expected >= 1, got {segments}")
    n, t_h, t_l = batch.x_daily.shape[0], batch.x_daily.shape[1], batch.x_minute.shape[1]
    carry = net.initial_carry(n, t_h, t_l, batch.x_daily.device)
    total = None
    for segment in range(1, segments + 1):
        if gradient == "one_step":
            carry, out = net(carry, batch.x_daily, batch.x_minute, batch.minute_mask)
            loss = segment_loss(net, out, carry, batch, segment)
            net.zero_grad(set_to_none=False)
            loss.backward()
        else:
            carry, out = full_grad_segment(net, carry, batch.x_daily, batch.x_minute, batch.minute_mask)
            loss = segment_loss(net, out, carry, batch, segment)
            total = loss if total is None else total + loss
    if total is not None:
        total.backward()
    return out


def rollout_memory(
    net: HRMNet, batch: HRMTensors, segments: int, gradient: str, allocator: bool = True
) -> dict[str, int]:
    """Peak memory of :func:`rollout` (module docstring): ``saved_bytes`` and, with ``allocator``,
    ``allocator_peak_bytes`` (the CPU measure runs torch.profiler, which slows the rollout down).

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
