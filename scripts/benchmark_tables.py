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


def _load(name: str) -> dict:
    return json.loads((BENCH_DIR / name).read_text())


def _yes(flag: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[flag]


def _num(value: float | None, unit: str = " ms", digits: int = 2) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}{unit}"


def stream_table() -> list[str]:
    lines = [
        "| preset / dtype | threads | batch | ms per symbol-minute at minutes 371-390 (median, p95) "
        "| full-day rerun per symbol (ms) | speed-up at minute 390 | daily H update per symbol (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets = []
    for name in STREAM_FILES:
        data = _load(name)
        threads = data["settings"]["threads"]
        for key, res in data["results"].items():
            for batch_key in ("batch_64", "batch_1"):
                one = res.get(batch_key, {}).get("one_segment")
                if not one or "per_symbol_minute" not in one.get("late", {}):
                    continue
                late = one["late"]["per_symbol_minute"]
                lines.append(
                    f"| {key} | {threads} | {one['cache_rows']} | {late['median_ms']:.2f}, {late['p95_ms']:.2f} | "
                    f"{one['rerun_390']['per_symbol']['median_ms']:.0f} | {one['speedup_at_390']:.0f}x | "
                    f"{one['start_day']['per_symbol']['median_ms']:.0f} |"
                )
            if "targets" in res:
                targets += target_lines(key, res)
    return lines + [""] + targets


def target_lines(key: str, res: dict) -> list[str]:
    """The 27M target bullets of one bench_stream result (with its hardware floor when recorded)."""
    t = res["targets"]
    ms, ratio = t["ms_per_symbol_minute_one_segment_at_390"], t["speedup_vs_rerun_at_390"]
    halting = res["batch_64"]["halting"]
    cost = halting.get("cost_vs_one_segment_at_390")
    lines = [
        f"- {key}, batch {t['batch']}: {_num(ms['value'])} per symbol-minute for one segment at minute 390 "
        f"(target <= {ms['target_max']} ms: {_yes(ms['met'])}); "
        f"{_num(ratio['value'], 'x', 0)} faster than re-running the day at minute 390 "
        f"(target >= {ratio['target_min']:.0f}x: {_yes(ratio['met'])}); with learned halting (mean "
        f"{halting['segments']['mean']:.2f} segments) a minute costs {_num(cost, 'x')} one segment."
    ]
    if "floor" in t:
        f = t["floor"]
        proj, kv = f["projections"], f["kv_read"]
        lines.append(
            f"  - lower bound on this machine ({f['dtype']}, measured in the same run): the matrix products "
            f"alone take {proj['ms_per_symbol_minute']:.2f} ms per symbol-minute "
            f"({proj['mflop_per_symbol_minute']:.0f} MFLOP at {proj['gflops_achieved']:.0f} GFLOP/s) and "
            f"reading the minute-390 KV cache {kv['ms_per_symbol_minute']:.2f} ms "
            f"({kv['mb_per_symbol_minute']:.0f} MB at {kv['gb_per_s']:.0f} GB/s): "
            f"{f['floor_ms_per_symbol_minute']:.2f} ms before attention, norms or any overhead."
        )
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
        "`benchmarks/bench_stream_*.json`; one segment):",
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
