"""Typed configuration: frozen dataclasses filled from TOML tables and `--set key=value` overrides.

Every stage has one frozen config dataclass (`ModelConfig`, `TrainConfig`, `QuantizeConfig`, ...)
that validates itself in `__post_init__`. This module is the shared machinery:

- `from_dict(cls, table)` builds a config from a TOML table, rejecting unknown keys and values of
  the wrong type with a `ConfigError` that names the key, the expected type and the valid keys.
- `apply_overrides(cfg, ["model.num_layers=11", "matrix_lr=0.02"])` applies `--set` overrides; a
  key may be written in full (`model.num_layers`) or by its last part when that is unambiguous.
- `to_dict(cfg)` is the JSON/TOML-ready form stored in manifests; `from_dict(to_dict(c)) == c`.

Precedence: `--set` beats the TOML file, which beats the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from pgolf.errors import ConfigError

if typing.TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config dataclass


# ----------------------------------------------------------------------------- reading TOML


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a `ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the path")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_section(path: str | Path, section: str, nested: Sequence[str] = ()) -> dict[str, Any]:
    """The `[section]` table of a TOML file: the one rule every stage's `--config` follows.

    A file with a `[section]` table gives that table (a pipeline config holds one per stage). A file
    without one is the table itself, as long as its own tables are ones the section may nest
    (`nested`, e.g. `[eval]` inside `[pack]`); a file of other stages' tables is an error naming them.
    """
    raw = load_toml(path)
    if section in raw:
        if not isinstance(raw[section], Mapping):
            raise ConfigError(f"{path}: '{section}' must be a table ([{section}])")
        return dict(raw[section])
    foreign = sorted(k for k, v in raw.items() if isinstance(v, Mapping) and k not in nested)
    if foreign:
        raise ConfigError(f"{path} has no [{section}] table (it has {', '.join(f'[{t}]' for t in foreign)})",
                          f"put the settings in a [{section}] table")
    return dict(raw)


def parse_value(text: str) -> Any:
    """Read an override's value as a TOML literal (`11`, `0.5`, `true`, `[4, 5]`, `"x"`), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ----------------------------------------------------------------------------- dataclass <-> dict


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only lossless cases (int -> float, list -> tuple)."""

    def bad() -> ConfigError:
        return ConfigError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")

    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a nested config class (never an instance)
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise bad()
        return from_dict(tp, value, where=key)
    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(repr(a) for a in get_args(tp))}; got {value!r}")
    if origin in (types.UnionType, typing.Union):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() == "none" and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad()
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise bad()
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise bad()
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if tp is Any:
        return value
    raise bad()


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    scope = f" in [{where}]" if where else ""
    return ConfigError(f"unknown config key '{key}'{scope}; {hint}valid keys: {', '.join(sorted(valid))}")


def from_dict(cls: type[T], table: Mapping[str, Any], where: str = "") -> T:
    """Build the frozen dataclass `cls` from a mapping, strictly (unknown keys and wrong types raise)."""
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise _unknown_key(key, names, where)
        full = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a value
        raise ConfigError(f"incomplete config{f' [{where}]' if where else ''}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON/TOML-ready dict of a config dataclass (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def config_hash(cfg: Any) -> str:
    """A stable sha256 of a config (sorted JSON), for reuse decisions and lineage."""
    import hashlib

    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- overrides


def flat_items(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {"model.num_layers": 9, ...} (a non-dict is one item named `prefix`)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat_items(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def leaf_paths(cls: type, prefix: str = "") -> list[str]:
    """Every settable key of a config class, nested dataclasses expanded: ['model.num_layers', 'seed', ...]."""
    hints = field_types(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.extend(leaf_paths(hints[f.name], path + "."))
        else:
            out.append(path)
    return out


def resolve_key(cls: type, key: str) -> str:
    """Map a user key (full dotted path or unambiguous last part) to its full dotted path."""
    paths = leaf_paths(cls)
    if key in paths:
        return key
    matches = [p for p in paths if p.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"config key '{key}' is ambiguous; write one of: {', '.join(matches)}")
    short = sorted({p.rsplit(".", 1)[-1] for p in paths} | set(paths))
    raise _unknown_key(key, short, "")


def split_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' is not of the form key=value", "e.g. --set num_layers=11")
    return key.strip(), value.strip()


def overrides_to_table(cls: type, overrides: Sequence[str]) -> dict[str, Any]:
    """Turn `["a.b=1", "c=x"]` into a nested table keyed by full paths (values parsed as TOML literals)."""
    table: dict[str, Any] = {}
    for text in overrides:
        key, raw = split_override(text)
        path = resolve_key(cls, key).split(".")
        node = table
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parse_value(raw)
    return table


def merge_tables(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: keys of `top` win; nested tables merge."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_tables(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return a copy of `cfg` with `--set key=value` overrides applied (typed, validated)."""
    if not overrides:
        return cfg
    table = merge_tables(to_dict(cfg), overrides_to_table(type(cfg), overrides))
    return from_dict(type(cfg), table)


def build(cls: type[T], table: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults <- TOML table <- overrides, validated once at the end."""
    merged = merge_tables(table or {}, overrides_to_table(cls, overrides)) if overrides else dict(table or {})
    return from_dict(cls, merged)


def check(condition: bool, key: str, message: str) -> None:
    """`__post_init__` helper: raise a ConfigError naming `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config key '{key}' {message}")
