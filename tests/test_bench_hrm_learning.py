"""scripts/bench_hrm_learning.py: a quick run over two seeds scores each seed's market and summarizes the
HRM against the baselines, paired by seed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab_v10.src.config import load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_run_scores_each_seed_and_pairs_them_in_the_summary(tmp_path):
    out = tmp_path / "learning.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_hrm_learning.py", "--quick", "--seeds", "3", "4", "--workers", "2",
         "--threads", "1", "--run-dir", str(tmp_path / "runs"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == document
    assert document["config"]["seeds"] == [3, 4] and [r["seed"] for r in document["per_seed"]] == [3, 4]
    # each seed is its own market: different training labels, and its own run folder
    assert document["per_seed"][0]["yA"]["train_mean"] != document["per_seed"][1]["yA"]["train_mean"]
    size = document["per_seed"][0]["hrm_training"]["ensemble_size"]
    assert size == load_config(REPO / "config/small.yaml").train.ensemble_size
    folders = [tmp_path / "runs" / f"seed_{s}" / f"member_{k}" for s in (3, 4) for k in range(size)]
    assert all((folder / "best.pt").is_file() for folder in folders)
    segments = document["per_seed"][0]["hrm_training"]["test_segments_daily"]
    assert sum(segments.values()) == size * document["per_seed"][0]["split"]["test"][2]  # (date, member) pairs
    summary = document["summary"]
    hrm = [r["yA"]["hrm"]["r2_oos"] for r in document["per_seed"]]
    mean = [r["yA"]["expanding_mean"]["r2_oos"] for r in document["per_seed"]]
    assert summary["mean_scores"]["yA_r2_hrm"] == pytest.approx(np.mean(hrm))
    vs_mean = summary["hrm_minus_baseline"]["yA_r2_vs_expanding_mean"]
    assert vs_mean["per_run"] == pytest.approx(np.subtract(hrm, mean).tolist()) and vs_mean["n"] == 2
    episode = summary["hrm_minus_baseline"]["yB_episode_auc_vs_logistic"]
    assert episode["n"] == 2 and episode["per_run"][0] == pytest.approx(
        document["per_seed"][0]["yB"]["episode_minutes"]["hrm"]["auc"]
        - document["per_seed"][0]["yB"]["episode_minutes"]["logistic"]["auc"]
    )
