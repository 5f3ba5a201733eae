"""Typed config loading: presets load, bad keys, types and ranges name the file and key path, rules between
fields (CPCV groups) are checked on load, and apply_overrides (--set, sweep trials) validates like a file."""
from __future__ import annotations

import dataclasses

import pytest

from lab_v10.src.config import LabConfig, apply_overrides, config_from_dict, load_config, validate_config
from lab_v10.src.errors import ConfigError


@pytest.mark.parametrize("name", ["small.yaml", "default_hrm27m.yaml", "real.yaml"])
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
        ("walkforward:\n  cpcv_groups: 4\n  cpcv_test_groups: 4\n",
         "bad.yaml: walkforward.cpcv_test_groups: expected int < cpcv_groups (4), got 4"),
        ("walkforward:\n  cpcv_test_groups: 7\n",
         "bad.yaml: walkforward.cpcv_test_groups: expected int < cpcv_groups (6), got 7"),
        ("train:\n  lr: 0.1\nhrm: {}\ntrain:\n  epochs: 2\n",
         "bad.yaml: not valid YAML at line 4, column 1: key 'train' repeated (first on line 1)"),
        ("train:\n  lr: 0.1\n  lr: 0.2\n", "bad.yaml: not valid YAML at line 3, column 3: key 'lr' repeated (first on line 2)"),
        ("a: b\x00\n", "bad.yaml: not valid YAML at character 4: special characters are not allowed"),
        ("train:\n  lr: .inf\n", "bad.yaml: train.lr: expected a finite number, got inf"),
        ("train:\n  lr: 1e999\n", "bad.yaml: train.lr: expected a finite number, got inf"),
        ("book_a:\n  rate: .nan\n", "bad.yaml: book_a.rate: expected a finite number, got nan"),  # a key without a range
        ("hrm:\n  halt_nll_threshold: -.inf\n", "bad.yaml: hrm.halt_nll_threshold: expected a finite number, got -inf"),
        ("baselines:\n  ridge_alphas: [1, .inf]\n", "bad.yaml: baselines.ridge_alphas: expected finite numbers, got [1.0, inf]"),
        ("seed: 4294967296\n", "bad.yaml: seed: expected int in [0, 2**32) (it seeds torch.manual_seed and numpy), got 4294967296"),
        ("seed: -1\n", "bad.yaml: seed: expected int in [0, 2**32)"),
        ("data:\n  synthetic:\n    start: 2015-02-30\n",
         "bad.yaml: data.synthetic.start: expected str YYYY-MM-DD in 1900..2199, got '2015-02-30'"),
        ("data:\n  synthetic:\n    start: next monday\n", "bad.yaml: data.synthetic.start: expected str YYYY-MM-DD"),
        ("data:\n  synthetic:\n    start: 9999-01-04\n", "bad.yaml: data.synthetic.start: expected str YYYY-MM-DD in 1900..2199"),
        ("data:\n  synthetic:\n    start: 20150102\n", "bad.yaml: data.synthetic.start: expected str YYYY-MM-DD"),
        ("data:\n  synthetic:\n    minutes_per_day: 391\n",
         "bad.yaml: data.synthetic.minutes_per_day: expected int in 1..390 (XNYS session), got 391"),
    ],
)
def test_bad_config_names_file_and_key_on_one_line(tmp_path, text, message):
    """Including values that would pass a type check and crash later (caught when the config is read)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value).replace(str(tmp_path) + "/", "") and "\n" not in str(err.value)


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


def test_cpcv_groups_are_rechecked_in_code_built_configs():
    cfg = LabConfig()
    assert (cfg.walkforward.cpcv_groups, cfg.walkforward.cpcv_test_groups) == (6, 2)
    assert validate_config(dataclasses.replace(
        cfg, walkforward=dataclasses.replace(cfg.walkforward, cpcv_groups=3, cpcv_test_groups=2))).walkforward.cpcv_groups == 3
    bad = dataclasses.replace(cfg, walkforward=dataclasses.replace(cfg.walkforward, cpcv_groups=2))
    with pytest.raises(ConfigError, match=r"^code: walkforward.cpcv_test_groups: expected int < cpcv_groups \(2\), got 2$"):
        validate_config(bad, "code")


def test_apply_overrides_sets_nested_keys_from_a_mapping():
    cfg = apply_overrides(LabConfig(), {"train.lr": 0.003, "hrm.h.d_model": 32}, "trial 0")
    assert cfg.train.lr == 0.003 and cfg.hrm.h.d_model == 32 and cfg.hrm.l == LabConfig().hrm.l
    assert cfg.train.epochs == LabConfig().train.epochs  # nothing else changed
    with pytest.raises(ConfigError, match="^trial 7: hrm.max_segments: expected int > 0, got 0$"):
        apply_overrides(LabConfig(), {"hrm.max_segments": 0}, "trial 7")


def test_apply_overrides_reads_key_value_strings_as_yaml():
    cfg = apply_overrides(LabConfig(), ["train.epochs=2", "train.lr=1.0e-3", "train.autocast_bf16=false",
                                        "data.minutes_source_tz=null", "features.har_windows=[1, 5]",
                                        "data.tz=Europe/London", "seed=9"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.autocast_bf16) == (2, 0.001, False)
    assert cfg.data.minutes_source_tz is None and cfg.features.har_windows == [1, 5]
    assert cfg.data.tz == "Europe/London" and cfg.seed == 9
    assert apply_overrides(LabConfig(), ["train.epochs=2", "train.epochs=3"]).train.epochs == 3  # in order


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads ``1e-3`` as text; for a float key, in a file or with --set, it is the number."""
    assert apply_overrides(LabConfig(), ["train.lr=1e-3"]).train.lr == 0.001
    assert config_from_dict({"train": {"lr": "5E-4"}}).train.lr == 0.0005
    with pytest.raises(ConfigError, match="expected float > 0, got 'fast'"):
        apply_overrides(LabConfig(), ["train.lr=fast"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs", "--set 'train.epochs': expected KEY=VALUE, e.g. train.epochs=8"),
        ("=3", "--set '=3': expected KEY=VALUE"),
        ("nosuch.key=1", "--set nosuch.key: 'nosuch' is not a config section"),
        ("train.lr.x=1", "--set train.lr.x: 'train.lr' is not a config section"),
        ("train.epochz=1", "--set train.epochz: unknown key 'epochz' (expected one of: "),
        ("train.epochs=two", "--set: train.epochs: expected int > 0, got 'two'"),
        ("train.autocast_bf16=1", "--set: train.autocast_bf16: expected bool (true/false), got 1"),
        ("hrm.h=3", "--set: hrm.h: expected a mapping of ModuleConfig keys, got 3"),
        ("train.lr=[1, 2", "--set train.lr: value '[1, 2' is not a YAML scalar or list"),
    ],
)
def test_apply_overrides_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(LabConfig(), [override])
    assert str(err.value).startswith(message)


# ----------------------------------------------------------------------------------------------
# Bad input that used to pass validation and crash later: each is a one-line ConfigError at load time


def test_binary_or_non_utf8_file_is_rejected_naming_it(tmp_path):
    for name, data in [("binary.yaml", bytes(range(256))), ("latin1.yaml", "train:\n  device: \xe9\n".encode("latin-1"))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError, match=rf"^{tmp_path / name}: expected a readable UTF-8 text config file \("):
            load_config(tmp_path / name)


def test_unquoted_dates_are_text_and_1e_floats_numbers(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("data:\n  synthetic:\n    start: 2016-01-04\ntrain:\n  lr: 1e-3\n")
    cfg = load_config(path)
    assert cfg.data.synthetic.start == "2016-01-04" and cfg.train.lr == 0.001
    assert apply_overrides(cfg, ["data.synthetic.start=2017-03-01"]).data.synthetic.start == "2017-03-01"
    assert config_from_dict({"seed": 2**32 - 1}).seed == 2**32 - 1
    with pytest.raises(ConfigError, match=r"^--set: train.lr: expected a finite number, got nan$"):
        apply_overrides(cfg, ["train.lr=.nan"])
