"""Typed config loading: presets load, and bad keys, types and ranges name the file and key path."""
from __future__ import annotations

import dataclasses

import pytest

from lab_v10.src.config import LabConfig, config_from_dict, load_config, validate_config
from lab_v10.src.errors import ConfigError


@pytest.mark.parametrize("name", ["small.yaml", "default_hrm27m.yaml"])
def test_presets_load(repo_root, name):
    cfg = load_config(repo_root / "config" / name)
    assert isinstance(cfg, LabConfig)
    assert cfg.hrm.h.d_model % cfg.hrm.h.n_heads == 0
    assert cfg.hrm.l.d_model % cfg.hrm.l.n_heads == 0


def test_27m_preset_has_design_widths(repo_root):
    cfg = load_config(repo_root / "config" / "default_hrm27m.yaml")
    assert (cfg.hrm.h.n_layers, cfg.hrm.h.d_model, cfg.hrm.h.n_heads, cfg.hrm.h.ffn_dim) == (4, 512, 8, 384)
    assert (cfg.hrm.l.n_layers, cfg.hrm.l.d_model, cfg.hrm.l.n_heads, cfg.hrm.l.ffn_dim) == (6, 768, 12, 384)


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == LabConfig()


@pytest.mark.parametrize(
    "text, message",
    [
        ("hrm:\n  l:\n    d_model: 768x\n", "bad.yaml: hrm.l.d_model: expected int > 0, got '768x'"),
        ("hrm:\n  l:\n    d_model: -3\n", "bad.yaml: hrm.l.d_model: expected int > 0, got -3"),
        ("hrm:\n  l:\n    d_modle: 64\n", "bad.yaml: hrm.l.d_modle: unknown key"),
        ("trian:\n  lr: 0.1\n", "bad.yaml: trian: unknown key"),
        ("train:\n  lr: fast\n", "bad.yaml: train.lr: expected float > 0, got 'fast'"),
        ("train:\n  autocast_bf16: 1\n", "bad.yaml: train.autocast_bf16: expected bool"),
        ("train:\n  loss_weighting: equal\n", "bad.yaml: train.loss_weighting: expected one of 'uncertainty', 'gradnorm', 'fixed'"),
        ("data:\n  source: yahoo\n", "bad.yaml: data.source: expected one of 'synthetic', 'arch', 'files'"),
        ("features:\n  har_windows: [1, 0]\n", "bad.yaml: features.har_windows: expected list of int non-empty, all > 0"),
        ("book_b:\n  proba_threshold: 1.5\n", "bad.yaml: book_b.proba_threshold: expected float in [0, 1], got 1.5"),
        ("hrm: 3\n", "bad.yaml: hrm: expected a mapping of HRMConfig keys"),
        ("- a\n- b\n", "bad.yaml: expected a mapping at the top level"),
        ("hrm: {h: [\n", "bad.yaml: not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value).replace(str(tmp_path) + "/", "")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_validate_config_rechecks_code_built_configs():
    cfg = LabConfig()
    bad = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=0))
    with pytest.raises(ConfigError, match="train.batch_size: expected int > 0, got 0"):
        validate_config(bad, "overrides")


def test_round_trip_through_dict():
    cfg = config_from_dict({"seed": 7, "hrm": {"h": {"d_model": 32}}})
    assert cfg.seed == 7 and cfg.hrm.h.d_model == 32
    assert validate_config(cfg) == cfg
