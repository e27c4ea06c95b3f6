"""Histories the order-protocol machine once shrank to, kept as plain tests: each replays
the rules in order and checks every invariant after each, as the machine does."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    Clock,
    Connectivity,
    EngineState,
    EntryIntent,
    Record,
    Side,
    Tick,
    fold,
)
from shell.broker.simulated import Faults, SimulatedBroker
from shell.simulate import run_simulation
from tests.machines.test_order_protocol import OrderProtocol
from tests.strategies import T0

INVARIANTS = [
    name for name in dir(OrderProtocol)
    if name.startswith(("p11_", "p22_", "every_", "shares_", "the_engine_"))
]  # fmt: skip


def replay(faults: Faults, take_profit: bool, fill: str, rules: list[tuple[str, dict]]):
    machine = OrderProtocol()
    machine.start(faults=faults, take_profit=take_profit, fill=fill)
    for name, args in rules:
        getattr(machine, name)(**args)
        for invariant in INVARIANTS:
            getattr(machine, invariant)()
    return machine


def test_a_cancel_sent_again_after_a_timeout_meets_the_late_confirmation_of_the_first():
    """Two lots; at 1R both stops' cancels are late. AAA-2's times out (2 s) and is sent
    again while the broker's first confirmation is still on its way: the broker answers
    422 already canceled, the engine treats it as canceled (P10 holds: the broker no longer
    works the old stop), and the late confirmation is journaled as a stale answer."""
    machine = replay(Faults(late=0.5, seed=1), False, "same", [
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 20, "symbol": "AAA"}),
        ("clock", {"seconds": 1}),
        ("tick", {"cents": 0, "symbol": "BBB"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
    ])  # fmt: skip
    assert len(INVARIANTS) == 5
    kinds = [r.kind if isinstance(r, Record) else r.reason for r in machine.journal]
    assert "order.timeout" in kinds and "unknown_order" not in kinds
    conflicts = [
        r["type"] for r in machine.journal if getattr(r, "kind", "") == "conflict.detected"
    ]
    # (With the heartbeat the resends go out at their exact due time, so which answer the
    # broker gives first depends on its late-cancel draws: each is accounted for.)
    assert "already_canceled" in conflicts
    assert set(conflicts) <= {"already_canceled", "stale_answer"}
    for pos in machine.state.positions.values():  # both stops moved to break-even, accepted
        assert (pos.orders.exit.stop_price, pos.orders.exit.status.value) == (
            pos.ladder.entry,
            "live",
        )


def test_steps_held_through_a_drop_wait_for_the_snapshot_before_going_out():
    """The link drops with AAA-2's new stop in flight (the broker got it; the answer is
    lost) while AAA-3's entry fills. Steps sent on reconnect but before the snapshot would
    be judged by a snapshot taken before they arrived (AAA-3's new stop then looked unknown
    and was sent a second time, beside the first). Now the held steps go out only once the
    snapshot is applied."""
    machine = replay(Faults(partial=0.5, drop=0.2, seed=0), False, "same", [
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 3, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 3, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("clock", {"seconds": 1}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
    ])  # fmt: skip
    modes = [r["to"] for r in machine.journal if getattr(r, "kind", "") == "mode.changed"]
    assert modes[:3] == ["offline", "recovery", "normal"]
    assert machine.broker.reconnects >= 1
    conflicts = [r for r in machine.journal if getattr(r, "kind", "") == "conflict.detected"]
    assert not conflicts  # nothing the broker had was taken for unknown


def test_answers_replayed_from_a_snapshot_do_not_open_the_breaker():
    """Five positions reach 1R together and their stops' cancels are lost in one drop. The
    reconnect snapshot still shows the five stops open, so each cancel is replayed as a lost
    (transient) refusal and sent again after the backoff. Replayed answers are facts the
    outage hid, not requests that failed now: the breaker must not count them (it used to
    open on the fifth and hold every order step for 300 s although no request failed)."""
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    opening = [Tick(T0, s, D("100")) for s in symbols]
    opening += [EntryIntent(T0, s, Side.LONG, D("99"), D(10)) for s in symbols]
    state, _ = run_simulation(opening, EngineState.empty(), SimulatedBroker(market_fill="same"))
    at_1r = T0 + timedelta(seconds=1)
    state, lost = fold(state, [Tick(at_1r, s, D("101")) for s in symbols])
    cancels = [c.order_id for c in lost if isinstance(c, CancelOrder)]
    assert len(cancels) == 5  # sent, never answered: the link drops with them
    back = at_1r + timedelta(seconds=1)
    stops = tuple(BrokerOrder(oid, oid.split("-")[1], "open", D(10)) for oid in cancels)
    snapshot = BrokerSnapshot(back, tuple((s, D(10)) for s in symbols), stops)
    state, replayed = fold(state, [Connectivity(at_1r, False), Connectivity(back, True), snapshot])
    kinds = [c.kind for c in replayed if isinstance(c, Record)]
    assert "breaker.opened" not in kinds
    assert kinds.count("order.retry") == 5
    later = back + timedelta(seconds=1)
    state, resent = fold(state, [Clock(later)])
    assert sorted(c.order_id for c in resent if isinstance(c, CancelOrder)) == sorted(cancels)


def test_a_shrunk_symbol_keeps_the_lot_whose_stop_the_broker_still_works():
    """The broker forgot a 2-share lot (orders too); a new 1-share lot opened with its own
    stop. The next stop move finds 1 share where ratchet counts 3: the snapshot closes the
    lot whose stop is gone (AAA-1) and keeps the one the broker's working stop holds (AAA-2),
    instead of closing the newest and sending a stop for shares that stop still holds."""
    no_faults_but_late = Faults(late=0.5)
    machine = replay(no_faults_but_late, False, "same", [
        ("entry", {"qty": 2, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("forgotten_by_the_broker", {"symbol": "AAA"}),
        *[("clock", {"seconds": 1})] * 4,
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 20, "symbol": "AAA"}),
    ])  # fmt: skip
    closed = [r.data["key"] for r in machine.journal
              if isinstance(r, Record) and r.kind == "position.reconciled"]  # fmt: skip
    assert closed == ["AAA-1"]
    assert list(machine.state.positions) == ["AAA-2"]


def test_a_sale_of_bare_shares_stops_waiting_for_an_entry_in_its_way_at_the_deadline():
    """The broker forgot a short lot's entry, which ratchet still believes working; a second
    lot fills at its stop (risk not positive: sold at once). Its cover could trade against the
    first lot's entry (a wash trade), so it waits — but not past the protection deadline: bare
    shares are bought back then, whatever is in the way."""
    machine = replay(Faults(), False, "next", [
        ("entry", {"qty": 1, "risk": 20, "symbol": "BBB"}),
        ("forgotten_by_the_broker", {"symbol": "BBB"}),
        *[("clock", {"seconds": 1})] * 4,
        ("entry", {"qty": 1, "risk": 20, "symbol": "BBB"}),
        ("tick", {"cents": -20, "symbol": "BBB"}),
        ("clock", {"seconds": 14}),
    ])  # fmt: skip
    covers = [c for c in machine.orders.values() if c.symbol == "BBB" and c.purpose == "exit"]
    assert [(c.action.value, c.qty) for c in covers] == [("buy", D(1))]


def test_shares_added_after_a_deadline_sale_was_queued_are_sold_with_it():
    """An entry fills in parts around a drop. On reconnect the snapshot finds 7 shares and a
    stop for 4; their deadline is past, so 3 are queued for sale while the stop's cancel is
    on its way. One more share then fills. The cancel's confirmation never comes (a quiet
    market), so the sale goes out beside the stuck stop: it must take the added share too
    (it sold only the 3 queued before, and the eighth share stayed bare for good)."""
    machine = replay(
        Faults(partial=0.5, late=0.5, drop=0.2, lost=0.3, seed=86), False, "next", [
            ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
            ("tick", {"cents": 0, "symbol": "AAA"}),
            ("entry", {"qty": 9, "risk": 20, "symbol": "AAA"}),
            ("tick", {"cents": 0, "symbol": "AAA"}),
            ("tick", {"cents": 0, "symbol": "AAA"}),
            ("tick", {"cents": 0, "symbol": "AAA"}),
            ("clock", {"seconds": 8}),
            ("tick", {"cents": 0, "symbol": "AAA"}),
            ("clock", {"seconds": 14}),
            ("clock", {"seconds": 14}),
        ],
    )  # fmt: skip
    exits = [
        r["qty"] for r in machine.journal
        if getattr(r, "kind", "") == "order.submitted" and r["purpose"] == "exit"
    ]  # fmt: skip
    assert exits == [D(4)]
    assert machine.broker.positions["AAA"] == D(9)
    assert machine.broker.held("AAA", machine.orders["rt-AAA-2-2-exit"].action) == D(9)


def test_a_shrunk_symbol_keeps_the_lot_whose_stop_is_on_its_way():
    """The broker forgets BBB-1's three shares; BBB-2 (two shares) sells a tranche and sends
    its new stop for the one left. A snapshot taken before that stop reached the broker says
    the symbol holds one share. The lot to close is BBB-1 (its stop refused, so not at the
    broker), not BBB-2, whose stop is on its way and will hold the share: closing BBB-2 left
    its stop unaccounted for and sent BBB-1 a second stop for the same share (P11)."""
    machine = replay(Faults(seed=0), False, "same", [
        ("entry", {"qty": 3, "risk": 21, "symbol": "BBB"}),
        ("tick", {"cents": 0, "symbol": "BBB"}),
        ("forgotten_by_the_broker", {"symbol": "BBB"}),
        ("entry", {"qty": 2, "risk": 20, "symbol": "BBB"}),
        ("clock", {"seconds": 1}),
        ("clock", {"seconds": 1}),
        ("tick", {"cents": 40, "symbol": "BBB"}),
    ])  # fmt: skip
    reconciled = [
        (r["key"], r["change"]) for r in machine.journal
        if getattr(r, "kind", "") == "position.reconciled"
    ]  # fmt: skip
    assert reconciled == [("BBB-1", "closed_outside")]
    [pos] = machine.state.positions.values()
    assert (pos.key, pos.fills.remaining, pos.orders.exit.status.value) == ("BBB-2", 1, "live")


def test_a_stop_refused_for_more_shares_than_a_shrunk_lot_counts_is_replaced():
    """The broker forgets AAA's lots; a third lot enters. Its stop for three shares goes out
    right before a snapshot shrinks the lot to one share; the broker refuses the stop (403).
    Sending the same stop for three again could never pass (the gate held it for good, the
    share bare): it is dropped as `stale_order` and a stop for the one share goes instead."""
    machine = replay(Faults(lost=0.3, seed=0), False, "same", [
        ("entry", {"qty": 5, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 4, "risk": 36, "symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("tick", {"cents": 60, "symbol": "AAA"}),
        ("forgotten_by_the_broker", {"symbol": "AAA"}),
        ("entry", {"qty": 5, "risk": 29, "symbol": "AAA"}),
        ("tick", {"cents": 84, "symbol": "AAA"}),
        ("clock", {"seconds": 14}),
    ])  # fmt: skip
    stale = [
        r for r in machine.journal
        if getattr(r, "kind", "") == "conflict.detected" and r["type"] == "stale_order"
    ]  # fmt: skip
    assert [(r["key"], r["resolution"]) for r in stale] == [("AAA-3", "replaced")]
    [pos] = machine.state.positions.values()
    assert (pos.fills.remaining, pos.orders.exit.open_qty) == (1, 1)
    assert pos.orders.exit.status.value == "live"


def test_lots_closed_by_a_snapshot_cancel_the_orders_on_their_way_too():
    """Many lots in AAA, the broker forgets them, refusals and lost answers: a snapshot
    finds three shares while two lots' restore stops are on their way (sent after it was
    taken). Closing those lots must cancel their stops too: left alone they held two of the
    three shares at the broker, and the lot that kept the shares sent a stop for all three
    (P11)."""
    machine = replay(Faults(permanent=0.2, lost=0.3, seed=0), False, "same", [
        ("entry", {"qty": 169, "risk": 291, "symbol": "AAA"}),
        ("entry", {"qty": 214, "risk": 98, "symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("tick", {"cents": 113, "symbol": "AAA"}),
        ("entry", {"qty": 2, "risk": 179, "symbol": "AAA"}),
        ("forgotten_by_the_broker", {"symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "BBB"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 108, "risk": 67, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 35, "symbol": "BBB"}),
        ("tick", {"cents": 178, "symbol": "AAA"}),
        ("clock", {"seconds": 14}),
    ])  # fmt: skip
    canceled = {
        c["order_id"] for c in machine.journal if isinstance(c, Record)
        and c.kind == "order.canceled" and c["order_id"].endswith("-restore")
    }  # fmt: skip
    assert {"rt-AAA-4-3-restore", "rt-AAA-6-3-restore"} <= canceled
    assert machine.broker.oversells == 0
