"""A sale refused as a potential wash trade because of the user's order on the other side of
the symbol (SPEC §4, ALPACA.md §7): under `[adopt] foreign_orders = "cancel"` the broker's
snapshot names the order and ratchet cancels it, then sells; under "leave" it waits for the
user, retrying on the backoff."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Alert,
    CancelOrder,
    Config,
    EngineState,
    EntryIntent,
    OrderAction,
    OrderType,
    Record,
    Side,
    SubmitOrder,
    Tick,
)
from engine.commands import RequestSnapshot
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0

USER = "user-buy-1"


def _run(foreign_orders: str) -> tuple[list[object], SimulatedBroker]:
    """AAA long 10 @ 100 (stop 99) while the user's buy limit for 5 at 95 rests; the price
    climbs through 2R, where a tranche is sold at market: the broker refuses it as a
    potential wash trade (the user's buy could trade against it)."""
    broker = SimulatedBroker(wash_check=True)
    broker.on_tick(Tick(T0, "AAA", D("100")))
    buy = OrderAction.BUY
    user = SubmitOrder(T0, USER, "AAA", buy, OrderType.LIMIT, D(5), None, D(95), "entry")
    broker.execute([user])
    config = evolve(Config(), foreign_orders=foreign_orders)
    events: list[object] = [
        Tick(T0, "AAA", D("100")),
        EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
    ]
    price = D("100")
    for i in range(1, 40):
        price = min(price + D("0.25"), D("103.25"))
        events.append(Tick(T0 + timedelta(seconds=i), "AAA", price))
    journal: list[object] = []
    run_simulation(iter(events), EngineState.empty(config), broker, journal.append)  # type: ignore[arg-type]
    return journal, broker


def _conflicts(journal: list[object], kind: str) -> list[Record]:
    return [
        r for r in journal
        if isinstance(r, Record) and r.kind == "conflict.detected" and r["type"] == kind
    ]  # fmt: skip


def test_the_users_order_in_the_way_of_a_sale_is_canceled_and_the_sale_goes_through():
    journal, broker = _run("cancel")
    [refused, *_] = _conflicts(journal, "wash_trade")
    assert refused["resolution"] == "cancel_user_order"
    asked = [c for c in journal if isinstance(c, RequestSnapshot)]
    assert [(c.ts, c.reason, c.symbols) for c in asked][:1] == [
        (refused.ts, "potential wash trade", ("AAA",))
    ]
    [foreign] = _conflicts(journal, "foreign_order")
    assert foreign["order_ids"] == [USER] and "wash trade" in foreign["reason"]
    assert [c.order_id for c in journal if isinstance(c, CancelOrder)].count(USER) == 1
    assert USER not in {o.order_id for o in broker.open_orders("AAA")}
    partials = [r for r in journal if isinstance(r, Record) and r.kind == "partial.filled"]
    assert partials and sum((r["qty"] for r in partials), D(0)) > 0
    # The snapshot came because of the refusal, and no other divergence was seen.
    assert not [r for r in journal if isinstance(r, Record) and r.kind == "divergence.detected"]


def test_with_leave_the_sale_waits_for_the_user_and_the_operator_is_told():
    journal, broker = _run("leave")
    refused = _conflicts(journal, "wash_trade")
    # the same sale again on the backoff, three times, then a new one after the alert, and so
    # on while the user's order rests
    resolutions = [r["resolution"] for r in refused]
    assert resolutions[:4] == [*["retry_after_backoff"] * 3, "new_operation_after_alert"]
    assert set(resolutions) == {"retry_after_backoff", "new_operation_after_alert"}
    assert not _conflicts(journal, "foreign_order")
    assert USER in {o.order_id for o in broker.open_orders("AAA")}
    assert not [r for r in journal if isinstance(r, Record) and r.kind == "partial.filled"]
    assert [a for a in journal if isinstance(a, Alert) and a.reason == "wash_trade"]
