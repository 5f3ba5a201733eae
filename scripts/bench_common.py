"""Shared pieces of the scripts/bench_*.py benchmarks: flags, timing, memory meters, summaries, machine
context, JSON output.

Every benchmark prints one JSON document to stdout and, with ``--out FILE``, writes the same document to
FILE. Times are wall-clock ``time.perf_counter`` seconds; summaries report milliseconds. The machine is
shared, so each document records the load average (``os.getloadavg``) at its start and end, and ratios are
always computed from measurements taken side by side in the same run (docs/design.md section 6).

Memory meters (scripts/bench_train.py uses them):

- :class:`SavedTensorMeter`: the peak of the bytes of distinct storages autograd holds for backward
  (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded: the activation memory a gradient
  method keeps, temporaries left out. It does not depend on timing, load or values (the same shapes give the
  same bytes on every run of a torch build and device), so tests compare it exactly.
- :func:`allocator_peak`: the peak of the allocator's running total above its value at the start of a
  block: activations plus temporaries. On CPU it is read from torch.profiler's memory events
  (``profile_memory=True``: every allocation event carries the CPU allocator's running total), on CUDA from
  ``torch.cuda.max_memory_allocated``. Process RSS is not used: the C allocator keeps freed pages and the
  machine is shared, so RSS deltas mix in noise of the order of the effect.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch._C._profiler import _ExtraFields_Allocation

from lab_v10.src.cli import add_set_flag

VERSIONED_PACKAGES = ("torch", "numpy", "pandas", "numba")


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes: ``--out FILE`` and ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, help="also write the JSON document to this file")
    parser.add_argument("--quick", action="store_true", help="a short run (fewer samples, smaller inputs)")
    return parser


def add_torch_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the benchmarks that build a model from a preset: ``--set KEY=VALUE`` (repeatable, into
    ``args.overrides``: config.apply_overrides on every preset), ``--threads``, ``--device`` and ``--seed``."""
    add_set_flag(parser)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def torch_setup(args: argparse.Namespace) -> Callable[[], None] | None:
    """Apply ``--threads``; return the sync that closes a timed call on ``--device`` (None on CPU)."""
    torch.set_num_threads(args.threads)
    return torch.cuda.synchronize if torch.device(args.device).type == "cuda" else None


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


def memory_bandwidth(
    device: torch.device | str, repeats: int, sync: Callable[[], None] | None = None, mib: int = 256
) -> dict[str, Any]:
    """Best DRAM bandwidth in GB/s over ``repeats`` timed calls (after one warm-up) of two kernels on an fp32
    buffer of ``mib`` MiB (much larger than a last-level cache): ``sum`` reads it, ``copy`` reads it and
    writes a second one (counted as 2 x the bytes). ``gb_per_s`` is the best of both."""
    n = mib * 2**20 // 4
    src = torch.ones(n, device=device)  # ones, not empty: every page is touched before timing
    dst = torch.zeros(n, device=device)
    nbytes = n * 4
    kernels = {"sum": (lambda: src.sum(), nbytes), "copy": (lambda: dst.copy_(src), 2 * nbytes)}
    rates = {}
    for name, (fn, moved) in kernels.items():
        fn()
        rates[name] = round(moved / min(time_calls(fn, repeats, sync)) / 1e9, 2)
    return {"buffer_mib": mib, "repeats": repeats, "gb_per_s_by_kernel": rates, "gb_per_s": max(rates.values())}


def summarize_ms(seconds: list[float], per: int = 1) -> dict[str, float | int]:
    """Median, 95th percentile and minimum of ``seconds`` in milliseconds, each divided by ``per``."""
    ms = np.asarray(seconds, dtype=float) * 1e3 / per
    return {
        "n": int(ms.size),
        "median_ms": round(float(np.median(ms)), 4),
        "p95_ms": round(float(np.percentile(ms, 95)), 4),
        "min_ms": round(float(ms.min()), 4),
    }


def new_document(benchmark: str, args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    """A benchmark's JSON document: its name, the machine, the settings, then ``fields``."""
    return {"benchmark": benchmark, "machine": machine_info(), "settings": json_settings(args), **fields}


def finish_document(document: dict[str, Any], started: float, out: Path | None) -> int:
    """Add the seconds since ``started`` and the load average, print and write the document; exit code 0."""
    document["seconds"] = round(time.perf_counter() - started, 1)
    document["load_average_end"] = load_average()
    write_json(document, out)
    return 0


def write_json(document: dict[str, Any], out: Path | None) -> None:
    """Print ``document`` as indented JSON and, when ``out`` is given, write it there too."""
    text = json.dumps(document, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


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
