"""scripts/bench_train.py and the memory meters of scripts/bench_common.py: full backpropagation, the meters,
the flat one-step memory curve, and the JSON document of a quick run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab_v10.src.config import HRMConfig, ModuleConfig
from lab_v10.src.options.hrm_net import HRMNet

from test_param_budget import load_script

REPO = Path(__file__).resolve().parents[1]
# the siblings bench_train imports first: load_script registers them under their module names
SavedTensorMeter = load_script("bench_common").SavedTensorMeter
load_script("optimize_hrm27m")
bench_train = load_script("bench_train")
GRADIENTS, full_grad_segment, memory_point = bench_train.GRADIENTS, bench_train.full_grad_segment, bench_train.memory_point
memory_sweep, random_tensors, rollout = bench_train.memory_sweep, bench_train.random_tensors, bench_train.rollout
TINY = HRMConfig(
    h=ModuleConfig(n_layers=1, d_model=16, n_heads=2, ffn_dim=24),
    l=ModuleConfig(n_layers=2, d_model=16, n_heads=2, ffn_dim=24),
    daily_features=3,
    minute_features=2,
    daily_window=6,
    minutes_per_day=10,
    H_cycles=2,
    L_cycles=2,
    max_segments=8,
)


def build(cfg: HRMConfig = TINY) -> HRMNet:
    """TINY with non-zero FiLM weights, so the L-updates depend on H as after training."""
    torch.manual_seed(0)
    net = HRMNet(cfg)
    with torch.no_grad():
        for w in (net.film.gamma.weight, net.film.beta.weight, net.q_head.weight):
            w.normal_(0.0, 0.1)
    return net


def test_full_grad_segment_has_forward_segment_values_and_a_connected_carry():
    net = build()
    data = random_tensors(TINY, 2, 6, 10, seed=0)
    carry = net.initial_carry(2, 6, 10, "cpu")
    one_carry, one_out = net.forward_segment(carry, data.x_daily, data.x_minute, data.minute_mask)
    full_carry, full_out = full_grad_segment(net, carry, data.x_daily, data.x_minute, data.minute_mask)
    torch.testing.assert_close(full_carry.z_H, one_carry.z_H)
    torch.testing.assert_close(full_carry.z_L, one_carry.z_L)
    for name in ("mu", "log_var", "logits_b", "q_halt", "q_continue"):
        torch.testing.assert_close(getattr(full_out, name), getattr(one_out, name))
    assert one_carry.z_L.grad_fn is None and full_carry.z_L.grad_fn is not None


def test_full_backprop_gradients_differ_from_the_one_step_gradient():
    net = build()
    data = random_tensors(TINY, 2, 6, 10, seed=1)
    grads = {}
    for gradient in GRADIENTS:
        net.zero_grad(set_to_none=True)
        rollout(net, data, segments=1, gradient=gradient)
        grads[gradient] = net.l_module.layers[0].attn.qkv_proj.weight.grad.clone()
    assert not torch.allclose(grads["one_step"], grads["full_backprop"])
    with pytest.raises(ValueError, match="gradient"):
        rollout(net, data, segments=1, gradient="truncated")


def test_saved_tensor_meter_counts_storages_once_skips_excluded_and_releases():
    w = torch.nn.Parameter(torch.randn(8, 8))
    x = torch.randn(4, 8, requires_grad=True)
    with SavedTensorMeter(exclude=[w]) as meter:
        h = x @ w  # saves x (counted) and w (excluded)
        y = (h * h).sum()  # saves h twice: one storage
        assert meter.live_bytes == x.numel() * 4 + h.numel() * 4
    y.backward()
    assert meter.live_bytes == 0
    assert meter.peak_bytes == (4 * 8 + 4 * 8) * 4


def test_one_step_memory_is_flat_and_full_backprop_grows():
    net = build()
    data = random_tensors(TINY, 2, 6, 10, seed=2)
    sweep = memory_sweep(net, data, [2, 4, 16], allocator=False)
    for name, points in sweep["series"].items():
        one = [p["one_step"]["saved_bytes"] for p in points]
        full = [p["full_backprop"]["saved_bytes"] for p in points]
        assert one[0] == one[-1] and len(set(one)) == 1, (name, one)
        assert full[0] < full[1] < full[2], (name, full)
        assert full[2] > 4 * full[0], (name, full)  # 8x the updates
        assert sweep["summary"][f"{name}/saved_bytes"]["one_step_max_over_min"] == 1.0
    assert [p["segments"] for p in sweep["series"]["segments"]] == [1, 2, 8]
    assert [p["H_cycles"] for p in sweep["series"]["cycles"]] == [2, 4, 16]
    with pytest.raises(ValueError, match="multiple of H_cycles"):
        memory_sweep(net, data, [3])


def test_allocator_peak_is_flat_for_one_step_and_grows_for_full_backprop():
    net = build()
    data = random_tensors(TINY, 2, 6, 10, seed=3)
    two, sixteen = (memory_point(net, data, segments, 2) for segments in (1, 8))
    one_2, one_16 = two["one_step"]["allocator_peak_bytes"], sixteen["one_step"]["allocator_peak_bytes"]
    full_2, full_16 = two["full_backprop"]["allocator_peak_bytes"], sixteen["full_backprop"]["allocator_peak_bytes"]
    assert 0 < one_2 and one_16 == pytest.approx(one_2, rel=0.01)  # allocator totals: equal up to thread timing
    assert full_16 > 4 * full_2
    assert sixteen["full_backprop"]["saved_bytes"] > 4 * two["full_backprop"]["saved_bytes"]


def test_quick_run_writes_the_json_document(tmp_path):
    out = tmp_path / "bench_train.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_train.py", "--quick", "--presets", "small", "--memory-steps", "2", "16",
         "--no-allocator-peak", "--threads", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == document
    assert document["benchmark"] == "bench_train" and document["gradients"] == list(GRADIENTS)
    assert {"machine", "settings", "notes", "results", "seconds", "load_average_end"} <= set(document)
    assert set(document["notes"]) == {"train", "flops", "peak", "memory"}
    small = document["results"]["small"]
    assert {"config", "model", "shapes", "matmul_peak", "train", "flop_check", "memory"} <= set(small)
    assert small["shapes"]["shortened"] and small["shapes"]["minutes"] == 32

    train, peak = small["train"], small["matmul_peak"]
    assert train["batches"] == 1 and 1 <= train["segments_per_batch"][0] <= small["model"]["max_segments"]
    assert train["samples_per_s"] > 0 and train["achieved_gflops"] > 0
    assert peak["gflops"] == max(peak["before"]["gflops_best"], peak["after"]["gflops_best"]) > 0
    assert train["achieved_over_peak"] == pytest.approx(train["achieved_gflops"] / peak["gflops"], abs=1e-4)
    # the closed form counts exactly the matmuls torch runs in a training batch (SDPA is not counted on CPU)
    assert small["flop_check"]["counted_ops"] == ["aten.mm"]
    assert small["flop_check"]["counted"] == small["flop_check"]["closed_form_projections"]

    memory = small["memory"]
    assert memory["steps"] == [2, 16] and set(memory["series"]) == {"segments", "cycles"}
    for name, points in memory["series"].items():
        assert [p["steps"] for p in points] == [2, 16]
        assert points[0]["one_step"]["saved_bytes"] == points[1]["one_step"]["saved_bytes"]
        assert points[1]["full_backprop"]["saved_bytes"] > 4 * points[0]["full_backprop"]["saved_bytes"]
        assert "allocator_peak_bytes" not in points[0]["one_step"]  # --no-allocator-peak
