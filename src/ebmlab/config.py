"""Typed, validated TOML configs with ``section.key=value`` overrides.

A config is a set of sections (dataclasses); each field's type and allowed
range is declared once, next to its default, with ``field(metadata=...)``.
Loading checks every key: an unknown key, a wrong type or an out-of-range
value raises :class:`ConfigError` with one line naming ``section.key``.

    cfg = load_config(schema, path="run.toml", overrides=["train.iterations=500"])
    text = dump_toml(cfg)   # the resolved config, saved in the run directory
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import sys
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A bad config value; the message is one line naming ``section.key``."""


def option(default: Any, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, choices: Sequence[Any] | None = None,
           help: str = "", applies: tuple[str, Sequence[Any]] | None = None) -> Any:
    """A config field with its validation (``low``/``high`` bounds or ``choices``) and its
    help text. ``applies=(key, values)``: the field matters only when the section's
    ``key`` (a field or property) is one of ``values`` (e.g. ``("name", ["rbm"])``); a
    run's saved config leaves it out otherwise."""
    meta = {"low": low, "high": high, "low_open": low_open, "choices": choices, "help": help,
            "applies": applies}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _type_text(tp: Any) -> str:
    """``int``, ``float or none``, ``list[float]``: a field's type as a user writes it."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _type_text(a)
                           for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list[{_type_text(typing.get_args(tp)[0])}]"
    return _type_name(tp)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, bool, str, Optional, list)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, arg, value)
            except ConfigError:
                continue
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [_coerce(f"{name}[{i}]", item, v) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
            if not math.isfinite(v):
                raise ConfigError(f"{name} must be finite, got {value!r}")
            return v
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {name}")


def _check_range(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if low is not None and (v < low or (meta.get("low_open") and v == low)):
            sign = ">" if meta.get("low_open") else ">="
            raise ConfigError(f"{name} must be {sign} {low}, got {v!r}")
        if high is not None and v > high:
            raise ConfigError(f"{name} must be <= {high}, got {v!r}")


def applies(section: Any, name: str) -> bool:
    """Whether field ``name`` of the section object ``section`` matters (see ``option``)."""
    cond = next(f.metadata.get("applies") for f in dataclasses.fields(section) if f.name == name)
    return cond is None or getattr(section, cond[0]) in cond[1]


def applicable(section: Any) -> dict[str, Any]:
    """The fields of ``section`` that matter for its other values, by name."""
    return {f.name: copy.deepcopy(getattr(section, f.name)) for f in dataclasses.fields(section)
            if applies(section, f.name)}


def _range_text(meta: Mapping[str, Any]) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(str(toml_value(c)) for c in meta["choices"])
    low, high, open_ = meta.get("low"), meta.get("high"), meta.get("low_open")
    if low is not None and high is not None:
        return f"{'(' if open_ else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if open_ else '>='} {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


def shown(value: Any) -> str:
    """A value as a user writes it in TOML (``none`` for ``None``)."""
    if value is None:
        return "none"
    try:
        return toml_value(list(value) if isinstance(value, tuple) else value)
    except TypeError:
        return repr(value)


def annotated_section(section: Any, name: str, *, values: Mapping[str, Any] | None = None,
                      skip: Sequence[str] = ()) -> list[str]:
    """``[name]`` as commented TOML: before each key its help text, type, allowed range,
    default and when it applies; the key set to its value in ``section`` (or ``values``).
    A key whose value is ``None`` (e.g. "from [train]") is written commented out."""
    hints = typing.get_type_hints(type(section))
    lines = [f"[{name}]"]
    for f in dataclasses.fields(section):
        if f.name in skip:
            continue
        meta = f.metadata
        value = getattr(section, f.name) if values is None else values.get(f.name)
        default: Any = None
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif callable(f.default_factory):
            default = f.default_factory()
        facts = [_type_text(hints[f.name]), _range_text(meta)]
        facts.append(f"default {shown(default)}")
        cond = meta.get("applies")
        if cond is not None and cond[0] in {g.name for g in dataclasses.fields(section)}:
            facts.append(f"only when {name}.{cond[0]} is "
                         + " or ".join(str(v) for v in cond[1]))
        if meta.get("help"):
            lines += ["# " + line for line in textwrap.wrap(meta["help"], 88)]
        lines.append("#   (" + "; ".join(x for x in facts if x) + ")")
        if value is None and default is None:
            lines.append(f"# {f.name} =")
        else:
            lines.append(f"{f.name} = {toml_value('none' if value is None else value)}")
    lines.append("")
    return lines


def suggest(name: str, valid: Sequence[str]) -> str:
    """``"; did you mean X?"`` for the valid name closest to ``name`` (or ``""``)."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_key_error(what: str, name: str, valid: Sequence[str]) -> ConfigError:
    """One line under 200 characters: the unknown name, the nearest valid one or the list."""
    hint = suggest(name, valid)
    if hint:
        return ConfigError(f"unknown {what} {name}{hint}")
    listed = ", ".join(sorted(valid))
    if len(listed) > 120:
        listed = listed[:117] + "..."
    return ConfigError(f"unknown {what} {name}; valid: {listed}")


