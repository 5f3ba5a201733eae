"""Per-minute latency of HRMStreamer against its roofline floor and against re-running the day.

    python scripts/bench_stream.py [--presets 27m small] [--dtypes fp32 bf16] [--batch 64] [--samples 20]
                                   [--attention auto] [--max-segments-live 2] [--rerun-batch 4]
                                   [--catch-up-budget-s 300]
                                   [--set KEY=VALUE ...] [--threads N] [--device cpu] [--seed N] [--quick]
                                   [--out FILE]

``--set`` overrides a key of every preset's config (config.apply_overrides), e.g. ``--set hrm.l.n_layers=4``.

Inputs: random daily rows (the preset's full window) and 390 random minutes for ``--batch`` symbols. The net
has the preset's widths and random weights; its FiLM and Q-head weights, zero as initialised, are drawn from
N(0, ``--q-std``^2) as after training, so FiLM conditions the minutes and the learned halting rule
(``hrm.eval_halting``) stops symbols after different numbers of segments. Per preset: ``auto``, the choice
``stream.dtype: auto`` makes at ``--batch`` (options/stream_dtype.py: its probe, kernel and reason). Per dtype
(weights and KV cache cast to it; the cached-attention kernel ``auto``'s probe picks in it, or ``--attention``)
and for batch 1 and ``--batch``, three streamers:

- ``one_segment``: a twin of the net with ``max_segments = 1`` (same weights): one segment per minute;
- ``halting``: the net itself, with the segments the learned rule chose per symbol;
- ``capped``: the same with ``stream.max_segments_live = --max-segments-live`` (only when some symbol runs
  more), with ``capped_symbols``: how many the cap stopped (the same count for every minute of the day).

For each: ``start_day`` (the daily H update, halting and cache reset) per call and per symbol; single-minute
``step`` times over minutes 1..k and 391-k..390 (k = ``--samples``) per update and per symbol-minute; the
late windows interleave the streamers minute by minute, so ``cost_vs_one_segment_at_390`` compares steps taken
under the same load (the three caches are held at once: ``cache_gb``). Between
them the cache is filled by ``advance`` over the minutes in between (``catch_up``) or, when that would take
longer than ``--catch-up-budget-s`` (minutes x the early median step), skipped by setting ``position`` to
390-k (``catch_up.jumped``): the late steps then read cached rows the early window did not write, which costs
the same bytes and FLOPs, so the times hold but the probabilities are meaningless. ``time_by_op``: torch
profiler's self CPU ms per op of one more minute-390 step of the one-segment streamer (where the time goes).
``rerun_390``: the minute-390 update done without a cache, ``act_rollout`` over minutes 1..390 (H included)
for the first ``min(batch, --rerun-batch)`` symbols, ms per symbol, for the one-segment twin; fp32 weights,
under autocast in bf16 (``HRMNet.readout`` keeps the heads in fp32). Reruns are timed between the late
steps, so both sides of ``speedup_at_390`` = rerun ms per symbol / streamed ms per symbol-minute see the
same load.

Roofline floor (``floor``, per dtype and batch): one segment's minute-390 update can take no less than the
*maximum* of its compute time, the FLOPs of options/stream_dtype.minute_cost (L-layer projections and
attention) at ``rates.gflops``, the best rate this machine reaches on the streaming projection shapes in that
dtype (each nn.Linear of an L block on ``--batch`` and 4 x ``--batch`` rows, best of ``--rate-repeats``),
and its memory time, the bytes it must move (the keys and values of 390 minutes, and the L weights once per
L-update shared by the batch) at ``rates.gb_per_s``, the best DRAM bandwidth measured (bench_common).
``ratio_to_floor`` = streamed / floor.

Targets (``targets``, per dtype at ``--batch``; the issue's are for the 27M preset at batch 64, flagged by
``target_config``): the dtype ``auto`` chooses streams within 1.25x its floor; where the machine has native
bf16, bf16 takes at most 2 ms per symbol-minute; at least 100x faster than the rerun; with learned halting a
minute costs at most 1.2x one segment. Each records the rates beside it.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import (
    add_torch_flags,
    bench_parser,
    finish_document,
    load_average,
    memory_bandwidth,
    new_document,
    summarize_ms,
    time_calls,
    torch_setup,
)

from lab_v10.src.config import apply_overrides, load_config
from lab_v10.src.options.act_halting import act_rollout
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_stream import ATTENTION_KERNELS, HRMStreamer
from lab_v10.src.options.stream_dtype import (
    DTYPES,
    MinuteCost,
    choose_stream,
    minute_cost,
    projection_seconds,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
PRESETS = {"27m": CONFIG_DIR / "default_hrm27m.yaml", "small": CONFIG_DIR / "small.yaml"}
MINUTES = 390  # a full regular session
TARGET_PRESET, TARGET_BATCH = "27m", 64
TARGET_FLOOR_RATIO = 1.25  # the chosen dtype, one segment, minute 390, at most this times its floor
TARGET_MS_NATIVE_BF16 = 2.0  # bf16 per symbol-minute where the machine has native bf16
TARGET_SPEEDUP_AT_390 = 100.0
TARGET_HALTING_COST = 1.2  # learned halting vs one segment at minute 390
TOP_OPS = 8


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
    """A call of act_rollout over all 390 minutes (fp32 weights; a lower ``dtype`` runs under autocast)."""
    device_type = next(net32.parameters()).device.type

    def run():
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            return act_rollout(net32, x_daily, x_minute)

    return run


def time_by_op(fn: Callable[[], Any]) -> dict[str, dict[str, float]]:
    """Self CPU ms and calls of the TOP_OPS most expensive ops of one call of ``fn`` (torch profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPS]
    return {e.key: {"self_ms": round(e.self_cpu_time_total / 1e3, 3), "calls": e.count} for e in ops}


