"""Text of report values: strict-JSON conversion, number formatting, fixed-width and HTML tables, CSV bytes.

``None``, NaN, infinities and NaT are "missing": ``null`` in JSON, ``n/a`` in text.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMBER = re.compile(r"[-+]?[\d,.]+%?")  # a formatted number: right-aligned in HTML tables
FLOAT_FORMATS = {"ratio": "{:.2f}", "pct": "{:.2%}", "prob": "{:.3f}", "metric": "{:.4f}"}


def json_safe(value: Any, where: str) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays converted, NaN/inf/NaT -> None, timestamps
    as ISO 8601 text, dict keys as text. Raises TypeError naming ``where`` for any other type."""
    if is_missing(value):
        return None
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if is_time(value):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{where}: cannot write a {type(value).__name__} to summary.json")


def is_time(value: Any) -> bool:
    """A date or timestamp (datetime.date/datetime, pandas Timestamp, numpy datetime64), NaT excluded."""
    return isinstance(value, (dt.date, np.datetime64)) and not is_missing(value)


def is_missing(value: Any) -> bool:
    """None, a NaN or infinite float, or NaT (pandas or numpy): written as null and shown as n/a."""
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of text cells (escaped here); cells that read as numbers are right-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{html.escape(c)}</td>' if NUMBER.fullmatch(c) else f"<td>{html.escape(c)}</td>"
                  for c in map(str, row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (``coverage.daily``), in the given order."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def fmt(value: Any, kind: str = "auto") -> str:
    """Text of one value: ``n/a`` for None/NaN/NaT; floats by ``kind`` (ratio: 2 decimals, pct: percent
    with 2 decimals, prob: 3 decimals, metric: 4 decimals, auto: 4 significant digits, or thousands
    separators and 2 decimals from 1000 up); integers with thousands separators; midnight timestamps as
    dates; other containers as JSON."""
    if is_missing(value):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and kind == "auto":
        return f"{int(value):,}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        if kind != "auto":
            return FLOAT_FORMATS[kind].format(float(value))
        return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.4g}"
    if is_time(value):
        stamp = pd.Timestamp(value)
        return f"{stamp:%Y-%m-%d}" if stamp == stamp.normalize() and stamp.tz is None else stamp.isoformat()
    if isinstance(value, str):
        return value
    return json.dumps(json_safe(value, "value"), allow_nan=False, ensure_ascii=False)


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Fixed-width text lines (two-space indent): first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), *(line(r) for r in rows)]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV text (UTF-8, no index column; missing values as empty cells)."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
