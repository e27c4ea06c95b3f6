"""The engine's whole state as JSON and back, exactly: decimals as strings, times ISO-8601 with
their offset, durations in microseconds, maps as objects with sorted keys, enums by value.
What `snapshot.json` and the live journal's checkpoints hold."""

from __future__ import annotations

import typing
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import cattrs
from immutables import Map

from engine import EngineState

__all__ = ["state_from_json", "state_to_json"]

_converter = cattrs.Converter()
_converter.register_unstructure_hook(Decimal, str)
_converter.register_structure_hook(Decimal, lambda v, _: Decimal(v))
_converter.register_unstructure_hook(datetime, datetime.isoformat)
_converter.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(v))
_converter.register_unstructure_hook(date, date.isoformat)
_converter.register_structure_hook(date, lambda v, _: date.fromisoformat(v))
_converter.register_unstructure_hook(time, time.isoformat)
_converter.register_structure_hook(time, lambda v, _: time.fromisoformat(v))
_converter.register_unstructure_hook(timedelta, lambda d: d // timedelta(microseconds=1))
_converter.register_structure_hook(timedelta, lambda v, _: timedelta(microseconds=v))
_converter.register_unstructure_hook(tzinfo, lambda z: getattr(z, "key", None) or "UTC")
_converter.register_structure_hook(tzinfo, lambda v, _: UTC if v == "UTC" else ZoneInfo(v))


def _is_map(kind: Any) -> bool:
    return kind is Map or typing.get_origin(kind) is Map


def _map_out(value: Map[Any, Any]) -> dict[str, Any]:
    return {str(k): _converter.unstructure(v) for k, v in sorted(value.items())}


def _map_in(value: dict[str, Any], kind: Any) -> Map[Any, Any]:
    key_type, value_type = typing.get_args(kind)
    return Map(
        {_converter.structure(k, key_type): _converter.structure(v, value_type)
         for k, v in value.items()}
    )  # fmt: skip


_converter.register_unstructure_hook_func(_is_map, _map_out)
_converter.register_structure_hook_func(_is_map, _map_in)
_FIELDS = typing.get_type_hints(EngineState)


def state_to_json(state: EngineState) -> dict[str, Any]:
    """The state as plain JSON values (the same state gives the same object, key order
    included)."""
    return {name: _converter.unstructure(getattr(state, name), _FIELDS[name])
            for name in EngineState._fields}  # fmt: skip


def state_from_json(data: dict[str, Any]) -> EngineState:
    """The state back from `state_to_json`; raises ValueError saying what does not fit."""
    missing = [name for name in EngineState._fields if name not in data]
    if missing:
        raise ValueError(f"not an engine state: no {', '.join(missing)}")
    try:
        values = {name: _converter.structure(data[name], _FIELDS[name])
                  for name in EngineState._fields}  # fmt: skip
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not an engine state: {type(exc).__name__}: {exc}") from None
    return EngineState(**values)
