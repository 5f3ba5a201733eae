"""Run tracking with MLflow: where runs go, what a run records, and how many configurations were tried.

docs/design.md section 2.3 is the contract; README "Tracking" the how-to. :func:`tracking_target` says where
runs go: ``--tracking-uri``, else the config's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``; none of them:
nothing is tracked and ``mlflow`` is never imported (only :class:`Tracker` imports it). A :class:`Tracker`
opens the store (a folder such as ``./mlruns``, ``sqlite:///file.db``, a server) before any work, so a bad URI
is a one-line ConfigError naming where it came from, and records:

- a lab run (:meth:`Tracker.log_lab_run`, tag ``lab.kind`` ``run``): the flattened config as params
  (:func:`flat_config`), the data description as ``data_description.*`` params, every number of summary.json as
  a metric (:func:`summary_metrics`), the verdict as the run's note and ``verdict.<section>`` tags, and
  report.html, summary.json and the Parquet tables as artifacts;
- a sweep, a training run and their curves: :mod:`lab_v10.src.eval.tracking_sweep`.

A configuration is the hash of the flattened config without the keys of :data:`NOT_A_CHOICE` (they change no
number: device, threads, checks that only stop a run, tracking itself); every other key counts, seed and
model list included. Finished lab runs and evaluated sweep trials carry ``lab.counts_as_trial``;
:meth:`Tracker.count_configurations` counts their distinct hashes, the deflated Sharpe's ``--n-trials auto``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab_v10.src.config import TrackingConfig
from lab_v10.src.errors import ConfigError
from lab_v10.src.eval.formatting import flatten, json_safe

log = logging.getLogger("lab.tracking")

KIND, CONFIG_HASH, COUNTS = "lab.kind", "lab.config_hash", "lab.counts_as_trial"  # tags
STUDY, OUT_DIR, PARENT, NOTE = "lab.study", "lab.out_dir", "mlflow.parentRunId", "mlflow.note.content"
# Config keys (a section, or a dotted key) that change no number of a run: not part of a configuration.
NOT_A_CHOICE = ("tracking", "train.device", "train.threads", "train.deterministic", "baselines.num_threads",
                "data.check_iv_units", "data.check_minute_sessions", "data.max_missing_sessions")
ARTIFACTS = ("report.html", "summary.json", "forecasts_a.parquet", "forecasts_b.parquet", "pnl_daily.parquet")
VERDICT_FIELDS = ("difference", "ci_low", "ci_high", "p_value")
MLFLOW_DEFAULTS = {  # set unless the user set them: no usage telemetry, MLflow logs through the lab's logging
    "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_CONFIGURE_LOGGING": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs go: the tracking ``uri``, the ``experiment`` name and the ``source`` of the URI (a flag, the
    config key or the environment variable), named in every error."""

    uri: str
    experiment: str
    source: str


