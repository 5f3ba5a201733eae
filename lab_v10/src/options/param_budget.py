"""Closed-form parameter counts, memory and the budget table of the HRM (no torch import).

``scripts/manual_param_count.py`` prints these tables; ``scripts/validate_hrm27m.py`` checks them against
the torch model; ``scripts/optimize_hrm27m.py`` and ``scripts/sweep_optuna.py`` use them to keep
architectures inside the budget (docs/design.md section 4).
"""
from __future__ import annotations

from pathlib import Path

from lab_v10.src.config import HRMConfig, LabConfig, ModuleConfig

DEFAULT_CONFIG = Path("config/default_hrm27m.yaml")
BUDGET = (26_500_000, 27_500_000)  # inclusive bounds on the total, docs/design.md section 4
GROUPS = ("H-module", "L-module", "FiLM H->L", "heads", "final norms", "input projections")
MIB = 2**20
FP32_BYTES, HALF_BYTES = 4, 2
ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, fp32


def block_params(mc: ModuleConfig) -> int:
    """One post-norm transformer block: attention, SwiGLU and two RMSNorm gains."""
    d = mc.d_model
    return 4 * d * d + 3 * d * mc.ffn_dim + 2 * d


def symbol_embedding_params(hrm: HRMConfig) -> int:
    """The (n_symbols, d_H) symbol embedding with ``hrm.symbol_embedding``, else 0 (counted as an input)."""
    return hrm.n_symbols * hrm.h.d_model if hrm.symbol_embedding else 0


def param_counts(hrm: HRMConfig) -> dict[str, int]:
    """Parameters per group, 'core total' (all but the input projections) and 'total'. FiLM counts 0 with
    ``hrm.film`` false; the symbol embedding is part of the input projections."""
    d_h, d_l = hrm.h.d_model, hrm.l.d_model
    counts = {
        "H-module": hrm.h.n_layers * block_params(hrm.h),
        "L-module": hrm.l.n_layers * block_params(hrm.l),
        "FiLM H->L": 2 * d_h * d_l if hrm.film else 0,
        "heads": 2 * d_h + d_l + 2 * d_h,
        "final norms": d_h + d_l,
        "input projections": hrm.daily_features * d_h + hrm.minute_features * d_l + symbol_embedding_params(hrm),
    }
    counts["core total"] = sum(v for k, v in counts.items() if k != "input projections")
    counts["total"] = counts["core total"] + counts["input projections"]
    return counts


def within_budget(counts: dict[str, int]) -> bool:
    return BUDGET[0] <= counts["total"] <= BUDGET[1]


