"""Does the HRM learn? Out-of-sample scores of the HRM against baselines and the oracle on the synthetic market.

    python scripts/bench_hrm_learning.py [--config config/small.yaml] [--seeds 10 11 12 ...] [--workers 2]
        [--quick] [--set train.epochs=8 --set hrm.l.d_model=32 ...] [--gap-paths 256] [--proba-paths 400]
        [--out FILE]

Per seed (a fresh synthetic market and HRM initialisation from that seed), one expanding split by date
(the last fold of a purged walk-forward with ``n_folds = 1``: test = the last ``walkforward.test_days``
sample dates, validation = the ``val_days`` before them, training = everything earlier, purged by the yA
label span). The market, samples, split and day-to-session pairing are the pipeline's own dataset layer
(``load_market``, ``build_dataset``, ``walk_forward_folds``, ``split_dates``, ``sessions_for``,
``session_minutes``; docs/design.md section 2), and the models are built by name from the registry
(``make_model``), so this check cannot drift from the pipeline. The HRM (``hrm``, the config's preset) is
fitted on the training dates and early-stopped on the validation dates; then, on the test block of that
seed's market:

- Book A (yA, vol points): out-of-sample R^2 against the training-mean forecast (``r2_oos``), RMSE and rank IC
  of the HRM's mu, of the expanding mean (at each test date, the mean of every yA whose span ended by that
  close), of the ridge baseline (``linear``: ridge on the same daily features, alpha chosen on the
  validation dates) and of the oracle's ``expected_gap`` (the true conditional mean given the latent state: the
  ceiling). The HRM's Gaussian NLL and 80% coverage are reported too.
- Book B (yB): AUC, log loss, Brier and ECE on the labelled minutes of the sessions that follow the test
  dates, for the HRM, the logistic regression on the same minute features (``logistic``, fitted on the
  sessions that follow the training dates, C chosen on those after the validation dates) and the
  oracle's ``downside_first_proba`` (Monte Carlo from the latent minute state: the ceiling), with the
  constant training base rate for reference; the same scores on the minutes where the backside-short
  setup fires (``setup_signal``; the minutes Book B trades) and on the minutes inside run-up episodes (the
  oracle's latent phase is run-up or reversal at the minute's close: where the synthetic market's minute
  signal lives; outside them the barrier race is close to a fair coin). The latent phase only selects the
  minutes scored; no forecast sees it.

One market's test block holds few independent yA windows (a 21-day label: about 6 in 120 days, 23 in 480), so
a single seed can rank the models either way. ``summary`` therefore gives, over the seeds, each model's
mean score and, for each comparison of the HRM with a baseline (the issue's criteria: yA R^2 against the
expanding mean, in-episode AUC against the logistic regression; also yA against ridge and all-minute AUC
against logistic), the paired per-seed differences, their mean and standard error, and the HRM's wins.
``per_seed`` holds every seed's full scores. ``--workers N`` scores N seeds at a time in separate processes
(``--threads`` torch threads each).

Prints one JSON document (also written to ``--out``; scripts/bench_common.py) with the machine and its load;
progress goes to stderr. ``--set KEY=VALUE`` overrides a config key (lab_v10/src/cli.py: dotted path, YAML
value), e.g. ``data.synthetic.n_days=1000``; the overrides used are part of the output. ``--quick`` is a
smoke run (:data:`QUICK_OVERRIDES` before any ``--set``, and few oracle paths). The scoring does not depend
on the overrides, and nothing is chosen on the test block. The data source must stay ``synthetic`` (the
oracle is the ceiling). A bad override or config exits with status 2 and one message naming the key.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_common import bench_parser, json_settings, load_average, machine_info, write_json

from lab_v10.src.cli import add_set_flag
from lab_v10.src.config import LabConfig, WalkForwardConfig, apply_overrides, config_to_dict, load_config
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import build_dataset, session_minutes, sessions_for, split_dates
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.errors import ConfigError, LabError
from lab_v10.src.eval.metrics import classification_metrics, paired_differences, regression_metrics
from lab_v10.src.models.registry import make_model

REPO = Path(__file__).resolve().parents[1]
QUICK_OVERRIDES = [  # --quick: a smoke run of every step in about a minute
    "data.synthetic.n_days=450", "walkforward.min_train_days=250", "walkforward.test_days=40", "train.epochs=1",
    "hrm.daily_window=16", "hrm.max_segments=1", "hrm.h.n_layers=1", "hrm.l.n_layers=1", "train.autocast_bf16=false",
]
EPISODE_PHASES = ("runup", "reversal")  # latent phases where the minute signal lives (data/README.md)
QUICK_ORACLE_PATHS = 20  # --quick: Monte Carlo paths of both oracle calls
MEAN_SCORES = {  # summary name: path of the score in a seed's result
    "yA_r2_hrm": ("yA", "hrm", "r2_oos"), "yA_r2_expanding_mean": ("yA", "expanding_mean", "r2_oos"),
    "yA_r2_ridge": ("yA", "ridge", "r2_oos"), "yA_r2_oracle": ("yA", "oracle_expected_gap", "r2_oos"),
    "yB_auc_hrm": ("yB", "hrm", "auc"), "yB_auc_logistic": ("yB", "logistic", "auc"),
    "yB_auc_oracle": ("yB", "oracle", "auc"),
    "yB_episode_auc_hrm": ("yB", "episode_minutes", "hrm", "auc"),
    "yB_episode_auc_logistic": ("yB", "episode_minutes", "logistic", "auc"),
    "yB_episode_auc_oracle": ("yB", "episode_minutes", "oracle", "auc"),
}
COMPARISONS = {  # HRM score vs baseline score, paired by seed (the criteria first)
    "yA_r2_vs_expanding_mean": (MEAN_SCORES["yA_r2_hrm"], MEAN_SCORES["yA_r2_expanding_mean"]),
    "yB_episode_auc_vs_logistic": (MEAN_SCORES["yB_episode_auc_hrm"], MEAN_SCORES["yB_episode_auc_logistic"]),
    "yA_r2_vs_ridge": (MEAN_SCORES["yA_r2_hrm"], MEAN_SCORES["yA_r2_ridge"]),
    "yB_auc_vs_logistic": (MEAN_SCORES["yB_auc_hrm"], MEAN_SCORES["yB_auc_logistic"]),
}
log = logging.getLogger("lab.bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=REPO / "config" / "small.yaml", help="YAML config (the HRM preset)")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="market and model seeds, one split each (default: the config's seed)")
    add_set_flag(p)
    p.add_argument("--gap-paths", type=int, default=256, help="oracle Monte Carlo paths per date for expected_gap")
    p.add_argument("--proba-paths", type=int, default=400,
                   help="oracle Monte Carlo paths per minute for downside_first_proba (stderr <= 0.5/sqrt(n))")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=1, help="seeds scored in parallel (processes of --threads each)")
    p.add_argument("--run-dir", type=Path,
                   help="HRM checkpoints and logs, one seed_N/ folder per seed (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct seeds, got {args.seeds}")
    if args.workers < 1 or args.threads < 1:
        p.error(f"--workers and --threads: expected integers >= 1, got {args.workers} and {args.threads}")
    return args


def expanding_mean(y: pd.Series, span_end: pd.DatetimeIndex, at: pd.DatetimeIndex) -> np.ndarray:
    """At each date of ``at``, the mean of the labels ``y`` whose ``span_end`` is on or before it (known at that
    close); NaN where none is. ``y``, ``span_end``: one entry per labelled date, in the same order.
    -> ``(len(at),)``."""
    order = np.argsort(span_end.to_numpy(), kind="stable")
    ends = span_end.to_numpy()[order]
    sums = np.r_[0.0, np.cumsum(y.to_numpy(dtype=float)[order])]
    known = np.searchsorted(ends, at.to_numpy(), side="right")  # labels with span_end <= t
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, sums[known] / np.maximum(known, 1), np.nan)


def point_metrics(y: np.ndarray, mu: np.ndarray, train_mean: float) -> dict:
    """r2_oos, rmse and rank_ic of a point forecast (regression_metrics without its sigma-based scores)."""
    scores = regression_metrics(y, mu, np.ones_like(mu), train_mean)
    return {k: scores[k] for k in ("r2_oos", "rmse", "rank_ic")}


def one_split(cfg: LabConfig) -> WalkForwardConfig:
    """The config's walk-forward reduced to its last fold: one expanding train/validation/test split."""
    return dataclasses.replace(cfg.walkforward, mode="last", scheme="expanding", n_folds=1)


