"""Optuna sweeps (lab_v10/src/eval/sweep*.py, scripts/sweep_optuna.py): the space file, shared storages with
several workers, pruning, resume, failed trials, the parameter budget, the purged validation folds (walk-forward
and CPCV), and real sweeps of the HRM on a tiny synthetic market."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from test_param_budget import load_script

from lab_v10.src.config import LabConfig, config_from_dict, load_config
from lab_v10.src.data.market import load_market
from lab_v10.src.dataset.dataset import build_dataset, split_dates
from lab_v10.src.dataset.folds import walk_forward_folds
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.sweep import open_storage, read_sweep_summary, run_sweep, sweep_pbo
from lab_v10.src.eval.sweep_folds import tuning_folds
from lab_v10.src.eval.sweep_objective import REJECTED_ATTR, SweepObjective, param_budget_violation
from lab_v10.src.eval.sweep_space import SweepSpace, ValidationConfig, load_space, suggest_params

REPO = Path(__file__).resolve().parents[1]
CHEAP_SPACE = {
    "objectives": ["loss"],
    "pruner": {"type": "none"},
    "sampler": {"type": "random"},
    "validation": {"n_folds": 3, "block_days": 20},
    "params": {
        "train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        "hrm.H_cycles": {"type": "int", "low": 1, "high": 3},
    },
}


def write_space(folder: Path, space: dict, name: str = "space.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(space))
    return path


def cheap_space(folder: Path, **changes) -> SweepSpace:
    return load_space(write_space(folder, {**CHEAP_SPACE, **changes}))


@dataclass
class CheapObjective:
    """No training: a value per scored block from the trial's parameters, reported like the real objective.

    ``worsening``: trial k reports k + block, so every trial is worse than the ones before it (prunable).
    ``fail_number``: that trial raises. ``kill_number``: that trial's process is killed (SIGKILL, as by the
    out-of-memory killer). ``sleep_s`` keeps workers' trials overlapping.
    """

    space: SweepSpace
    worsening: bool = False
    fail_number: int | None = None
    sleep_s: float = 0.0
    kill_number: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_params(trial, self.space)
        trial.set_user_attr("pid", os.getpid())
        if trial.number == self.fail_number:
            raise RuntimeError(f"deliberate failure in trial {trial.number}")
        if trial.number == self.kill_number:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.sleep_s)
        value = float(trial.number) if self.worsening else (np.log10(params["train.lr"]) + 3.0) ** 2
        n_blocks = self.space.settings.validation.n_folds
        for block in range(n_blocks):
            trial.report(value + block, block)
            if block < n_blocks - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return value


@dataclass
class TwoLosses:
    """A cheap two-objective function (a trade-off in the learning rate) for multi-objective sweeps."""

    space: SweepSpace

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        x = np.log10(suggest_params(trial, self.space)["train.lr"])
        return (x + 4.0) ** 2, (x + 2.0) ** 2


def trials_of(result) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=result.study_name, storage=open_storage(result.storage)).trials


# ----------------------------------------------------------------------------------------------
# The space file


def test_shipped_spaces_load():
    small, big = load_space(REPO / "config/sweep_small.yaml"), load_space(REPO / "config/sweep_hrm27m.yaml")
    for space in (small, big):
        assert {"train.lr", "train.weight_decay", "train.loss_weighting", "hrm.H_cycles", "hrm.L_cycles",
                "hrm.max_segments", "hrm.h.d_model", "hrm.l.d_model", "hrm.halt_nll_threshold"} <= set(space.params)
        assert space.objectives == ["loss"] and not space.multi_objective
    assert not small.settings.param_budget and big.settings.param_budget
    assert small.settings.validation.scheme == big.settings.validation.scheme == "walkforward"  # the default
    steps = [space.n_steps(load_config(REPO / f"config/{preset}").walkforward)
             for space, preset in ((small, "small.yaml"), (big, "default_hrm27m.yaml"))]
    assert steps == [small.settings.validation.n_folds, big.settings.validation.n_folds] == [2, 3]
    assert isinstance(small.make_pruner(steps[0]), optuna.pruners.MedianPruner)
    assert isinstance(big.make_pruner(steps[1]), optuna.pruners.HyperbandPruner)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pruners": {"type": "none"}}, r"space.yaml: pruners: unknown key \(expected one of: objectives, "
                                          r"param_budget, params, pruner, sampler, validation\)"),
        ({"pruner": {"type": "median", "patience": 3}}, r"space.yaml: pruner.patience: unknown key"),
        ({"params": {"train.lrr": {"type": "float", "low": 0.1, "high": 1.0}}},
         r"space.yaml: params.train.lrr: train.lrr is not a config key"),
        ({"params": {"book_a.threshold": {"type": "float", "low": 0.1, "high": 1.0}}},
         r"params.book_a.threshold: expected a config key under hrm. or train."),
        ({"params": {"hrm.daily_features": {"type": "int", "low": 4, "high": 8}}},
         r"params.hrm.daily_features: set from the data"),
        ({"params": {"train.lr": {"type": "float", "low": 0.1, "high": 1.0, "scale": "log"}}},
         r"space.yaml: params.train.lr: scale: unknown key"),
        ({"params": {"train.lr": {"type": "float", "low": 0.1, "high": 0.1}}}, r"params.train.lr: expected low < high"),
        ({"params": {"train.lr": {"type": "float", "low": -1.0, "high": 1.0}}},
         r"params.train.lr: train.lr: expected float > 0, got -1.0"),
        ({"params": {"train.loss_weighting": {"type": "categorical", "choices": ["fixed", "bogus"]}}},
         r"params.train.loss_weighting: train.loss_weighting: expected one of"),
        ({"params": {"hrm.H_cycles": {"type": "int", "low": 1.5, "high": 3}}}, r"type int needs whole numbers"),
        ({"objectives": ["yA_nll", "yB_log_loss"], "pruner": {"type": "median"}},
         r"space.yaml: pruner.type: expected none with several objectives"),
        ({"objectives": ["sharpe"]},
         r"space.yaml: objectives: expected list of one of 'loss', 'yA_nll', 'yB_log_loss' .*, got \['sharpe'\]"),
        ({"validation": {"scheme": "kfold"}},
         r"space.yaml: validation.scheme: expected one of 'walkforward', 'cpcv', got 'kfold'"),
    ],
)
def test_space_errors_name_the_file_and_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_space(write_space(tmp_path, {**CHEAP_SPACE, **change}))


def test_pruner_steps_are_the_scored_folds_of_the_scheme(tmp_path):
    wf = LabConfig().walkforward  # 6 CPCV groups, 2 scored per split: 15 splits
    walkforward, cpcv = cheap_space(tmp_path), cheap_space(tmp_path, validation={"scheme": "cpcv"})
    assert walkforward.n_steps(wf) == 3 and cpcv.n_steps(wf) == math.comb(6, 2) == 15
    hyperband = cheap_space(tmp_path, pruner={"type": "hyperband", "min_resource": 4})
    with pytest.raises(ConfigError, match=r"space.yaml: pruner.min_resource: expected at most the 3 scored folds "
                                          r"of validation.scheme walkforward .*, got 4"):
        run_sweep(LabConfig(), hyperband, "hb", 1, tmp_path / "out", objective=CheapObjective(hyperband))
    assert not (tmp_path / "out").exists()  # refused before the study was created
    cpcv_hyperband = cheap_space(tmp_path, pruner={"type": "hyperband", "min_resource": 4},
                                 validation={"scheme": "cpcv"})
    assert isinstance(cpcv_hyperband.make_pruner(cpcv_hyperband.n_steps(wf)), optuna.pruners.HyperbandPruner)
    three_splits = LabConfig(walkforward=dataclasses.replace(wf, cpcv_groups=3, cpcv_test_groups=1))
    with pytest.raises(ConfigError, match="at most the 3 scored folds of validation.scheme cpcv"):
        run_sweep(three_splits, cpcv_hyperband, "hb", 1, tmp_path / "out", objective=CheapObjective(cpcv_hyperband))


# ----------------------------------------------------------------------------------------------
# Storage, workers, pruning, resume, failures (cheap objectives through the same machinery)


def test_two_workers_on_one_journal_finish_exactly_n_trials(tmp_path):
    space = cheap_space(tmp_path)
    result = run_sweep(LabConfig(), space, "two", 6, tmp_path / "out", workers=2,
                       objective=CheapObjective(space, sleep_s=0.2))
    trials = trials_of(result)
    assert sorted(t.number for t in trials) == list(range(6))  # no duplicated trial numbers
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2 and os.getpid() not in {t.user_attrs["pid"] for t in trials}
    assert result.n_trials == 6 and Path(result.storage) == tmp_path / "out" / "optuna_journal.log"
    frame = pd.read_csv(result.csv_path)
    assert len(frame) == 6 and frame["loss"].min() == pytest.approx(trials_of(result)[result.best[0]["number"]].value)


@pytest.mark.parametrize("pruner", [{"type": "median", "n_startup_trials": 2}, {"type": "hyperband"}])
def test_pruner_stops_trials_worse_than_the_others(tmp_path, pruner):
    space = cheap_space(tmp_path, pruner=pruner)
    result = run_sweep(LabConfig(), space, "prune", 9, tmp_path / "out", objective=CheapObjective(space, worsening=True))
    states = [t.state for t in trials_of(result)]
    pruned = [t for t in trials_of(result) if t.state == optuna.trial.TrialState.PRUNED]
    assert len(states) == 9 and pruned and states[0] == optuna.trial.TrialState.COMPLETE
    assert all(len(t.intermediate_values) < 3 for t in pruned)  # stopped before the last block
    if pruner["type"] == "median":  # every trial after the two startup trials is worse than the median
        assert [t.number for t in pruned] == list(range(2, 9))
    assert result.n_trials == 9  # pruned trials were evaluated (partly): they count for the deflated Sharpe


def test_resumed_study_continues_its_trial_count(tmp_path):
    space = cheap_space(tmp_path)
    first = run_sweep(LabConfig(), space, "resume", 3, tmp_path / "out", objective=CheapObjective(space))
    first_end = max(t.datetime_complete for t in trials_of(first))
    second = run_sweep(LabConfig(), space, "resume", 5, tmp_path / "out", objective=CheapObjective(space))
    trials = trials_of(second)
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.datetime_start >= first_end for t in trials[3:])  # only the two missing trials ran
    params = [tuple(t.params.values()) for t in trials]
    assert len(set(params)) == 5  # the resumed sampler did not replay the first run's draws
    again = run_sweep(LabConfig(), space, "resume", 5, tmp_path / "out", objective=CheapObjective(space))
    assert len(trials_of(again)) == 5 and again.n_trials == 5 == second.n_trials


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    space = cheap_space(tmp_path)
    result = run_sweep(LabConfig(), space, "fail", 4, tmp_path / "out", objective=CheapObjective(space, fail_number=1))
    trials = trials_of(result)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["error"] == "RuntimeError: deliberate failure in trial 1"
    assert result.states == {"COMPLETE": 3, "FAIL": 1, "REJECTED": 0} and result.n_trials == 4
    assert pd.read_csv(result.csv_path)["user_attrs_error"].notna().sum() == 1


def test_a_killed_worker_fails_its_trial_and_the_results_are_still_written(tmp_path):
    space = cheap_space(tmp_path)
    result = run_sweep(LabConfig(), space, "killed", 4, tmp_path / "out", workers=2,
                       objective=CheapObjective(space, kill_number=0, sleep_s=0.3))
    trials = {t.number: t for t in trials_of(result)}
    assert trials[0].state.name == "FAIL" and "was killed by SIGKILL during the trial" in trials[0].user_attrs["error"]
    assert trials[0].user_attrs["worker"].endswith(f":{trials[0].user_attrs['pid']}")  # host:pid of the dead worker
    assert all(t.state.name == "COMPLETE" for n, t in trials.items() if n != 0)
    (failure,) = result.worker_failures
    assert failure.endswith("was killed by SIGKILL (trials marked failed: [0])")
    frame = pd.read_csv(result.csv_path)
    assert len(frame) == len(trials) and (frame["state"] == "FAIL").sum() == 1
    assert json.loads(result.json_path.read_text())["worker_failures"] == [failure]


def test_out_and_storage_are_checked_before_any_work(tmp_path, monkeypatch):
    def no_data(self):
        raise AssertionError("the data was prepared before the paths were checked")

    monkeypatch.setattr(SweepObjective, "prepare", no_data)
    space = cheap_space(tmp_path)
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "config.yaml").write_text("train:\n  lr: 0.1\n")
    cases = [
        ({"out_dir": tmp_path / "file"}, f"--out {tmp_path / 'file'}: expected a folder, but {tmp_path / 'file'} is a file"),
        ({"out_dir": tmp_path / "file" / "out"}, (f"--out {tmp_path / 'file' / 'out'}: expected a folder, but "
                                                   f"{tmp_path / 'file'} is a file")),
        ({"storage": str(tmp_path / "config.yaml")}, (f"--storage {tmp_path / 'config.yaml'}: line 1: expected an "
                                                      "Optuna journal (one JSON operation per line), got b'train:\\n'")),
        ({"storage": str(tmp_path)}, f"--storage {tmp_path}: expected a journal file, got a folder"),
    ]
    for options, message in cases:
        kwargs = {"out_dir": tmp_path / "out", **options}
        with pytest.raises(ConfigError) as err:
            run_sweep(LabConfig(), space, "paths", 1, kwargs.pop("out_dir"), **kwargs)
        assert str(err.value) == message
    assert not (tmp_path / "out").exists()


def test_best_config_runs_in_main_v3_with_the_trial_count(tmp_path):
    space = cheap_space(tmp_path)
    result = run_sweep(load_config(REPO / "config/small.yaml"), space, "best", 3, tmp_path / "out",
                       objective=CheapObjective(space))
    (best,) = result.best
    cfg = load_config(best["config"])  # a full lab config
    assert cfg.train.lr == best["params"]["train.lr"] and cfg.hrm.H_cycles == best["params"]["hrm.H_cycles"]
    assert cfg.walkforward == load_config(REPO / "config/small.yaml").walkforward
    assert result.commands == [f"python main_v3.py --config {best['config']} --sweep {result.json_path}"]
    summary = json.loads(result.json_path.read_text())
    assert summary["n_trials"] == 3 and summary["best"][0]["number"] == best["number"]
    assert read_sweep_summary(result.json_path)["n_trials"] == 3 and "pbo" in summary["pbo"]
    assert summary["dashboard_command"] == f"optuna-dashboard {tmp_path / 'out' / 'optuna_journal.log'}"


def test_multi_objective_writes_one_config_per_pareto_trial(tmp_path):
    space = cheap_space(tmp_path, objectives=["yA_nll", "yB_log_loss"], pruner={"type": "none"})
    result = run_sweep(LabConfig(), space, "pareto", 6, tmp_path / "out", objective=TwoLosses(space))
    assert result.best and all(Path(b["config"]).name == f"best_config_trial{b['number']}.yaml" for b in result.best)
    for best in result.best:
        assert set(best["values"]) == {"yA_nll", "yB_log_loss"}
        assert load_config(best["config"]).train.lr == best["params"]["train.lr"]
    assert {"yA_nll", "yB_log_loss"} <= set(pd.read_csv(result.csv_path).columns)


def test_database_url_storage_and_direction_mismatch(tmp_path):
    space = cheap_space(tmp_path)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = run_sweep(LabConfig(), space, "db", 2, tmp_path / "out", storage=url, objective=CheapObjective(space))
    assert len(trials_of(result)) == 2 and result.dashboard_command == f"optuna-dashboard {url}"
    pareto = cheap_space(tmp_path, objectives=["yA_nll", "yB_log_loss"], pruner={"type": "none"})
    with pytest.raises(ConfigError, match="--study db: the stored study has directions"):
        run_sweep(LabConfig(), pareto, "db", 4, tmp_path / "out", storage=url, objective=TwoLosses(pareto))
    with pytest.raises(ConfigError, match="--storage nosuchdb://x: Optuna cannot open it"):
        open_storage("nosuchdb://x")


# ----------------------------------------------------------------------------------------------
# The real objective on a tiny synthetic market

TINY = {
    "seed": 4,
    "data": {"source": "synthetic", "synthetic": {"n_days": 300, "minutes_per_day": 30}},
    "labels": {"horizon_days": 5, "horizon_minutes": 10},
    "walkforward": {"n_folds": 1, "min_train_days": 100, "val_days": 24, "test_days": 40, "embargo_days": 2},
    "hrm": {
        "h": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 16},
        "l": {"n_layers": 1, "d_model": 16, "n_heads": 2, "ffn_dim": 16},
        "daily_window": 8, "minutes_per_day": 30, "H_cycles": 1, "L_cycles": 1, "max_segments": 2,
    },
    "train": {"epochs": 2, "batch_size": 32, "warmup_steps": 2, "lr": 0.003, "autocast_bf16": False,
              "device": "cpu", "patience": 5},
}
TINY_SPACE = {
    "objectives": ["loss"],
    "pruner": {"type": "median", "n_startup_trials": 1},
    "sampler": {"type": "tpe", "n_startup_trials": 2},
    "validation": {"n_folds": 2, "block_days": 20},
    "params": {
        "train.lr": {"type": "float", "low": 1.0e-3, "high": 1.0e-2, "log": True},
        "hrm.h.n_heads": {"type": "categorical", "choices": [2, 3]},
    },
}


@pytest.fixture(scope="module")
def tiny():
    cfg = config_from_dict(TINY, "tiny")
    return cfg, build_dataset(load_market(cfg.data, cfg.seed), cfg)


def test_tuning_folds_stay_before_the_first_test_block(tmp_path, tiny):
    cfg, data = tiny
    first_test = walk_forward_folds(data.sample_dates, data.span_end, cfg.walkforward)[0].test_period[0]
    folds = tuning_folds(data, cfg, load_space(write_space(tmp_path, TINY_SPACE)).settings.validation)
    assert [f.number for f in folds] == [0, 1] and all(f.test_idx.size == 20 for f in folds)
    span = pd.Series(data.span_end, index=data.sample_dates)
    scored = []
    for fold in folds:
        train, val, score = split_dates(data, fold)
        assert span.loc[train.append(val).append(score)].max() < first_test  # no label reaches the lab's test
        assert train[-1] < val[0] and val[-1] < score[0]
        assert span.loc[train].max() < val[0]  # purged against the validation rows
        scored.append(score)
    assert scored[0][-1] < scored[1][0]
    # the same folds as a walk-forward over the pre-test samples alone: the default scheme is unchanged
    before = data.span_end < first_test
    inner = dataclasses.replace(cfg.walkforward, n_folds=2, test_days=20)
    for fold, plain in zip(folds, walk_forward_folds(data.sample_dates[before], data.span_end[before], inner)):
        assert [fold.train_idx.tolist(), fold.val_idx.tolist(), fold.test_idx.tolist()] == \
            [plain.train_idx.tolist(), plain.val_idx.tolist(), plain.test_idx.tolist()]


def test_cpcv_tuning_folds_score_every_group_purged_and_embargoed(tiny):
    cfg, data = tiny
    cfg = dataclasses.replace(cfg, walkforward=dataclasses.replace(cfg.walkforward, cpcv_groups=4, cpcv_test_groups=2))
    first_test = walk_forward_folds(data.sample_dates, data.span_end, cfg.walkforward)[0].test_period[0]
    folds = tuning_folds(data, cfg, ValidationConfig(scheme="cpcv"))
    assert [f.number for f in folds] == list(range(math.comb(4, 2)))
    span = pd.Series(data.span_end, index=data.sample_dates)
    history = data.X_daily.index.get_indexer(data.sample_dates)
    pool = set()
    times_scored: dict = {}
    for fold in folds:
        train, val, score = split_dates(data, fold)
        pool |= set(score)
        for date in score:
            times_scored[date] = times_scored.get(date, 0) + 1
        assert not (set(train) & set(val)) and not (set(train) | set(val)) & set(score)
        assert span.loc[train.append(val).append(score)].max() < first_test  # before the lab's test blocks
        assert val.size == cfg.walkforward.val_days
        # purged: no training or validation label overlaps a scored group, no training label the validation rows
        groups = np.split(fold.test_idx, np.flatnonzero(np.diff(fold.test_idx) > 1) + 1)
        for group in groups:
            assert not overlaps(train, data.sample_dates[group], span)
            assert not overlaps(val, data.sample_dates[group], span)
        assert not overlaps(train, val, span)
        # embargo: the rows right after each scored group and after the validation rows never train
        for last in [g[-1] for g in groups] + [fold.val_idx[-1]]:
            after = data.sample_dates[last + 1: last + 1 + cfg.walkforward.embargo_days]
            assert not set(after) & set(train)
    kept = data.sample_dates[(span < first_test).to_numpy() & (history >= cfg.hrm.daily_window - 1)]
    assert pool == set(kept)  # every pre-test sample with a full daily window is scored ...
    assert set(times_scored.values()) == {math.comb(3, 1)}  # ... in C(groups - 1, test_groups - 1) splits


def overlaps(dates: pd.DatetimeIndex, block: pd.DatetimeIndex, span: pd.Series) -> bool:
    """Whether the label span of any of ``dates`` meets the period of ``block`` (its first date to its last
    label's end)."""
    return bool(((dates <= span.loc[block].max()) & (span.loc[dates].to_numpy() >= block[0])).any())


def test_param_budget_rejects_widths_before_training(tmp_path, tiny):
    preset = load_config(REPO / "config/default_hrm27m.yaml").hrm
    cfg, data = dataclasses.replace(tiny[0], hrm=preset), tiny[1]  # the 27M model on the tiny market
    fitted = dataclasses.replace(preset, daily_features=data.X_daily.shape[1])
    assert param_budget_violation(fitted) is None
    wide = dataclasses.replace(fitted, h=dataclasses.replace(fitted.h, d_model=576))
    assert param_budget_violation(wide).endswith("parameters, outside the budget 26,500,000..27,500,000")
    shipped = yaml.safe_load((REPO / "config/sweep_hrm27m.yaml").read_text())
    space = load_space(write_space(tmp_path, {**shipped, "validation": TINY_SPACE["validation"]}))  # tiny data
    storage = str(tmp_path / "journal.log")
    study = optuna.create_study(study_name="budget", storage=open_storage(storage))
    study.enqueue_trial({"hrm.h.d_model": 576, "hrm.l.d_model": 816, "hrm.h.ffn_dim": 512, "hrm.l.ffn_dim": 512})
    study.enqueue_trial({"hrm.h.d_model": 448, "hrm.l.d_model": 720, "hrm.h.ffn_dim": 256, "hrm.l.ffn_dim": 256})
    result = run_sweep(cfg, space, "budget", 2, tmp_path, storage=storage)
    trials = trials_of(result)
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert "outside the budget 26,500,000..27,500,000" in trials[0].user_attrs[REJECTED_ATTR]
    assert int(trials[0].user_attrs[REJECTED_ATTR].split()[0].replace(",", "")) > 27_500_000
    assert int(trials[1].user_attrs[REJECTED_ATTR].split()[0].replace(",", "")) < 26_500_000
    assert result.n_trials == 0 and result.states["REJECTED"] == 2 and result.best == []


def test_sweep_script_trains_the_hrm_on_a_tiny_market(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    space = write_space(tmp_path, TINY_SPACE)
    storage = tmp_path / "journal.log"
    study = optuna.create_study(study_name="tiny", storage=open_storage(str(storage)))
    study.enqueue_trial({"hrm.h.n_heads": 3, "train.lr": 0.003})  # 16 / 3 heads: rejected before training
    study.enqueue_trial({"hrm.h.n_heads": 2, "train.lr": 0.002})
    study.enqueue_trial({"hrm.h.n_heads": 2, "train.lr": 0.006})
    done = subprocess.run(
        [sys.executable, "scripts/sweep_optuna.py", "--config", str(config), "--space", str(space), "--study", "tiny",
         "--storage", str(storage), "--trials", "3", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    trials = optuna.load_study(study_name="tiny", storage=open_storage(str(storage))).trials
    assert trials[0].state.name == "PRUNED" and "hrm.h.n_heads" in trials[0].user_attrs[REJECTED_ATTR]
    evaluated = [t for t in trials[1:] if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(trials) == 3 and summary["n_trials"] == len(evaluated) == 2
    for trial in evaluated:
        fold0 = trial.user_attrs
        assert fold0["fold_0_loss"] == pytest.approx(fold0["fold_0_yA_nll"] + fold0["fold_0_yB_log_loss"])
        assert np.isfinite(fold0["fold_0_yA_nll"]) and 0 < fold0["fold_0_yB_log_loss"] < 2
    best = summary["best"][0]
    complete = {t.number: t for t in trials if t.state.name == "COMPLETE"}
    assert best["values"]["loss"] == pytest.approx(min(t.value for t in complete.values()))
    trial = complete[best["number"]]
    assert best["values"]["loss"] == pytest.approx((trial.user_attrs["fold_0_loss"] + trial.user_attrs["fold_1_loss"]) / 2)
    assert load_config(best["config"]).train.lr == trial.params["train.lr"]
    assert f"python main_v3.py --config {best['config']} --sweep {tmp_path / 'out' / 'sweep.json'}" in done.stdout
    assert f"dashboard: optuna-dashboard {storage}" in done.stdout


def test_cpcv_sweep_trains_and_scores_the_hrm_on_every_split(tmp_path, tiny):
    wf = dataclasses.replace(tiny[0].walkforward, cpcv_groups=3, cpcv_test_groups=1)
    cfg = dataclasses.replace(tiny[0], walkforward=wf)
    space = load_space(write_space(tmp_path, {**TINY_SPACE, "validation": {"scheme": "cpcv"},
                                              "params": {"train.lr": TINY_SPACE["params"]["train.lr"]}}))
    result = run_sweep(cfg, space, "cpcv", 1, tmp_path / "out")
    (trial,) = trials_of(result)
    assert trial.state.name == "COMPLETE" and result.n_trials == 1
    attrs = trial.user_attrs
    assert not any(key.startswith("fold_3_") for key in attrs)  # C(3, 1) = 3 splits
    for k in range(3):
        assert attrs[f"fold_{k}_loss"] == pytest.approx(attrs[f"fold_{k}_yA_nll"] + attrs[f"fold_{k}_yB_log_loss"])
        assert np.isfinite(attrs[f"fold_{k}_yA_nll"]) and 0 < attrs[f"fold_{k}_yB_log_loss"] < 2
    assert sorted(trial.intermediate_values) == [0, 1, 2]  # the running mean, reported after each split
    assert trial.value == pytest.approx(np.mean([attrs[f"fold_{k}_loss"] for k in range(3)]))
    assert trial.intermediate_values[2] == pytest.approx(trial.value)
    assert load_config(result.best[0]["config"]).walkforward == wf


def test_sweep_script_bad_space_exits_2(tmp_path, capsys):
    script = load_script("sweep_optuna")
    space = write_space(tmp_path, {**CHEAP_SPACE, "pruner": {"type": "median", "patience": 2}})
    code = script.main(["--config", str(REPO / "config/small.yaml"), "--space", str(space), "--study", "x",
                        "--trials", "1", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: {space}: pruner.patience: unknown key")


# ----------------------------------------------------------------------------------------------
# Probability of backtest overfitting, passed on to main_v3.py --sweep


def _scored_trial(number: int, fold_losses: list[float]) -> optuna.trial.FrozenTrial:
    attrs = {f"fold_{k}_loss": v for k, v in enumerate(fold_losses)}
    return optuna.trial.create_trial(value=float(np.mean(fold_losses)), user_attrs=attrs,
                                     state=optuna.trial.TrialState.COMPLETE)


def test_sweep_pbo_is_zero_when_one_trial_wins_every_fold_and_undefined_for_one_trial():
    rng = np.random.default_rng(0)
    trials = [_scored_trial(k, list(1.0 + rng.normal(0, 0.01, 6))) for k in range(5)]
    trials.append(_scored_trial(5, [0.5] * 6))  # the lowest loss on every fold
    pbo = sweep_pbo(trials, "loss")
    assert pbo["pbo"] == 0.0 and pbo["n_groups"] == 6 and pbo["n_trials"] == 6
    noise = [_scored_trial(k, list(rng.normal(1.0, 0.1, 8))) for k in range(20)]
    assert 0.0 < sweep_pbo(noise, "loss")["pbo"] < 1.0
    lone = sweep_pbo(trials[:1], "loss")
    assert lone["pbo"] is None and "needs >= 2 complete trials" in lone["reason"]


def test_read_sweep_summary_checks_the_file(tmp_path):
    good = tmp_path / "sweep.json"
    good.write_text(json.dumps({"study_name": "s", "n_trials": 7, "pbo": {"pbo": 0.25}}))
    assert read_sweep_summary(good) == {"path": str(good), "study": "s", "n_trials": 7, "pbo": {"pbo": 0.25}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_trials": 0, "pbo": {}}))
    with pytest.raises(ConfigError, match="expected a sweep.json with n_trials"):
        read_sweep_summary(bad)
    with pytest.raises(ConfigError, match="file not found"):
        read_sweep_summary(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(ConfigError, match="not a sweep.json"):
        read_sweep_summary(tmp_path / "text.json")


def test_trials_train_every_fold_from_scratch_even_when_the_config_warm_starts(tmp_path, tiny, monkeypatch):
    """A warm start across CPCV splits could begin from networks trained on the split's own scored rows."""
    cfg, _ = tiny
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, warm_start=True))
    objective = SweepObjective(cfg, load_space(write_space(tmp_path, TINY_SPACE)))
    seen = []

    def record(name, trial_cfg, run_dir):
        seen.append(trial_cfg.train.warm_start)
        raise optuna.TrialPruned("recorded")

    monkeypatch.setattr("lab_v10.src.eval.sweep_objective.make_model", record)
    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    assert seen == [False]
