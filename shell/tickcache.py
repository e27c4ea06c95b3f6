"""A columnar copy of a CSV tick file (Arrow IPC), written once and memory-mapped by every run.

The copy is made from the ticks `shell.codec.read_events` yields (so it holds exactly what the
CSV reader validated, and a bad line is refused the same way) and read back as equal `Tick`s:
the time as microseconds since the epoch (UTC), the symbol, price and size as dictionaries of
their exact texts (`Decimal("1.50")` stays `1.50`). Each file is named by the CSV's SHA-256 and
size, so an edited CSV gets a new copy and an unchanged one is never read twice. Reading skips
the gzip inflate and the CSV parse, and a run limited to one symbol reads only its rows.

pyarrow is an optional dependency (the `ray` extra brings it): without it there is no copy.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine import Tick
from shell.codec import read_events

__all__ = ["CacheError", "available", "ensure", "is_csv", "read_ticks"]

_FORMAT = b"ratchet-ticks-1"
_BATCH = 1 << 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = ("ts", "symbol", "price", "size")


class CacheError(RuntimeError):
    """The columnar copy cannot be made or read."""


def available() -> bool:
    """True when pyarrow can be imported."""
    try:
        import pyarrow  # noqa: F401, PLC0415 (optional)
    except ImportError:
        return False
    return True


def is_csv(path: Path) -> bool:
    """A CSV tick file (`.csv` or `.csv.gz`), the kind the copy is for."""
    return path.name.removesuffix(".gz").endswith(".csv")


def ensure(path: Path, sha256: str, directory: Path) -> Path | None:
    """The copy of the CSV tick file `path` in `directory`, made now if missing (None for a
    file that is not CSV). `sha256` is the CSV's digest: it names the copy."""
    if not is_csv(path):
        return None
    pa, ipc = _arrow()
    size = path.stat().st_size
    target = directory / f"{sha256[:32]}-{size}.arrow"
    if _valid(target, sha256):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    times: array[int] = array("q")
    columns: dict[str, array[int]] = {name: array("i") for name in _COLUMNS[1:]}
    texts: dict[str, dict[str, int]] = {name: {} for name in _COLUMNS[1:]}
    # The CSV reader hands out one object per distinct text, so most values are coded by
    # identity; a memo keeps each object alive, so its id is never reused for another.
    memos: dict[str, dict[int, tuple[object, int]]] = {name: {} for name in _COLUMNS[1:]}

    def code(name: str, value: object) -> int:
        table = texts[name]
        text = str(value)
        number = table.get(text)
        if number is None:
            number = table[text] = len(table)
        memos[name][id(value)] = (value, number)
        return number

    last_ts: datetime | None = None
    last_us = 0
    add_time = times.append
    add_symbol, add_price, add_size = (columns[n].append for n in _COLUMNS[1:])
    symbols, prices, sizes = (memos[n] for n in _COLUMNS[1:])
    for event in read_events(path):
        assert type(event) is Tick  # the CSV reader yields nothing else
        if event.ts is not last_ts:
            delta = event.ts - _EPOCH
            last_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            last_ts = event.ts
        add_time(last_us)
        hit = symbols.get(id(event.symbol))
        add_symbol(hit[1] if hit is not None else code("symbol", event.symbol))
        hit = prices.get(id(event.price))
        add_price(hit[1] if hit is not None else code("price", event.price))
        hit = sizes.get(id(event.size))
        add_size(hit[1] if hit is not None else code("size", event.size))
    n = len(times)
    arrays = [pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(times)])]
    for name in _COLUMNS[1:]:
        indices = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(columns[name])])
        arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(list(texts[name]))))
    schema = pa.schema(
        [pa.field(name, array.type) for name, array in zip(_COLUMNS, arrays, strict=True)],
        metadata={b"format": _FORMAT, b"sha256": sha256.encode(), b"source": path.name.encode()},
    )
    table = pa.Table.from_arrays(arrays, schema=schema)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
            for batch in table.to_batches(max_chunksize=_BATCH):
                writer.write_batch(batch)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _valid(path: Path, sha256: str) -> bool:
    if not path.exists():
        return False
    pa, ipc = _arrow()
    try:
        with pa.memory_map(str(path)) as source:
            metadata = ipc.open_file(source).schema.metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    return bool(metadata.get(b"format") == _FORMAT and metadata.get(b"sha256") == sha256.encode())


def read_ticks(path: Path, symbol: str | None = None) -> Iterator[Tick]:
    """The ticks of a copy, in file order, equal to what the CSV reader yields; with `symbol`
    only that symbol's (filtered in Arrow, before any Python object is made)."""
    pa, ipc = _arrow()
    import pyarrow.compute as pc  # noqa: PLC0415 (optional)

    new, set_, delta = object.__new__, object.__setattr__, timedelta
    try:
        source = pa.memory_map(str(path))
        reader = ipc.open_file(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CacheError(f"{path}: cannot read the tick copy: {exc}") from None
    with source:
        if reader.num_record_batches == 0:
            return
        first = reader.get_batch(0)
        symbols: list[str] = first.column(1).dictionary.to_pylist()
        prices = [Decimal(t) for t in first.column(2).dictionary.to_pylist()]
        sizes = [Decimal(t) for t in first.column(3).dictionary.to_pylist()]
        code = None
        if symbol is not None:
            if symbol not in symbols:
                return
            code = pa.scalar(symbols.index(symbol), pa.int32())
        last_us: int | None = None
        ts = _EPOCH
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            if code is not None:
                batch = batch.filter(pc.equal(batch.column(1).indices, code))
            rows = zip(
                batch.column(0).to_pylist(),
                map(symbols.__getitem__, batch.column(1).indices.to_pylist()),
                map(prices.__getitem__, batch.column(2).indices.to_pylist()),
                map(sizes.__getitem__, batch.column(3).indices.to_pylist()),
                strict=True,
            )
            for us, sym, price, size in rows:
                if us != last_us:
                    ts, last_us = _EPOCH + delta(microseconds=us), us
                # As in the CSV reader: Tick without the frozen-attrs __init__ on the hot path.
                tick = new(Tick)
                set_(tick, "ts", ts)
                set_(tick, "symbol", sym)
                set_(tick, "price", price)
                set_(tick, "size", size)
                yield tick


def _arrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa  # noqa: PLC0415 (optional)
        from pyarrow import ipc  # noqa: PLC0415
    except ImportError:
        raise CacheError("the tick cache needs pyarrow: pip install 'ratchet[ray]'") from None
    return pa, ipc
