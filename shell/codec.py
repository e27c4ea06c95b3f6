"""JSON and CSV for events, commands and journal records: decimals as strings, ts ISO-8601 UTC."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import IO, Any

import cattrs
from cattrs.strategies import configure_tagged_union

from engine import (
    Alert,
    BreakerAck,
    BrokerSnapshot,
    CancelOrder,
    CancelRejected,
    Clock,
    Command,
    Connectivity,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PhaseAdvance,
    PhaseOverride,
    Record,
    SubmitOrder,
    Tick,
)

__all__ = [
    "EVENT_TAGS",
    "BadLine",
    "command_to_json",
    "converter",
    "event_from_json",
    "event_to_json",
    "format_ts",
    "json_lines",
    "merge_by_ts",
    "parse_ts",
    "read_events",
    "to_jsonable",
]

EVENT_TAGS: dict[type, str] = {
    Tick: "tick",
    EntryIntent: "entry",
    OrderAccepted: "order.accepted",
    OrderRejected: "order.rejected",
    OrderFilled: "order.filled",
    OrderCanceled: "order.canceled",
    CancelRejected: "cancel.rejected",
    Clock: "clock",
    PhaseAdvance: "phase.advance",
    PhaseOverride: "phase.override",
    BreakerAck: "breaker.ack",
    Connectivity: "connectivity",
    BrokerSnapshot: "broker.snapshot",
}
_TAG_TYPES = {tag: cls for cls, tag in EVENT_TAGS.items()}
CSV_HEADER = ["ts", "symbol", "price", "size"]


class BadLine(ValueError):
    """A line of an input file that cannot be read; says which file, which line and why."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def parse_ts(text: str) -> datetime:
    """An ISO-8601 timestamp with an offset, as aware UTC; a naive one is refused."""
    dt = datetime.fromisoformat(text)
    tz = dt.tzinfo
    if tz is UTC:
        return dt
    if tz is None:
        raise ValueError(f"ts {text!r} has no UTC offset")
    return dt.astimezone(UTC)


