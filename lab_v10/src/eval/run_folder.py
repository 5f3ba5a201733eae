"""The report folder of one run: checked before any work, never mixed with an earlier run, and marked while
the run is in progress.

- :func:`prepare_run_folder` (called before the data is loaded): ``out_dir`` must be a folder or a path that
  can become one (no file at it or above it) and writable. An existing, non-empty folder is refused unless
  ``overwrite`` is set and the folder is a lab run folder (it holds ``summary.json`` or the in-progress
  marker); then the earlier run's own files (:data:`RUN_FILE_PATTERNS`, the model folders named after the
  registry's models, the marker) are removed first and any other file is kept and logged. It then writes
  the marker :data:`INCOMPLETE_MARKER`.
- :func:`finish_run_folder` removes the marker after the report is written. A run that stops early (an error,
  Ctrl-C, SIGTERM) leaves the marker, so its folder never looks like a finished report.

Errors are :class:`~lab_v10.src.errors.ConfigError` naming the path and what was expected.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
import shutil
from pathlib import Path

from lab_v10.src.errors import ConfigError
from lab_v10.src.models.registry import MODEL_NAMES

log = logging.getLogger("lab.report")

INCOMPLETE_MARKER = "RUN_INCOMPLETE.txt"
# Every file name write_report produces (tests/test_report.py checks the list against a real report).
RUN_FILE_PATTERNS = (
    "summary.json", "report.html", "folds.csv", "forecast_metrics_*.csv", "trading_metrics.csv", "trades_*.csv",
    "forecasts_a.parquet", "forecasts_b.parquet", "pnl_daily.parquet", "equity_*.png", "forecast_scatter_a.png",
    "calibration_b.png", "act_segments*.png",
)


def _is_run_entry(path: Path) -> bool:
    """A file or folder an earlier run of the lab wrote into its report folder."""
    if path.is_dir():
        return path.name in MODEL_NAMES  # per-model run folders (checkpoints, training logs)
    return path.name == INCOMPLETE_MARKER or any(fnmatch.fnmatchcase(path.name, p) for p in RUN_FILE_PATTERNS)


def check_writable_folder(out_dir: Path, flag: str = "--out") -> None:
    """ConfigError unless ``out_dir`` is a writable folder or can be created as one (the first existing
    ancestor is a writable folder, not a file)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{flag} {out_dir}: is a file (expected a folder for the report)")
    ancestor = out_dir
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{flag} {out_dir}: {ancestor} is a file, so no folder can be created under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out_dir}: {ancestor} is not writable (expected a folder you can write to)")


def prepare_run_folder(out_dir: Path, overwrite: bool) -> None:
    """Check ``out_dir``, clear an earlier run's files when ``overwrite`` (module docstring), create it and
    write the in-progress marker."""
    out_dir = Path(out_dir)
    check_writable_folder(out_dir)
    entries = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
    if entries:
        is_run = (out_dir / "summary.json").exists() or (out_dir / INCOMPLETE_MARKER).exists()
        if not overwrite:
            raise ConfigError(
                f"--out {out_dir}: the folder is not empty (expected a new or empty folder; "
                + ("pass --overwrite to replace the earlier run's files)" if is_run else "choose another folder)")
            )
        if not is_run:
            raise ConfigError(
                f"--out {out_dir}: --overwrite only replaces a lab report folder (one holding summary.json or "
                f"{INCOMPLETE_MARKER}); this folder holds other files, so choose another folder"
            )
        kept = []
        for entry in entries:
            if not _is_run_entry(entry):
                kept.append(entry.name)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        log.info("--overwrite: removed the earlier run's files from %s%s", out_dir,
                 f" (kept files it did not write: {', '.join(kept)})" if kept else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE_MARKER).write_text(
        f"This run started at {dt.datetime.now().isoformat(timespec='seconds')} and has not finished: the files "
        "here are partial. A finished run removes this file after writing report.html.\n"
    )


def finish_run_folder(out_dir: Path) -> None:
    """Remove the in-progress marker: the report in ``out_dir`` is complete."""
    (Path(out_dir) / INCOMPLETE_MARKER).unlink(missing_ok=True)
