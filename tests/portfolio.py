"""A scripted session with several positions open at once, for the metrics tests and benchmark:
five symbols whose positions open at different times and walk different paths of R — one
stays open in profit, one stays open near its entry, one is stopped out at breakeven, one at
its initial stop, one runs to its final milestone — so that positions close while others
are still open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine import EntryIntent, Event, Side, Tick

__all__ = ["START", "STAYS_OPEN", "events"]

START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")
# symbol: (side, entry, risk per share, qty, second it opens, path of R, each held two ticks)
PLANS: dict[str, tuple[Side, str, str, int, int, tuple[float, ...]]] = {
    "AAA": (Side.LONG, "100.00", "1.00", 100, 0,
            (0, 0.5, 1.1, 1.6, 2.2, 2.0, 2.6, 3.1, 2.9, 3.3, 3.2, 3.4, 3.3, 3.5, 3.4, 3.6)),
    "BBB": (Side.SHORT, "50.00", "0.50", 200, 3,
            (0, 0.4, 1.2, 0.8, 0.3, -0.3, -0.6)),
    "CCC": (Side.LONG, "20.00", "0.40", 150, 6,
            (0, -0.5, -0.8, -1.2)),
    "DDD": (Side.LONG, "10.00", "0.20", 300, 9,
            (0.3, 1.0, 1.5, 2.1, 2.4, 3.0, 3.5, 4.2, 4.6, 5.2, 5.6, 5.4)),
    "EEE": (Side.SHORT, "30.00", "0.60", 80, 12,
            (0, 0.2, -0.3, 0.5, 0.1, 0.4, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1)),
}  # fmt: skip
STAYS_OPEN = ("AAA", "EEE")  # open when the events end


def events() -> list[Event]:
    """The session's ticks and entry intents, in time order (ticks of one instant by symbol)."""
    out: list[tuple[datetime, int, Event]] = []
    for n, (symbol, (side, entry_s, risk_s, qty, start, path)) in enumerate(PLANS.items()):
        entry, risk = Decimal(entry_s), Decimal(risk_s)
        opens = START + timedelta(seconds=start)
        out.append((opens, n, Tick(opens, symbol, entry, Decimal(100))))
        stop = entry - risk * side.sign
        intent = EntryIntent(opens + timedelta(milliseconds=500), symbol, side, stop, Decimal(qty))
        out.append((intent.ts, n, intent))
        for i, r in enumerate(x for x in path for _ in range(2)):
            ts = opens + timedelta(seconds=1 + i)
            price = (entry + Decimal(str(r)) * risk * side.sign).quantize(CENT)
            out.append((ts, n, Tick(ts, symbol, price, Decimal(100))))
    out.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in out]
