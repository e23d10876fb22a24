"""Typed configuration: dataclasses <-> TOML, `--set a.b=c` overrides, validation with `did you mean`.

Every configurable thing in maskbench is a dataclass. `from_dict` builds one from a (TOML) dict and
rejects unknown keys, wrong types and out-of-range values with a one-line `ConfigError` that names the
dotted key. Validation of ranges lives in each dataclass's `__post_init__`, using `check_range` and
`check_choice` so messages read the same everywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from .errors import ConfigError, MaskbenchError
from .io import write_text

T = TypeVar("T")


def nearest(key: str, valid: typing.Iterable[str]) -> str | None:
    """The closest valid name to a misspelled one, for `did you mean ...?`."""
    valid = list(valid)
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if match:
        return match[0]
    prefixed = [v for v in valid if v.startswith(key[:3])] if len(key) >= 3 else []
    return prefixed[0] if prefixed else None


def unknown_key_error(key: str, valid: typing.Iterable[str], where: str = "") -> ConfigError:
    full = f"{where}.{key}" if where else key
    hint = nearest(key, valid)
    tail = f"; did you mean '{(where + '.') if where else ''}{hint}'?" if hint else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown key '{full}'{tail}")


def check_range(key: str, value: float | None, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Raise ConfigError unless low <(=) value <(=) high; the message shows the interval. NaN and
    infinities never pass (every comparison with NaN is false, so they are refused first)."""
    if value is None:
        return
    check_finite(key, value)
    bad = (
        (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
    )
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise ConfigError(f"must be in {interval}, got {value!r}", key)


def check_finite(key: str, value: Any) -> None:
    """Raise ConfigError for a NaN or infinite number: no setting of maskbench means anything with one."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, got {value!r}", key)


def _finite_tree(value: Any, key: str) -> Any:
    """`value` unchanged once no number inside it (free tables, lists) is NaN or infinite."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_tree(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_tree(v, f"{key}[{i}]")
    else:
        check_finite(key, value)
    return value


def check_choice(key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        hint = nearest(str(value), [str(c) for c in choices])
        extra = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"must be one of {', '.join(map(str, choices))}, got {value!r}{extra}", key)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting where TOML is looser (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return _finite_tree(value, key)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"expected {' or '.join(_type_name(a) for a in args if a is not type(None))}, got {value!r}", key)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            check_choice(key, value, choices)
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key)
        return from_dict(tp, value, where=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", key)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"expected {len(args)} values, got {len(value)}", key)
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", key)
        return _finite_tree(dict(value), key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key)
        check_finite(key, float(value))
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"expected an integer, got {value!r}", key)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key)
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"expected a path, got {value!r}", key)
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types with the dotted key."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(key, fields, where)
    kwargs = {}
    for name, value in data.items():
        full = f"{where}.{name}" if where else name
        kwargs[name] = _convert(value, hints[name], full)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise e.under(where) from None
    except TypeError as e:  # a required field is missing
        raise ConfigError(str(e).replace(f"{cls.__name__}.__init__() ", ""), where or None) from None


def to_dict(obj: Any) -> Any:
    """A TOML-ready dict: tuples become lists, Paths strings, None values are dropped (TOML has no null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = to_dict(getattr(obj, f.name))
            if value is not None:
                out[f.name] = value
        return out
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_value(text: str) -> Any:
    """A `--set` value as a TOML literal (`0.4`, `true`, `[1, 2]`, `"x"`); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply `section.key=value` overrides to a nested dict (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"--set has an empty key part in {key!r}")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(raw.strip())
    return data


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise MaskbenchError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise MaskbenchError(f"config path is a folder, not a TOML file: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise MaskbenchError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise MaskbenchError(f"{path} is not UTF-8 text") from None


def dumps_toml(obj: Any) -> str:
    return tomli_w.dumps(to_dict(obj))


def save_toml(obj: Any, path: str | Path) -> None:
    """Write a dataclass or dict as TOML, atomically (the resolved config next to every output)."""
    write_text(path, dumps_toml(obj))


def config_data(path: str | Path | None = None, overrides: typing.Iterable[str] = (), base: dict | None = None,
                flags: dict | None = None, relative_to_file: typing.Callable[[dict, Path], None] | None = None) -> dict:
    """The one layering of a configuration, each layer winning over the one before: `base`, the TOML file at
    `path`, explicit command-line `flags` (None values skipped), `--set` `overrides`.

    `relative_to_file(table, folder)` may rewrite paths written in the file relative to its folder (paths
    given with flags or `--set` stay relative to the current folder, where the user typed them)."""
    data = dict(base or {})
    if path is not None:
        from_file = load_toml(path)
        if relative_to_file is not None:
            relative_to_file(from_file, Path(path).resolve().parent)
        data = _deep_merge(data, from_file)
    if flags:
        data = _deep_merge(data, {k: v for k, v in flags.items() if v is not None})
    return apply_overrides(data, overrides)


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Iterable[str] = (),
                base: dict | None = None, flags: dict | None = None,
                relative_to_file: typing.Callable[[dict, Path], None] | None = None) -> T:
    """`config_data(...)` as a validated dataclass `cls`."""
    return from_dict(cls, config_data(path, overrides, base, flags, relative_to_file))


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def deep_merge(a: dict, b: dict) -> dict:
    """Merge nested dicts, `b` winning (used for presets and experiment axes)."""
    return _deep_merge(a, b)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and normalised numbers: the same configuration always gives the same text."""
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _normalise(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 2**53:
        return int(obj)  # 1.0 and 1 are the same setting
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _normalise(dataclasses.asdict(obj))
    return obj


def config_hash(obj: Any, length: int = 12) -> str:
    """A short, stable name for a configuration: folder names of experiment cells and stages, the
    fingerprint of a fine-tuning comparison."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
