"""The machinery behind :mod:`lab_v10.src.config`: range checks, strict YAML reading, conversion of plain
mappings into typed config dataclasses, validation and ``--set`` overrides.

Nothing here knows the lab's sections; :mod:`lab_v10.src.config` defines them (one dataclass per section, each
field's check beside its default) and re-exports every public name below, so callers import from there. A
field's check is ``field(metadata={"check": (predicate, description)})`` (:func:`checked`); a dataclass with a
``cross_check()`` method gets it run after its fields are built. Every error is a one-line ConfigError naming
the source (file, ``--set``, ...) and the dotted key::

    config/small.yaml: hrm.l.d_model: expected int > 0, got '768x'
"""
from __future__ import annotations

import calendar
import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Literal, Union

import yaml

from lab_v10.src.errors import ConfigError

# ----------------------------------------------------------------------------------------------
# Range checks: (predicate, human description). The description completes "expected <type> ...".
Check = tuple[Callable[[Any], bool], str]

POSITIVE: Check = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, ">= 0")
PROBABILITY: Check = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
OPEN_UNIT: Check = (lambda v: 0.0 < v < 1.0, "in (0, 1)")
ALL_POSITIVE: Check = (lambda v: len(v) > 0 and all(x > 0 for x in v), "non-empty, all > 0")
SEED: Check = (lambda v: 0 <= v < 2**32, "in [0, 2**32) (it seeds torch.manual_seed and numpy)")
SESSION_DATE: Check = (  # years 1900..2199: pandas' dates end in 2262
    lambda v: (m := re.fullmatch(r"(19\d\d|20\d\d|21\d\d)-(0[1-9]|1[0-2])-(\d\d)", v)) is not None
    and 1 <= int(m[3]) <= calendar.monthrange(int(m[1]), int(m[2]))[1], "YYYY-MM-DD in 1900..2199")

YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")  # 1e-3, 5E4: numbers YAML 1.1 leaves as text


def checked(default: Any, check: Check) -> Any:
    """A dataclass field with a default and a range check, applied by load_config and validate_config."""
    return field(default=default, metadata={"check": check})


def checked_list(default_factory: Callable[[], Any], check: Check | None = None) -> Any:
    return field(default_factory=default_factory, metadata={"check": check} if check else {})



def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return [_convert(v, typing.get_args(tp)[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if tp in (bool, int, str):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {'bool (true/false)' if tp is bool else tp.__name__}, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; it means the number here
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r}")
        return float(value) if isinstance(value, float) or abs(value) < 2**1024 else math.inf  # huge int: inf, rejected
    raise ConfigError(f"{where}: unsupported config type {tp!r}")  # a programming error in this module


def _check_range(f: dataclasses.Field, value: Any, tp: Any, where: str) -> None:
    if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
        raise ConfigError(f"{where}: expected {'finite numbers' if isinstance(value, list) else 'a finite number'}, "
                          f"got {value!r}")  # .inf, .nan, 1e999
    check: Check | None = f.metadata.get("check")
    if check is not None and value is not None and not check[0](value):
        raise ConfigError(f"{where}: expected {_type_name(tp)} {check[1]}, got {value!r}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where and not where.endswith(": ") else where
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (expected one of: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        key_where = f"{prefix}{name}"
        try:
            converted = _convert(value, hints[name], key_where)
        except ConfigError:
            check = fields[name].metadata.get("check")
            if check is None:
                raise
            raise ConfigError(f"{key_where}: expected {_type_name(hints[name])} {check[1]}, got {value!r}") from None
        _check_range(fields[name], converted, hints[name], key_where)
        kwargs[name] = converted
    built = cls(**kwargs)
    problem = built.cross_check() if hasattr(built, "cross_check") else None
    if problem:
        raise ConfigError(f"{prefix}{problem}")
    return built


def build_config(data: dict, source: str, cls: type) -> Any:
    """Build the config dataclass ``cls`` from a plain mapping; errors are prefixed with ``source``."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, f"{source}: ")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader rejecting a key repeated in a mapping (PyYAML keeps the last, silently) and reading dates as text."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[str, int] = {}  # key text -> line of its first occurrence
        for key, _ in node.value:
            if key.tag != "tag:yaml.org,2002:merge" and str(key.value) in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key.value!r} repeated (first on line {lines[str(key.value)]})", key.start_mark)
            lines[str(key.value)] = key.start_mark.line + 1
        return super().construct_mapping(node, deep)


StrictLoader.yaml_implicit_resolvers = {c: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
                                        for c, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}  # no dates


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The YAML document in ``path`` read with :class:`StrictLoader`; one-line ConfigError naming the file (and
    line and column) when it is missing, unreadable, not UTF-8 text or not valid YAML (a repeated key too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a binary file, or one this user cannot read
        raise ConfigError(f"{path}: expected a readable UTF-8 text {what} file ({exc})") from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)  # a ReaderError (a control character) has a position instead
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else f"character {exc.position}"
        problem = getattr(exc, "problem", None) or exc.reason
        raise ConfigError(f"{path}: not valid YAML at {where}: {problem}") from None


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict view of a config dataclass (for summary.json and checkpoints)."""
    return dataclasses.asdict(cfg)


def validate_config(cfg: Any, source: str = "<config>") -> Any:
    """Re-check a config built in code (e.g. by ``dataclasses.replace``) with the same rules as loading."""
    return build_config(config_to_dict(cfg), source, type(cfg))


def apply_overrides(cfg: Any, overrides: dict[str, Any] | list[str], source: str = "--set") -> Any:
    """``cfg`` with dotted keys set (``section.key``), validated like a YAML file; errors name ``source``.

    ``overrides``: a mapping ``{"train.epochs": 2}`` (typed values, e.g. an Optuna trial's) or ``"KEY=VALUE"``
    strings (``--set``: each value read like a config file's, so ``2``, ``0.5``, ``true``, ``null``, ``[1, 2]``).
    """
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = []
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. train.epochs=8")
            try:
                value = yaml.load(raw, Loader=StrictLoader)
            except yaml.YAMLError:
                raise ConfigError(f"{source} {key}: value {raw!r} is not a YAML scalar or list") from None
            pairs.append((key.strip(), value))
    data = config_to_dict(cfg)
    for key, value in pairs:
        node, parts = data, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"{source} {key}: {where!r} is not a config section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{source} {key}: unknown key {parts[-1]!r} (expected one of: {', '.join(sorted(node))})")
        node[parts[-1]] = value
    return build_config(data, source, type(cfg))
