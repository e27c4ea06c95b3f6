"""Journal records as table rows: which record kind goes to which table, with which columns.

A row is keyed by where its record stands in the journal — (source, line): the journal file's
absolute path and the record's 1-based line number — so writing the same record again, live
or from a backfill, changes nothing. Decimals stay exact (NUMERIC), times are timestamptz.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from attrs import frozen

from shell.codec import BadLine, parse_ts

__all__ = [
    "KIND_TABLE",
    "TABLES",
    "Row",
    "Table",
    "journal_source",
    "read_rows",
    "row_of",
]


@frozen
class Table:
    """A table of the store: its name, the record kind it holds, its columns (name, type)."""

    name: str
    kind: str
    columns: tuple[tuple[str, str], ...]


_KEY = ("source text", "line bigint", "ts timestamptz")
_WHO = ("symbol text", "key text")


def _table(name: str, kind: str, *columns: str) -> Table:
    pairs = (column.split() for column in (*_KEY, *columns))
    return Table(name, kind, tuple((n, t) for n, t in pairs))


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        _table("position_states", "position.state",
               *_WHO, "old_state text", "new_state text", "reason text", "r numeric"),
        _table("partial_profits", "partial.filled",
               *_WHO, "milestone numeric", "qty numeric", "price numeric", "r numeric",
               "profit numeric"),
        _table("stop_loss_history", "stop.moved",
               *_WHO, "old_stop numeric", "new_stop numeric", "r numeric", "reason text"),
        _table("trades", "trade.closed",
               *_WHO, "side text", "qty numeric", "entry_price numeric", "exit_price numeric",
               "opened timestamptz", "closed timestamptz", "pnl numeric", "r numeric",
               "risk numeric", "risk_per_share numeric", "reason text"),
        _table("alerts", "alert", "reason text", *_WHO, "context jsonb"),
    )
}  # fmt: skip
KIND_TABLE = {t.kind: t.name for t in TABLES.values()}

Row = tuple[object, ...]


def journal_source(path: str | os.PathLike[str]) -> str:
    """How the store names a journal: its absolute path with symlinks resolved, so a record
    written live and the same record backfilled later have the same key."""
    return os.path.realpath(path)


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _number(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{name} must be a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} is not a decimal: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} is not a finite decimal: {value!r}")
    return number


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO-8601 string, got {value!r}")
    return parse_ts(value)


def row_of(data: Mapping[str, Any], source: str, line: int) -> tuple[str, Row] | None:
    """(table, row) for a journal record as JSON (`command_to_json`'s shape); None for a line
    the store does not keep (other kinds, events, order commands). ValueError names a bad
    field."""
    table = KIND_TABLE.get(data.get("kind"))  # type: ignore[arg-type]
    if table is None:
        return None
    ts = _time(data, "ts")
    if ts is None:
        raise ValueError("ts is missing")
    head: Row = (source, line, ts)
    if table == "alerts":
        context = data.get("context", {})
        if not isinstance(context, dict):
            raise ValueError(f"context must be an object, got {context!r}")
        reason = _text(data, "reason")
        if reason is None:
            raise ValueError("reason is missing")
        return table, (*head, reason, _text(context, "symbol"), _text(context, "key"), context)
    who = (_text(data, "symbol"), _text(data, "key"))
    t, n = _text, _number
    match table:
        case "position_states":
            rest: Row = (t(data, "old"), t(data, "new"), t(data, "reason"), n(data, "r"))
        case "partial_profits":
            rest = (n(data, "milestone"), n(data, "qty"), n(data, "price"), n(data, "r"),
                    n(data, "profit"))  # fmt: skip
        case "stop_loss_history":
            rest = (n(data, "old"), n(data, "new"), n(data, "r"), t(data, "reason"))
        case _:  # trades
            rest = (t(data, "side"), n(data, "qty"), n(data, "entry"), n(data, "exit"),
                    _time(data, "opened"), _time(data, "closed"), n(data, "pnl"), n(data, "r"),
                    n(data, "risk"), n(data, "risk_per_share"), t(data, "reason"))  # fmt: skip
    return table, (*head, *who, *rest)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_rows(
    path: Path,
    source: str,
    first: int = 1,
    bad: list[BadLine] | None = None,
    *,
    growing: bool = False,
) -> Iterator[tuple[str, Row]]:
    """The rows of a journal file from line `first` on. In a `growing` journal (one a live loop
    still appends to) a last line without its newline is left for later. A line that is not a
    valid record is appended to `bad` (or raised as BadLine when `bad` is None)."""
    with _open(path) as fh:
        for number, text in enumerate(fh, start=1):
            if number < first or not text.strip():
                continue
            if growing and not text.endswith("\n"):
                return
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError("a line must be one JSON object")
                found = row_of(data, source, number)
            except ValueError as exc:
                problem = BadLine(str(path), number, str(exc))
                if bad is None:
                    raise problem from None
                bad.append(problem)
                continue
            if found is not None:
                yield found
