"""A universe of underlyings: the manifest file and one validated :class:`~lab_v10.src.data.market.Market` per
symbol (docs/design.md section 2, "Universe").

The manifest (``--universe FILE.yaml``, ``data.universe``) lists each symbol's files, paths relative to the
manifest::

    symbols:
      SPY: {daily: SPY_daily.csv, iv: VIX_History.csv, minutes: minutes/SPY_1min.csv}
      GLD: {daily: GLD_daily.csv, iv: GVZ_History.csv}

``daily`` and ``iv`` are required (a universe is a set of assets with their implied-vol indices: Book A runs
on every symbol), ``minutes`` is optional, and ``iv_missing: error|drop`` overrides ``--iv-missing`` for that
symbol (e.g. ``{daily: X.csv, iv: VX.csv, iv_missing: drop}``). Every symbol is loaded by the single-asset loader with the same
options and checks (:func:`lab_v10.src.data.market.load_market`), so each error names the symbol and its
file. Symbols may have different histories; the panel (:mod:`lab_v10.src.dataset.panel`) aligns them by
calendar date.

A synthetic universe (``data.synthetic.n_symbols`` > 1) comes from the generator, one market per symbol.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from lab_v10.src.config import DataConfig
from lab_v10.src.config_loading import read_yaml
from lab_v10.src.data.market import Market, describe_market, load_market
from lab_v10.src.data.synthetic import generate_universe_from_config
from lab_v10.src.errors import ConfigError, LabError

SYMBOL_KEYS = ("daily", "iv", "minutes", "iv_missing")
FILE_KEYS = ("daily", "iv", "minutes")
IV_MISSING = ("error", "drop")
REQUIRED_KEYS = ("daily", "iv")
SYMBOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


@dataclasses.dataclass(frozen=True)
class SymbolFiles:
    """One manifest entry: absolute paths of the symbol's files (``minutes`` None when not given) and its
    ``iv_missing`` policy when it has its own."""

    daily: Path
    iv: Path
    minutes: Path | None = None
    iv_missing: str | None = None  # the symbol's own --iv-missing policy (None: the run's)


def is_universe(cfg) -> bool:
    """Whether the LabConfig ``cfg`` runs a universe: a manifest (``data.source: universe``) or a synthetic
    universe of more than one symbol (``data.synthetic.n_symbols``)."""
    data = cfg.data
    return data.source == "universe" or (data.source == "synthetic" and data.synthetic.n_symbols > 1)


def read_manifest(path: str | Path) -> dict[str, SymbolFiles]:
    """The symbols of the manifest at ``path``, in file order.

    ConfigError naming the manifest and the key: not a mapping with exactly the key ``symbols``, no symbol, a
    symbol name that is not 1-32 letters, digits, ``.``, ``_`` or ``-``, an entry that is not a mapping, an
    unknown or missing key, a path that is not text, a file that does not exist, or an ``iv_missing`` other
    than ``error``/``drop``.
    """
    path = Path(path)
    doc = read_yaml(path, "universe manifest")
    if not isinstance(doc, dict) or set(doc) != {"symbols"}:
        keys = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{path}: expected one top-level key 'symbols' (a mapping of symbol -> files), got {keys}")
    symbols = doc["symbols"]
    if not isinstance(symbols, dict) or not symbols:
        raise ConfigError(f"{path}: symbols: expected a non-empty mapping of symbol -> {{daily, iv[, minutes]}}")
    out: dict[str, SymbolFiles] = {}
    for name, entry in symbols.items():
        where = f"{path}: symbols.{name}"
        if not isinstance(name, str) or not SYMBOL_NAME.match(name):
            raise ConfigError(f"{where}: expected a symbol name of 1-32 letters, digits, '.', '_' or '-'")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping {{daily: FILE, iv: FILE[, minutes: FILE]}}, "
                              f"got {type(entry).__name__}")
        unknown = [k for k in entry if k not in SYMBOL_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(SYMBOL_KEYS)})")
        missing = [k for k in REQUIRED_KEYS if k not in entry]
        if missing:
            raise ConfigError(f"{where}: missing key {missing[0]!r} (every symbol needs daily bars and its "
                              "implied-vol index; minutes are optional)")
        files = {}
        if "iv_missing" in entry:
            if entry["iv_missing"] not in IV_MISSING:
                raise ConfigError(f"{where}.iv_missing: expected one of {', '.join(IV_MISSING)}, got "
                                  f"{entry['iv_missing']!r}")
            files["iv_missing"] = entry["iv_missing"]
        for key, value in ((k, v) for k, v in entry.items() if k in FILE_KEYS):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.{key}: expected a file path relative to the manifest, got {value!r}")
            file = (path.parent / value).resolve()
            if not file.is_file():
                raise ConfigError(f"{where}.{key}: file not found: {file}")
            files[key] = file
        out[name] = SymbolFiles(**files)
    return out


def symbol_config(cfg: DataConfig, files: SymbolFiles) -> DataConfig:
    """``cfg`` with the symbol's files as the single-asset ``files`` source (every other option shared, but
    the symbol's own ``iv_missing`` when the manifest gives one)."""
    return dataclasses.replace(cfg, source="files", universe=None, daily=str(files.daily), iv=str(files.iv),
                               minutes=None if files.minutes is None else str(files.minutes),
                               iv_missing=files.iv_missing or cfg.iv_missing)


def load_universe(cfg: DataConfig, seed: int) -> dict[str, Market]:
    """One market per symbol: the manifest's (``cfg.universe``) or the synthetic universe's
    (``cfg.synthetic.n_symbols`` symbols ``SYN0``...). A loading error is re-raised with the same type and
    the prefix ``universe symbol <name>``."""
    if cfg.source == "synthetic":
        markets = generate_universe_from_config(cfg.synthetic, seed)
        return {name: Market(daily, minutes, oracle,
                             describe_market(daily, minutes, f"synthetic symbol {name} (seed {seed})", None))
                for name, (daily, minutes, oracle) in markets.items()}
    if cfg.universe is None:
        raise ConfigError("data.universe: expected the path of a universe manifest (--universe FILE.yaml)")
    out = {}
    for name, files in read_manifest(cfg.universe).items():
        try:
            out[name] = load_market(symbol_config(cfg, files), seed)
        except LabError as exc:
            raise type(exc)(f"universe symbol {name}: {exc}") from None
    return out
