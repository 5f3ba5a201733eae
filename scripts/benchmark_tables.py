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


def _load(name: str) -> dict:
    return json.loads((BENCH_DIR / name).read_text())


def _yes(flag: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[flag]


def stream_table() -> list[str]:
    lines = [
        "| preset / dtype | batch | ms per symbol-minute at minutes 371-390 (median, p95) | full-day rerun per symbol (ms) "
        "| speed-up at minute 390 | daily H update per symbol (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    targets = []
    for name in ("bench_stream_27m_fp32.json", "bench_stream_small.json"):
        results = _load(name)["results"]
        for key, res in results.items():
            for batch_key in ("batch_64", "batch_1"):
                one = res.get(batch_key, {}).get("one_segment")
                if not one or "late" not in one:
                    continue
                late = one["late"]["per_symbol_minute"]
                lines.append(
                    f"| {key} | {one['cache_rows']} | {late['median_ms']:.2f}, {late['p95_ms']:.2f} | "
                    f"{one['rerun_390']['per_symbol']['median_ms']:.0f} | {one['speedup_at_390']:.0f}x | "
                    f"{one['start_day']['per_symbol']['median_ms']:.0f} |"
                )
            if "targets" in res:
                t = res["targets"]
                halting = res["batch_64"]["halting"]
                targets.append(
                    f"- {key}, batch {t['batch']}: {t['ms_per_symbol_minute_one_segment_at_390']['value']:.2f} ms per "
                    f"symbol-minute for one segment (target <= {t['ms_per_symbol_minute_one_segment_at_390']['target_max']}: "
                    f"{_yes(t['ms_per_symbol_minute_one_segment_at_390']['met'])}); "
                    f"{t['speedup_vs_rerun_at_390']['value']:.0f}x faster than re-running the day at minute 390 "
                    f"(target >= {t['speedup_vs_rerun_at_390']['target_min']:.0f}x: {_yes(t['speedup_vs_rerun_at_390']['met'])}); "
                    f"with learned halting (mean {halting['segments']['mean']:.2f} segments) a minute costs "
                    f"{halting['cost_vs_one_segment_at_390']:.2f}x one segment."
                )
    return lines + [""] + targets


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
        "Streaming one minute with the KV cache (`python scripts/bench_stream.py`, fp32, 1 thread, "
        "`benchmarks/bench_stream_*.json`):",
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