def bench_streamers(
    streams: dict[str, HRMStreamer], x_daily, x_minute, args, sync, rerun: Callable[[], Any]
) -> dict[str, dict[str, Any]]:
    """start_day and step timings of each streamer over x_daily (B, T_H, F_d), x_minute (B, 390, F_m) (module
    docstring). The late windows interleave the streamers minute by minute, so the ratios between them see
    the same load; ``rerun`` is timed ``--rerun-repeats`` times between late minutes, for the first streamer."""
    batch, k = x_daily.shape[0], args.samples
    results: dict[str, dict[str, Any]] = {}
    for name, streamer in streams.items():
        start_day = time_calls(partial(streamer.start_day, x_daily), args.h_repeats, sync)
        segments, symbols = np.unique(streamer.steps.cpu().numpy(), return_counts=True)
        streamer.step(x_minute[:, 0])  # warm-up of the minute path; minute 0 is streamed again below
        streamer.position = 0
        minutes = iter(range(k))
        early = time_calls(lambda s=streamer, m=minutes: s.step(x_minute[:, next(m)]), k, sync)
        results[name] = {
            "segments": {
                "mean": round(float((segments * symbols).sum() / batch), 3),
                "symbols_by_segments": dict(zip(segments.tolist(), symbols.tolist())),
            },
            "capped_symbols": int(streamer.capped.sum()),
            "cache_rows": streamer.cache_rows,
            "start_day": {"per_call": summarize_ms(start_day), "per_symbol": summarize_ms(start_day, per=batch)},
            "early": window(early, batch, 1),
            "catch_up": catch_up(streamer, x_minute, float(np.median(early)), args, sync),
        }
    late: dict[str, list[float]] = {name: [] for name in streams}
    rollouts: list[Any] = []
    rerun_seconds: list[float] = []
    for chunk in np.array_split(np.arange(MINUTES - k, MINUTES), args.rerun_repeats):
        for m in chunk:
            for name, streamer in streams.items():
                late[name] += time_calls(partial(streamer.step, x_minute[:, m]), 1, sync)
        rerun_seconds += time_calls(lambda: rollouts.append(rerun()), 1, sync)
    for name in streams:
        results[name]["late"] = window(late[name], batch, MINUTES - k + 1)
    first = results[next(iter(streams))]
    first["rerun_390"] = rerun_summary(rerun_seconds, rollouts[-1].steps.cpu().numpy())
    first["speedup_at_390"] = round(
        first["rerun_390"]["per_symbol"]["median_ms"] / first["late"]["per_symbol_minute"]["median_ms"], 1)
    return results


