"""Optuna sweeps of the HRM: storages, worker processes and results (``scripts/sweep_optuna.py`` is the CLI).

The search space file is :mod:`lab_v10.src.eval.sweep_space`, the folds a trial is scored on (walk-forward
blocks or CPCV splits before the lab's first test block, ``validation.scheme``)
:mod:`lab_v10.src.eval.sweep_folds`, the objective :mod:`lab_v10.src.eval.sweep_objective`. An exception
in a trial marks it failed (user attribute ``error``) and the sweep goes on.

Storage (:func:`open_storage`): a path is a journal file (``JournalStorage`` + ``JournalFileBackend``, safe for
several processes on one machine; the default is ``<out>/optuna_journal.log``); a URL with ``://`` is a
database Optuna's ``RDBStorage`` accepts (``postgresql://user:pass@host/db`` for several machines,
``sqlite:///file.db``), with a heartbeat so the trials of a killed worker are marked failed. Re-running the
same ``--study`` resumes it: ``--trials N`` is the number of finished trials (complete, pruned or failed)
the study should hold, and only the missing ones run. ``--workers K`` starts K processes on the same
storage and deals the missing trials between them, so one invocation finishes exactly N; concurrent
invocations (several machines) each stop once the study holds N, overshooting by at most the trials then
running. ``--out`` and a journal ``--storage`` are checked before any work (a folder, a journal file).

A worker that dies (killed, out of memory) does not stop the sweep: the trial it left running is marked
failed (user attribute ``error`` says how the worker ended; each trial records its ``worker``, host:pid),
the results of the finished trials are written, and :attr:`SweepResult.worker_failures` reports it.

Results in ``--out`` (:func:`write_results`): ``trials.csv`` (every trial: state, values, parameters, fold
scores, reasons), ``best_config.yaml`` (single objective) or ``best_config_trial<N>.yaml`` per Pareto-optimal
trial (multi-objective), each a full lab config for ``main_v3.py --config``, and ``sweep.json`` with
``n_trials``: the configurations evaluated (finished trials minus rejected ones), the trial count
``main_v3.py --n-trials`` gives the deflated Sharpe ratio, and ``pbo``: the probability of backtest
overfitting of the best trial (:func:`sweep_pbo`); ``main_v3.py --sweep sweep.json`` reads both.

With a tracking target (``--tracking-uri``) the sweep is an MLflow run and each finished trial a child run
with its parameters, per-block scores and state (:mod:`lab_v10.src.eval.tracking_sweep`).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import optuna
import torch
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from lab_v10.src.config import LabConfig, apply_overrides, config_to_dict
from lab_v10.src.data.store import atomic_output
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.pbo import probability_of_backtest_overfitting
from lab_v10.src.eval.sweep_objective import FINISHED, REJECTED_ATTR, SweepObjective, is_evaluated
from lab_v10.src.eval.sweep_space import SweepSpace
from lab_v10.src.eval.tracking import Tracker, TrackingTarget
from lab_v10.src.eval.tracking_sweep import TrialLogger, finish_sweep_run, start_sweep_run

log = logging.getLogger("lab.sweep")

ERROR_ATTR = "error"  # user attribute: the exception of a failed trial
WORKER_ATTR = "worker"  # user attribute: host:pid of the process that ran the trial
HEARTBEAT_S, GRACE_S = 60, 180  # RDB storages: a running trial without a heartbeat for GRACE_S is failed
DEFAULT_JOURNAL = "optuna_journal.log"
CSV_FILE, JSON_FILE = "trials.csv", "sweep.json"

Objective = Callable[[Trial], Union[float, Sequence[float]]]


def check_folder(path: Path, flag: str) -> None:
    """ConfigError naming ``flag`` and ``path`` when ``path`` cannot be a folder (it, or a parent, is a file)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: expected a folder, but {existing} is a file")


