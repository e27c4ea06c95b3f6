"""Hypothesis strategies: configurations and generated trading histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from attrs import frozen
from hypothesis import strategies as st

from engine import Config, EntryIntent, Event, ProtectionConfig, Side, Tick

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")

# R values (in hundredths) that sit on or right beside a threshold of the ladder or partials.
_EDGES = [99, 100, 101, 149, 150, 151, 199, 200, 201, 299, 300, 301, 399, 400, 401, 450]


@frozen
class History:
    """Events for one position's life in one symbol, with the entry the scenario aimed at."""

    symbol: str
    side: Side
    entry: Decimal
    stop: Decimal
    qty: Decimal
    events: tuple[Event, ...]


def configs() -> st.SearchStrategy[Config]:
    """SPEC's ladder and partials, with and without take-profit and continuous trailing."""
    return st.builds(
        lambda tp, trail: Config(ProtectionConfig(take_profit=tp, trail=trail)),
        st.booleans(),
        st.booleans(),
    )


def r_paths(max_size: int = 40) -> st.SearchStrategy[list[int]]:
    """Paths of R in hundredths: random walks, jumps through several levels, exact edges."""
    point = st.one_of(st.integers(-250, 650), st.sampled_from(_EDGES))
    return st.lists(point, min_size=1, max_size=max_size)


@st.composite
def histories(
    draw: st.DrawFn,
    symbol: str = "AAA",
    start: datetime = T0,
    side: Side | None = None,
    lots: bool = True,
) -> History:
    """A tick, an entry intent, then ticks along a generated path of R multiples; with `lots`,
    up to two more entries on the same side join along the way (lots in one symbol)."""
    side = side if side is not None else draw(st.sampled_from(Side))
    entry = Decimal(draw(st.integers(500, 50_000))) * CENT  # $5 .. $500
    risk = max(CENT, (entry * draw(st.integers(10, 500)) / 10_000).quantize(CENT))
    stop = entry - risk * side.sign
    qty = Decimal(draw(st.integers(1, 2_000)))
    path = [0, *draw(r_paths())]
    extra = draw(st.lists(st.integers(1, len(path)), max_size=2)) if lots else []
    events: list[Event] = [Tick(start, symbol, entry, Decimal(100))]
    events.append(EntryIntent(start + timedelta(seconds=1), symbol, side, stop, qty))
    for i, hundredths in enumerate(path, start=2):
        price = max((entry + Decimal(hundredths) / 100 * risk * side.sign).quantize(CENT), CENT)
        ts = start + timedelta(seconds=i)
        events.append(Tick(ts, symbol, price))
        for _ in range(extra.count(i - 1)):
            lot_risk = max(CENT, (price * draw(st.integers(10, 500)) / 10_000).quantize(CENT))
            lot_qty = Decimal(draw(st.integers(1, 500)))
            events.append(EntryIntent(ts, symbol, side, price - lot_risk * side.sign, lot_qty))
    return History(symbol, side, entry, stop, qty, tuple(events))


def market_fills() -> st.SearchStrategy[str]:
    """When the simulated broker fills market orders."""
    return st.sampled_from(["next", "same"])


def trade_results(max_size: int = 60) -> st.SearchStrategy[list]:
    """Closed trades over ~10 weeks: wins, losses and exact breakevens, in any order."""
    from engine.analytics import TradeResult  # noqa: PLC0415 (keeps the engine imports above lean)

    cents = st.one_of(st.integers(-50_000, 50_000), st.just(0))

    @st.composite
    def one(draw: st.DrawFn) -> TradeResult:
        closed = T0 + timedelta(minutes=draw(st.integers(0, 70 * 24 * 60)))
        pnl = Decimal(draw(cents)) / 100
        risk = Decimal(draw(st.integers(1, 100_000))) / 100
        return TradeResult(
            symbol=draw(st.sampled_from(["AAA", "BBB", "CCC"])),
            side=draw(st.sampled_from(["long", "short"])),
            qty=Decimal(draw(st.integers(1, 500))),
            entry=Decimal("100"),
            exit=Decimal("101"),
            opened=closed - timedelta(minutes=draw(st.integers(1, 600))),
            closed=closed,
            pnl=pnl,
            r=pnl / risk,
            risk=risk,
            key=f"K{draw(st.integers(0, 10**6))}",
        )

    return st.lists(one(), max_size=max_size)
