"""A sweep grid: many protection configs from one TOML file, each validated like `--config`.

    [base]                      # optional: a ratchet.toml every config starts from
    protection.lot_step = "1"

    [axes]                      # a cross product: one axis per dotted ratchet.toml key
    "protection.trail" = [false, true]          # a list of values, named by themselves
    [axes."protection.ladder"]                  # or a table of named values
    spec = [{ at_r = 1, lock_r = 0 }, { at_r = 2, lock_r = 1 }]
    tight = [{ at_r = 0.5, lock_r = 0 }, { at_r = 1, lock_r = 0.5 }]

    [[configs]]                 # or an explicit list of named configs (instead of [axes])
    name = "wide"
    protection.ladder = [{ at_r = 2, lock_r = 0 }]

Each config becomes a ratchet.toml document (the base with its choices laid over it) and goes
through `shell.config.parse_settings`, the same validation as `ratchet simulate --config`; a bad
value is refused naming the grid file, the config and the key. The environment's goal
overrides (`PROFIT_TARGET_DAILY`, …) are not applied: the grid alone decides every row.
"""

from __future__ import annotations

import copy
import itertools
import math
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from attrs import frozen

from shell.config import ConfigError, Settings, parse_settings

__all__ = [
    "MAX_CONFIGS",
    "Axis",
    "Grid",
    "GridConfig",
    "GridError",
    "load_grid",
    "parse_grid",
]

# A sweep larger than this is almost certainly a typo in an axis (and would take days).
MAX_CONFIGS = 100_000
_TOP_KEYS = ("axes", "base", "configs")


class GridError(ValueError):
    """A grid file ratchet refuses: says which file, which config and which key."""


@frozen
class Axis:
    """One dimension of a cross product: a ratchet.toml key and the named values it takes."""

    key: str  # dotted, e.g. "protection.ladder"
    label: str  # in config names: the last part of the key unless two axes share it
    names: tuple[str, ...]
    values: tuple[Any, ...]


@frozen
class GridConfig:
    """One config of a grid: its place, its name, its choices and the validated settings."""

    index: int  # 1-based, in grid order
    name: str
    choices: tuple[tuple[str, str], ...]  # (axis key, value name); () for listed configs
    document: Mapping[str, Any]  # the ratchet.toml document it was validated from
    settings: Settings


@frozen
class Grid:
    """Every config of a grid file, in grid order (a cross product varies its last axis
    fastest)."""

    path: Path
    axes: tuple[Axis, ...]
    configs: tuple[GridConfig, ...]


def load_grid(path: Path) -> Grid:
    """Read and validate a grid file; GridError names the file, the config and the key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise GridError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_grid(data, path)
    except GridError as exc:
        raise GridError(f"{path}: {exc}") from None


def parse_grid(data: Mapping[str, Any], path: Path) -> Grid:
    """Validate a parsed grid document (messages without the file name)."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise GridError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_TOP_KEYS)}")
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise GridError(f"base = {base!r}: expected a table (a ratchet.toml)")
    has_axes, has_configs = "axes" in data, "configs" in data
    if has_axes == has_configs:
        raise GridError(
            "give either [axes] (a cross product of values) or [[configs]] (a list of named "
            "configs)" + (", not both" if has_axes else "")
        )
    if has_axes:
        axes = _axes(data["axes"])
        count = math.prod(len(axis.names) for axis in axes)
        if count > MAX_CONFIGS:
            raise GridError(f"[axes] make {count:,} configs: allowed at most {MAX_CONFIGS:,}")
        configs = tuple(
            _product_config(i, base, axes, picks)
            for i, picks in enumerate(
                itertools.product(*(range(len(axis.names)) for axis in axes)), start=1
            )
        )
        return Grid(path, axes, configs)
    return Grid(path, (), _listed(data["configs"], base))


