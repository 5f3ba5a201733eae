"""Parquet storage of frames (bars, features, results) with pyarrow.

:func:`write_parquet` keeps the index (names, dtypes and time zones included) and writes atomically: the
file appears complete or not at all, so a crash never leaves a half-written Parquet file behind.
:func:`read_parquet` gives back the same frame (``pd.testing.assert_frame_equal`` holds; an index
``freq`` is not stored).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from lab_v10.src.errors import DataValidationError


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` with its index to ``path`` (parent folders are created) and return the path.

    The data goes to a temporary file in the same folder first, then ``os.replace`` moves it into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp_name, engine="pyarrow", index=True)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


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
