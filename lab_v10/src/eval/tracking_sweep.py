"""MLflow records of an Optuna sweep: the sweep's run and one child run per trial (docs/design.md section 2.3).

:func:`start_sweep_run` creates the sweep's run (tag ``lab.kind`` ``sweep``, the base config as params), or
reopens it when the same study on the same storage is resumed. :class:`TrialLogger`, an Optuna callback,
logs each finished trial from the worker process that ran it. :func:`finish_sweep_run` logs the finished
trials no callback logged (a worker that died, trials of an earlier invocation), then the sweep's trial
counts, best values and probability of backtest overfitting, and its result files, and ends the run.

A trial's run (:func:`log_trial`; tag ``lab.kind`` ``trial``, ``mlflow.parentRunId`` the sweep's run):

- params: the trial's whole config (the base config with the trial's parameters, flattened), so it compares
  with lab runs key by key; tag ``lab.searched`` lists the searched keys;
- metrics: the objective values (``loss``, ...) and every per-block score ``fold_<k>.<name>``;
- tags: ``lab.trial_number``, ``lab.trial_state`` (COMPLETE, PRUNED, FAIL), the trial's text attributes
  (``lab.error``, ``lab.rejected``, ``lab.worker``), ``lab.config_hash`` and ``lab.counts_as_trial`` (true
  for an evaluated trial, as sweep.json's ``n_trials`` counts them);
- status FINISHED (complete), KILLED (pruned or rejected) or FAILED; the trial's start and end times.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from optuna.study import Study
from optuna.trial import FrozenTrial

from lab_v10.src.config import LabConfig, apply_overrides, config_to_dict
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.sweep_objective import is_evaluated
from lab_v10.src.eval.tracking import (
    CONFIG_HASH,
    COUNTS,
    KIND,
    PARENT,
    STUDY,
    Tracker,
    TrackingTarget,
    config_hash,
    finite_number,
    flat_config,
    param_text,
    redact,
)

log = logging.getLogger("lab.tracking")

STORAGE, TRIAL_NUMBER = "lab.storage", "lab.trial_number"
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}  # Optuna state -> MLflow status


def storage_text(storage: str) -> str:
    """The storage as recorded: a journal file's absolute path, a database URL without its password."""
    return redact(storage) if "://" in storage else str(Path(storage).resolve())


def start_sweep_run(tracker: Tracker, study_name: str, storage: str, cfg: LabConfig, space_file: str,
                    objectives: list[str]) -> str:
    """The id of the sweep's run for ``study_name`` on ``storage``: the earlier run of the study, set running
    again, or a new one with the base config as params."""
    where = storage_text(storage)
    for run in tracker.search(f"tags.`{KIND}` = 'sweep'"):
        if run.data.tags.get(STUDY) == study_name and run.data.tags.get(STORAGE) == where:
            with tracker.calls("cannot reopen the sweep's run"):
                tracker.client.update_run(run.info.run_id, status="RUNNING")
            log.info("tracking: study %s resumes sweep run %s", study_name, run.info.run_id)
            return run.info.run_id
    tags = {STUDY: study_name, STORAGE: where, "lab.space": space_file, "lab.objectives": ",".join(objectives)}
    return tracker.start_run("sweep", study_name, flat_config(config_to_dict(cfg)), tags)