def format_ts(dt: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _structure_decimal(value: object, _: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a decimal string, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return number


def _structure_ts(value: object, _: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"ts must be an ISO-8601 string, got {value!r}")
    return parse_ts(value)


converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_unstructure_hook(Decimal, str)
converter.register_structure_hook(Decimal, _structure_decimal)
converter.register_unstructure_hook(datetime, format_ts)
converter.register_structure_hook(datetime, _structure_ts)
configure_tagged_union(Event, converter, tag_name="type", tag_generator=EVENT_TAGS.__getitem__)


def event_to_json(event: Event) -> dict[str, Any]:
    """An event as a JSON object with its `type` tag."""
    data: dict[str, Any] = converter.unstructure(event, Event)
    return data


def event_from_json(data: dict[str, Any]) -> Event:
    """An event from a JSON object; raises ValueError naming the bad key or value."""
    tag = data.get("type")
    if tag == "tick":
        return _tick_from_json(data)
    if tag not in _TAG_TYPES:
        raise ValueError(f"unknown event type {tag!r} (known: {', '.join(sorted(_TAG_TYPES))})")
    try:
        event: Event = converter.structure(data, Event)  # type: ignore[arg-type]
    except cattrs.BaseValidationError as exc:
        raise ValueError(_describe(exc)) from None
    return event


def _describe(exc: BaseException) -> str:
    reasons = cattrs.transform_error(exc)
    return "; ".join(reasons) if reasons else str(exc)


def _tick_from_json(data: dict[str, Any]) -> Tick:
    extra = set(data) - {"type", "ts", "symbol", "price", "size"}
    if extra:
        raise ValueError(f"unknown key(s) for a tick: {', '.join(sorted(extra))}")
    try:
        ts, symbol, price = data["ts"], data["symbol"], data["price"]
    except KeyError as exc:
        raise ValueError(f"tick is missing {exc.args[0]!r}") from None
    return make_tick(ts, symbol, price, data.get("size", "0"))


def make_tick(ts: object, symbol: object, price: object, size: object) -> Tick:
    """A validated tick from raw field values."""
    if not isinstance(symbol, str) or not symbol:
        raise ValueError(f"symbol must be a non-empty string, got {symbol!r}")
    if not isinstance(ts, str):
        raise ValueError(f"ts must be a string, got {ts!r}")
    p = _structure_decimal(price, None)
    if p <= 0:
        raise ValueError(f"price must be > 0, got {price!r}")
    s = _structure_decimal(size, None) if size != "0" else _ZERO_SIZE
    if s < 0:
        raise ValueError(f"size must be >= 0, got {size!r}")
    return Tick(parse_ts(ts), symbol, p, s)


_ZERO_SIZE = Decimal(0)


def to_jsonable(value: object) -> object:
    """Decimals as strings, times as ISO-8601 UTC, enums as their values, recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def command_to_json(command: Command) -> dict[str, Any]:
    """A journal line: records and alerts by `kind`, order commands by `command`."""
    if isinstance(command, Record):
        out: dict[str, Any] = {"kind": command.kind, "ts": format_ts(command.ts)}
        out.update({k: to_jsonable(v) for k, v in command.data.items()})
        return out
    if isinstance(command, Alert):
        return {
            "kind": "alert",
            "ts": format_ts(command.ts),
            "reason": command.reason,
            "context": to_jsonable(dict(command.context)),
        }
    name = "submit_order" if isinstance(command, SubmitOrder) else "cancel_order"
    assert isinstance(command, SubmitOrder | CancelOrder)
    body = converter.unstructure(command)
    return {"command": name, **{k: to_jsonable(v) for k, v in body.items() if v is not None}}


# --- reading event files -----------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def read_events(
    path: Path, *, skip_bad: bool = False, bad: list[BadLine] | None = None
) -> Iterator[Event]:
    """Stream the events of a JSONL file or a CSV tick file (`ts,symbol,price,size`).

    A malformed line raises BadLine, or with `skip_bad` is appended to `bad` and skipped.
    Events must not go back in time.
    """
    name = path.name.removesuffix(".gz")
    reader = _read_csv if name.endswith(".csv") else _read_jsonl
    return reader(path, skip_bad, bad if bad is not None else [])


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | ValueError]]:
    """(line number, object) for each non-blank JSON Lines line, or the ValueError saying why
    the line is not one JSON object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            yield number, exc
            continue
        if isinstance(data, dict):
            yield number, data
        else:
            yield number, ValueError("a line must be one JSON object")


def _read_jsonl(path: Path, skip_bad: bool, bad: list[BadLine]) -> Iterator[Event]:
    last: datetime | None = None
    with _open_text(path) as fh:
        for number, data in json_lines(fh):
            try:
                if isinstance(data, ValueError):
                    raise data
                event = event_from_json(data)
                if last is not None and event.ts < last:
                    raise ValueError(f"ts {format_ts(event.ts)} goes back in time")
            except ValueError as exc:
                problem = BadLine(str(path), number, str(exc))
                if not skip_bad:
                    raise problem from None
                bad.append(problem)
                continue
            last = event.ts
            yield event


def _blocks(path: Path, size: int = 1 << 16) -> Iterator[list[str]]:
    """The lines of a (gzip) text file, a block at a time (split on newlines; tick CSV fields
    never hold one). Faster than iterating a GzipFile line by line."""
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if path.suffix == ".gz" else None
    tail = ""
    with path.open("rb") as fh:
        while raw := fh.read(size):
            data = unzip.decompress(raw) if unzip is not None else raw
            lines = (tail + data.decode("utf-8")).split("\n")
            tail = lines.pop()
            yield lines
        if unzip is not None:
            rest = unzip.flush()
            if rest:
                lines = (tail + rest.decode("utf-8")).split("\n")
                tail = lines.pop()
                yield lines
    if tail:
        yield [tail]


def _read_csv(path: Path, skip_bad: bool, bad: list[BadLine]) -> Iterator[Event]:
    fromiso, dec, new, set_ = datetime.fromisoformat, Decimal, object.__new__, _set
    last_text, last_ts = "", datetime.min.replace(tzinfo=UTC)
    prices: dict[str, Decimal] = {}
    sizes: dict[str, Decimal] = {}
    symbols: dict[str, str] = {}
    base = 0  # lines before the current block
    header_seen = False
    for lines in _blocks(path):
        rows = csv.reader(lines)
        if not header_seen:
            header = next(rows, None)
            if header != CSV_HEADER:
                raise BadLine(
                    str(path), 1, f"expected the header {','.join(CSV_HEADER)}, got {header}"
                )
            header_seen = True
        for row in rows:
            try:
                ts_text, symbol, price_text, size_text = row
                # Hot path: one tick per row; the timestamp parse is reused for equal ts.
                if ts_text != last_text:
                    ts = fromiso(ts_text)
                    if ts.tzinfo is not UTC:
                        ts = parse_ts(ts_text)
                    if ts < last_ts:
                        raise ValueError(f"ts {ts_text} goes back in time")
                    last_text, last_ts = ts_text, ts
                # Prices sit on a grid and sizes repeat: reuse validated Decimals (immutable).
                price = prices.get(price_text)
                if price is None:
                    price = dec(price_text)
                    if not 0 < price < _INFINITY:
                        raise ValueError(f"price must be > 0, got {price_text!r}")
                    if len(prices) >= _CACHE:
                        prices.clear()
                    prices[price_text] = price
                size = sizes.get(size_text)
                if size is None:
                    size = dec(size_text)
                    if not 0 <= size < _INFINITY:
                        raise ValueError(f"size must be >= 0, got {size_text!r}")
                    if len(sizes) >= _CACHE:
                        sizes.clear()
                    sizes[size_text] = size
                symbol = symbols.get(symbol) or _new_symbol(symbols, symbol)
            except (ValueError, InvalidOperation) as exc:
                if not row:
                    continue  # a blank line
                reason = str(exc)
                if len(row) != 4:
                    reason = f"expected 4 fields (ts,symbol,price,size), got {len(row)}"
                elif isinstance(exc, InvalidOperation) or not reason:
                    reason = f"not a decimal in {row!r}"
                problem = BadLine(str(path), base + rows.line_num, reason)
                if not skip_bad:
                    raise problem from None
                bad.append(problem)
                continue
            # Tick(ts, symbol, price, size) without the frozen-attrs __init__, which costs twice
            # as much on this hot path; the values are validated above.
            tick = new(Tick)
            set_(tick, "ts", ts)
            set_(tick, "symbol", symbol)
            set_(tick, "price", price)
            set_(tick, "size", size)
            yield tick
        base += rows.line_num


_INFINITY = Decimal("Infinity")
_CACHE = 1 << 16


def _new_symbol(symbols: dict[str, str], symbol: str) -> str:
    """Intern a symbol (one string object, hashed once, for every tick of it)."""
    if not symbol:
        raise ValueError("symbol is empty")
    if len(symbols) >= _CACHE:
        symbols.clear()
    symbols[symbol] = symbol
    return symbol


_set = object.__setattr__


def merge_by_ts(ticks: Iterable[Event], entries: Iterable[Event]) -> Iterator[Event]:
    """Merge two time-ordered streams; on equal ts the tick comes first."""
    pending = iter(entries)
    nxt = next(pending, None)
    for event in ticks:
        while nxt is not None and nxt.ts < event.ts:
            yield nxt
            nxt = next(pending, None)
        yield event
    while nxt is not None:
        yield nxt
        nxt = next(pending, None)