def format_table(header: list[str], rows: list[list[str]], markdown: bool, text_columns: int = 2) -> str:
    """A markdown table, or a plain aligned one; the first ``text_columns`` align left, the rest right."""
    if markdown:
        sep = ["---" if i < text_columns else "---:" for i in range(len(header))]
        return "\n".join("| " + " | ".join(r) + " |" for r in [header, sep, *rows])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = (c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def module_shapes(hrm: HRMConfig) -> dict[str, str]:
    """A one-line description of each group's shape."""
    d_h, d_l = hrm.h.d_model, hrm.l.d_model

    def stack(mc: ModuleConfig, kind: str, tokens: str) -> str:
        return (
            f"{mc.n_layers} post-norm blocks, d={mc.d_model}, {mc.n_heads} heads of {mc.d_model // mc.n_heads}, "
            f"SwiGLU FFN {mc.ffn_dim}, {kind}, up to {tokens}"
        )

    symbols = f", symbol embedding {hrm.n_symbols}x{d_h}" if hrm.symbol_embedding else ""
    return {
        "H-module": stack(hrm.h, "bidirectional", f"{hrm.daily_window} daily rows"),
        "L-module": stack(hrm.l, "causal", f"{hrm.minutes_per_day} minutes"),
        "FiLM H->L": f"gamma, beta: {d_h}->{d_l} each" if hrm.film else "none (hrm.film: false)",
        "heads": f"A {d_h}->2, B {d_l}->1 per minute, Q {d_h}->2",
        "final norms": f"RMSNorm {d_h} + {d_l}",
        "input projections": f"{hrm.daily_features}->{d_h}, {hrm.minute_features}->{d_l}{symbols}",
        "core total": "all but the input projections",
        "total": f"budget {BUDGET[0]:,}..{BUDGET[1]:,}",
    }


def budget_table(hrm: HRMConfig, counts: dict[str, int], markdown: bool = False) -> str:
    """Per-group parameters, share of the total and weight memory in bf16/fp16 and fp32."""
    total = counts["total"]
    shapes = module_shapes(hrm)
    rows = [
        [name, shapes[name], f"{n:,}", f"{100 * n / total:.2f}%",
         f"{n * HALF_BYTES / MIB:.2f}", f"{n * FP32_BYTES / MIB:.2f}"]
        for name, n in counts.items()
    ]
    return format_table(["part", "shape", "parameters", "share", "bf16/fp16 MiB", "fp32 MiB"], rows, markdown)


def memory_table(counts: dict[str, int], markdown: bool = False) -> str:
    """Weight, gradient and AdamW state memory for the total parameter count (activations excluded)."""
    n = counts["total"]
    items = [
        ("weights, bf16/fp16 (inference)", HALF_BYTES),
        ("weights, fp32 (training master copy)", FP32_BYTES),
        ("gradients, fp32", FP32_BYTES),
        ("AdamW moments, fp32 x2", ADAMW_MOMENTS * FP32_BYTES),
        ("training state: weights + gradients + AdamW", (2 + ADAMW_MOMENTS) * FP32_BYTES),
    ]
    rows = [[what, f"{b} B/param", f"{n * b / MIB:.2f}"] for what, b in items]
    return format_table(["memory", "bytes", "MiB"], rows, markdown)


def recipe_table(cfg: LabConfig, markdown: bool = False) -> str:
    """Training settings of a preset, each with its config key."""
    t, h = cfg.train, cfg.hrm
    items = [
        ("train.lr", t.lr), ("train.weight_decay", t.weight_decay), ("train.warmup_steps", t.warmup_steps),
        ("train.batch_size", t.batch_size), ("train.epochs", t.epochs), ("train.patience", t.patience),
        ("train.early_stopping", t.early_stopping), ("train.grad_clip", t.grad_clip),
        ("train.autocast_bf16", t.autocast_bf16),
        ("train.loss_weighting", t.loss_weighting), ("train.ponder_cost", t.ponder_cost),
        ("train.ensemble_size", t.ensemble_size), ("hrm.gap_scale_column", h.gap_scale_column),
        ("hrm.H_cycles", h.H_cycles), ("hrm.L_cycles", h.L_cycles), ("hrm.max_segments", h.max_segments),
        ("hrm.halt_exploration_prob", h.halt_exploration_prob), ("hrm.eval_halting", h.eval_halting),
        ("hrm.halt_nll_threshold", f"{h.halt_nll_threshold:.4f}"),
        ("hrm.halt_bce_threshold", f"{h.halt_bce_threshold:.4f}"),
    ]
    return format_table(["config key", "value"], [[k, str(v)] for k, v in items], markdown)


def verdict(counts: dict[str, int]) -> str:
    where = "inside" if within_budget(counts) else "OUTSIDE"
    return f"total {counts['total']:,} parameters is {where} the budget {BUDGET[0]:,}..{BUDGET[1]:,}"


def report(cfg: LabConfig, counts: dict[str, int], markdown: bool) -> str:
    """The budget table and verdict; with ``markdown``, the HRM27M.md block (budget, memory, recipe)."""
    if not markdown:
        return budget_table(cfg.hrm, counts) + "\n" + verdict(counts)
    return "\n\n".join([
        "### Parameter budget", budget_table(cfg.hrm, counts, True), verdict(counts) + ".",
        "### Memory", memory_table(counts, True),
        "### Training settings", recipe_table(cfg, True),
    ])
