"""The real-data preset (config/real.yaml): whole-history walk-forward with warm-started refits, chosen by
main_v3.py for --data arch and --daily runs without --config (synthetic runs keep config/small.yaml)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab_v10.src.config import load_config
from lab_v10.src.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_real_preset_scores_the_whole_history_with_warm_started_refits(repo_root):
    cfg = load_config(repo_root / "config" / "real.yaml")
    small = load_config(repo_root / "config" / "small.yaml")
    wf, train = cfg.walkforward, cfg.train
    assert wf.mode == "whole_history" and wf.scheme == "expanding"
    assert 750 <= wf.min_train_days <= 1000 and wf.test_days == 126 and wf.val_days > cfg.labels.horizon_days
    assert train.warm_start and train.warm_start_epochs < train.epochs
    assert cfg.hrm == small.hrm  # the CPU widths of small.yaml
    assert set(cfg.models) == set(small.models)
    assert small.walkforward.mode == "last" and not small.train.warm_start  # synthetic keeps its quick default


@pytest.mark.parametrize("argv, preset", [
    (["--data", "arch"], "config/real.yaml"),
    (["--daily", "spy.csv", "--iv", "vix.csv"], "config/real.yaml"),
    (["--data", "files", "--daily", "spy.csv"], "config/real.yaml"),
    ([], "config/small.yaml"),
    (["--data", "synthetic"], "config/small.yaml"),
    (["--minutes", "fxy.csv"], "config/small.yaml"),  # minutes only: too short a history for the warm-up
    (["--data", "arch", "--config", str(REPO / "config" / "small.yaml")], "small.yaml (given with --config)"),
])
def test_real_data_runs_default_to_the_real_preset_and_say_so(main_v3, captured_run, monkeypatch, caplog, tmp_path,
                                                              argv, preset):
    monkeypatch.setattr(main_v3.torch.cuda, "is_available", lambda: False)
    with caplog.at_level("INFO", logger="lab"):
        assert main_v3.main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert preset in captured_run["preset"]
    assert f"config: {captured_run['preset']}" in caplog.text
    if preset == "config/real.yaml":
        assert captured_run["cfg"].walkforward.mode == "whole_history"
        assert "whole history" in captured_run["preset"] and "warm-started" in captured_run["preset"]


def test_real_preset_is_chosen_with_cuda_too(main_v3):
    cfg, preset = main_v3.select_config(None, True, real_data=True)
    assert preset.startswith("config/real.yaml") and cfg.walkforward.mode == "whole_history"
    assert main_v3.select_config(None, True)[1].startswith("config/default_hrm27m.yaml")


@pytest.mark.parametrize("text, message", [
    ("walkforward:\n  mode: all\n", "walkforward.mode: expected one of 'last', 'whole_history', got 'all'"),
    ("train:\n  warm_start_epochs: 0\n", "train.warm_start_epochs: expected int > 0, got 0"),
    ("train:\n  warm_start_samples: 0\n", "train.warm_start_samples: expected int or null > 0, got 0"),
    ("train:\n  threads: -1\n", "train.threads: expected int or null > 0, got -1"),
])
def test_the_new_keys_are_checked_when_read(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.yaml: " + message.replace("(", r"\(")):
        load_config(path)