def _ms(moment) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def log_trial(tracker: Tracker, parent_run: str, cfg: LabConfig, study_name: str, objectives: list[str],
              trial: FrozenTrial) -> str:
    """Log the finished ``trial`` as a child run of ``parent_run`` (module docstring); returns its id."""
    try:
        config = config_to_dict(apply_overrides(cfg, trial.params, f"trial {trial.number}"))
        params, digest = flat_config(config), config_hash(config)
    except ConfigError:  # parameters that make no valid config: the trial was rejected, nothing to count
        params, digest = {k: param_text(v) for k, v in trial.params.items()}, None
    tags = {PARENT: parent_run, STUDY: study_name, TRIAL_NUMBER: str(trial.number),
            "lab.trial_state": trial.state.name, "lab.searched": ", ".join(trial.params),
            COUNTS: "true" if is_evaluated(trial) and digest else "false",
            **({CONFIG_HASH: digest} if digest else {}),
            **{f"lab.{k}": str(v) for k, v in trial.user_attrs.items() if finite_number(v) is None}}
    metrics = {name: value for name, value in zip(objectives, trial.values or []) if finite_number(value) is not None}
    for key, value in trial.user_attrs.items():  # fold_<k>_<score>: the per-block scores
        fold, _, score = key.removeprefix("fold_").partition("_")
        if key.startswith("fold_") and fold.isdigit() and finite_number(value) is not None:
            metrics[f"fold_{fold}.{score}"] = value
    run_id = tracker.start_run("trial", f"{study_name} trial {trial.number}", params, tags, _ms(trial.datetime_start))
    tracker.log(run_id, metrics)
    tracker.end_run(run_id, TRIAL_STATUS[trial.state.name], _ms(trial.datetime_complete))
    return run_id


class TrialLogger:
    """Optuna callback logging each finished trial as a child run of the sweep's run (:func:`log_trial`).

    Picklable for spawned workers: each process opens its own :class:`Tracker` on first use. A trial it
    cannot log is logged by :func:`finish_sweep_run` at the end; the sweep itself never stops for it.
    """

    def __init__(self, target: TrackingTarget, parent_run: str, cfg: LabConfig, study_name: str,
                 objectives: list[str]) -> None:
        self.target, self.parent_run, self.cfg = target, parent_run, cfg
        self.study_name, self.objectives = study_name, list(objectives)
        self._tracker: Tracker | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tracker": None}

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        if trial.state.name not in TRIAL_STATUS:
            return
        try:
            self._tracker = self._tracker or Tracker(self.target)
            log_trial(self._tracker, self.parent_run, self.cfg, self.study_name, self.objectives, trial)
        except ConfigError as exc:  # the store is unreachable now: the sweep goes on, the end logs the trial
            log.warning("tracking: trial %d not logged yet (%s); it is logged when the sweep ends", trial.number, exc)


def finish_sweep_run(tracker: Tracker, run_id: str, study: Study, cfg: LabConfig, result, space_file: str,
                     objectives: list[str]) -> str:
    """Log the finished trials without a run, the sweep's counts (``n_trials``, ``trials.<state>``), best
    values (``best.<objective>``, single objective), ``pbo`` and result files (trials.csv, sweep.json, the best
    configs, the space file), and end the run (FAILED when a worker died). Returns a sentence for the console."""
    logged = {r.data.tags.get(TRIAL_NUMBER) for r in tracker.search(f"tags.`{PARENT}` = '{run_id}'")}
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state.name in TRIAL_STATUS and str(trial.number) not in logged:
            log_trial(tracker, run_id, cfg, study.study_name, objectives, trial)
    metrics = {"n_trials": result.n_trials, **{f"trials.{s.lower()}": n for s, n in result.states.items()}}
    if len(result.best) == 1:
        metrics.update({f"best.{k}": v for k, v in result.best[0]["values"].items()})
    pbo = json.loads(Path(result.json_path).read_text())["pbo"].get("pbo")
    if pbo is not None:
        metrics["pbo"] = pbo
    tracker.log(run_id, metrics, {"lab.best_trials": ", ".join(str(b["number"]) for b in result.best) or "none"})
    configs = [Path(b["config"]) for b in result.best]
    tracker.log_files(run_id, [Path(result.csv_path), Path(result.json_path), *configs, Path(space_file)])
    tracker.end_run(run_id, "FAILED" if result.worker_failures else "FINISHED")
    n_logged = sum(t.state.name in TRIAL_STATUS for t in trials)
    return f"sweep run {run_id} with {n_logged} trial runs in {tracker.describe()}"
