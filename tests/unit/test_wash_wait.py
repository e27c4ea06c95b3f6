"""`[entries] wash_trade = "wait"`: an entry while exits of its symbol rest at the broker (a
take-profit could trade against it: Alpaca refuses a potential wash trade) is taken but not
sent; it goes once no exit of the symbol rests, and is dropped if the session closes first."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Config,
    EngineState,
    EntryIntent,
    OrderRejected,
    Record,
    Side,
    Tick,
)
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.laws.test_market_hours import SHORT
from tests.strategies import T0


def _s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def _submitted(journal: list, order_id: str) -> list[Record]:
    return [
        r for r in journal
        if isinstance(r, Record) and r.kind == "order.submitted" and r["order_id"] == order_id
    ]  # fmt: skip


def _run(config: Config, events: list) -> tuple[list, list]:
    journal: list = []
    steps: list = []
    broker = SimulatedBroker(market_fill="next", hours=config.hours, wash_check=True)
    run_simulation(
        events,
        EngineState.empty(config),
        broker,
        journal.append,
        lambda e, before, t: steps.append(e),
    )
    return journal, steps


def test_an_entry_waits_while_a_take_profit_rests_and_goes_when_none_does():
    """AAA-1 (stop 99, take-profit resting) is open when AAA-2's intent comes: AAA-2 is
    accepted, journaled `wash_trade_risk` / `entry_waits`, and not sent. AAA-1 stops out at
    98.90; at the next look AAA-2 goes at market and opens. No order is refused."""
    config = evolve(Config(), wash_trade="wait")
    events = [
        Tick(_s(0), "AAA", D("100")),
        EntryIntent(_s(0), "AAA", Side.LONG, D("99"), D(10)),
        Tick(_s(1), "AAA", D("100")),
        EntryIntent(_s(2), "AAA", Side.LONG, D("98.00"), D(5)),
        Tick(_s(3), "AAA", D("99.80")),
        Tick(_s(4), "AAA", D("98.90")),
        *(Tick(_s(5 + i), "AAA", D("99.00")) for i in range(4)),
    ]
    journal, steps = _run(config, events)
    assert not [e for e in steps if isinstance(e, OrderRejected)]
    [waits] = [
        r for r in journal
        if isinstance(r, Record) and r.kind == "conflict.detected" and r["key"] == "AAA-2"
    ]  # fmt: skip
    assert (waits["type"], waits["resolution"]) == ("wash_trade_risk", "entry_waits")
    closed = [r for r in journal if isinstance(r, Record) and r.kind == "trade.closed"]
    assert [r["key"] for r in closed] == ["AAA-1"]
    [entry] = _submitted(journal, "rt-AAA-2-entry")
    # sent only once AAA-1 was out (its take-profit gone with it), at market
    assert journal.index(entry) > journal.index(closed[0]) and entry["type"] == "market"
    opened = [r["key"] for r in journal if isinstance(r, Record) and r.kind == "position.opened"]
    assert opened == ["AAA-1", "AAA-2"]


def test_an_entry_still_waiting_at_the_close_is_dropped():
    """The session closes (at +4 s) with AAA-2 still waiting behind AAA-1's take-profit: it is
    dropped `market_closed`, never sent."""
    config = evolve(Config(), wash_trade="wait", hours=SHORT)
    events = [
        Tick(_s(0), "AAA", D("100")),
        EntryIntent(_s(0), "AAA", Side.LONG, D("99"), D(10)),
        Tick(_s(1), "AAA", D("100")),
        EntryIntent(_s(2), "AAA", Side.LONG, D("98.00"), D(5)),
        *(Tick(_s(3 + i), "AAA", D("100")) for i in range(4)),
    ]
    journal, _ = _run(config, events)
    blocked = [r for r in journal if isinstance(r, Record) and r.kind == "entry.blocked"]
    assert [(r["symbol"], r["reason"]) for r in blocked] == [("AAA", "market_closed")]
    assert not _submitted(journal, "rt-AAA-2-entry")
