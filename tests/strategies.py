"""Hypothesis strategies: configurations and generated trading histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from attrs import frozen
from hypothesis import strategies as st

from engine import Config, EntryIntent, Event, ProtectionConfig, Rung, Side, Tick, Tranche
from shell.broker.simulated import Faults

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


@st.composite
def multi_session_histories(draw: st.DrawFn) -> list[Event]:
    """Two symbols' histories, merged, re-timed to run across several sessions around a DST
    change in New York (gaps of seconds to hours), in time order."""
    from attrs import evolve  # noqa: PLC0415

    one = draw(histories(symbol="AAA"))
    two = draw(histories(symbol="BBB"))
    start = draw(st.sampled_from([
        datetime(2024, 3, 9, 6, tzinfo=UTC), datetime(2024, 11, 2, 6, tzinfo=UTC),
        datetime(2024, 6, 3, 6, tzinfo=UTC),
    ]))  # fmt: skip
    # Interleave the two symbols, each keeping its own order.
    choices = draw(st.lists(st.booleans(), max_size=len(one.events) + len(two.events)))
    merged = interleave(list(one.events), list(two.events), choices)
    ts = start
    out = []
    for event in merged:
        gap = draw(st.sampled_from([1, 30, 600, 3600, 4 * 3600, 0]))
        # 0: jump exactly onto the next 04:00 New York boundary (the instant that matters).
        ts = _next_0400_new_york(ts) if gap == 0 else ts + timedelta(seconds=gap)
        out.append(evolve(event, ts=ts))
    return out


def _next_0400_new_york(ts: datetime) -> datetime:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    ny = ZoneInfo("America/New_York")
    local = ts.astimezone(ny)
    day = local.date() + timedelta(days=1 if local.hour >= 4 else 0)
    return datetime(day.year, day.month, day.day, 4, tzinfo=ny).astimezone(UTC)


def interleave(a: list[Event], b: list[Event], choices: list[bool]) -> list[Event]:
    """Take from `a` on True and from `b` on False while both last; then the rest."""
    out, i, j = [], 0, 0
    for take_a in choices:
        if take_a and i < len(a):
            out.append(a[i])
            i += 1
        elif j < len(b):
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]


def fault_models() -> st.SearchStrategy[Faults]:
    """Brokers that refuse for passing reasons, for good, or because shares look held; that
    fill market orders in parts, apply cancels late (so an order may fill first), lose the
    answer to an order they created, and refuse to cancel."""
    return st.builds(
        Faults,
        transient=st.sampled_from([0.0, 0.3]),
        permanent=st.sampled_from([0.0, 0.2, 0.5]),
        locked=st.sampled_from([0.0, 0.3]),
        partial=st.sampled_from([0.0, 0.5]),
        late=st.sampled_from([0.0, 0.5]),
        drop=st.sampled_from([0.0, 0.2]),
        lost=st.sampled_from([0.0, 0.3]),
        stuck=st.sampled_from([0.0, 0.3]),
        seed=st.integers(0, 10_000),
    )


@st.composite
def schedules(draw: st.DrawFn) -> Config:
    """Ladders and partial schedules other than SPEC's: 1 to 4 rungs and 1 to 3 tranches at
    R levels from 0.5 to 5, fractions that sum to the whole position or fall short of it,
    with and without take-profit and trailing."""
    rs = st.integers(1, 10).map(lambda n: Decimal(n) / 2)
    at = sorted(draw(st.sets(rs, min_size=1, max_size=4)))
    ladder = tuple(Rung(r, r * Decimal(draw(st.sampled_from([0, 25, 50, 75]))) / 100) for r in at)
    points = sorted(draw(st.sets(rs, min_size=1, max_size=3)))
    cents = draw(st.lists(st.integers(5, 60), min_size=len(points), max_size=len(points)))
    if draw(st.booleans()):  # the whole position: the last tranche takes the rest
        cents[-1] = 100 - sum(cents[:-1]) if sum(cents[:-1]) < 100 else cents[-1]
    fractions = [Decimal(c) / 100 for c in cents]
    if sum(fractions) > 1:
        fractions = [f / sum(fractions) for f in fractions]
    partials = tuple(Tranche(r, f) for r, f in zip(points, fractions, strict=True))
    return Config(
        ProtectionConfig(
            ladder=ladder,
            partials=partials,
            take_profit=draw(st.booleans()),
            trail=draw(st.booleans()),
        )
    )
