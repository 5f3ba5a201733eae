"""HRMStreamer: minute-by-minute probabilities equal the full ACT forward, halting known at the open; the
segment cap equals the full forward with the same cap; bf16 is as accurate as the bf16 forward and never
converts the cache; the compiled kernel compiles at construction only; stream.dtype and stream.attention auto
follow the probe."""
from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lab_v10.src.config import HRMConfig, ModuleConfig, StreamConfig
from lab_v10.src.options import stream_dtype
from lab_v10.src.options.act_halting import act_rollout
from lab_v10.src.options.hrm_net import HRMNet
from lab_v10.src.options.hrm_stream import ATTENTION_KERNELS, HRMStreamer

CFG = HRMConfig(
    h=ModuleConfig(n_layers=2, d_model=32, n_heads=4, ffn_dim=48),
    l=ModuleConfig(n_layers=2, d_model=48, n_heads=4, ffn_dim=40),
    daily_features=5,
    minute_features=3,
    daily_window=12,
    minutes_per_day=20,
    H_cycles=2,
    L_cycles=2,
    max_segments=4,
)
BATCH = 6
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def build(seed: int = 1, trained: bool = True, cfg: HRMConfig = CFG, device: str = "cpu") -> HRMNet:
    """A net with random weights; ``trained`` makes the zero-initialised FiLM, Q-head and symbol-embedding
    weights (those the config has) non-zero, so FiLM conditions the minutes, the symbols differ and the halting
    rule stops symbols after different numbers of segments."""
    torch.manual_seed(seed)
    net = HRMNet(cfg)
    if trained:
        film = [net.film.gamma, net.film.beta] if net.film is not None else []
        with torch.no_grad():
            for m in [*film, net.q_head]:
                m.weight.normal_(0.0, 0.05)
            if net.symbol_embedding is not None:
                net.symbol_embedding.weight.normal_(0.0, 0.5)
    return net.to(device)


