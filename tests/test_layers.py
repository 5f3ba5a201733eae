"""Transformer layers: RoPE properties, attention against a softmax reference, backend switch."""
from __future__ import annotations

import logging
import math
import sys

import pytest
import torch

from lab_v10.src.errors import ConfigError
from lab_v10.src.options import layers
from lab_v10.src.options.layers import (
    Attention,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    TransformerBlock,
    apply_rotary_pos_emb,
    attention,
    flash_unavailable_reason,
    sdpa_attention,
    set_use_flash,
    trunc_normal_,
)

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _restore_backend_request(monkeypatch):
    """Each test starts from the environment's choice and leaves the module as it found it."""
    monkeypatch.setattr(layers, "_flash_request", layers._UNSET)
    monkeypatch.delenv("USE_FLASH", raising=False)
    layers._select_backend.cache_clear()
    yield
    layers._select_backend.cache_clear()


def reference_attention(q, k, v, causal):
    """Plain softmax attention on (B, T, H, D) with a bottom-right causal mask, in float64."""
    q, k, v = (t.double().transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    if causal:
        tq, tk = scores.shape[-2:]
        allowed = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)  # (B, Tq, H, D)


def qk(batch=2, t=50, heads=3, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, t, heads, dim, generator=g), torch.randn(batch, t, heads, dim, generator=g)


# ----------------------------------------------------------------------------------------------
# Init, norm, feed-forward


def test_trunc_normal_has_the_requested_std():
    from scipy.stats import truncnorm

    w = trunc_normal_(torch.empty(200_000), std=0.05)
    shrink = truncnorm(-2.0, 2.0).std()  # std of N(0, 1) truncated at +-2
    assert w.abs().max() <= 2 * 0.05 / shrink + 1e-6  # truncated at 2 sigma of the pre-scale draw
    assert w.std().item() == pytest.approx(0.05, rel=0.01)


def test_rmsnorm_normalises_and_scales():
    norm = RMSNorm(8)
    x = torch.randn(3, 5, 8) * 7.0
    y = norm(x)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(3, 5), atol=1e-4)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    assert torch.allclose(norm(x), 2 * y, atol=1e-5)


def test_swiglu_has_no_bias_and_3_d_ffn_weights():
    mlp = SwiGLU(16, 24)
    assert sum(p.numel() for p in mlp.parameters()) == 3 * 16 * 24
    assert all(m.bias is None for m in (mlp.gate_up_proj, mlp.down_proj))


# ----------------------------------------------------------------------------------------------
# RoPE


def test_rope_preserves_norms():
    q, k = qk()
    cos, sin = RotaryEmbedding(16, 400, 10000.0)()
    q_rot, k_rot = apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.allclose(q_rot.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.allclose(k_rot.norm(dim=-1), k.norm(dim=-1), atol=1e-5)


def test_rope_score_depends_only_on_the_offset():
    cos, sin = RotaryEmbedding(16, 400, 10000.0)()
    q, k = qk(batch=1, t=1, heads=1)

    def score(m, n):
        q_m, _ = apply_rotary_pos_emb(q, q, cos, sin, torch.tensor([m]))
        _, k_n = apply_rotary_pos_emb(k, k, cos, sin, torch.tensor([n]))
        return (q_m * k_n).sum().item()

    for m, n in [(5, 2), (40, 3), (7, 7), (2, 9)]:
        base = score(m, n)
        for shift in (1, 13, 250):
            assert score(m + shift, n + shift) == pytest.approx(base, abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)  # and it does depend on the offset


def test_rope_window_inside_a_longer_table_equals_a_short_table():
    q, k = qk(t=50)
    long_table = RotaryEmbedding(16, 400, 10000.0)()
    short_table = RotaryEmbedding(16, 50, 10000.0)()
    for a, b in zip(apply_rotary_pos_emb(q, k, *long_table), apply_rotary_pos_emb(q, k, *short_table)):
        assert torch.equal(a, b)


def test_rope_position_ids_arange_reproduces_the_default_and_broadcasts_per_sample():
    q, k = qk(batch=2, t=50)
    cos, sin = RotaryEmbedding(16, 400, 10000.0)()
    default = apply_rotary_pos_emb(q, k, cos, sin)
    shared = apply_rotary_pos_emb(q, k, cos, sin, torch.arange(50))
    per_sample = apply_rotary_pos_emb(q, k, cos, sin, torch.arange(50).expand(2, 50))
    for a, b, c in zip(default, shared, per_sample):
        assert torch.equal(a, b) and torch.equal(a, c)
    # different positions per sample: row b uses its own offsets, for every head
    ids = torch.stack([torch.arange(50), torch.arange(50) + 100])
    q_rot, _ = apply_rotary_pos_emb(q, k, cos, sin, ids)
    for b in range(2):
        q_b, _ = apply_rotary_pos_emb(q[b : b + 1], k[b : b + 1], cos, sin, ids[b])
        assert torch.equal(q_rot[b : b + 1], q_b)


def test_rope_rejects_a_window_longer_than_the_table():
    q, k = qk(t=60)
    with pytest.raises(ValueError, match="exceeds the RoPE table of 50"):
        apply_rotary_pos_emb(q, k, *RotaryEmbedding(16, 50, 10000.0)())


def test_rope_keeps_the_input_dtype():
    q, k = qk()
    cos, sin = RotaryEmbedding(16, 64, 10000.0)()
    q_rot, k_rot = apply_rotary_pos_emb(q.bfloat16(), k.bfloat16(), cos, sin)
    assert q_rot.dtype == k_rot.dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------
# Attention


@pytest.mark.parametrize(
    "causal, tq, tk", [(False, 12, 12), (True, 12, 12), (True, 4, 12), (True, 1, 12), (False, 3, 12)]
)
def test_sdpa_matches_plain_softmax_reference(causal, tq, tk):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, tq, 4, 8, generator=g)
    k, v = torch.randn(2, tk, 4, 8, generator=g), torch.randn(2, tk, 4, 8, generator=g)
    out = sdpa_attention(q, k, v, causal)
    assert out.shape == (2, tq, 4, 8)
    torch.testing.assert_close(out.double(), reference_attention(q, k, v, causal), atol=1e-5, rtol=1e-5)


