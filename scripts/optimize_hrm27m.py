"""Enumerate HRM architectures inside the 27M budget and rank them by estimated FLOPs.

    python scripts/optimize_hrm27m.py [--config FILE] [--top N] [--sort sample|minute] [--markdown]

The grid varies layers, widths (heads = width / 64, the presets' head width) and SwiGLU widths of the H-
and L-modules; everything else (features, window, minutes per day, cycles) comes from the config. Each
architecture whose total parameters (closed form, manual_param_count.py) lie in 26.5M..27.5M is scored by

    FLOPs per sample   one segment over a whole day, as in training and batch evaluation:
                       input projections + H_cycles x (L_cycles L-updates + one H-update) + heads;
                       H attention is bidirectional over the window, L attention causal over the day.
    FLOPs per minute   one streamed minute of one segment with a KV cache: minute projection +
                       H_cycles x L_cycles L-layer steps for one new position, attending on average to
                       (T_L + 1) / 2 cached positions, + Head B. H and FiLM run once per day, before
                       the open, and are not counted.

Counts are forward matmul FLOPs (2 per multiply-add); norms, activations and RoPE are left out. Multiply
by the segments used (at most max_segments) for a full ACT forward.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

from lab_v10.src.config import HRMConfig, ModuleConfig, load_config
from lab_v10.src.options.param_budget import BUDGET, DEFAULT_CONFIG, format_table, param_counts

HEAD_DIM = 64
GRID = {
    "h_layers": range(2, 7),
    "h_width": (256, 384, 512, 640, 768),
    "l_layers": range(2, 9),
    "l_width": (384, 512, 640, 768, 896, 1024),
    "ffn": (256, 384, 512, 768, 1024, 1536, 2048),
}


def layer_matmul_flops(mc: ModuleConfig) -> int:
    """Projection FLOPs of one block for one token: QKV + output (4 d^2) and SwiGLU (3 d ffn)."""
    return 2 * (4 * mc.d_model**2 + 3 * mc.d_model * mc.ffn_dim)


def attention_flops(d_model: int, query_key_pairs: float) -> float:
    """Scores q.k and the weighted sum of v: 2 x 2 d FLOPs per (query, key) pair, all heads together."""
    return 4 * d_model * query_key_pairs


def segment_flops(hrm: HRMConfig) -> tuple[float, float]:
    """(projection, attention) forward FLOPs of one segment over a full day (module docstring)."""
    t_h, t_l, d_h, d_l = hrm.daily_window, hrm.minutes_per_day, hrm.h.d_model, hrm.l.d_model
    inputs = 2 * (t_h * hrm.daily_features * d_h + t_l * hrm.minute_features * d_l)
    h_proj, h_attn = hrm.h.n_layers * t_h * layer_matmul_flops(hrm.h), hrm.h.n_layers * attention_flops(d_h, t_h * t_h)
    film = 2 * 2 * d_h * d_l
    l_proj = hrm.l.n_layers * t_l * layer_matmul_flops(hrm.l) + film
    l_attn = hrm.l.n_layers * attention_flops(d_l, t_l * (t_l + 1) / 2)
    heads = 2 * (2 * d_h + 2 * d_h + t_l * d_l)
    projections = inputs + hrm.H_cycles * (hrm.L_cycles * l_proj + h_proj) + heads
    return projections, hrm.H_cycles * (hrm.L_cycles * l_attn + h_attn)


def minute_flops(hrm: HRMConfig) -> tuple[float, float]:
    """(projection, attention) forward FLOPs of one streamed minute of one segment (module docstring)."""
    d_l, updates = hrm.l.d_model, hrm.H_cycles * hrm.L_cycles * hrm.l.n_layers
    projections = 2 * hrm.minute_features * d_l + updates * layer_matmul_flops(hrm.l) + 2 * d_l
    return projections, updates * attention_flops(d_l, (hrm.minutes_per_day + 1) / 2)


def flops_per_sample(hrm: HRMConfig) -> float:
    return sum(segment_flops(hrm))


def flops_per_minute(hrm: HRMConfig) -> float:
    return sum(minute_flops(hrm))


def candidates(base: HRMConfig) -> list[HRMConfig]:
    """Every grid architecture whose total parameters lie inside the budget."""
    inside = []
    for n_h, d_h, f_h, n_l, d_l, f_l in itertools.product(
        GRID["h_layers"], GRID["h_width"], GRID["ffn"], GRID["l_layers"], GRID["l_width"], GRID["ffn"]
    ):
        hrm = dataclasses.replace(
            base,
            h=ModuleConfig(n_layers=n_h, d_model=d_h, n_heads=d_h // HEAD_DIM, ffn_dim=f_h),
            l=ModuleConfig(n_layers=n_l, d_model=d_l, n_heads=d_l // HEAD_DIM, ffn_dim=f_l),
        )
        if BUDGET[0] <= param_counts(hrm)["total"] <= BUDGET[1]:
            inside.append(hrm)
    return inside


def describe(mc: ModuleConfig) -> str:
    return f"{mc.n_layers}x{mc.d_model} ({mc.n_heads}h) ffn {mc.ffn_dim}"


def shape_key(hrm: HRMConfig) -> tuple[int, ...]:
    """The grid coordinates of an architecture (layers, width, FFN width of H, then of L)."""
    return (hrm.h.n_layers, hrm.h.d_model, hrm.h.ffn_dim, hrm.l.n_layers, hrm.l.d_model, hrm.l.ffn_dim)


def ranking(base: HRMConfig, top: int, sort: str, markdown: bool) -> str:
    """The top architectures by the chosen FLOPs column, and where the config's own architecture ranks."""
    key = flops_per_sample if sort == "sample" else flops_per_minute
    ranked = sorted(candidates(base), key=lambda hrm: (key(hrm), param_counts(hrm)["total"]))
    own_rank = next((i + 1 for i, hrm in enumerate(ranked) if shape_key(hrm) == shape_key(base)), None)
    rows = []
    for i, hrm in enumerate(ranked[:top]):
        rows.append([str(i + 1), describe(hrm.h), describe(hrm.l), f"{param_counts(hrm)['total']:,}",
                     f"{flops_per_sample(hrm) / 1e9:.2f}", f"{flops_per_minute(hrm) / 1e6:.1f}"])
    rows.append(["config", describe(base.h), describe(base.l), f"{param_counts(base)['total']:,}",
                 f"{flops_per_sample(base) / 1e9:.2f}", f"{flops_per_minute(base) / 1e6:.1f}"])
    header = ["rank", "H-module", "L-module", "parameters", "GFLOPs/sample", "MFLOPs/minute"]
    placed = "outside the budget or the grid" if own_rank is None else f"rank {own_rank}"
    return (
        format_table(header, rows, markdown, text_columns=3)
        + f"\n\n{len(ranked):,} grid architectures lie inside the budget; sorted by FLOPs per {sort}; "
        f"the config's architecture is {placed}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--sort", choices=("sample", "minute"), default="sample")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(ranking(load_config(args.config).hrm, args.top, args.sort, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
