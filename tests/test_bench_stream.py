"""scripts/bench_stream.py: the roofline floor counts what a streamed minute computes and moves, never exceeds
the measured streaming time, and a quick run records targets with their rates, rendered by benchmark_tables."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from test_param_budget import load_script
from torch.utils.flop_counter import FlopCounterMode

from lab_v10.src.config import HRMConfig, ModuleConfig
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_stream import HRMStreamer
from lab_v10.src.options.stream_dtype import best_seconds, minute_cost

bench_common = load_script("bench_common")
bench_stream = load_script("bench_stream")
benchmark_tables = load_script("benchmark_tables")

CFG = HRMConfig(
    h=ModuleConfig(n_layers=1, d_model=32, n_heads=2, ffn_dim=32),
    l=ModuleConfig(n_layers=2, d_model=128, n_heads=4, ffn_dim=96),
    daily_features=4,
    minute_features=3,
    daily_window=8,
    minutes_per_day=64,
    H_cycles=2,
    L_cycles=2,
    max_segments=1,
)
BATCH = 8


def streamer_at_last_minute(kernel: str = "sdpa") -> tuple[HRMStreamer, torch.Tensor]:
    """A one-segment streamer of CFG that has streamed all but the day's last minute, and that minute (B, F_m)."""
    torch.manual_seed(0)
    net = HRMNet(CFG).eval()
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", attention=kernel)
    streamer.start_day(torch.randn(BATCH, CFG.daily_window, CFG.daily_features))
    x_minute = torch.randn(BATCH, CFG.minutes_per_day, CFG.minute_features)
    streamer.advance(x_minute[:, :-1])
    return streamer, x_minute[:, -1]


def test_minute_cost_counts_the_flops_and_cache_bytes_of_a_streamed_minute():
    """FlopCounterMode on the matmul kernel (its attention is two counted matmuls) sees the cost's FLOPs plus
    the minute projection and Head B, which the cost leaves out; the cost's KV bytes are the cached rows."""
    streamer, last = streamer_at_last_minute("matmul")
    cost = minute_cost(CFG, BATCH, CFG.minutes_per_day, element_size=4)
    with FlopCounterMode(display=False) as counter:
        streamer.step(last)
    d = CFG.l.d_model
    assert counter.get_total_flops() == BATCH * (cost.flops + 2 * CFG.minute_features * d + 2 * d)
    cached = sum(2 * c.k[:, :, : CFG.minutes_per_day].numel() * 4 for u in streamer.caches for c in u)
    assert cost.kv_bytes * BATCH == cached + sum(2 * BATCH * d * 4 for u in streamer.caches for _ in u)
    weights = sum(p.numel() for p in streamer.net.l_module.parameters() if p.dim() == 2)
    assert cost.weight_bytes * BATCH == CFG.H_cycles * CFG.L_cycles * weights * 4


def test_the_floor_is_the_larger_of_compute_and_memory_time():
    cost = minute_cost(CFG, BATCH, 64, 4)
    slow_memory = bench_stream.roofline_floor(cost, gflops=1e6, gb_per_s=1.0)
    slow_compute = bench_stream.roofline_floor(cost, gflops=1.0, gb_per_s=1e6)
    assert slow_memory["bound"] == "memory" and slow_memory["floor_ms"] == pytest.approx(cost.bytes / 1e6, rel=1e-3)
    assert slow_compute["bound"] == "compute" and slow_compute["floor_ms"] == pytest.approx(cost.flops / 1e6, rel=1e-3)
    both = bench_stream.roofline_floor(cost, gflops=10.0, gb_per_s=10.0)
    assert both["floor_ms"] == max(both["compute_ms"], both["memory_ms"]) < both["compute_ms"] + both["memory_ms"]


def test_the_floor_never_exceeds_the_measured_streaming_time():
    """Rates measured here, best of repeats; the fastest of several streamed last minutes must not beat it."""
    streamer, last = streamer_at_last_minute()
    rates = bench_stream.projection_rates(streamer.net, BATCH, torch.float32, "cpu", repeats=5)
    bandwidth = bench_common.memory_bandwidth("cpu", repeats=3)
    floor = bench_stream.roofline_floor(minute_cost(CFG, BATCH, CFG.minutes_per_day, 4), rates["gflops"],
                                        bandwidth["gb_per_s"])

    def last_minute():
        streamer.position = CFG.minutes_per_day - 1
        streamer.step(last)

    measured_ms = best_seconds(last_minute, repeats=10) * 1e3 / BATCH
    assert 0 < floor["floor_ms"] <= measured_ms, (floor, measured_ms)


def test_a_quick_run_records_the_targets_with_their_rates_and_renders(tmp_path, monkeypatch):
    out = tmp_path / "bench_stream_small.json"
    argv = ["--presets", "small", "--quick", "--threads", "1", "--batch", "4", "--rate-repeats", "1",
            "--catch-up-budget-s", "0", "--set", "hrm.max_segments=4", "--q-std", "0.5", "--out", str(out)]
    assert bench_stream.main(argv) == 0
    doc = benchmark_tables.json.loads(out.read_text())
    res = doc["results"]["small"]
    assert res["auto"]["dtype"] in ("fp32", "bf16") and res["auto"]["reason"].startswith("stream.dtype auto")
    for dtype in ("fp32", "bf16"):
        t = res[dtype]["targets"]
        assert t["target_config"] is False and t["rates"]["gflops"] > 0 and t["rates"]["gb_per_s"] > 0
        assert isinstance(t["within_floor"]["met"], bool) and isinstance(t["speedup_vs_rerun_at_390"]["met"], bool)
        assert isinstance(t["halting_cost_vs_one_segment"]["met"], bool)
        entry = res[dtype]["batch_4"]
        assert entry["floor"]["floor_ms"] <= entry["one_segment"]["late"]["per_symbol_minute"]["min_ms"]
        assert "jumped" in entry["one_segment"]["catch_up"] and entry["one_segment"]["time_by_op"]
        if "capped" in entry:  # some symbol ran past the cap of 2
            assert 0 < entry["capped"]["capped_symbols"] <= 4
    assert res["bf16"]["targets"]["native_bf16_ms"]["applies"] == res["auto"]["native_bf16"]
    monkeypatch.setattr(benchmark_tables, "BENCH_DIR", tmp_path)
    monkeypatch.setattr(benchmark_tables, "STREAM_FILES", (out.name,))
    text = "\n".join(benchmark_tables.stream_table())
    assert "| small/fp32 | 1 | 4 |" in text and "roofline floor" in text and "stream.dtype: auto" in text
    assert "target <= 2.0 ms" in text and "target >= 100x" in text


def test_the_segment_twin_keeps_the_weights():
    net = bench_stream.trained_like_net(dataclasses.replace(CFG, max_segments=4), q_std=0.05, seed=0)
    twin = bench_stream.one_segment_twin(net)
    assert twin.cfg.max_segments == 1
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
