"""Atomic file writes, and Parquet storage of frames (bars, features, results) with pyarrow.

:func:`atomic_output` is the project's one atomic writer (checkpoints, logs, reports and Parquet files all
go through it): the file at a path is either the old one or the complete new one, never half written.
:func:`write_bytes_atomic` is its shorthand for bytes.

:func:`write_parquet` keeps the index (names, dtypes and time zones included) and writes atomically.
:func:`read_parquet` gives back the same frame (``pd.testing.assert_frame_equal`` holds; an index
``freq`` is not stored).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa

from lab_v10.src.errors import DataValidationError


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the block to write; when the block succeeds, fsync the file
    and move it onto ``path`` with ``os.replace`` (atomic on POSIX and Windows).

    A crash therefore leaves either the old file or the complete new one; on an error the temporary file is
    removed. Parent folders are created. The temporary file is created by the writer with the usual
    permissions (umask), unlike ``tempfile.mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the data reach the disk before the rename makes them visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`) and return the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` with its index to ``path`` atomically (parent folders are created); return the path."""
    with atomic_output(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=True)
    return Path(path)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_parquet` (or any Parquet file) into a DataFrame.

    Raises DataValidationError naming ``path`` when the file is missing or is not readable Parquet.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (expected a Parquet file)")
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(f"{path}: not a readable Parquet file ({exc})") from None