def build_section(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    """Instantiate the dataclass ``cls`` from ``values``, validating every key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise unknown_key_error("key", f"{section}.{unknown[0]}",
                                [f"{section}.{k}" for k in fields])
    kwargs = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        v = _coerce(name, hints[key], value)
        _check_range(name, v, fields[key].metadata)
        kwargs[key] = v
    obj = cls(**kwargs)
    post = getattr(obj, "validate", None)
    if post is not None:
        try:
            post()
        except ValueError as e:
            raise ConfigError(f"[{section}] {e}") from None
    return obj


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` → (section, key, value); the value is parsed as TOML. ``key``
    may itself be dotted for nested tables (``optim.generator.lr=2e-4``)."""
    lhs, sep, rhs = text.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not section or not key or "" in key.split("."):
        raise ConfigError(f"--set needs section.key=value, got {text!r}")
    rhs = rhs.strip()
    try:
        value = tomllib.loads(f"v = {rhs}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs  # a bare word: treat it as a string (e.g. data.name=rings)
    return section, key, value


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None


def load_config(schema: type, path: str | Path | None = None,
                overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None) -> Any:
    """Build the top-level ``schema`` dataclass (one field per section).

    Values come from ``base`` (e.g. a saved run's config), then the TOML file,
    then ``overrides`` (``section.key=value`` strings), later winning.
    A schema with a ``from_raw(raw)`` classmethod builds itself from the merged nested
    mapping (sections whose keys depend on other values, e.g. a method's own options).
    """
    raw: dict[str, Any] = {}
    merge_tables(raw, base or {})
    if path is not None:
        table = read_toml(path)
        for sec, vals in table.items():
            if not isinstance(vals, dict):
                raise ConfigError(f"top-level key {sec!r} must be a [section]")
        merge_tables(raw, table)
    for text in overrides:
        sec, key, value = parse_override(text)
        node = raw.setdefault(sec, {})
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {sec}.{part} is not a table")
        node[leaf] = value
    if hasattr(schema, "from_raw"):
        return schema.from_raw(raw)
    sections = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise unknown_key_error("section", f"[{unknown[0]}]", [f"[{s}]" for s in sections])
    built = {name: build_section(hints[name], name, raw.get(name, {})) for name in sections}
    return schema(**built)


def merge_tables(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings: tables merge key by key, other values replace."""
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            merge_tables(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v
    return into


def to_dict(cfg: Any) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dump_toml(cfg: Any) -> str:
    """The config as TOML text (``None`` as ``"none"``); nested tables become
    ``[section.name]``. A config with ``to_tables()`` chooses its own tables."""
    tables = cfg.to_tables() if hasattr(cfg, "to_tables") else to_dict(cfg)
    lines: list[str] = []

    def emit(name: str, values: Mapping[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        if plain or not values:  # no header for a table of tables only
            lines.append(f"[{name}]")
            # None is written as "none" (read back as None): a None that is not the field's
            # default (e.g. model.reference_sd = none) must survive a save and load.
            lines.extend(f"{k} = {toml_value('none' if v is None else v)}"
                         for k, v in plain.items())
            lines.append("")
        for k, v in values.items():
            if isinstance(v, Mapping):
                emit(f"{name}.{k}", v)

    for section, values in tables.items():
        emit(section, values)
    return "\n".join(lines)