def _axes(raw: object) -> tuple[Axis, ...]:
    if not isinstance(raw, dict) or not raw:
        raise GridError(f"axes = {raw!r}: expected a table of dotted keys, e.g. "
                        '"protection.trail" = [false, true]')  # fmt: skip
    keys: list[tuple[str, tuple[str, ...], tuple[Any, ...]]] = []
    for key, spec in raw.items():
        where = f'axes."{key}"'
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise GridError(f"{where}: expected a dotted ratchet.toml key, e.g. protection.trail")
        if isinstance(spec, list):
            if not spec:
                raise GridError(f"{where} = []: expected at least one value")
            names = tuple(_value_name(value, f"{where}[{i}]") for i, value in enumerate(spec))
            values = tuple(spec)
        elif isinstance(spec, dict):
            if not spec:
                raise GridError(f"{where} = {{}}: expected at least one named value")
            names, values = tuple(spec), tuple(spec.values())
        else:
            raise GridError(
                f"{where} = {spec!r}: expected a list of values or a table of named values"
            )
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise GridError(f"{where}: the value {name!r} appears twice")
            seen.add(name)
        keys.append((key, names, values))
    lasts = [key.rsplit(".", 1)[1] for key, _, _ in keys]
    return tuple(
        Axis(key, last if lasts.count(last) == 1 else key, names, values)
        for (key, names, values), last in zip(keys, lasts, strict=True)
    )


def _value_name(value: object, where: str) -> str:
    """How a listed value appears in a config's name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | date | time | datetime):
        return str(value)
    raise GridError(
        f"{where} = {value!r}: a list or table value needs a name: write the axis as a table, "
        'e.g. [axes."protection.ladder"] with name = [...]'
    )


def _product_config(
    index: int, base: Mapping[str, Any], axes: tuple[Axis, ...], picks: tuple[int, ...]
) -> GridConfig:
    document = copy.deepcopy(dict(base))
    choices = tuple((axis.key, axis.names[i]) for axis, i in zip(axes, picks, strict=True))
    name = " ".join(f"{axis.label}={axis.names[i]}" for axis, i in zip(axes, picks, strict=True))
    for axis, i in zip(axes, picks, strict=True):
        _put(document, axis.key, copy.deepcopy(axis.values[i]), name)
    return GridConfig(index, name, choices, document, _validate(document, name))


def _listed(raw: object, base: Mapping[str, Any]) -> tuple[GridConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise GridError("configs: expected one or more [[configs]] tables, each with a name")
    out: list[GridConfig] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        where = f"configs[{i}]"
        if not isinstance(item, dict):
            raise GridError(f"{where} = {item!r}: expected a table")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise GridError(f"{where}: expected name = a non-empty string")
        if name in names:
            raise GridError(f"{where}: the name {name!r} is used twice")
        names.add(name)
        document = copy.deepcopy(dict(base))
        _merge(document, {k: v for k, v in item.items() if k != "name"}, name)
        out.append(GridConfig(i + 1, name, (), document, _validate(document, name)))
    return tuple(out)


def _put(document: dict[str, Any], key: str, value: object, name: str) -> None:
    *parents, last = key.split(".")
    table = document
    for depth, part in enumerate(parents):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            prefix = ".".join(parents[: depth + 1])
            raise GridError(f"config {name!r}: {prefix} is {inner!r} in [base], not a table")
        table = inner
    table[last] = value


def _merge(into: dict[str, Any], over: Mapping[str, Any], name: str, prefix: str = "") -> None:
    for key, value in over.items():
        here = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, name, f"{here}.")
        elif isinstance(value, dict) and key in into:
            raise GridError(f"config {name!r}: {here} is a table here and {into[key]!r} in [base]")
        else:
            into[key] = copy.deepcopy(value)


def _validate(document: Mapping[str, Any], name: str) -> Settings:
    try:
        return parse_settings(document, {})
    except ConfigError as exc:
        raise GridError(f"config {name!r}: {exc}") from None
