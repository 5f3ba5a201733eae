"""Scale-out and pretraining of the pooled HRM: ``scripts/train_hrm.py`` on a synthetic universe under torchrun
(2 CPU ranks) trains like one process; ``scripts/pretrain_hrm.py`` writes an adapter file that
``train.init_from`` starts every fit from (symbol embedding excluded, other hrm settings must match)."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from test_param_budget import load_script
from test_train_ddp import TINY, run_script

from lab_v10.src.config import config_from_dict
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import build_dataset
from lab_v10.src.options.hrm_adapter import HRMAdapter
from lab_v10.src.options.checkpoint import SYMBOL_WEIGHTS, CheckpointError, load_checkpoint, pretrained_weights
from lab_v10.src.options.hrm_ddp import DistContext, train_hrm
from lab_v10.src.options.hrm_net import HRMNet

UNIVERSE = copy.deepcopy(TINY)
UNIVERSE["data"]["synthetic"]["n_symbols"] = 2
UNIVERSE["hrm"]["symbol_embedding"] = True


@pytest.fixture(scope="module")
def universe_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "universe.yaml"
    path.write_text(yaml.safe_dump(UNIVERSE))
    return path


@pytest.mark.slow
def test_torchrun_two_ranks_train_a_universe_like_one_process(tmp_path, universe_config):
    cfg = config_from_dict(UNIVERSE, "universe")
    single = train_hrm(cfg, tmp_path / "single", DistContext())
    done = run_script("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                      "scripts/train_hrm.py", "--config", str(universe_config), "--out", str(tmp_path / "ddp"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["train_rows"] == single["train_rows"]
    ranks, one = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("ddp", "single"))
    assert one[SYMBOL_WEIGHTS].shape == (2, 16)
    for key, value in one.items():
        torch.testing.assert_close(ranks[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_pretrained_file_starts_every_fit_and_must_match_the_hrm_section(tmp_path, universe_config, capsys):
    script = load_script("pretrain_hrm")
    out = tmp_path / "pre.pt"
    assert script.main(["--config", str(universe_config), "--markets", "2", "--n-days", "250", "--out", str(out),
                        "--set", "train.epochs=1"]) == 0
    assert "pretrained on 2 synthetic markets (seed 1004" in capsys.readouterr().out
    stored = torch.load(out, weights_only=True)
    assert stored["config"]["hrm"]["symbol_embedding"] is False and stored["universe"] == ["SYN0", "SYN1"]

    cfg = config_from_dict(UNIVERSE, "universe")
    hrm = copy.copy(cfg.hrm)
    hrm.daily_features, hrm.minute_features, hrm.n_symbols = (
        stored["config"]["hrm"]["daily_features"], stored["config"]["hrm"]["minute_features"], 5)
    weights = pretrained_weights(out, hrm, member=0)
    assert SYMBOL_WEIGHTS not in weights
    net = HRMNet(hrm)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    assert missing == [SYMBOL_WEIGHTS] and unexpected == []
    for key, value in weights.items():
        torch.testing.assert_close(net.state_dict()[key], value)
    wider = copy.copy(hrm)
    wider.daily_window = 16
    with pytest.raises(CheckpointError, match=r"pre.pt: cannot start from this pretrained HRM: hrm settings differ "
                                              r"in hrm.daily_window"):
        pretrained_weights(out, wider, member=0)
    with pytest.raises(CheckpointError, match="train.init_from expects an HRM adapter file"):
        pretrained_weights(load_checkpoint_path(tmp_path), hrm, member=0)
    # a fit with train.init_from starts from those weights: at a learning rate of 1e-12 it still holds them
    tiny = {**TINY, "train": {**TINY["train"], "init_from": str(out), "lr": 1e-12, "epochs": 1}}
    tiny["hrm"] = {**TINY["hrm"], "symbol_embedding": True}
    run_cfg = config_from_dict(tiny, "init")
    data = build_dataset(load_market(run_cfg.data, run_cfg.seed), run_cfg)
    train, val = data.sample_dates[40:150], data.sample_dates[160:190]
    fitted = HRMAdapter(run_cfg, tmp_path / "fit").fit(data.X_daily, data.X_intraday, data.yA, data.yB, train, val)
    start = fitted.trainers_[0].net.state_dict()
    for key, value in pretrained_weights(out, fitted.hrm_config_, 0).items():
        torch.testing.assert_close(start[key], value, rtol=0, atol=1e-6, msg=key)
    assert start[SYMBOL_WEIGHTS].abs().max() < 1e-9  # its own embedding, zero-initialised (moved by lr 1e-12)
    assert script.main(["--config", str(universe_config), "--markets", "0", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--markets: expected int >= 1" in capsys.readouterr().err


def load_checkpoint_path(tmp_path):
    """A training checkpoint (not an adapter file) of the pretraining run."""
    return tmp_path / "pre" / "last.pt"
