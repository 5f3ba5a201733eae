"""Per-minute latency of HRMStreamer against re-running the day, for the 27M and small presets.

    python scripts/bench_stream.py [--presets 27m small] [--dtypes fp32 bf16] [--batch 64] [--samples 20]
                                   [--rerun-batch 4] [--catch-up-budget-s 300] [--set KEY=VALUE ...]
                                   [--threads N] [--device cpu] [--seed N] [--quick] [--out FILE]

``--set`` overrides a key of every preset's config (config.apply_overrides), e.g. ``--set hrm.l.n_layers=4``.

Inputs: random daily rows (the preset's full window) and 390 random minutes for ``--batch`` symbols. The net
has the preset's widths and random weights; its FiLM and Q-head weights, zero as initialised, are drawn from
N(0, ``--q-std``^2) as after training, so FiLM conditions the minutes and the learned halting rule
(``hrm.eval_halting``) stops symbols after different numbers of segments (with zero Q weights every symbol
would run max_segments). For batch 1 and batch ``--batch``, two streamers are measured:

- ``one_segment``: a twin of the net with ``max_segments = 1`` (same weights): one segment per minute, i.e.
  all its H_cycles x L_cycles L-updates;
- ``halting``: the net itself, with the number of segments the halting rule chose per symbol.

For each: ``start_day`` (the daily H update, halting and cache reset) per call and per symbol; single-minute
``step`` times over minutes 1..k and 391-k..390 (k = ``--samples``) per update and per symbol-minute; the
``advance`` that catches up the minutes in between. The late window is skipped, and says so, when the
catch-up would take longer than ``--catch-up-budget-s`` (estimated as minutes x the early median step).
``rerun_390``: the same minute-390 update done without a cache, ``act_rollout`` over minutes 1..390 (the whole
forward, H included) for the first ``min(batch, --rerun-batch)`` symbols, ms per symbol, for the one-segment
twin (and for the halting net at batch 1, where the rerun runs the same segments as the stream). The stream
runs on weights cast to the dtype; the bf16 rerun runs the fp32 weights under bf16 autocast, the project's
bf16 path (``HRMNet.readout`` keeps the heads in fp32, so act_rollout cannot run on bf16 weights).
The reruns are timed between the late-window steps, so both sides of ``speedup_at_390`` = rerun ms per
symbol / streamed ms per symbol-minute (median over minutes 391-k..390) see the same machine load.
Targets (27M preset, batch 64): one segment at most 2 ms per symbol-minute at minute 390, and at least 100x
faster than the rerun. With ``--batch 64`` the 27M result also holds ``targets.floor`` (:func:`hardware_floor`):
the time this machine needs for just the matrix products and the KV-cache reads of that update, a lower bound
for any implementation of the architecture in that dtype.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import time
from itertools import count
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from bench_common import (
    add_torch_flags,
    bench_parser,
    finish_document,
    load_average,
    new_document,
    summarize_ms,
    time_calls,
    torch_setup,
)

from lab_v10.src.config import apply_overrides, load_config
from lab_v10.src.options.act_halting import act_rollout
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_stream import HRMStreamer

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
PRESETS = {"27m": CONFIG_DIR / "default_hrm27m.yaml", "small": CONFIG_DIR / "small.yaml"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MINUTES = 390  # a full regular session
TARGET_PRESET, TARGET_BATCH = "27m", 64
TARGET_MS_PER_SYMBOL_MINUTE = 2.0  # one segment, minute 390
TARGET_SPEEDUP_AT_390 = 100.0


def trained_like_net(cfg, q_std: float, seed: int) -> HRMNet:
    """HRMNet(cfg) with random weights and FiLM and Q-head weights drawn N(0, q_std^2) instead of zero."""
    torch.manual_seed(seed)
    net = HRMNet(cfg).eval()
    with torch.no_grad():
        for w in (net.film.gamma.weight, net.film.beta.weight, net.q_head.weight):
            w.normal_(0.0, q_std)
    return net


def one_segment_twin(net: HRMNet) -> HRMNet:
    """The same weights with ``max_segments = 1``: every symbol runs exactly one segment."""
    twin = HRMNet(dataclasses.replace(net.cfg, max_segments=1)).eval()
    twin.load_state_dict(net.state_dict())
    param = next(net.parameters())
    return twin.to(param.device, param.dtype)


def window(seconds: list[float], batch: int, first_minute: int) -> dict[str, Any]:
    """Step times of consecutive minutes from ``first_minute`` (1-based), per update and per symbol-minute."""
    return {
        "minutes": [first_minute, first_minute + len(seconds) - 1],
        "per_update": summarize_ms(seconds),
        "per_symbol_minute": summarize_ms(seconds, per=batch),
    }


def rerun_call(net32: HRMNet, x_daily, x_minute, dtype: torch.dtype) -> Callable[[], Any]:
    """A call of act_rollout over all 390 minutes: the minute-390 probability without a cache.

    ``net32`` has fp32 weights; a lower ``dtype`` runs under autocast (module docstring).
    """
    device_type = next(net32.parameters()).device.type

    def run():
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            return act_rollout(net32, x_daily, x_minute)

    return run


def bench_streamer(
    net: HRMNet, x_daily, x_minute, args, sync, rerun: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """start_day and step timings of one HRMStreamer over x_daily (B, T_H, F_d), x_minute (B, 390, F_m).

    ``rerun`` (``rerun_call``) is timed ``--rerun-repeats`` times between the late-window steps, so the
    speed-up compares times taken under the same load (after the early window if the late one is skipped).
    """
    batch, k = x_daily.shape[0], args.samples
    dtype = next(net.parameters()).dtype
    streamer = HRMStreamer(net, batch, MINUTES, args.device, dtype)
    start_day = time_calls(lambda: streamer.start_day(x_daily), args.h_repeats, sync)
    segments, symbols = np.unique(streamer.steps.cpu().numpy(), return_counts=True)
    streamer.step(x_minute[:, 0])  # warm-up of the minute path, then a fresh day
    streamer.start_day(x_daily)

    minute = count()
    early = time_calls(lambda: streamer.step(x_minute[:, next(minute)]), k, sync)
    result: dict[str, Any] = {
        "segments": {
            "mean": round(float((segments * symbols).sum() / batch), 3),
            "symbols_by_segments": dict(zip(segments.tolist(), symbols.tolist())),
        },
        "cache_rows": streamer.cache_rows,
        "start_day": {"per_call": summarize_ms(start_day), "per_symbol": summarize_ms(start_day, per=batch)},
        "early": window(early, batch, 1),
    }
    rollouts: list[Any] = []
    rerun_seconds: list[float] = []
    catch_up_minutes = MINUTES - 2 * k
    estimate_s = catch_up_minutes * float(np.median(early))
    if estimate_s > args.catch_up_budget_s:
        result["late"] = {
            "skipped": f"catching up {catch_up_minutes} minutes would take about {estimate_s:.0f} s "
            f"(> --catch-up-budget-s {args.catch_up_budget_s:.0f})"
        }
        if rerun is not None:
            rerun_seconds = time_calls(lambda: rollouts.append(rerun()), args.rerun_repeats, sync)
    else:
        (catch_up,) = time_calls(lambda: streamer.advance(x_minute[:, k : MINUTES - k]), 1, sync)
        result["catch_up"] = {"minutes": catch_up_minutes, "seconds": round(catch_up, 3)}
        minute = count(MINUTES - k)
        late: list[float] = []
        for chunk in np.array_split(np.arange(k), args.rerun_repeats if rerun is not None else 1):
            late += time_calls(lambda: streamer.step(x_minute[:, next(minute)]), chunk.size, sync)
            if rerun is not None:
                rerun_seconds += time_calls(lambda: rollouts.append(rerun()), 1, sync)
        result["late"] = window(late, batch, MINUTES - k + 1)
    if rerun is not None:
        result["rerun_390"] = rerun_summary(rerun_seconds, rollouts[-1].steps.cpu().numpy())
        result["speedup_at_390"] = speedup(result)
    return result  # the streamer and its KV cache are freed on return


def rerun_summary(seconds: list[float], steps: np.ndarray) -> dict[str, Any]:
    """Rerun times per call and per symbol; act_rollout runs every symbol until the last one halts, so it
    computes ``segments_run`` segments for each of them. ``steps`` (symbols,) are their halting segments."""
    return {
        "symbols": int(steps.size),
        "segments_mean": round(float(steps.mean()), 3),
        "segments_run": int(steps.max()),
        "per_call": summarize_ms(seconds),
        "per_symbol": summarize_ms(seconds, per=int(steps.size)),
    }


def speedup(case: dict[str, Any]) -> float | None:
    """Rerun ms per symbol / streamed ms per symbol-minute at minute 390, or None without a late window."""
    if "skipped" in case["late"]:
        return None
    return round(case["rerun_390"]["per_symbol"]["median_ms"] / case["late"]["per_symbol_minute"]["median_ms"], 1)


def bench_config(preset: str, dtype_name: str, args, sync) -> dict[str, Any]:
    """Both streamers at batch 1 and ``--batch`` for one preset (``--set`` applied) and dtype."""
    cfg = apply_overrides(load_config(PRESETS[preset]), args.overrides, source="--set").hrm
    dtype = DTYPES[dtype_name]
    net32 = trained_like_net(cfg, args.q_std, args.seed).to(args.device)  # fp32 weights, for the rerun
    twin32 = one_segment_twin(net32)
    net, twin = (copy.deepcopy(m).to(dtype) for m in (net32, twin32))  # the streamed weights
    g = torch.Generator().manual_seed(args.seed)
    x_daily = torch.randn(args.batch, cfg.daily_window, cfg.daily_features, generator=g)  # (B, T_H, F_d)
    x_minute = torch.randn(args.batch, MINUTES, cfg.minute_features, generator=g)  # (B, 390, F_m)
    x_daily, x_minute = x_daily.to(args.device), x_minute.to(args.device)  # fp32; the streamer casts
    result: dict[str, Any] = {
        "model": {
            "parameters": net.param_counts()["total"],
            "h": dataclasses.asdict(cfg.h),
            "l": dataclasses.asdict(cfg.l),
            "daily_window": cfg.daily_window,
            "H_cycles": cfg.H_cycles,
            "L_cycles": cfg.L_cycles,
            "max_segments": cfg.max_segments,
            "eval_halting": cfg.eval_halting,
        },
        "precision": {
            "stream": f"{dtype_name} weights and KV cache",
            "rerun": "fp32 weights" + ("" if dtype == torch.float32 else f", {dtype_name} autocast"),
        },
    }
    for batch in sorted({1, args.batch}):
        xd, xm = x_daily[:batch], x_minute[:batch]
        rerun_symbols = min(batch, args.rerun_batch)
        started = time.perf_counter()
        one_rerun = rerun_call(twin32, xd[:rerun_symbols], xm[:rerun_symbols], dtype)
        one = bench_streamer(twin, xd, xm, args, sync, one_rerun)
        halting_rerun = rerun_call(net32, xd, xm, dtype) if batch == 1 else None  # the same segments as the stream
        halting = bench_streamer(net, xd, xm, args, sync, halting_rerun)
        if "skipped" not in halting["late"] and "skipped" not in one["late"]:
            halting["cost_vs_one_segment_at_390"] = round(
                halting["late"]["per_symbol_minute"]["median_ms"] / one["late"]["per_symbol_minute"]["median_ms"], 2
            )
        result[f"batch_{batch}"] = {
            "one_segment": one,
            "halting": halting,
            "seconds": round(time.perf_counter() - started, 1),
            "load_average_after": load_average(),
        }
    if preset == TARGET_PRESET:
        result["targets"] = targets(result.get(f"batch_{TARGET_BATCH}"))
        if args.batch == TARGET_BATCH:
            result["targets"]["floor"] = hardware_floor(twin, args, sync)
    return result


def hardware_floor(net: HRMNet, args, sync) -> dict[str, Any]:
    """Lower bound of one segment's ms per symbol-minute at minute 390 on this machine, batch ``args.batch``.

    Two parts, measured here with the net's own weights and dtype, each the median of ``--samples`` calls:

    - ``projections``: every nn.Linear of one L-layer applied to a (batch, in) input, times the layers and the
      H_cycles x L_cycles L-updates of a segment: the matrix products a minute update cannot skip, at the
      batch's shape, with nothing else (no attention, norms, FiLM or Python between them);
    - ``kv_read``: one read (a sum) of the keys and values cached for 390 minutes of one (L-update, layer),
      times the updates and layers: the memory traffic of attending at minute 390.

    Their sum ignores softmax, norms and every overhead, so no implementation of this architecture in this
    dtype beats it here; if it exceeds the target, the target needs other hardware or a changed model.
    """
    cfg, batch = net.cfg, args.batch
    param = next(net.parameters())
    layer = net.l_module.layers[0]
    weights = [m.weight for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(batch, w.shape[1], device=param.device, dtype=param.dtype) for w in weights]
    per_layer_flops = sum(2 * batch * w.numel() for w in weights)
    updates = cfg.H_cycles * cfg.L_cycles
    repeats = updates * cfg.l.n_layers

    def projections() -> None:
        with torch.inference_mode():
            for x, w in zip(inputs, weights):
                torch.nn.functional.linear(x, w)

    attn = layer.attn
    kv = torch.randn(2, batch, attn.n_heads, MINUTES, attn.head_dim, device=param.device, dtype=param.dtype)
    proj_s = float(np.median(time_calls(projections, args.samples, sync)))
    read_s = float(np.median(time_calls(lambda: kv.sum(), args.samples, sync)))
    proj_ms = 1e3 * proj_s * repeats / batch
    read_ms = 1e3 * read_s * repeats / batch
    return {
        "dtype": str(param.dtype).removeprefix("torch."),
        "projections": {
            "ms_per_symbol_minute": round(proj_ms, 3),
            "mflop_per_symbol_minute": round(per_layer_flops * repeats / batch / 1e6, 3),
            "gflops_achieved": round(per_layer_flops / proj_s / 1e9, 1),
        },
        "kv_read": {
            "ms_per_symbol_minute": round(read_ms, 3),
            "mb_per_symbol_minute": round(kv.numel() * kv.element_size() * repeats / batch / 1e6, 1),
            "gb_per_s": round(kv.numel() * kv.element_size() / read_s / 1e9, 1),
        },
        "floor_ms_per_symbol_minute": round(proj_ms + read_ms, 3),
        "target_max": TARGET_MS_PER_SYMBOL_MINUTE,
    }


def targets(batch_result: dict[str, Any] | None) -> dict[str, Any]:
    """The 27M targets at batch 64, one segment, minute 390; ``met`` is None when not measured."""
    one = None if batch_result is None else batch_result["one_segment"]
    measured = one is not None and "skipped" not in one["late"]
    ms = one["late"]["per_symbol_minute"]["median_ms"] if measured else None
    ratio = one["speedup_at_390"] if measured else None
    return {
        "batch": TARGET_BATCH,
        "ms_per_symbol_minute_one_segment_at_390": {
            "value": ms,
            "target_max": TARGET_MS_PER_SYMBOL_MINUTE,
            "met": None if ms is None else ms <= TARGET_MS_PER_SYMBOL_MINUTE,
        },
        "speedup_vs_rerun_at_390": {
            "value": ratio,
            "target_min": TARGET_SPEEDUP_AT_390,
            "met": None if ratio is None else ratio >= TARGET_SPEEDUP_AT_390,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["27m", "small"])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=TARGET_BATCH, help="symbols streamed together")
    parser.add_argument("--samples", type=int, help="timed minute updates per window (default 20, quick 5)")
    parser.add_argument("--h-repeats", type=int, help="timed start_day calls (default 3, quick 1)")
    parser.add_argument("--rerun-batch", type=int, default=4, help="symbols in the timed full-day rerun")
    parser.add_argument("--rerun-repeats", type=int, help="timed full-day reruns (default 3, quick 1)")
    parser.add_argument("--catch-up-budget-s", type=float, default=300.0)
    parser.add_argument("--q-std", type=float, default=0.05, help="std of the FiLM and Q-head weights")
    add_torch_flags(parser)
    args = parser.parse_args(argv)
    args.samples = args.samples or (5 if args.quick else 20)
    args.h_repeats = args.h_repeats or (1 if args.quick else 3)
    args.rerun_repeats = args.rerun_repeats or (1 if args.quick else 3)
    sync = torch_setup(args)

    document = new_document("bench_stream", args, results={})
    started = time.perf_counter()
    for preset in args.presets:
        for dtype_name in args.dtypes:
            document["results"][f"{preset}/{dtype_name}"] = bench_config(preset, dtype_name, args, sync)
            gc.collect()
    return finish_document(document, started, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
