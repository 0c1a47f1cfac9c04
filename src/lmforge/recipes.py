"""Run settings as small YAML recipes, validated against dataclasses.

A recipe is nested sections (``model``, ``data``, ``objective``, ``train``...) whose keys are
the fields of the matching dataclass. ``--set section.key=value`` overrides any key, the value
parsed as YAML. Unknown keys and values of the wrong type are errors naming the key: a typo
never passes silently (the weak spot STYLE.md notes in config-by-exec).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from lmforge.errors import UserError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file, or a recipe bundled with lmforge by name (``bert-mini``, ``pretrain/tiny``)."""
    from lmforge.bundled import recipe_names, recipe_path

    if not Path(path).is_file():
        bundled = recipe_path(str(path))
        if bundled is None:
            raise UserError(f"no such recipe file: {path} (bundled recipes: {', '.join(recipe_names())})")
        path = bundled
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of sections")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.max_steps=200", ...]`` applied to a nested dict (a copy)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set takes key=value, got {item!r}")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[leaf] = raw
    return data


def _check(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise UserError(f"{key} must be one of {', '.join(map(str, typing.get_args(kind)))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(value, option, key)
            except UserError:
                continue
        raise UserError(f"{key}: {value!r} is not a {kind}")
    if origin in (list, tuple):
        (item_kind, *_) = typing.get_args(kind) or (Any,)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single path where a list is expected
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list, got {value!r}")
        return [_check(v, item_kind, key) for v in value]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return value
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-4 (no dot) as a string
        except ValueError:
            pass
    if kind is bool and not isinstance(value, bool) or kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{key} must be {kind.__name__}, got {value!r}")
    if kind in (str, float) and not isinstance(value, kind):
        raise UserError(f"{key} must be {kind.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """``cls(**data)`` with nested dataclasses, unknown keys and wrong types rejected."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix or 'recipe'} must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"unknown recipe key {prefix}{unknown[0]}; known keys here: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = build_dataclass(kind, value, f"{prefix}{name}.")
        else:
            values[name] = _check(value, kind, f"{prefix}{name}")
    return cls(**values)