def catch_up(streamer: HRMStreamer, x_minute, step_s: float, args, sync) -> dict[str, Any]:
    """Bring ``streamer`` from minute ``--samples`` to 390 - ``--samples``: ``advance`` (timed), or a jump of
    ``position`` when that would exceed ``--catch-up-budget-s`` (module docstring)."""
    k = args.samples
    minutes = MINUTES - 2 * k
    estimate_s = minutes * step_s
    if estimate_s > args.catch_up_budget_s:
        streamer.position = MINUTES - k  # timing only: see the module docstring
        return {"minutes": minutes, "jumped": (
            f"advancing would take about {estimate_s:.0f} s (> --catch-up-budget-s {args.catch_up_budget_s:.0f}); "
            "the late steps read rows the early window did not write: same bytes and FLOPs, meaningless values")}
    (seconds,) = time_calls(lambda: streamer.advance(x_minute[:, k : MINUTES - k]), 1, sync)
    return {"minutes": minutes, "seconds": round(seconds, 3)}


def rerun_summary(seconds: list[float], steps: np.ndarray) -> dict[str, Any]:
    """Rerun times per call and per symbol; ``steps`` (symbols,) are the segments each ran."""
    return {
        "symbols": int(steps.size),
        "segments_mean": round(float(steps.mean()), 3),
        "per_call": summarize_ms(seconds),
        "per_symbol": summarize_ms(seconds, per=int(steps.size)),
    }


def projection_rates(net: HRMNet, batch: int, dtype: torch.dtype, device, repeats: int) -> dict[str, Any]:
    """GFLOP/s of each nn.Linear of an L block on ``batch`` and 4 x ``batch`` rows (best of ``repeats``) and
    ``gflops``, the best of them: the compute rate of the roofline floor."""
    layer = net.l_module.layers[0]
    shapes = {f"{m.weight.shape[1]} x {m.weight.shape[0]}": m.weight.numel()
              for m in layer.modules() if isinstance(m, torch.nn.Linear)}
    by_rows = {}
    for rows in (batch, 4 * batch):
        seconds = projection_seconds(layer, rows, dtype, torch.device(device), repeats)
        by_rows[str(rows)] = {s: round(2 * rows * n / seconds[s] / 1e9, 2) for s, n in shapes.items()}
    best = max(rate for rates in by_rows.values() for rate in rates.values())
    return {"repeats": repeats, "gflops_by_rows_and_shape": by_rows, "gflops": best}


def roofline_floor(cost: MinuteCost, gflops: float, gb_per_s: float) -> dict[str, Any]:
    """ms per symbol-minute no implementation can beat at these rates: max(FLOPs / gflops, bytes / gb_per_s)."""
    compute_ms = cost.flops / (gflops * 1e9) * 1e3
    memory_ms = cost.bytes / (gb_per_s * 1e9) * 1e3
    return {
        "keys": cost.keys,
        "mflop": round(cost.flops / 1e6, 3),
        "mflop_projections": round(cost.projection_flops / 1e6, 3),
        "mb": round(cost.bytes / 1e6, 3),
        "mb_kv_cache": round(cost.kv_bytes / 1e6, 3),
        "compute_ms": round(compute_ms, 4),
        "memory_ms": round(memory_ms, 4),
        "floor_ms": round(max(compute_ms, memory_ms), 4),
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "serial_ms": round(compute_ms + memory_ms, 4),  # the bound of code that never overlaps the two
        "rates": {"gflops": gflops, "gb_per_s": gb_per_s},
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a / b, 3)


