"""JSON and CSV for events, commands and journal records: decimals as strings, ts ISO-8601 UTC."""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any

import cattrs
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception

from engine import (
    Alert,
    BreakerAck,
    BrokerSnapshot,
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
    RequestSnapshot,
    SubmitOrder,
    Tick,
)
from shell.errors import BadFile, UserError, one_line

__all__ = [
    "CSV_HEADER",
    "EARLIEST",
    "EVENT_TAGS",
    "LARGEST",
    "LATEST",
    "BadFile",
    "BadLine",
    "Unreadable",
    "command_to_json",
    "converter",
    "event_from_json",
    "event_to_json",
    "format_ts",
    "json_lines",
    "make_tick",
    "merge_by_ts",
    "parse_ts",
    "read_events",
    "read_json_lines",
    "text_blocks",
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


class BadLine(UserError, ValueError):
    """A line of an input file that cannot be read; says which file, which line and why."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        reason = one_line(reason)
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


# Times an input may carry: far enough out for any market data, near enough that the engine's
# own arithmetic on them (deadlines, sessions in a time zone) stays inside what datetime holds.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# The largest magnitude of a price, quantity or amount read from a file (a share count or a
# price beyond a trillion is a typo, and the engine's 28 digits must hold their products).
LARGEST = Decimal("1e12")


def parse_ts(text: str) -> datetime:
    """An ISO-8601 timestamp with an offset, as aware UTC; a naive one is refused, and so is one
    outside the years 1900 to 2999."""
    try:
        dt = datetime.fromisoformat(text)
        tz = dt.tzinfo
        if tz is None:
            raise ValueError(f"ts {text!r} has no UTC offset")
        if tz is not UTC:
            dt = dt.astimezone(UTC)
    except OverflowError:
        dt = None
    except TypeError:  # not a string
        raise ValueError(f"ts must be an ISO-8601 string, got {text!r}") from None
    if dt is None or not EARLIEST <= dt <= LATEST:
        raise ValueError(f"ts {text!r} is out of range: allowed the years 1900 to 2999")
    return dt


def format_ts(dt: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _structure_decimal(value: object, _: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a decimal string, got {_clip(value)}")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):  # ValueError: an int too long to convert
        raise ValueError(f"not a decimal: {_clip(value)}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {_clip(value)}")
    if abs(number) > LARGEST:
        raise ValueError(f"{_clip(value)} is out of range: allowed at most 1e12")
    return number


def _clip(value: object) -> str:
    """A value as the user wrote it, for a message (cut when long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


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
    reasons = [_field_first(r) for r in cattrs.transform_error(exc, format_exception=_say)]
    return "; ".join(reasons) if reasons else str(exc)


def _field_first(reason: str) -> str:
    """cattrs' `why @ $.field` as `field: why`."""
    why, at, where = reason.rpartition(" @ $")
    return f"{where.lstrip('.')}: {why}" if at and where else reason


def _say(exc: BaseException, kind: type | None) -> str:
    """cattrs' wording, except that our own hooks' reasons are kept (they name the value)."""
    if type(exc) is ValueError and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return format_exception(exc, kind)


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
    if isinstance(command, RequestSnapshot):
        name = "request_snapshot"
    else:
        name = "submit_order" if isinstance(command, SubmitOrder) else "cancel_order"
    body = converter.unstructure(command)
    if body.get("extended_hours") is False:
        del body["extended_hours"]  # only an extended-hours limit says so: older lines stay
    return {"command": name, **{k: to_jsonable(v) for k, v in body.items() if v is not None}}


# --- reading files: bytes, gzip, UTF-8 line by line ---------------------------------------

_BLOCK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_LONGEST_LINE = 1 << 20  # bytes; a longer "line" is a bad line, not a reason to hold a GB


class Unreadable:
    """A line that could not be decoded (or is absurdly long): a bad line, with its reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _chunks(path: Path) -> Iterator[bytes]:
    """The bytes of `path`, gunzipped when its name ends in `.gz`.

    A `.gz` file that is not gzip, is corrupt or ends before its gzip trailer (cut short) is
    refused whole: BadFile is raised where the damage is found, at the latest at the end of the
    stream, before a cut last line could be handed out as a line; the command it stops reports
    nothing from the file (no summary, no journal).
    """
    with path.open("rb") as fh:
        if path.suffix != ".gz":
            while chunk := fh.read(_BLOCK):
                yield chunk
            return
        magic = fh.read(2)
        if magic != _GZIP_MAGIC:
            what = "empty" if not magic else f"starts with {magic!r}"
            raise BadFile(path, f"not gzip ({what}; a .gz file must be gzip-compressed)")
        fh.seek(0)
        unzip = gzip.GzipFile(fileobj=fh, mode="rb")
        try:
            while chunk := unzip.read1(_BLOCK):
                yield chunk
        except EOFError:
            raise BadFile(path, "cut short: the gzip stream ends early (truncated file)") from None
        except gzip.BadGzipFile as exc:
            raise BadFile(path, f"corrupt gzip file ({exc})") from None
        except zlib.error as exc:
            raise BadFile(path, f"corrupt gzip data ({exc})") from None


def text_blocks(path: Path) -> Iterator[list[str] | Unreadable]:
    """The lines of a (gzip) UTF-8 text file, a block of decoded lines at a time, split on
    `\n` only (the newline is dropped). A line that is not UTF-8 comes alone, as Unreadable.

    Lines are cut from the bytes before they are decoded, so a multi-byte character is never
    split between blocks; a UTF-8 byte-order mark at the start is dropped.
    """
    tail = b""
    start = True
    skipping = False  # inside an overlong line: its bytes are dropped up to its newline
    for chunk in _chunks(path):
        data = tail + chunk if tail else chunk
        tail = b""
        if start:
            if len(data) < len(_BOM) and _BOM.startswith(data):
                tail = data  # maybe the start of a byte-order mark
                continue
            start = False
            data = data.removeprefix(_BOM)
        if skipping:
            newline = data.find(b"\n")
            if newline < 0:
                continue
            skipping = False
            yield Unreadable(f"longer than {_LONGEST_LINE:,} bytes")
            data = data[newline + 1 :]
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
        else:
            tail = data[cut + 1 :]
            yield from _decoded(data[:cut])
        if len(tail) > _LONGEST_LINE:
            skipping, tail = True, b""
    if skipping:
        yield Unreadable(f"longer than {_LONGEST_LINE:,} bytes")
    elif tail:
        yield from _decoded(tail)


def _decoded(data: bytes) -> Iterator[list[str] | Unreadable]:
    """Complete lines (no final newline) decoded: all at once, else one by one."""
    try:
        yield data.decode("utf-8").split("\n")
        return
    except UnicodeDecodeError:
        pass
    run: list[str] = []
    for raw in data.split(b"\n"):
        try:
            run.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            if run:
                yield run
                run = []
            yield Unreadable(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
    if run:
        yield run


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | ValueError]]:
    """(line number, object) for each non-blank line of a JSON Lines file (gzip when named
    `.gz`), or the ValueError saying why the line is not one JSON object (not UTF-8 included).
    A `.gz` that is not gzip or is cut short raises BadFile."""
    number = 0
    for block in text_blocks(path):
        if isinstance(block, Unreadable):
            number += 1
            yield number, ValueError(block.reason)
            continue
        for item_number, item in json_lines(block):
            yield number + item_number, item
        number += len(block)


def read_events(
    path: Path, *, skip_bad: bool = False, bad: list[BadLine] | None = None
) -> Iterator[Event]:
    """Stream the events of a JSONL file or a CSV tick file (`ts,symbol,price,size`), either
    gzip-compressed when named `.gz`.

    A malformed line (not UTF-8 included) raises BadLine, or with `skip_bad` is appended to
    `bad` and skipped. A file that cannot be read as a whole (a `.gz` that is not gzip or is
    cut short, a CSV without its header) raises BadFile whatever `skip_bad` says.
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
        except RecursionError:
            yield number, ValueError("JSON nested too deeply")
            continue
        if isinstance(data, dict):
            yield number, data
        else:
            yield number, ValueError("a line must be one JSON object")


def _read_jsonl(path: Path, skip_bad: bool, bad: list[BadLine]) -> Iterator[Event]:
    last: datetime | None = None
    for number, data in read_json_lines(path):
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


def _read_csv(path: Path, skip_bad: bool, bad: list[BadLine]) -> Iterator[Event]:
    fromiso, dec, new, set_ = datetime.fromisoformat, Decimal, object.__new__, _set
    last_text, last_ts, latest = "", EARLIEST, LATEST
    prices: dict[str, Decimal] = {}
    sizes: dict[str, Decimal] = {}
    symbols: dict[str, str] = {}
    base = 0  # lines before the current block
    header_seen = False

    def refuse(line: int, reason: str) -> None:
        problem = BadLine(str(path), line, reason)
        if not skip_bad:
            raise problem from None
        bad.append(problem)

    for lines in text_blocks(path):
        if isinstance(lines, Unreadable):
            if not header_seen:
                raise BadFile(
                    path, f"expected the header {','.join(CSV_HEADER)}: {lines.reason}", 1
                )
            base += 1
            refuse(base, lines.reason)
            continue
        # A quote may open a field that runs on into later lines: blocks with a quote are read
        # line by line (strictly), so a broken row never swallows the lines after it.
        rows: Any = _LineRows(lines) if '"' in "\n".join(lines) else csv.reader(lines)
        if not header_seen:
            try:
                header = next(rows, None)
            except csv.Error as exc:
                header = [f"unreadable ({exc})"]
            if header != CSV_HEADER:
                shown = ",".join(header or [])
                raise BadFile(
                    path, f"expected the header {','.join(CSV_HEADER)}, got {_clip(shown)}", 1
                )
            header_seen = True
        while True:
            try:
                for row in rows:
                    try:
                        ts_text, symbol, price_text, size_text = row
                        # Hot path: one tick per row; the timestamp parse is reused for equal ts.
                        if ts_text != last_text:
                            ts = fromiso(ts_text)
                            if ts.tzinfo is not UTC:
                                ts = parse_ts(ts_text)
                            if ts < last_ts:
                                if ts < EARLIEST:
                                    parse_ts(ts_text)  # says what is allowed
                                raise ValueError(f"ts {ts_text} goes back in time")
                            if ts > latest:
                                parse_ts(ts_text)
                            last_text, last_ts = ts_text, ts
                        # Prices sit on a grid and sizes repeat: reuse validated Decimals.
                        price = prices.get(price_text)
                        if price is None:
                            price = dec(price_text)
                            if not 0 < price <= LARGEST:
                                raise ValueError(
                                    f"price must be > 0 and at most 1e12, got {_clip(price_text)}"
                                )
                            if len(prices) >= _CACHE:
                                prices.clear()
                            prices[price_text] = price
                        size = sizes.get(size_text)
                        if size is None:
                            size = dec(size_text)
                            if not 0 <= size <= LARGEST:
                                raise ValueError(
                                    f"size must be >= 0 and at most 1e12, got {_clip(size_text)}"
                                )
                            if len(sizes) >= _CACHE:
                                sizes.clear()
                            sizes[size_text] = size
                        symbol = symbols.get(symbol) or _new_symbol(symbols, symbol)
                    except (ValueError, InvalidOperation, OverflowError) as exc:
                        number = base + rows.line_num
                        if not row:
                            continue  # a blank line
                        reason = str(exc)
                        if len(row) != 4:
                            reason = f"expected 4 fields (ts,symbol,price,size), got {len(row)}"
                        elif isinstance(exc, InvalidOperation) or not reason:
                            reason = f"not a decimal in {_clip(row)}"
                        refuse(number, reason)
                        continue
                    # Tick(ts, symbol, price, size) without the frozen-attrs __init__, which
                    # costs twice as much on this hot path; the values are validated above.
                    tick = new(Tick)
                    set_(tick, "ts", ts)
                    set_(tick, "symbol", symbol)
                    set_(tick, "price", price)
                    set_(tick, "size", size)
                    yield tick
                break
            except csv.Error as exc:  # e.g. a field over csv's size limit: that line is bad
                refuse(base + rows.line_num, f"not a CSV row ({exc})")
        base += rows.line_num
    if not header_seen:
        raise BadFile(path, f"empty: expected the header {','.join(CSV_HEADER)}", 1)


_CACHE = 1 << 16


class _LineRows:
    """csv.reader's interface over lines parsed one at a time and strictly: an unbalanced
    quote raises csv.Error for its own line (the reader then goes on with the next)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.line_num = 0

    def __iter__(self) -> _LineRows:
        return self

    def __next__(self) -> list[str]:
        if self.line_num >= len(self.lines):
            raise StopIteration
        line = self.lines[self.line_num]
        self.line_num += 1
        return next(csv.reader([line], strict=True), [])


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