def day_inputs(seed: int, t_h: int = 12, t_l: int = 20, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """x_daily (B, T_H, F_d), x_minute (B, T_L, F_m) of one day for BATCH symbols."""
    g = torch.Generator().manual_seed(seed)
    x_daily = torch.randn(BATCH, t_h, CFG.daily_features, generator=g)
    x_minute = torch.randn(BATCH, t_l, CFG.minute_features, generator=g)
    return x_daily.to(device), x_minute.to(device)


def full_forward(
    net: HRMNet, x_daily: torch.Tensor, x_minute: torch.Tensor, symbol: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: act_rollout over the whole day -> (probabilities (B, T_L), steps (B,))."""
    with torch.no_grad():
        rollout = act_rollout(net, x_daily, x_minute, symbol=symbol)
    return torch.sigmoid(rollout.output.logits_b), rollout.steps


def stream_minutes(streamer: HRMStreamer, x_minute: torch.Tensor) -> torch.Tensor:
    """step() once per minute: x_minute (B, T_L, F_m) -> (B, T_L)."""
    return torch.stack([streamer.step(x_minute[:, m]) for m in range(x_minute.shape[1])], dim=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", ATTENTION_KERNELS)
@pytest.mark.parametrize("trained", [False, True], ids=["as-initialised", "film-and-q-nonzero"])
def test_streamed_minutes_equal_the_full_forward_over_several_days(trained, kernel, device):
    net = build(trained=trained, device=device)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, device, torch.float32, attention=kernel)
    seen_steps = set()
    for day in range(3):
        x_daily, x_minute = day_inputs(seed=10 + day, t_h=12 - day, device=device)  # windows may be short
        expected, expected_steps = full_forward(net, x_daily, x_minute)
        steps = streamer.start_day(x_daily)  # the halting rule, decided before any minute is seen
        assert torch.equal(steps, expected_steps)
        probabilities = stream_minutes(streamer, x_minute)
        assert probabilities.dtype == torch.float32 and probabilities.shape == (BATCH, CFG.minutes_per_day)
        assert (probabilities - expected).abs().max().item() <= 1e-5
        seen_steps.update(steps.tolist())
    if trained:  # symbols of one day stop after different numbers of segments, so every path is covered
        assert len(seen_steps) >= 3
    else:  # q_halt == q_continue as initialised, and a tie continues
        assert seen_steps == {CFG.max_segments}


@pytest.mark.parametrize(
    "options", [{"film": False}, {"symbol_embedding": True, "n_symbols": 3}], ids=["no-film", "symbol-embedding"]
)
def test_streaming_with_the_options_equals_the_full_forward(options):
    cfg = dataclasses.replace(CFG, **options)
    net = build(seed=1, cfg=cfg)
    symbol = torch.tensor([2, 0, 1, 1, 0, 2]) if cfg.symbol_embedding else None  # (BATCH,) int64
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu")
    for day in range(2):
        x_daily, x_minute = day_inputs(seed=20 + day)
        expected, expected_steps = full_forward(net, x_daily, x_minute, symbol)
        assert torch.equal(streamer.start_day(x_daily, symbol), expected_steps)
        assert (stream_minutes(streamer, x_minute) - expected).abs().max().item() <= 1e-5
    if cfg.symbol_embedding:
        other, _ = full_forward(net, x_daily, x_minute, symbol.roll(1))
        assert (other - expected).abs().max().item() > 1e-3  # the ids matter
        with pytest.raises(ValueError, match="^symbol: hrm.symbol_embedding is true"):
            streamer.start_day(x_daily)


def test_symbols_of_one_batch_halt_after_different_segments():
    net = build(seed=1)
    x_daily, x_minute = day_inputs(seed=1)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu")
    steps = streamer.start_day(x_daily)
    assert len(set(steps.tolist())) >= 3, steps
    expected, _ = full_forward(net, x_daily, x_minute)
    assert (stream_minutes(streamer, x_minute) - expected).abs().max().item() <= 1e-5


def test_minutes_never_change_the_halting_decision():
    """The Q-head reads only the H summary: start_day sees no minute, and act_rollout agrees whatever they are."""
    net = build(seed=1)
    x_daily, x_minute = day_inputs(seed=1)
    _, steps = full_forward(net, x_daily, x_minute)
    _, steps_other_minutes = full_forward(net, x_daily, 5.0 * torch.randn_like(x_minute))
    assert torch.equal(steps, steps_other_minutes)
    assert torch.equal(HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu").start_day(x_daily), steps)


@pytest.mark.parametrize("kernel", ATTENTION_KERNELS)
def test_advance_in_chunks_equals_the_full_forward(kernel):
    net = build(seed=2)
    x_daily, x_minute = day_inputs(seed=3)
    expected, _ = full_forward(net, x_daily, x_minute)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", attention=kernel)
    streamer.start_day(x_daily)
    chunks = [
        streamer.advance(x_minute[:, :7]),
        streamer.step(x_minute[:, 7])[:, None],
        streamer.advance(x_minute[:, 8:]),
    ]
    assert streamer.position == CFG.minutes_per_day
    assert (torch.cat(chunks, dim=1) - expected).abs().max().item() <= 1e-5


def test_a_day_with_more_segments_grows_the_cache_and_max_halting_runs_every_segment():
    net = build(seed=1)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu")
    assert streamer.cache_rows == BATCH
    x_daily, x_minute = day_inputs(seed=1)
    learned_steps = streamer.start_day(x_daily)
    assert streamer.cache_rows == int(learned_steps.sum()) < BATCH * CFG.max_segments
    stream_minutes(streamer, x_minute)

    net.cfg = dataclasses.replace(net.cfg, eval_halting="max")
    x_daily, x_minute = day_inputs(seed=4)
    expected, _ = full_forward(net, x_daily, x_minute)
    assert torch.equal(streamer.start_day(x_daily), torch.full((BATCH,), CFG.max_segments))
    assert streamer.cache_rows == BATCH * CFG.max_segments
    assert (stream_minutes(streamer, x_minute) - expected).abs().max().item() <= 1e-5


def test_a_short_day_streams_a_prefix_of_the_full_forward():
    net = build(seed=3)
    x_daily, x_minute = day_inputs(seed=5)
    expected, _ = full_forward(net, x_daily, x_minute)
    streamer = HRMStreamer(net, BATCH, max_minutes=9, device="cpu")
    streamer.start_day(x_daily)
    assert (stream_minutes(streamer, x_minute[:, :9]) - expected[:, :9]).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="exceed max_minutes=9"):
        streamer.step(x_minute[:, 9])


@pytest.mark.parametrize("kernel", ["sdpa", "compiled"])
@pytest.mark.parametrize("halting", ["learned", "max"])
@pytest.mark.parametrize("seed", range(3))
def test_bf16_stream_is_as_accurate_as_the_bf16_forward(seed, halting, kernel):
    """Stated tolerance: against the fp32 forward, the bf16 stream (bf16 weights, cache and activations) has a
    mean probability error at most 1.5x that of the project's bf16 forward (fp32 weights under bf16 autocast,
    which keeps the residual stream in fp32) plus 0.001, at most 0.02, and the same halting steps."""
    cfg = dataclasses.replace(CFG, eval_halting=halting)
    net = build(seed=seed, cfg=cfg)
    x_daily, x_minute = day_inputs(seed=seed + 100)
    expected, steps = full_forward(net, x_daily, x_minute)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_error = (torch.sigmoid(act_rollout(net, x_daily, x_minute).output.logits_b) - expected).abs()
    streamer = HRMStreamer(net.to(torch.bfloat16), BATCH, CFG.minutes_per_day, "cpu", torch.bfloat16,
                           attention=kernel)
    assert torch.equal(streamer.start_day(x_daily), steps)
    error = (stream_minutes(streamer, x_minute) - expected).abs()
    assert error.mean().item() <= min(1.5 * autocast_error.mean().item() + 1e-3, 0.02)
    assert error.max().item() <= 0.3  # single minutes of a deep random net amplify bf16 rounding; see the mean


class _Conversions(TorchDispatchMode):
    """Records, for every op with a floating input of another dtype than its floating output, that input's size."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            for a in args:
                if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != out.dtype:
                    self.sizes.append((str(func), a.numel()))
        return out


@pytest.mark.parametrize("kernel", ["sdpa", "matmul"])
def test_a_bf16_step_never_converts_the_cache(kernel):
    """Only the new position's activations change dtype (RoPE and RMSNorm in fp32; the matmul kernel's scores
    for its fp32 softmax): every conversion is far smaller than the keys cached for one (update, layer). (The
    compiled kernel converts each cached value in registers, inside the fused loop that reads it; ATen ops, which
    this test watches, do not see inside compiled code.)"""
    net = build(seed=1).to(torch.bfloat16)
    x_daily, x_minute = day_inputs(seed=1)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", torch.bfloat16, attention=kernel)
    streamer.start_day(x_daily)
    streamer.advance(x_minute[:, :-1])
    with _Conversions() as seen:
        streamer.step(x_minute[:, -1])
    attn = net.l_module.layers[0].attn
    rows, t = streamer.cache_rows, CFG.minutes_per_day
    largest = max(size for _, size in seen.sizes)
    assert largest <= max(3 * rows * CFG.l.d_model, rows * attn.n_heads * t), seen.sizes
    assert largest * attn.head_dim // 2 <= streamer.caches[0][0].k[:, :, :t].numel()
    assert all(c.k.dtype == c.v.dtype == torch.bfloat16 for u in streamer.caches for c in u)


def test_the_segment_cap_equals_the_full_forward_with_the_same_cap(caplog):
    net = build(seed=1)
    x_daily, x_minute = day_inputs(seed=1)
    _, free_steps = full_forward(net, x_daily, x_minute)
    assert int(free_steps.max()) > 2, free_steps  # some symbols would run past the cap
    capped_net = build(seed=1, cfg=dataclasses.replace(CFG, max_segments=2))
    expected, expected_steps = full_forward(capped_net, x_daily, x_minute)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", max_segments_live=2)
    with caplog.at_level(logging.INFO, logger="hrm.stream"):
        steps = streamer.start_day(x_daily)
    assert torch.equal(steps, expected_steps) and torch.equal(steps, free_steps.clamp(max=2))
    assert torch.equal(streamer.capped, free_steps > 2)
    assert f"{int((free_steps > 2).sum())} of {BATCH} symbols stopped at the cap of 2" in caplog.text
    assert (stream_minutes(streamer, x_minute) - expected).abs().max().item() <= 1e-5
    no_cap = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", max_segments_live=CFG.max_segments)
    assert torch.equal(no_cap.start_day(x_daily), free_steps) and not no_cap.capped.any()


@pytest.mark.parametrize(
    ("fp32_ms", "bf16_ms", "chosen"), [(10.0, 9.5, "fp32"), (10.0, 9.0, "bf16"), (5.0, 20.0, "fp32")]
)
def test_auto_takes_bf16_only_when_the_probe_measures_it_faster(monkeypatch, caplog, fp32_ms, bf16_ms, chosen):
    def probe(net, batch, max_minutes, device, dtypes, repeats=3, kernels=ATTENTION_KERNELS):
        minute = {"fp32": fp32_ms, "bf16": bf16_ms}
        return {d: {"attention": "matmul", "block_ms": {"sdpa": 2.0, "matmul": 1.0}, "unavailable": {},
                    "minute_ms": minute[d]} for d in dtypes}

    monkeypatch.setattr(stream_dtype, "probe_stream", probe)
    net = build(seed=1)
    with caplog.at_level(logging.INFO, logger="hrm.stream"):
        streamer, choice = stream_dtype.build_streamer(net, BATCH, 20, "cpu", StreamConfig(max_segments_live=2))
    assert choice.dtype_name == chosen and streamer.dtype == stream_dtype.DTYPES[chosen]
    assert streamer.attention == "matmul" and streamer.segment_limit == 2
    assert f"stream.dtype auto: {chosen}" in caplog.text and f"{bf16_ms:.2f} ms in bf16" in caplog.text
    assert next(net.parameters()).dtype == torch.float32  # the caller's net is not cast


def test_the_probe_measures_both_dtypes_and_fixed_dtypes_skip_the_comparison():
    net = build(seed=1)
    probe = stream_dtype.probe_stream(net, BATCH, 20, "cpu", ["fp32", "bf16"], repeats=1)
    assert set(probe) == {"fp32", "bf16"}
    blocks = CFG.H_cycles * CFG.L_cycles * CFG.l.n_layers
    for row in probe.values():
        assert set(row["block_ms"]) | set(row["unavailable"]) == set(ATTENTION_KERNELS)
        assert row["attention"] in row["block_ms"]
        assert row["minute_ms"] == pytest.approx(row["block_ms"][row["attention"]] * blocks, rel=1e-3)
    choice = stream_dtype.choose_stream(net, BATCH, 20, "cpu", "bf16", repeats=1, attention="matmul")
    assert choice.dtype == torch.bfloat16 and set(choice.probe) == {"bf16"} and "set in the config" in choice.reason
    assert choice.attention == "matmul" and set(choice.probe["bf16"]["block_ms"]) == {"matmul"}
    with pytest.raises(ValueError, match="^stream.dtype: expected one of auto, fp32, bf16"):
        stream_dtype.choose_stream(net, BATCH, 20, "cpu", "fp16")
    with pytest.raises(ValueError, match="^stream.attention: expected one of auto, sdpa, matmul, compiled"):
        stream_dtype.choose_stream(net, BATCH, 20, "cpu", "fp32", attention="flash")


@pytest.mark.parametrize(
    ("sdpa_ms", "matmul_ms", "compiled_ms", "chosen"),
    [(10.0, 9.5, 8.0, "compiled"), (10.0, 5.0, 4.8, "matmul"), (10.0, 9.5, 9.5, "sdpa"), (10.0, 9.0, 8.5, "matmul")],
)
def test_a_kernel_replaces_the_choice_before_it_only_when_1_1x_faster(monkeypatch, sdpa_ms, matmul_ms, compiled_ms,
                                                                     chosen):
    """In the order sdpa, matmul, compiled (compiling costs start-up time), each must beat the choice so far by
    KERNEL_MIN_SPEEDUP; minute_ms is the chosen kernel's block time x blocks."""
    ms = {"sdpa": sdpa_ms, "matmul": matmul_ms, "compiled": compiled_ms}
    monkeypatch.setattr(stream_dtype, "block_seconds", lambda block, batch, keys, dtype, device, kernel, repeats:
                        ms[kernel] / 1e3)
    probe = stream_dtype.probe_stream(build(seed=1), BATCH, 20, "cpu", ["fp32"])["fp32"]
    blocks = CFG.H_cycles * CFG.L_cycles * CFG.l.n_layers
    assert probe["attention"] == chosen and probe["minute_ms"] == pytest.approx(ms[chosen] * blocks)


def test_a_kernel_torch_compile_cannot_build_is_reported_and_not_chosen(monkeypatch):
    """Where torch.compile fails (no C++ compiler, no Triton), the probe keeps the cause and the choice falls
    back to the kernels that run."""
    timed = stream_dtype.block_seconds

    def block_seconds(block, batch, keys, dtype, device, kernel, repeats):
        if kernel == "compiled":
            cause = RuntimeError("Compiler: nonexistent-cxx is not found.")
            raise torch._dynamo.exc.BackendCompilerFailed(lambda *a: None, cause, None)
        return timed(block, batch, keys, dtype, device, kernel, repeats)

    monkeypatch.setattr(stream_dtype, "block_seconds", block_seconds)
    choice = stream_dtype.choose_stream(build(seed=1), BATCH, 20, "cpu", "fp32", repeats=1)
    assert choice.attention in ("sdpa", "matmul")
    assert choice.probe["fp32"]["unavailable"] == {"compiled": "RuntimeError: Compiler: nonexistent-cxx is not found."}
    assert "compiled unavailable: RuntimeError: Compiler: nonexistent-cxx" in choice.reason
    with pytest.raises(RuntimeError, match="no kernel of compiled runs here"):
        stream_dtype.choose_stream(build(seed=1), BATCH, 20, "cpu", "fp32", repeats=1, attention="compiled")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_the_compiled_kernel_compiles_at_construction_and_never_during_a_day(dtype):
    """Live minutes must not wait for torch.compile: after the constructor, days with one or several symbols per
    segment, from the first minute (one cached key) to the last (the whole cache), build no new graph."""
    from torch._dynamo.utils import counters

    net = build(seed=1).to(dtype)
    streamer = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", dtype, attention="compiled")
    graphs = counters["stats"]["unique_graphs"]
    eager = HRMStreamer(net, BATCH, CFG.minutes_per_day, "cpu", dtype, attention="sdpa")
    symbols_per_segment = set()
    for day in range(3):
        x_daily, x_minute = day_inputs(seed=22 + day)  # days 23 and 24 end with a segment of one symbol
        steps = streamer.start_day(x_daily)
        assert torch.equal(steps, eager.start_day(x_daily))
        symbols_per_segment |= {int((steps > s).sum()) for s in range(int(steps.max()))}
        error = (stream_minutes(streamer, x_minute) - stream_minutes(eager, x_minute)).abs()
        if dtype == torch.float32:
            assert error.max().item() <= 1e-5
        else:  # two bf16 roundings of a deep random net; the accuracy against fp32 is tested above
            assert error.mean().item() <= 0.01
    assert 1 in symbols_per_segment and max(symbols_per_segment) > 1  # a segment of one symbol, one of several
    assert counters["stats"]["unique_graphs"] == graphs


def test_misuse_is_rejected_with_the_expected_shape_or_order():
    net = build()
    x_daily, x_minute = day_inputs(seed=0)
    with pytest.raises(ValueError, match=r"max_minutes: expected 1\.\.20"):
        HRMStreamer(net, BATCH, 21, "cpu")
    with pytest.raises(ValueError, match=r"net: parameters are torch.float32 on cpu, expected torch.bfloat16"):
        HRMStreamer(net, BATCH, 20, "cpu", torch.bfloat16)
    with pytest.raises(ValueError, match=r"max_segments_live: expected an int >= 1"):
        HRMStreamer(net, BATCH, 20, "cpu", max_segments_live=0)
    with pytest.raises(ValueError, match=r"attention: expected one of sdpa, matmul"):
        HRMStreamer(net, BATCH, 20, "cpu", attention="flash")
    streamer = HRMStreamer(net, BATCH, 20, "cpu")
    with pytest.raises(RuntimeError, match="call start_day"):
        streamer.step(x_minute[:, 0])
    with pytest.raises(ValueError, match=r"x_daily: expected shape \(6, any, 5\)"):
        streamer.start_day(x_daily[:4])
    with pytest.raises(ValueError, match=r"expected 1\.\.12 daily rows"):
        streamer.start_day(torch.randn(BATCH, 13, 5))
    streamer.start_day(x_daily)
    with pytest.raises(ValueError, match=r"x_minute: expected shape \(6, 3\)"):
        streamer.step(x_minute[:, :2])


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["sdpa", "compiled"])
def test_the_27m_preset_streams_the_full_forward(repo_root, kernel):
    """At the real widths (d_L 768, 12 heads of 64, 6 layers) the stream equals act_rollout in fp32."""
    from lab_v10.src.config import load_config

    cfg = dataclasses.replace(load_config(repo_root / "config" / "default_hrm27m.yaml").hrm, max_segments=2)
    net = build(seed=0, cfg=cfg)
    g = torch.Generator().manual_seed(0)
    x_daily = torch.randn(3, 16, cfg.daily_features, generator=g)
    x_minute = torch.randn(3, 6, cfg.minute_features, generator=g)
    expected, steps = full_forward(net, x_daily, x_minute)
    streamer = HRMStreamer(net, 3, 6, "cpu", attention=kernel)
    assert torch.equal(streamer.start_day(x_daily), steps)
    assert (stream_minutes(streamer, x_minute) - expected).abs().max().item() <= 1e-5