def bench_dtype(net32: HRMNet, dtype_name: str, x_daily, x_minute, args, sync, auto: dict[str, Any]) -> dict[str, Any]:
    """Rates, floor and the three streamers at batch 1 and ``--batch`` in one dtype, with the attention kernel
    ``auto``'s probe picked in it (module docstring)."""
    dtype = DTYPES[dtype_name]
    twin32 = one_segment_twin(net32)
    net, twin = (copy.deepcopy(m).to(dtype) for m in (net32, twin32))  # the streamed weights
    kernel = auto["probe"][dtype_name]["attention"] if args.attention == "auto" else args.attention
    rates = projection_rates(net, args.batch, dtype, args.device, args.rate_repeats)
    bandwidth = memory_bandwidth(args.device, args.rate_repeats, sync)
    result: dict[str, Any] = {
        "precision": {
            "stream": f"{dtype_name} weights and KV cache, attention kernel {kernel}",
            "rerun": "fp32 weights" + ("" if dtype == torch.float32 else f", {dtype_name} autocast"),
        },
        "rates": {"projections": rates, "memory": bandwidth},
    }
    element = torch.finfo(dtype).bits // 8
    for batch in sorted({1, args.batch}):
        xd, xm = x_daily[:batch], x_minute[:batch]
        started = time.perf_counter()

        def streamer(model: HRMNet, cap: int | None = None, batch: int = batch) -> HRMStreamer:
            return HRMStreamer(model, batch, MINUTES, args.device, dtype, max_segments_live=cap, attention=kernel)

        rerun_symbols = min(batch, args.rerun_batch)
        streams = {"one_segment": streamer(twin), "halting": streamer(net)}
        if int(streams["halting"].start_day(xd).max()) > args.max_segments_live:  # the cap stops someone
            streams["capped"] = streamer(net, args.max_segments_live)
        entry: dict[str, Any] = bench_streamers(
            streams, xd, xm, args, sync, rerun_call(twin32, xd[:rerun_symbols], xm[:rerun_symbols], dtype))
        entry["cache_gb"] = round(sum(2 * c.k.numel() * c.k.element_size() for s in streams.values()
                                      for u in s.caches for c in u) / 1e9, 2)  # all held at once
        one_stream = streams.pop("one_segment")
        del streams
        one_stream.position = MINUTES - 1
        one = entry["one_segment"]
        one["time_by_op"] = time_by_op(partial(one_stream.step, xm[:, MINUTES - 1]))
        del one_stream
        if "capped" in entry:
            entry["capped"]["max_segments_live"] = args.max_segments_live
        one_ms = one["late"]["per_symbol_minute"]["median_ms"]
        for name in ("halting", "capped"):
            if name in entry:
                ms = entry[name]["late"]["per_symbol_minute"]["median_ms"]
                entry[name]["cost_vs_one_segment_at_390"] = ratio(ms, one_ms)
        floor = roofline_floor(minute_cost(net.cfg, batch, MINUTES, element), rates["gflops"], bandwidth["gb_per_s"])
        entry["floor"] = floor
        entry["ratio_to_floor"] = ratio(one_ms, floor["floor_ms"])
        entry["seconds"] = round(time.perf_counter() - started, 1)
        entry["load_average_after"] = load_average()
        result[f"batch_{batch}"] = entry
        gc.collect()
    return result