def score_seed(cfg: LabConfig, seed: int, gap_paths: int, proba_paths: int, threads: int, run_dir: Path) -> dict:
    """Market ``seed``, the HRM (model seed ``seed``), the baselines and the oracle on one split -> scores."""
    torch.set_num_threads(threads)
    cfg = dataclasses.replace(cfg, seed=seed)
    timing: dict[str, float] = {}

    clock = time.perf_counter()
    data = build_dataset(load_market(cfg.data, cfg.seed), cfg)
    X_intraday, yA, yB, oracle = data.X_intraday, data.yA, data.yB, data.market.oracle
    timing["data_s"] = time.perf_counter() - clock

    (fold,) = walk_forward_folds(data.sample_dates, data.span_end, one_split(cfg))
    train, val, test = split_dates(data, fold)
    log.info("seed %d: %s", seed, fold.describe())
    test_sessions = sessions_for(data, test)
    test_minutes = X_intraday.loc[session_minutes(data, test_sessions)]
    scored = test_minutes.index[yB.reindex(test_minutes.index).notna().to_numpy()]  # labelled test minutes

    # HRM
    clock = time.perf_counter()
    hrm = make_model("hrm", cfg, run_dir).fit(data, fold)
    timing["hrm_fit_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    hrm_forecasts = hrm.predict(data, test)
    timing["hrm_predict_s"] = time.perf_counter() - clock
    adapter = hrm.adapter_

    # baselines
    clock = time.perf_counter()
    ridge_mu = make_model("linear", cfg).fit(data, fold).predict(data, test).mu
    logistic = make_model("logistic", cfg).fit(data, fold)
    logistic_proba = logistic.predict(data, test).proba
    timing["baselines_s"] = time.perf_counter() - clock
    train_mean = float(yA.loc[train].mean())
    known_mean = expanding_mean(yA.loc[data.sample_dates], data.span_end, test)

    # oracle
    clock = time.perf_counter()
    gap = oracle.expected_gap(cfg.labels.horizon_days, gap_paths, cfg.labels.annualization_days).reindex(test)
    timing["oracle_gap_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    atr = X_intraday["atr"]
    oracle_proba = pd.concat([
        oracle.downside_first_proba(
            day, atr.loc[test_minutes.index[test_minutes["session"] == day]].to_numpy(), cfg.labels.horizon_minutes,
            cfg.labels.k_down, cfg.labels.k_up, proba_paths,
        )
        for day in test_sessions
    ])
    timing["oracle_proba_s"] = time.perf_counter() - clock

    y_a = yA.loc[test].to_numpy(dtype=float)
    hrm_scores = regression_metrics(y_a, hrm_forecasts.mu, hrm_forecasts.sigma, train_mean)
    y_b = yB.loc[scored].to_numpy(dtype=float)
    train_minutes = session_minutes(data, sessions_for(data, train))
    base_rate = float(yB.reindex(train_minutes).mean())  # NaN labels skipped
    forecasts_b = {"hrm": hrm_forecasts.proba, "logistic": logistic_proba, "oracle": oracle_proba}

    def subset_scores(mask: np.ndarray) -> dict:
        """Book B scores of every forecast on the scored minutes where ``mask`` holds (AUC needs both classes)."""
        scores: dict = {"n": int(mask.sum())}
        if np.unique(y_b[mask]).size == 2:
            scores |= {name: classification_metrics(y_b[mask], p.loc[scored].to_numpy()[mask])
                       for name, p in forecasts_b.items()}
        return scores

    setup = X_intraday.loc[scored, "setup_signal"].to_numpy() == 1.0  # minutes where the backside setup fires
    phase = oracle.latent_minutes()["phase"].reindex(scored)  # latent phase at the close of each minute
    episode = phase.isin(EPISODE_PHASES).to_numpy()  # selection for scoring only: no model sees the phase
    return {
        "seed": seed,
        "hrm_config": config_to_dict(adapter.hrm_config_),
        "split": {
            "train": [str(train[0].date()), str(train[-1].date()), int(train.size)],
            "val": [str(val[0].date()), str(val[-1].date()), int(val.size)],
            "test": [str(test[0].date()), str(test[-1].date()), int(test.size)],
            "purged_train": fold.purged_train, "purged_val": fold.purged_val,
            "test_minutes_scored": int(scored.size),
        },
        "yA": {
            "train_mean": train_mean,
            "hrm": {k: hrm_scores[k] for k in ("r2_oos", "rmse", "rank_ic", "gaussian_nll", "coverage_80")},
            "expanding_mean": point_metrics(y_a, known_mean, train_mean),
            "ridge": point_metrics(y_a, ridge_mu.to_numpy(dtype=float), train_mean),
            "oracle_expected_gap": point_metrics(y_a, gap.to_numpy(dtype=float), train_mean),
        },
        "yB": {
            **{name: classification_metrics(y_b, p.loc[scored]) for name, p in forecasts_b.items()},
            "training_base_rate": classification_metrics(y_b, np.full(y_b.shape, base_rate)),
            "logistic_C": logistic.intraday.C_,
            "setup_minutes": subset_scores(setup),
            "episode_minutes": subset_scores(episode),
        },
        "hrm_training": {
            "ensemble_size": len(adapter.summaries_),
            "best_epoch": [s.best_epoch for s in adapter.summaries_],
            "epochs_run": [s.epochs_run for s in adapter.summaries_],
            "best_val_loss": [s.best_val_loss for s in adapter.summaries_],
            "head_b_best_epoch": [s.head_b_best_epoch for s in adapter.summaries_],  # None under joint stopping
            "optimizer_steps": [s.steps for s in adapter.summaries_],
            "parameters_per_network": adapter.trainers_[0].net.param_counts()["total"],
            "test_segments_daily": segment_counts(hrm_forecasts.diagnostics["act_segments_A"]),
            "test_segments_minutes": segment_counts(hrm_forecasts.diagnostics["act_segments_B"]),
            "logs": [str(s.log_path) for s in adapter.summaries_],
        },
        "timing_s": timing,
    }


def segment_counts(steps: pd.DataFrame) -> dict[int, int]:
    """ACT segments used -> how many (sample, ensemble member) pairs used that many (a table of the HRM's
    ``act_segments_A``/``act_segments_B`` diagnostics: one row per sample, one column per member)."""
    counts = pd.Series(steps.to_numpy().ravel()).value_counts().sort_index()
    return {int(k): int(v) for k, v in counts.items()}


def _score(result: dict, path: tuple[str, ...]) -> float:
    """The score at ``path`` (MEAN_SCORES) in one seed's result (KeyError when the seed lacks it)."""
    for key in path:
        result = result[key]
    return float(result)


def summarize(per_seed: list[dict]) -> dict:
    """Over the seeds: each model's mean score (MEAN_SCORES) and, per comparison (COMPARISONS), the HRM's
    paired per-seed differences (``paired_differences``: mean, standard error, wins). A score missing from a
    seed (no episode minutes with both classes) raises KeyError naming it rather than being skipped."""
    means = {name: float(np.mean([_score(r, path) for r in per_seed])) for name, path in MEAN_SCORES.items()}
    comparisons = {
        name: paired_differences([_score(r, hrm_path) for r in per_seed], [_score(r, base_path) for r in per_seed])
        for name, (hrm_path, base_path) in COMPARISONS.items()
    }
    return {"mean_scores": means, "hrm_minus_baseline": comparisons}


def bench_config(path: Path, overrides: list[str]) -> LabConfig:
    """The config file with ``overrides`` applied in order; ConfigError unless the market is synthetic."""
    cfg = apply_overrides(load_config(path), overrides)
    if cfg.data.source != "synthetic":
        raise ConfigError(f"data.source: expected 'synthetic' (the learning check scores against the synthetic "
                          f"market's oracle), got {cfg.data.source!r}")
    return cfg


def log_to_stderr() -> None:
    """Progress lines to stderr (the main process and each ``--workers`` process)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_to_stderr()
    machine = machine_info()
    overrides = (QUICK_OVERRIDES if args.quick else []) + args.overrides
    try:
        cfg = bench_config(args.config, overrides)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = args.seeds or [cfg.seed]
    gap_paths, proba_paths = (QUICK_ORACLE_PATHS,) * 2 if args.quick else (args.gap_paths, args.proba_paths)
    run_root = args.run_dir or Path(tempfile.mkdtemp(prefix="bench_hrm_"))
    clock = time.perf_counter()
    jobs = [(cfg, seed, gap_paths, proba_paths, args.threads, run_root / f"seed_{seed}") for seed in seeds]
    if args.workers > 1:
        with ProcessPoolExecutor(
            args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=log_to_stderr
        ) as pool:
            per_seed = list(pool.map(score_seed, *zip(*jobs)))
    else:
        per_seed = [score_seed(*job) for job in jobs]
    result = {
        "settings": json_settings(args),
        "machine": machine,
        "config": {
            "overrides": overrides, "seeds": seeds, "synthetic": config_to_dict(cfg.data.synthetic),
            "hrm": per_seed[0]["hrm_config"], "train": config_to_dict(cfg.train),
            "walkforward": config_to_dict(one_split(cfg)),
            "labels": config_to_dict(cfg.labels), "oracle_gap_paths": gap_paths, "oracle_proba_paths": proba_paths,
        },
        "summary": summarize(per_seed),
        "per_seed": [{k: v for k, v in r.items() if k != "hrm_config"} for r in per_seed],
        "wall_s": time.perf_counter() - clock,
        "load_average_end": load_average(),
    }
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
