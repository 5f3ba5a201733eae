"""Shared pieces of the scripts/bench_*.py benchmarks: timing, summaries, machine context, JSON output.

Every benchmark prints one JSON document to stdout and, with ``--out FILE``, writes the same document to
FILE. Times are wall-clock ``time.perf_counter`` seconds; summaries report milliseconds. The machine is
shared, so each document records the load average (``os.getloadavg``) at its start and end, and ratios are
always computed from measurements taken side by side in the same run (docs/design.md section 6).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np

VERSIONED_PACKAGES = ("torch", "numpy", "pandas", "numba")


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes: ``--out FILE`` and ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, help="also write the JSON document to this file")
    parser.add_argument("--quick", action="store_true", help="a short run (fewer samples, smaller inputs)")
    return parser


def json_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed command line as JSON values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes; compare with ``cpu_count``)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: CPU, core count, Python and package versions, load average now."""
    packages = {}
    for name in VERSIONED_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": packages,
        "load_average_1_5_15": load_average(),
    }


def time_calls(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] | None = None) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` one by one; ``sync`` (e.g. a CUDA synchronize) closes each."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def summarize_ms(seconds: list[float], per: int = 1) -> dict[str, float | int]:
    """Median, 95th percentile and minimum of ``seconds`` in milliseconds, each divided by ``per``."""
    ms = np.asarray(seconds, dtype=float) * 1e3 / per
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "min_ms": round(float(ms.min()), 4),
    }


def write_json(document: dict[str, Any], out: Path | None) -> None:
    """Print ``document`` as indented JSON and, when ``out`` is given, write it there too."""
    text = json.dumps(document, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
