"""Render the latest benchmark JSONs in ``benchmarks/`` as the Markdown tables of HRM27M.md.

    python scripts/benchmark_tables.py            # prints the "Latency and throughput" block

The JSON files are the raw outputs of ``scripts/bench_stream.py``, ``scripts/bench_train.py`` and
``scripts/bench_backtest.py`` (each records its settings, machine and load average); this script only
selects and formats numbers from them, so the document cannot drift from what a benchmark measured:
``tests/test_param_budget.py`` re-renders every generated block of HRM27M.md and compares.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
# bench_stream.py outputs, in table order
STREAM_FILES = ("bench_stream_27m_fp32.json", "bench_stream_27m_bf16.json", "bench_stream_small.json")
DTYPES = ("fp32", "bf16")


def _load(name: str) -> dict:
    return json.loads((BENCH_DIR / name).read_text())


def _yes(flag: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[flag]


def _num(value: float | None, unit: str = " ms", digits: int = 2) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}{unit}"


def stream_table() -> list[str]:
    """One row per (preset, dtype, batch) of every STREAM_FILES result, then each dtype's target bullets."""
    lines = [
        "| preset / dtype | threads | batch | attention | ms per symbol-minute at minutes 371-390 (median, p95) "
        "| roofline floor (ms, bound) | streamed / floor | full-day rerun per symbol (ms) | speed-up at minute 390 "
        "| daily H update per symbol (ms) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    bullets = []
    for name in STREAM_FILES:
        data = _load(name)
        threads, load = data["settings"]["threads"], data["machine"]["load_average_1_5_15"][0]
        for preset, res in data["results"].items():
            for dtype in DTYPES:
                if dtype not in res:
                    continue
                batches = sorted((k for k in res[dtype] if k.startswith("batch_")), key=lambda k: -int(k[6:]))
                for batch_key in batches:
                    entry = res[dtype][batch_key]
                    one, floor = entry["one_segment"], entry["floor"]
                    late = one["late"]["per_symbol_minute"]
                    kernel = res[dtype]["precision"]["stream"].rsplit(" ", 1)[-1]
                    lines.append(
                        f"| {preset}/{dtype} | {threads} | {batch_key[6:]} | {kernel} | {late['median_ms']:.3g}, "
                        f"{late['p95_ms']:.3g} | {floor['floor_ms']:.3g}, {floor['bound']} | "
                        f"{entry['ratio_to_floor']:.2f}x | {one['rerun_390']['per_symbol']['median_ms']:.0f} | "
                        f"{one['speedup_at_390']:.0f}x | {one['start_day']['per_symbol']['median_ms']:.0f} |"
                    )
                bullets += target_lines(f"{preset}/{dtype}", res[dtype], name, load)
            reason = res["auto"]["reason"].removeprefix("stream.dtype auto: ")
            bullets.append(f"- `stream.dtype: auto` for {preset}, batch {data['settings']['batch']} (`{name}`): {reason}.")
    return lines + [""] + bullets


def target_lines(key: str, res: dict, name: str, load: float) -> list[str]:
    """The target bullets of one dtype's result (bench_stream.targets), with the rates beside each figure."""
    t = res["targets"]
    entry = res[f"batch_{t['batch']}"]
    floor, within, speedup = entry["floor"], t["within_floor"], t["speedup_vs_rerun_at_390"]
    rates = t["rates"]
    where = "the issue's configuration" if t["target_config"] else "not the issue's 27M batch-64 configuration"
    chosen = "the dtype `auto` picks here" if t["chosen_by_auto"] else "not the dtype `auto` picks here"
    lines = [
        f"- {key}, batch {t['batch']} ({where}; {chosen}; `{name}`, load {load:.1f} at the start): "
        f"{t['ms_per_symbol_minute_at_390']:.3g} ms per symbol-minute for one segment at minute 390, "
        f"{within['value']:.2f}x its roofline floor of {floor['floor_ms']:.3g} ms "
        + (f"(target <= {within['target_max']}x: {_yes(within['met'])}); " if within["applies"]
           else f"(the {within['target_max']}x target is for the dtype `auto` picks); ")
        + f"{speedup['value']:.0f}x faster than re-running the day (target >= {speedup['target_min']:.0f}x: "
        f"{_yes(speedup['met'])}).",
        f"  - floor = max(compute {floor['compute_ms']:.3g} ms: {floor['mflop']:.3g} MFLOP at {rates['gflops']:.1f} GFLOP/s, "
        f"the best rate of the streaming projection shapes; memory {floor['memory_ms']:.3g} ms: {floor['mb']:.3g} MB "
        f"({floor['mb_kv_cache']:.3g} MB of KV cache) at {rates['gb_per_s']:.1f} GB/s, the best DRAM bandwidth measured); "
        f"code that never overlaps the two cannot beat their sum, {floor['serial_ms']:.3g} ms.",
    ]
    h = t["halting_cost_vs_one_segment"]
    capped = (f"; with `stream.max_segments_live: {h['cap']}` ({h['capped_symbols']} symbols capped) "
              f"{_num(h['with_cap'], 'x')} ({_yes(h['met_with_cap'])})") if h["with_cap"] is not None else ""
    lines.append(
        f"  - with learned halting (mean {h['segments_mean']:.2f} segments) a minute costs {h['value']:.2f}x one "
        f"segment (target <= {h['target_max']}x: {_yes(h['met'])}){capped}."
    )
    if "native_bf16_ms" in t:
        b = t["native_bf16_ms"]
        verdict = _yes(b["met"]) if b["applies"] else f"not applicable here, no native bf16: {b['evidence']}"
        lines.append(f"  - bf16 where the CPU has native bf16: {b['value']:.3g} ms (target <= {b['target_max']} ms: {verdict}).")
    return lines


def train_table() -> list[str]:
    data = _load("bench_train.json")
    lines = [
        "| preset | inputs (batch, days, minutes) | samples/s | achieved GFLOP/s | matmul peak GFLOP/s | achieved / peak |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    memory = []
    for preset, res in data["results"].items():
        s, tr = res["shapes"], res["train"]
        lines.append(
            f"| {preset} ({res['model']['parameters']:,} params) | {s['batch']}, {s['daily_window']}, {s['minutes']}"
            f"{' (shortened)' if s['shortened'] else ''} | {tr['samples_per_s']:.3g} | {tr['achieved_gflops']:.1f} | "
            f"{res['matmul_peak']['gflops']:.1f} | {tr['achieved_over_peak']:.2f} |"
        )
        series = res["memory"]["series"]["segments"]
        first, last = series[0], series[-1]
        memory.append(
            f"- {preset}: bytes saved for backward at {first['steps']} -> {last['steps']} recurrent steps: one-step "
            f"gradient {first['one_step']['saved_bytes'] / 2**20:.1f} -> {last['one_step']['saved_bytes'] / 2**20:.1f} MiB; "
            f"full backpropagation {first['full_backprop']['saved_bytes'] / 2**20:.1f} -> "
            f"{last['full_backprop']['saved_bytes'] / 2**20:.1f} MiB."
        )
    return lines + [""] + memory


def backtest_lines() -> list[str]:
    data = _load("bench_backtest.json")
    b, a = data["book_b"], data["book_a"]
    return [
        f"- Book B simulator: {b['bar_symbols']:,} bar-symbols ({b['symbols']} symbols) in {b['run']['median_ms']:.0f} ms "
        f"= {b['bar_symbols_per_s'] / 1e6:.1f} million bar-symbols/s (target > "
        f"{b['target']['bar_symbols_per_s_above'] / 1e6:.0f} million: {_yes(b['target']['met'])}).",
        f"- Book A simulator: {a['days']:,} days in {a['default']['run']['median_ms']:.2f} ms "
        f"({a['delta_hedge']['run']['median_ms']:.2f} ms with delta hedging).",
    ]


def markdown() -> str:
    parts = [
        "Streaming one minute with the KV cache (`python scripts/bench_stream.py --presets P --dtypes D --threads N`, "
        "`benchmarks/bench_stream_*.json`; one segment; the floor is the roofline of `bench_stream.py`'s docstring):",
        "",
        *stream_table(),
        "",
        "Training throughput and memory (`python scripts/bench_train.py --threads 1`, `benchmarks/bench_train.json`):",
        "",
        *train_table(),
        "",
        "Simulators (`python scripts/bench_backtest.py`, `benchmarks/bench_backtest.json`):",
        "",
        *backtest_lines(),
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