def test_causal_queries_at_the_end_of_the_keys_match_the_full_computation():
    """A KV cache feeds the last positions as queries: they must equal those rows of the full pass."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 10, 4, 8, generator=g) for _ in range(3))
    full = sdpa_attention(q, k, v, causal=True)
    torch.testing.assert_close(sdpa_attention(q[:, -3:], k, v, causal=True), full[:, -3:])


def test_sdpa_rejects_more_queries_than_keys_when_causal():
    with pytest.raises(ValueError, match="at least as many keys"):
        sdpa_attention(torch.randn(1, 5, 2, 8), torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8), causal=True)


def test_attention_module_matches_reference_with_rope():
    torch.manual_seed(3)
    attn = Attention(32, 4)
    cos, sin = RotaryEmbedding(8, 64, 10000.0)()
    x = torch.randn(2, 20, 32)
    q, k, v = attn.qkv(x, cos, sin)
    expected = attn.o_proj(reference_attention(q, k, v, causal=True).float().reshape(2, 20, 32))
    torch.testing.assert_close(attn(x, cos, sin, causal=True), expected, atol=1e-5, rtol=1e-5)


def test_fused_and_separate_qkv_have_the_same_parameters_and_outputs():
    torch.manual_seed(4)
    fused, separate = Attention(32, 4, fused_qkv=True), Attention(32, 4, fused_qkv=False)
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in separate.parameters()) == 4 * 32 * 32
    assert all(m.bias is None for m in separate.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        w = fused.qkv_proj.weight.view(3, 4, 8, 32)  # (q/k/v, head, head_dim, d) as qkv() splits it
        separate.q_proj.weight.copy_(w[0].reshape(32, 32))
        separate.k_proj.weight.copy_(w[1].reshape(32, 32))
        separate.v_proj.weight.copy_(w[2].reshape(32, 32))
        separate.o_proj.weight.copy_(fused.o_proj.weight)
    cos, sin = RotaryEmbedding(8, 64, 10000.0)()
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(fused(x, cos, sin, causal=True), separate(x, cos, sin, causal=True))


def test_causal_block_output_ignores_later_positions():
    torch.manual_seed(5)
    block = TransformerBlock(32, 4, 48, 1e-5)
    cos, sin = RotaryEmbedding(8, 64, 10000.0)()
    x = torch.randn(1, 16, 32)
    y = x.clone()
    y[:, 9:] += 10 * torch.randn(1, 7, 32)
    out_x, out_y = block(x, cos, sin, causal=True), block(y, cos, sin, causal=True)
    torch.testing.assert_close(out_x[:, :9], out_y[:, :9], atol=1e-6, rtol=0)
    assert not torch.allclose(out_x[:, 9:], out_y[:, 9:])


# ----------------------------------------------------------------------------------------------
# Backend switch


def test_cpu_uses_sdpa_and_logs_one_line(caplog):
    q = torch.randn(1, 5, 2, 8)
    with caplog.at_level(logging.INFO, logger="hrm.attn"):
        for _ in range(3):
            attention(q, q, q, causal=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "hrm.attn"]
    assert len(lines) == 1
    assert "backend=sdpa" in lines[0] and "device=cpu" in lines[0] and "capability=n/a" in lines[0]


@pytest.mark.parametrize("how", ["call", "env"])
def test_asking_for_flash_where_it_cannot_run_warns_and_falls_back(monkeypatch, how):
    if how == "call":
        set_use_flash(True)
    else:
        monkeypatch.setenv("USE_FLASH", "1")
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(1, 6, 2, 8, generator=g) for _ in range(3))
    with pytest.warns(RuntimeWarning, match="flash attention requested but unavailable .*device is cpu"):
        out = attention(q, k, v, causal=True)
    torch.testing.assert_close(out, sdpa_attention(q, k, v, causal=True))


def test_run_time_switch_and_environment(monkeypatch):
    q = torch.randn(1, 4, 2, 8)
    monkeypatch.setenv("USE_FLASH", "0")
    assert layers.flash_request() is False and layers.attention_backend(q) == "sdpa"
    monkeypatch.setenv("USE_FLASH", "auto")
    assert layers.flash_request() is None
    set_use_flash(True)  # the call overrides the environment from now on
    assert layers.flash_request() is True
    set_use_flash(None)
    assert layers.flash_request() is None
    with pytest.raises(ValueError):
        set_use_flash("yes")  # type: ignore[arg-type]


def test_bad_use_flash_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("USE_FLASH", "yes")
    with pytest.raises(ConfigError, match="USE_FLASH: expected one of 1, 0, auto, got 'yes'"):
        layers.flash_request()


def test_flash_eligibility_rules(monkeypatch):
    monkeypatch.setattr(layers, "_flash_attn_func", lambda: None)
    assert "needs CUDA" in flash_unavailable_reason("cpu", None, torch.bfloat16, 64)
    assert "float16 or bfloat16" in flash_unavailable_reason("cuda", (9, 0), torch.float32, 64)
    assert "capability (7, 5)" in flash_unavailable_reason("cuda", (7, 5), torch.float16, 64)
    assert "head width 72" not in flash_unavailable_reason("cuda", (8, 0), torch.float16, 72)
    assert "head width 260" in flash_unavailable_reason("cuda", (8, 0), torch.float16, 260)
    assert "not installed" in flash_unavailable_reason("cuda", (9, 0), torch.bfloat16, 64)
    monkeypatch.setattr(layers, "_flash_attn_func", lambda: (lambda *a, **kw: None))
    assert flash_unavailable_reason("cuda", (9, 0), torch.bfloat16, 64) is None


def test_cpu_attention_never_imports_flash_attn():
    already = "flash_attn" in sys.modules
    set_use_flash(True)
    with pytest.warns(RuntimeWarning):
        attention(torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8), causal=False)
    assert ("flash_attn" in sys.modules) == already


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_attention_matches_reference(dtype):
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 64, 4, 64, generator=g) for _ in range(3))
    out = attention(*(t.to("cuda", dtype) for t in (q, k, v)), causal=True)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double().cpu(), reference_attention(q, k, v, True), atol=tol, rtol=tol)


@pytest.mark.skipif(
    not CUDA or layers._flash_attn_func() is None or torch.cuda.get_device_capability() < (8, 0),
    reason="needs CUDA with capability >= 8.0 and flash-attn installed",
)
@pytest.mark.parametrize("causal, tq", [(False, 64), (True, 64), (True, 1)])
def test_flash_and_sdpa_agree(causal, tq):
    g = torch.Generator().manual_seed(8)
    q = torch.randn(2, tq, 4, 64, generator=g).to("cuda", torch.bfloat16)
    k, v = (torch.randn(2, 64, 4, 64, generator=g).to("cuda", torch.bfloat16) for _ in range(2))
    set_use_flash(True)
    assert layers.attention_backend(q) == "flash"
    flash = attention(q, k, v, causal)
    set_use_flash(False)
    torch.testing.assert_close(flash, attention(q, k, v, causal), atol=2e-2, rtol=2e-2)