def targets(preset: str, dtype_name: str, res: dict[str, Any], args, auto: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for one dtype's result at ``--batch`` (module docstring); ``met`` None = not
    applicable or not measured."""
    entry = res[f"batch_{args.batch}"]
    one, floor = entry["one_segment"], entry["floor"]
    ms = one["late"]["per_symbol_minute"]["median_ms"]
    rates = floor["rates"]
    out: dict[str, Any] = {
        "target_config": preset == TARGET_PRESET and args.batch == TARGET_BATCH,
        "batch": args.batch,
        "dtype": dtype_name,
        "chosen_by_auto": auto["dtype"] == dtype_name,
        "ms_per_symbol_minute_at_390": ms,
        "rates": rates,
        "within_floor": {"value": entry["ratio_to_floor"], "floor_ms": floor["floor_ms"],
                         "target_max": TARGET_FLOOR_RATIO, "met": entry["ratio_to_floor"] <= TARGET_FLOOR_RATIO,
                         "applies": auto["dtype"] == dtype_name},
        "speedup_vs_rerun_at_390": {"value": one["speedup_at_390"], "target_min": TARGET_SPEEDUP_AT_390,
                                    "met": one["speedup_at_390"] >= TARGET_SPEEDUP_AT_390},
    }
    halting = entry["halting"]["cost_vs_one_segment_at_390"]
    capped = entry.get("capped", {}).get("cost_vs_one_segment_at_390")
    out["halting_cost_vs_one_segment"] = {
        "value": halting, "segments_mean": entry["halting"]["segments"]["mean"], "target_max": TARGET_HALTING_COST,
        "met": halting <= TARGET_HALTING_COST, "with_cap": capped, "cap": args.max_segments_live,
        "capped_symbols": entry.get("capped", {}).get("capped_symbols", 0),
        "met_with_cap": None if capped is None else capped <= TARGET_HALTING_COST,
    }
    if dtype_name == "bf16":
        native = auto["native_bf16"]
        out["native_bf16_ms"] = {"value": ms, "target_max": TARGET_MS_NATIVE_BF16, "applies": native,
                                 "met": ms <= TARGET_MS_NATIVE_BF16 if native else None,
                                 "evidence": auto["native_evidence"]}
    return out


def bench_preset(preset: str, args, sync) -> dict[str, Any]:
    """The auto choice and every ``--dtypes`` result for one preset (``--set`` applied)."""
    cfg = apply_overrides(load_config(PRESETS[preset]), args.overrides, source="--set").hrm
    net32 = trained_like_net(cfg, args.q_std, args.seed).to(args.device)  # fp32 weights, for the rerun
    g = torch.Generator().manual_seed(args.seed)
    x_daily = torch.randn(args.batch, cfg.daily_window, cfg.daily_features, generator=g)  # (B, T_H, F_d)
    x_minute = torch.randn(args.batch, MINUTES, cfg.minute_features, generator=g)  # (B, 390, F_m)
    x_daily, x_minute = x_daily.to(args.device), x_minute.to(args.device)  # fp32; the streamer casts
    auto = choose_stream(net32, args.batch, MINUTES, args.device, "auto", args.rate_repeats).as_dict()
    result: dict[str, Any] = {
        "model": {
            "parameters": net32.param_counts()["total"],
            "h": dataclasses.asdict(cfg.h),
            "l": dataclasses.asdict(cfg.l),
            "daily_window": cfg.daily_window,
            "H_cycles": cfg.H_cycles,
            "L_cycles": cfg.L_cycles,
            "max_segments": cfg.max_segments,
            "eval_halting": cfg.eval_halting,
        },
        "auto": auto,
    }
    for dtype_name in args.dtypes:
        res = bench_dtype(net32, dtype_name, x_daily, x_minute, args, sync, auto)
        res["targets"] = targets(preset, dtype_name, res, args, auto)
        result[dtype_name] = res
        gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["27m", "small"])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=TARGET_BATCH, help="symbols streamed together")
    parser.add_argument("--samples", type=int, help="timed minute updates per window (default 20, quick 5)")
    parser.add_argument("--h-repeats", type=int, help="timed start_day calls (default 3, quick 1)")
    parser.add_argument("--attention", choices=["auto", *ATTENTION_KERNELS], default="auto",
                        help="the streamers' cached-attention kernel (auto: the one auto's probe picks per dtype)")
    parser.add_argument("--max-segments-live", type=int, default=2, help="the segment cap of the capped streamer")
    parser.add_argument("--rerun-batch", type=int, default=4, help="symbols in the timed full-day rerun")
    parser.add_argument("--rerun-repeats", type=int, help="timed full-day reruns (default 3, quick 1)")
    parser.add_argument("--rate-repeats", type=int, default=5, help="repeats of the rate and probe measures")
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
        document["results"][preset] = bench_preset(preset, args, sync)
        gc.collect()
    return finish_document(document, started, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