def check_journal(path: Path) -> None:
    """ConfigError naming ``path`` when it cannot be an Optuna journal: a folder, or a file with a line that is
    not a JSON operation (a last line without its newline, being written or cut short, is Optuna's to judge)."""
    check_folder(path.parent, "--storage")
    if not path.exists():
        return
    if not path.is_file():
        raise ConfigError(f"--storage {path}: expected a journal file, got a folder")
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                return
            try:
                operation = json.loads(line)
            except ValueError:  # not JSON, not UTF-8
                operation = None
            if not isinstance(operation, dict) or "op_code" not in operation:
                raise ConfigError(f"--storage {path}: line {number}: expected an Optuna journal (one JSON operation "
                                  f"per line), got {line[:40]!r}")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file for a path (checked by :func:`check_journal`), Optuna's RDBStorage (with a heartbeat) for
    a URL with ``://``."""
    if "://" in url:
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental; this use is the documented one
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as exc:  # a missing driver (ImportError) or a bad URL (SQLAlchemy's ArgumentError)
            raise ConfigError(f"--storage {url}: Optuna cannot open it ({type(exc).__name__}: {exc})") from None
    path = Path(url)
    check_journal(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _worker_id(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


class _RecordErrors:
    """The objective, recording a failing trial's exception as its user attribute ``error``."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def __call__(self, trial: Trial) -> float | Sequence[float]:
        trial.set_user_attr(WORKER_ATTR, _worker_id(os.getpid()))
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}")
            raise


@dataclass(frozen=True)
class _WorkerJob:
    """What one worker process runs: ``n_trials`` trials of the study, stopping when it holds ``target``."""

    storage: str
    study_name: str
    space: SweepSpace
    objective: Objective
    pruner: optuna.pruners.BasePruner
    n_trials: int
    target: int
    timeout: float | None
    seed: int
    threads: int | None  # torch intra-op threads (None: leave torch's default)
    callbacks: tuple = ()  # more Optuna callbacks, e.g. eval.tracking_sweep.TrialLogger


def _run_worker(job: _WorkerJob) -> None:
    """Optimize in this process (the body of every worker)."""
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    study = optuna.load_study(
        study_name=job.study_name, storage=open_storage(job.storage),
        sampler=job.space.make_sampler(job.seed), pruner=job.pruner,
    )
    study.optimize(
        _RecordErrors(job.objective), n_trials=job.n_trials, timeout=job.timeout, catch=(Exception,),
        callbacks=[MaxTrialsCallback(job.target, states=FINISHED), *job.callbacks],
    )


@dataclass
class SweepResult:
    """What a sweep wrote: trial counts, the best configs and the commands to use them."""

    study_name: str
    storage: str
    n_trials: int  # configurations evaluated: the deflated-Sharpe trial count
    states: dict[str, int]
    best: list[dict]  # per best (or Pareto-optimal) trial: number, values, params, config path
    csv_path: Path
    json_path: Path
    commands: list[str]  # main_v3.py runs of the best configs
    dashboard_command: str
    worker_failures: list[str] = dataclasses.field(default_factory=list)  # per worker that died: how, its trials
    tracking: str | None = None  # the sweep's MLflow run and its trial runs, in words (None: not tracked)


def run_sweep(
    cfg: LabConfig,
    space: SweepSpace,
    study_name: str,
    n_trials: int,
    out_dir: Path,
    storage: str | None = None,
    workers: int = 1,
    timeout: float | None = None,
    objective: Objective | None = None,
    tracking: TrackingTarget | None = None,
) -> SweepResult:
    """Run (or resume) ``study_name`` until it holds ``n_trials`` finished trials, then write the results.

    ``objective`` defaults to :class:`~lab_v10.src.eval.sweep_objective.SweepObjective` (built and prepared
    here, so data errors surface before any worker starts); a cheap callable of a trial can stand in for it.
    The pruner's steps are the scored folds of ``space`` for ``cfg`` (:meth:`SweepSpace.n_steps`).
    ``workers`` > 1 starts that many processes (spawned; the objective must be picklable) on the storage.
    ``tracking``: log the sweep to MLflow, each trial a child run (:mod:`lab_v10.src.eval.tracking_sweep`); the
    store is opened before any work.
    """
    if n_trials < 1:
        raise ConfigError(f"--trials: expected int >= 1, got {n_trials}")
    if workers < 1:
        raise ConfigError(f"--workers: expected int >= 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout: expected seconds > 0, got {timeout}")
    out_dir = Path(out_dir)
    check_folder(out_dir, "--out")
    storage = storage or str(out_dir / DEFAULT_JOURNAL)
    if "://" not in storage:
        check_journal(Path(storage))
    tracker = Tracker(tracking) if tracking is not None else None  # a bad tracking store fails before any work
    pruner = space.make_pruner(space.n_steps(cfg.walkforward))
    if objective is None:
        objective = SweepObjective(cfg, space)
        objective.prepare()
    study = optuna.create_study(
        study_name=study_name, storage=open_storage(storage), directions=space.directions, load_if_exists=True
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != space.directions:
        raise ConfigError(
            f"--study {study_name}: the stored study has directions {stored}, but {space.source} asks for "
            f"{space.directions} (objectives {space.objectives}); use another --study"
        )
    existing = study.get_trials(deepcopy=False)
    missing = max(0, n_trials - sum(t.state in FINISHED for t in existing))
    shares = [n for n in np.diff(np.linspace(0, missing, workers + 1).round().astype(int)) if n > 0]
    log.info("study %s: %d of %d trials finished, %d to run on %d worker(s)", study_name, n_trials - missing,
             n_trials, missing, len(shares))
    # a resumed study gets fresh seeds, so TPE's random start does not repeat earlier trials
    seeds = np.random.SeedSequence([cfg.seed, len(existing)]).generate_state(max(1, len(shares)))
    threads = max(1, (os.cpu_count() or 1) // len(shares)) if len(shares) > 1 else None
    callbacks, parent = (), None
    if tracker is not None:
        parent = start_sweep_run(tracker, study_name, storage, cfg, space.source, space.objectives)
        callbacks = (TrialLogger(tracking, parent, cfg, study_name, space.objectives),)
    jobs = [
        _WorkerJob(storage, study_name, space, objective, pruner, n, n_trials, timeout, int(seed), threads, callbacks)
        for n, seed in zip(shares, seeds)
    ]
    failures: list[str] = []
    if len(jobs) == 1:
        _run_worker(jobs[0])
    elif jobs:
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_run_worker, args=(job,), name=f"sweep-worker-{i}")
                     for i, job in enumerate(jobs)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        failures = [_fail_orphaned_trials(storage, study_name, p) for p in processes if p.exitcode != 0]
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    tracked = None if tracker is None else f"sweep run {parent} in {tracker.describe()}, one child run per trial"
    result = write_results(study, cfg, space, out_dir, storage, failures, tracked)
    if tracker is not None:
        finish_sweep_run(tracker, parent, study, cfg, result, space.source, space.objectives)
    return result


def _fail_orphaned_trials(storage: str, study_name: str, process: multiprocessing.Process) -> str:
    """Mark failed the trials the dead worker ``process`` left running; one line saying how it ended and which
    trials it left."""
    code = process.exitcode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    backend = open_storage(storage)
    running = backend.get_all_trials(backend.get_study_id_from_name(study_name), states=(TrialState.RUNNING,))
    orphans = [t for t in running if t.user_attrs.get(WORKER_ATTR) == _worker_id(process.pid)]
    for trial in orphans:
        backend.set_trial_user_attr(trial._trial_id, ERROR_ATTR, f"worker {process.name} {how} during the trial")
        backend.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return f"{process.name} {how} (trials marked failed: {[t.number for t in orphans] or 'none'})"


def evaluated_trials(trials: Sequence[FrozenTrial]) -> int:
    """Finished trials that evaluated a configuration (rejected ones never trained): the DSR trial count."""
    return sum(map(is_evaluated, trials))


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def read_sweep_summary(path: Path) -> dict:
    """The ``n_trials`` and ``pbo`` of a ``sweep.json`` (:func:`write_results`) for ``main_v3.py --sweep``;
    ConfigError naming the file and what was expected."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--sweep {path}: file not found (expected the sweep.json of scripts/sweep_optuna.py)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--sweep {path}: not a sweep.json ({type(exc).__name__}: {exc})") from None
    n_trials = summary.get("n_trials") if isinstance(summary, dict) else None
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1 or "pbo" not in summary:
        raise ConfigError(f"--sweep {path}: expected a sweep.json with n_trials (int >= 1) and pbo keys")
    return {"path": str(path), "study": summary.get("study_name"), "n_trials": n_trials, "pbo": summary["pbo"]}


def sweep_pbo(trials: Sequence[FrozenTrial], objective: str) -> dict:
    """Probability of backtest overfitting of picking the best trial (CSCV, :mod:`lab_v10.src.eval.pbo`) over
    the completed trials' per-fold scores of ``objective`` (a loss: negated, so higher is better), the folds
    as time blocks and the largest even number of groups <= min(folds, 16). ``pbo`` is None with a
    ``reason`` when fewer than 2 complete trials or 2 folds are scored."""
    scored = [t for t in trials if t.state == TrialState.COMPLETE and REJECTED_ATTR not in t.user_attrs]
    folds = sorted({int(k.split("_")[1]) for t in scored for k in t.user_attrs
                    if k.startswith("fold_") and k.endswith(f"_{objective}")})
    complete = [t for t in scored if all(f"fold_{f}_{objective}" in t.user_attrs for f in folds)]
    groups = min(len(folds), 16) // 2 * 2
    if len(complete) < 2 or groups < 2:
        return {"pbo": None, "reason": f"needs >= 2 complete trials and >= 2 scored folds, got {len(complete)} "
                f"trials and {len(folds)} folds", "objective": objective}
    scores = -np.array([[t.user_attrs[f"fold_{f}_{objective}"] for t in complete] for f in folds])  # (folds, trials)
    result = probability_of_backtest_overfitting(scores, n_groups=groups)
    return {**result.to_dict(), "objective": objective, "trials": [t.number for t in complete]}


def write_results(
    study: optuna.Study, cfg: LabConfig, space: SweepSpace, out_dir: Path, storage: str,
    worker_failures: Sequence[str] = (), tracking: str | None = None,
) -> SweepResult:
    """Write trials.csv, the best config(s) and sweep.json (with ``worker_failures`` and ``tracking``, the
    sweep's MLflow run in words) into ``out_dir`` (module docstring)."""
    out_dir = Path(out_dir)
    trials = study.get_trials(deepcopy=False)
    frame = study.trials_dataframe()
    value_columns = ["value"] if not space.multi_objective else [f"values_{i}" for i in range(len(space.objectives))]
    frame = frame.rename(columns=dict(zip(value_columns, space.objectives)))
    csv_path = out_dir / CSV_FILE
    _write_text(csv_path, frame.to_csv(index=False))

    n_evaluated = evaluated_trials(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    winners = (study.best_trials if space.multi_objective else [study.best_trial]) if complete else []
    best, commands = [], []
    for trial in winners:
        name = "best_config.yaml" if not space.multi_objective else f"best_config_trial{trial.number}.yaml"
        path = out_dir / name
        values = dict(zip(space.objectives, trial.values))
        header = (
            f"# Optuna study {study.study_name}, trial {trial.number}: "
            + ", ".join(f"{k} {v:.6g}" for k, v in values.items())
            + f"\n# search space {space.source}; {n_evaluated} configurations evaluated "
            "(main_v3.py --n-trials)\n"
        )
        config = apply_overrides(cfg, trial.params, f"trial {trial.number}")
        _write_text(path, header + yaml.safe_dump(config_to_dict(config), sort_keys=False))
        best.append({"number": trial.number, "values": values, "params": trial.params, "config": str(path)})
        commands.append(f"python main_v3.py --config {path} --sweep {out_dir / JSON_FILE}")
    states = collections.Counter(t.state.name for t in trials)
    states["REJECTED"] = sum(REJECTED_ATTR in t.user_attrs for t in trials)
    result = SweepResult(
        study_name=study.study_name, storage=storage, n_trials=n_evaluated, states=dict(states), best=best,
        csv_path=csv_path, json_path=out_dir / JSON_FILE, commands=commands,
        dashboard_command=f"optuna-dashboard {storage}", worker_failures=list(worker_failures), tracking=tracking,
    )
    summary = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()},
        "objectives": space.objectives,
        "directions": space.directions,
        "space": space.source,
        "pbo": sweep_pbo(trials, space.objectives[0]),
    }
    _write_text(result.json_path, json.dumps(summary, indent=2))
    return result