def tracking_target(uri_flag: str | None, experiment_flag: str | None, cfg: TrackingConfig,
                    environ: Mapping[str, str] | None = None) -> TrackingTarget | None:
    """The target of ``--tracking-uri`` / ``--experiment``, else ``cfg`` (``tracking.uri``), else the
    ``MLFLOW_TRACKING_URI`` variable (empty = unset); None when no URI is set. ConfigError for
    ``--experiment`` without any URI, or an empty one."""
    environ = os.environ if environ is None else environ
    if experiment_flag is not None and not experiment_flag.strip():
        raise ConfigError("--experiment: expected a non-empty experiment name")
    experiment = experiment_flag or cfg.experiment
    for uri, source in ((uri_flag, "--tracking-uri"), (cfg.uri, "tracking.uri"),
                        (environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI")):
        if uri is not None and uri.strip():
            return TrackingTarget(uri.strip(), experiment, source)
    if experiment_flag is not None:
        raise ConfigError(f"--experiment {experiment_flag}: no tracking URI is set (give --tracking-uri, "
                          "tracking.uri in the config or MLFLOW_TRACKING_URI)")
    return None


def add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--tracking-uri`` and ``--experiment`` (shared by main_v3.py and the scripts)."""
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking store, e.g. sqlite:///mlflow.db or ./mlruns (default: the config's "
                             "tracking.uri, else MLFLOW_TRACKING_URI; none: nothing is tracked)")
    parser.add_argument("--experiment", help="MLflow experiment name (default: the config's tracking.experiment)")


def redact(uri: str) -> str:
    """``uri`` with any password (``scheme://user:password@host``) replaced by ``***``."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", uri)


def param_text(value: Any) -> str:
    """A config value as an MLflow param: text as is, anything else as JSON (``null``, ``true``, ``[1, 5]``)."""
    return value if isinstance(value, str) else json.dumps(json_safe(value, "param"), allow_nan=False)


def flat_config(config: dict) -> dict[str, str]:
    """The config dict (``config_to_dict``) as dotted keys and :func:`param_text` values."""
    return {key: param_text(value) for key, value in flatten(config).items()}


def config_hash(config: dict) -> str:
    """16 hex digits of the sha256 of the flattened config without the :data:`NOT_A_CHOICE` keys."""
    items = sorted((k, v) for k, v in flat_config(config).items()
                   if not any(k == p or k.startswith(p + ".") for p in NOT_A_CHOICE))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def metric_name(key: str) -> str:
    """``key`` as a valid MLflow metric or param name: characters other than letters, digits, ``_ - . ``
    and space become ``_``; at most 250 characters."""
    return re.sub(r"[^\w.\- ]", "_", key)[:250]


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if math.isfinite(value) else None


def _verdict_numbers(verdict: dict) -> dict:
    """``{section: {baseline: {test: {field: value}}, "difference"|"p_value"|"p_value_holm": headline}}``."""
    out: dict = {}
    for section, part in (verdict.get("sections") or {}).items():
        numbers = {baseline: {test: {f: t.get(f) for f in VERDICT_FIELDS} for test, t in c["tests"].items()}
                   for baseline, c in part["versus"].items()}
        head = part["versus"][part["best_baseline"]]
        numbers.update({f: head["tests"][head["headline_test"]].get(f) for f in ("difference", "p_value")},
                       p_value_holm=head.get("p_value_holm"))
        out[section] = numbers
    pbo = ((verdict.get("sweep") or {}).get("pbo") or {}).get("pbo")
    return {**out, "pbo": pbo} if pbo is not None else out


def summary_metrics(summary: dict) -> dict[str, float]:
    """Every finite number of a summary.json as MLflow metrics: ``n_trials``,
    ``forecast.<book>.<model>.<fold>.<metric>``, ``trading.<A|B|portfolio>.<strategy>.<metric>``,
    ``n_trades.<book>.<strategy>``, ``timing.<stage>`` and ``verdict.<section>.<baseline>.<test>.<field>``
    (plus the headline's ``verdict.<section>.difference``, ``.p_value``, ``.p_value_holm``; ``verdict.pbo``);
    a universe run's symbols as ``symbol.<symbol>.<the same names>``."""
    parts = {
        "n_trials": summary.get("n_trials"),
        "forecast": summary.get("forecast_metrics") or {},
        "trading": {**(summary.get("trading_metrics") or {}), "portfolio": summary.get("portfolio_metrics") or {}},
        "n_trades": summary.get("n_trades") or {},
        "timing": summary.get("timings") or {},
        "verdict": _verdict_numbers(summary.get("verdict") or {}),
    }
    out = {metric_name(k): v for k, raw in flatten(parts).items() if (v := finite_number(raw)) is not None}
    for symbol, part in (summary.get("by_symbol") or {}).items():
        out.update({metric_name(f"symbol.{symbol}.{k}"): v for k, v in summary_metrics(part).items()})
    return out


def verdict_texts(summary: dict) -> dict[str, str]:
    """Per verdict section, the headline conclusion in words (Holm-adjusted), e.g. ``no significant
    difference vs har (p_holm 0.23)``; ``{"verdict": line}`` when there is no section."""
    verdict = summary.get("verdict") or {}
    out = {}
    for section, part in (verdict.get("sections") or {}).items():
        head = part["versus"][part["best_baseline"]]
        p = head.get("p_value_holm")
        out[section] = (f"{head.get('conclusion_holm', head['conclusion'])} vs {part['best_baseline']}"
                        + (f" (p_holm {p:.3g})" if p is not None else ""))
    return out or {"verdict": " ".join(verdict.get("lines") or ["none"])}


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:300]}"


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    """Environment variables set for the block, restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Tracker:
    """An open MLflow tracking store and experiment (module docstring).

    Opening imports mlflow, checks the store answers and (``experiment``, the default) finds the target's
    experiment or creates it (in a SQLite store its artifacts go to ``mlartifacts/`` beside the database file,
    not the working folder); every failure of the store is a ConfigError naming the target's source and URI.
    MLflow's INFO logging is lowered to WARNING and its Python warnings are logged at DEBUG.
    """

    def __init__(self, target: TrackingTarget, experiment: bool = True) -> None:
        t0 = time.perf_counter()
        self.target = target
        self.uri = self._local_uri(target.uri)
        self.where = f"{target.source} {redact(target.uri)}"
        for key, value in MLFLOW_DEFAULTS.items():
            os.environ.setdefault(key, value)
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # a wrong server address fails in seconds rather than after minutes of retries
        with self.calls("MLflow cannot open this tracking store"), _env(
                {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}):
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = None
            found = self.client.get_experiment_by_name(target.experiment) if experiment else None
            if not experiment:
                self.client.search_experiments(max_results=1)  # the store answers
            elif found is None:
                self.experiment_id = self.client.create_experiment(target.experiment, self._artifact_location())
            elif found.lifecycle_stage != "active":
                raise ConfigError(f"{self.where}: experiment {target.experiment!r} is deleted (restore it with "
                                  "`mlflow experiments restore` or choose another --experiment)")
            else:
                self.experiment_id = found.experiment_id
        self.seconds = time.perf_counter() - t0
        log.info("tracking: %s (opened in %.2f s)", self.describe() if experiment else redact(self.uri), self.seconds)

    def _local_uri(self, uri: str) -> str:
        """A plain path as an absolute ``file:`` URI; local stores' folders created (file stores allowed: MLflow
        refuses them unless ``MLFLOW_ALLOW_FILE_STORE`` is set)."""
        path = None
        if not SCHEME.match(uri):
            path, uri = Path(uri).expanduser().resolve(), Path(uri).expanduser().resolve().as_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            path = path or Path(uri.removeprefix("file://") or "/")
        elif uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            database = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
            path = database.parent
            if not database.exists():
                log.info("tracking: creating the MLflow store %s (once: its tables take a few seconds)", database)
        if path is not None:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{self.target.source} {redact(self.target.uri)}: cannot create the folder {path} "
                                  f"({type(exc).__name__}: {exc.strerror})") from None
        return uri

    def _artifact_location(self) -> str | None:
        """A SQLite store's artifacts: ``mlartifacts/`` beside the database (MLflow's default is the working folder)."""
        if self.uri.startswith("sqlite:///"):
            return (Path(self.uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        return None

    @contextlib.contextmanager
    def calls(self, what: str) -> Iterator[None]:
        """MLflow calls: any error becomes a ConfigError naming the store and ``what`` failed; MLflow's Python
        warnings are logged at DEBUG."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001  (MlflowException, SQLAlchemy, requests, OS: the store's)
                raise ConfigError(f"{self.where}: {what} ({_one_line(exc)})") from None
        for warning in caught:
            log.debug("mlflow: %s", warning.message)

    def browse_command(self) -> str:
        """The command that shows this store in a browser (``mlflow ui``), or the server's address."""
        if self.uri.startswith(("http://", "https://")):
            return redact(self.uri)
        prefix = "MLFLOW_ALLOW_FILE_STORE=true " if self.uri.startswith("file:") else ""
        return f"{prefix}mlflow ui --backend-store-uri {redact(self.uri)}"

    def describe(self) -> str:
        """``MLflow experiment 'name' at URI`` (password hidden), for log lines and the report."""
        return f"MLflow experiment {self.target.experiment!r} at {redact(self.uri)}"

    # ------------------------------------------------------------------------------------------
    # Runs

    def start_run(self, kind: str, name: str, params: dict[str, str], tags: dict[str, str] | None = None,
                  start_ms: int | None = None) -> str:
        """Create a run of ``kind`` (tag ``lab.kind``) with ``params`` and ``tags`` (the source file and git
        commit added by MLflow's context); returns its id."""
        with self.calls(f"cannot create a {kind} run"):
            from mlflow.entities import Param
            from mlflow.tracking.context.registry import resolve_tags

            all_tags = resolve_tags({KIND: kind, **(tags or {})})
            run = self.client.create_run(self.experiment_id, start_time=start_ms, tags=all_tags, run_name=name)
            self.client.log_batch(run.info.run_id, params=[Param(metric_name(k), v) for k, v in params.items()])
        return run.info.run_id

    def log(self, run_id: str, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
            history: list[tuple[str, float, int]] | None = None) -> None:
        """Log ``metrics`` (step 0), ``history`` ``(key, value, step)`` points and ``tags`` in one batch (MLflow
        splits it into requests of at most 1000 entries)."""
        now = int(time.time() * 1000)
        with self.calls(f"cannot log to run {run_id}"):
            from mlflow.entities import Metric, RunTag

            points = [Metric(metric_name(k), v, now, 0) for k, v in (metrics or {}).items()]
            points += [Metric(metric_name(k), v, now, s) for k, v, s in history or []]
            self.client.log_batch(run_id, metrics=points,
                                  tags=[RunTag(k, v[:8000]) for k, v in (tags or {}).items()])

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        """Copy the existing files of ``paths`` into the run's artifacts (under ``artifact_path``)."""
        with self.calls(f"cannot store artifacts of run {run_id}"):
            for path in paths:
                if Path(path).is_file():
                    self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED", end_ms: int | None = None) -> None:
        """End the run with ``status`` (FINISHED, FAILED, KILLED) at ``end_ms`` (default now)."""
        with self.calls(f"cannot end run {run_id}"):
            self.client.set_terminated(run_id, status, end_ms)

    def search(self, filter_string: str = "") -> list:
        """Every active run of the experiment matching ``filter_string`` (all pages)."""
        runs, token = [], None
        with self.calls("cannot search the experiment's runs"):
            while True:
                page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000,
                                               page_token=token)
                runs += list(page)
                token = page.token
                if not token:
                    return runs

    # ------------------------------------------------------------------------------------------
    # Lab runs and the trial count

    def count_configurations(self, config: dict, sweep: dict | None = None) -> tuple[int, str]:
        """The distinct configurations recorded in the experiment (runs and trials tagged
        ``lab.counts_as_trial``), ``config``'s own included, and the sentence saying so; a ``--sweep`` whose
        study has no run here adds its ``n_trials``."""
        hashes = {r.data.tags[CONFIG_HASH] for r in self.search(f"tags.`{COUNTS}` = 'true'")
                  if CONFIG_HASH in r.data.tags}
        own = config_hash(config)
        n = len(hashes | {own})
        source = (f"auto: {n} distinct configuration{'s' * (n != 1)} in {self.describe()}"
                  + ("" if own in hashes else " (this run's included)"))
        if sweep is not None:
            tracked = any(r.data.tags.get(STUDY) == sweep["study"] for r in self.search(f"tags.`{KIND}` = 'sweep'"))
            if not tracked:
                n += sweep["n_trials"]
                source += f" + the {sweep['n_trials']} trials of sweep {sweep['path']} (not tracked there)"
        log.info("--n-trials %s", source)
        return n, source

    def log_lab_run(self, result: Any, out_dir: Path, start_ms: int) -> str:
        """Record a finished :class:`~lab_v10.src.eval.results.RunResult` whose report is in ``out_dir``
        (module docstring); returns the run id."""
        t0 = time.perf_counter()
        out_dir = Path(out_dir)
        summary = json.loads((out_dir / "summary.json").read_text())
        description = {f"data_description.{k}": param_text(v) for k, v in flatten(result.data).items()}
        verdict = verdict_texts(summary)
        run_id = self.start_run("run", out_dir.name, {**flat_config(result.config), **description},
                                {OUT_DIR: str(out_dir.resolve()), "lab.preset": result.preset[:8000],
                                 "lab.n_trials_source": result.n_trials_source}, start_ms)
        tags = {CONFIG_HASH: config_hash(result.config), COUNTS: "true",
                NOTE: "\n".join(result.verdict.get("lines") or []),
                **{f"verdict.{metric_name(k)}": v for k, v in verdict.items()}}
        self.log(run_id, summary_metrics(summary), tags)
        self.log_files(run_id, [out_dir / name for name in ARTIFACTS])
        self.end_run(run_id)
        self.seconds += time.perf_counter() - t0
        log.info("tracking: run %s logged in %.2f s (%.2f s with opening the store)", run_id,
                 time.perf_counter() - t0, self.seconds)
        return run_id

    def log_training(self, config: dict, out_dir: Path, summary: dict, start_ms: int) -> str:
        """Record a ``scripts/train_hrm.py`` run (tag ``lab.kind`` ``train``; not a trial): the flattened config
        as params, each ensemble member's per-epoch ``train_log.csv`` columns as curves ``member_<k>.<column>``
        (step = epoch), its ``best_val_loss`` and ``epochs_run``, and train_summary.json and the logs as
        artifacts."""
        import pandas as pd

        from lab_v10.src.options.hrm_ddp import SUMMARY_FILE

        out_dir = Path(out_dir)
        run_id = self.start_run("train", out_dir.name, flat_config(config),
                                {OUT_DIR: str(out_dir.resolve()), "lab.split": str(summary.get("split"))[:8000]},
                                start_ms)
        history, final = [], {"seconds": summary["seconds"], "world_size": summary["world_size"]}
        for k, member in enumerate(summary["members"]):
            epochs = pd.read_csv(member["log_path"])
            for column in epochs.columns.drop("epoch"):
                history += [(f"member_{k}.{column}", float(v), int(e))
                            for e, v in zip(epochs["epoch"], epochs[column]) if finite_number(v) is not None]
            final.update({f"member_{k}.{key}": member[key] for key in ("best_val_loss", "epochs_run")
                          if finite_number(member.get(key)) is not None})
        self.log(run_id, final, history=history)
        self.log_files(run_id, [out_dir / SUMMARY_FILE])
        for k, member in enumerate(summary["members"]):
            self.log_files(run_id, [Path(member["log_path"])], f"member_{k}")
        self.end_run(run_id)
        return run_id
