"""The SPY benchmark's workload, and the plain Decimal loop it is compared with.

Entries: a long every 10,000 ticks, stop 0.20% under the price, 100 shares, at most 100 open.
Both ratchet and the baseline read the same gzip CSV with the same parsing and apply SPEC's
ladder and partials; the baseline skips everything ratchet adds (orders, acknowledgements,
journal records, state history).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

from engine import EntryIntent, Event, Side, Tick

EVERY = 10_000
STOP_FRACTION = Decimal("0.002")
QTY = Decimal(100)
MAX_OPEN = 100
CENT = Decimal("0.01")
LADDER = [(Decimal(1), Decimal(0)), (Decimal("1.5"), Decimal("0.5")), (Decimal(2), Decimal(1)),
          (Decimal(3), Decimal("1.5")), (Decimal(4), Decimal(2))]  # fmt: skip
PARTIALS = {Decimal(2): Decimal("0.5"), Decimal(3): Decimal("0.25"), Decimal(4): None}


def stop_for(price: Decimal) -> Decimal:
    return (price - price * STOP_FRACTION).quantize(CENT, ROUND_CEILING)


def with_entries(ticks: Iterator[Event]) -> Iterator[Event]:
    """The ticks, with an entry intent after every EVERY-th one."""
    for i, tick in enumerate(ticks, start=1):
        yield tick
        if i % EVERY == 0:
            assert isinstance(tick, Tick)
            yield EntryIntent(tick.ts, tick.symbol, Side.LONG, stop_for(tick.price), QTY)


def baseline(path: Path) -> tuple[int, Decimal, int]:
    """Plain Decimal loop over the same ticks: same parsing, same entries, ladder and partials.

    Positions fill at the next tick, stops fill at the tick through them, tranches at the tick
    that reaches them. Returns (ticks, realized P&L, trades closed).
    """
    fromiso, dec = datetime.fromisoformat, Decimal
    open_: list[list[Decimal]] = []  # [entry, risk, qty_left, stop, next_level_index, original]
    levels = sorted({r for r, _ in LADDER} | set(PARTIALS))
    pending = False
    entry_mark = Decimal(0)
    pnl = Decimal(0)
    closed = 0
    n = 0
    last_text = ""
    with gzip.open(path, "rt", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        for ts_text, _symbol, price_text, size_text in rows:
            n += 1
            if ts_text != last_text:
                fromiso(ts_text)
                last_text = ts_text
            price = dec(price_text)
            dec(size_text)
            if pending:
                stop = stop_for(entry_mark)
                open_.append([price, price - stop, QTY, stop, Decimal(0), QTY])
                pending = False
            keep = []
            for pos in open_:
                entry, risk, left, stop, idx, original = pos
                if price <= stop:
                    pnl += (price - entry) * left
                    closed += 1
                    continue
                i = int(idx)
                while i < len(levels) and price >= entry + levels[i] * risk:
                    level = levels[i]
                    for at, lock in LADDER:
                        if at == level:
                            new = (entry + lock * risk).quantize(CENT, ROUND_CEILING)
                            stop = max(stop, new)
                    if level in PARTIALS:
                        fraction = PARTIALS[level]
                        sell = (
                            left
                            if fraction is None
                            else (original * fraction).quantize(Decimal(1), ROUND_FLOOR)
                        )
                        pnl += (price - entry) * sell
                        left -= sell
                    i += 1
                if left > 0:
                    pos[2], pos[3], pos[4] = left, stop, Decimal(i)
                    keep.append(pos)
                else:
                    closed += 1
            open_ = keep
            if n % EVERY == 0 and len(open_) < MAX_OPEN:
                pending, entry_mark = True, price
    return n, pnl, closed
