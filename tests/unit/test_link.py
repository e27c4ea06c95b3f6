"""The broker link by hand: an outage with two positions, recovery, the circuit breaker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve as ev

from engine import (
    Alert,
    BreakerState,
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    Clock,
    Config,
    Connectivity,
    EngineState,
    EntryIntent,
    LinkMode,
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    Record,
    Side,
    SubmitOrder,
    Tick,
    Transition,
    fold,
    step,
)
from engine.link import failed, flush, succeeded
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0
from tests.unit.test_timeouts import _opened


def _sec(n):
    return T0 + timedelta(seconds=n)


def test_an_outage_holds_both_stop_moves_and_sends_each_once_in_order_on_reconnect():
    """AAA and BBB long 10 @ 100, stops 99. Offline, BBB reaches 1R first (stop to 100),
    then AAA does, then AAA 1.5R (100.50): nothing is sent. A second later the broker is back:
    recovery; once the snapshot has validated both, the steps go out BBB first then AAA,
    each cancel-first, and AAA's new stop is 100.50 (the latest), never the stale 100."""
    events = [
        Tick(T0, "AAA", D("100")),
        Tick(T0, "BBB", D("100")),
        EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
        EntryIntent(T0, "BBB", Side.LONG, D("99"), D(10)),
        Connectivity(_sec(1), False),
        Tick(_sec(1), "BBB", D("101")),
        Tick(_sec(1), "AAA", D("101")),
        EntryIntent(_sec(1), "AAA", Side.LONG, D("99"), D(10)),
        Tick(_sec(1), "AAA", D("101.50")),
        Tick(_sec(3), "AAA", D("101.50")),
        Tick(_sec(4), "BBB", D("101")),
    ]
    steps = []
    state, _ = run_simulation(
        events,
        EngineState.empty(Config()),
        SimulatedBroker(market_fill="same"),
        on_step=lambda e, before, t: steps.append((e, before, t)),
    )
    offline = [t for e, before, t in steps if not before.link.up and not t.state.link.up]
    assert offline and not [c for t in offline for c in t.commands if isinstance(c, SubmitOrder)]
    blocked = [
        c for e, _, t in steps if isinstance(e, EntryIntent) for c in t.commands
        if getattr(c, "kind", "") == "entry.blocked"
    ]  # fmt: skip
    assert [b["reason"] for b in blocked] == ["broker_offline"]
    [(_, _, t_up)] = [s for s in steps if isinstance(s[0], Connectivity) and s[0].up]
    assert not [c for c in t_up.commands if isinstance(c, SubmitOrder | CancelOrder)]
    [(_, before_up, t_up)] = [s for s in steps if isinstance(s[0], BrokerSnapshot)]
    assert before_up.link.waiting == ("BBB-1", "AAA-1")
    cancels = [c.order_id for c in t_up.commands if type(c).__name__ == "CancelOrder"]
    assert cancels == ["rt-BBB-1-1-stop", "rt-AAA-1-1-stop"]
    modes = [
        c["to"] for _, _, t in steps for c in t.commands if getattr(c, "kind", "") == "mode.changed"
    ]
    assert modes == ["offline", "recovery", "normal"]
    assert state.positions["AAA-1"].orders.exit.stop_price == D("100.50")
    assert state.positions["BBB-1"].orders.exit.stop_price == D("100.00")
    sent = [
        c.stop_price for _, _, t in steps for c in t.commands
        if isinstance(c, SubmitOrder) and c.symbol == "AAA" and c.purpose == "protect"
    ]  # fmt: skip
    assert sent == [D("99.00"), D("100.50")]


def test_a_snapshot_with_fewer_shares_shrinks_the_lot_and_rearms_its_stop():
    """Reconnected with AAA long 10 (stop 99 for 10): entries are refused `recovery_mode`
    until the snapshot; the broker says 7 (3 sold by hand), so the lot shrinks to 7
    (`position.reconciled`), its stop is replaced by one for 7, normal mode returns and
    entries pass."""
    state, _ = run_simulation(
        [Tick(T0, "AAA", D("100")), EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10))],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    state, _ = fold(state, [Connectivity(_sec(1), False), Connectivity(_sec(2), True)])
    intent = EntryIntent(_sec(2), "AAA", Side.LONG, D("99"), D(5))
    assert step(state, intent).commands[0]["reason"] == "recovery_mode"
    stop = state.positions["AAA-1"].orders.exit
    broker_stop = BrokerOrder(stop.id, "AAA", "open", D(10), side=OrderAction.SELL,
                              type=OrderType.STOP, stop_price=D("99"))  # fmt: skip
    t = step(state, BrokerSnapshot(_sec(2), (("AAA", D(7)),), (broker_stop,)))
    [change] = [c for c in t.commands if getattr(c, "kind", "") == "position.reconciled"]
    assert (change["change"], change["from"], change["to"]) == ("shrunk", D(10), D(7))
    assert t.state.positions["AAA-1"].fills.remaining == D(7)
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [stop.id]
    assert t.state.link.mode is LinkMode.NORMAL
    t = step(t.state, OrderCanceled(_sec(2), stop.id))
    [rearmed] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (rearmed.qty, rearmed.stop_price) == (D(7), D("99"))
    assert any(isinstance(c, SubmitOrder) for c in step(t.state, intent).commands)


def test_five_failed_requests_open_the_breaker_which_holds_optional_work_never_protection():
    """AAA's stop move: its cancel is confirmed, then its new stop is refused five times in a
    row (three retries of one id, then a new one): the breaker opens (record and alert) and
    entries are refused `order_breaker_open`. AAA's shares have no stop, so its retries are
    not held. BBB's stop works, so its stop move at 1R is held; 300 s later the first event
    half-opens the breaker, BBB's held step goes out, and its answer closes the breaker."""
    events = [Tick(T0, s, D("100")) for s in ("AAA", "BBB")]
    events += [EntryIntent(T0, s, Side.LONG, D("99"), D(10)) for s in ("AAA", "BBB")]
    state, _ = run_simulation(events, EngineState.empty(), SimulatedBroker(market_fill="same"))
    state = step(state, Tick(_sec(1), "AAA", D("101"))).state  # AAA's cancel sent
    state = step(state, OrderCanceled(_sec(1), "rt-AAA-1-1-stop")).state  # new stop sent
    ts = _sec(1)
    kinds = []
    for refusal in range(5):
        order = state.positions["AAA-1"].orders.exit
        t = step(state, OrderRejected(ts, order.id, "HTTP 503", OrderRefusal.TRANSIENT))
        kinds += [getattr(c, "kind", getattr(c, "reason", "")) for c in t.commands]
        state = t.state
        if refusal < 4 and state.due <= ts + timedelta(seconds=2):
            ts = state.due
            state = step(state, Clock(ts)).state  # the retry goes out when due
    assert "breaker.opened" in kinds and "order_breaker_open" in kinds
    assert kinds.count("retries_exhausted") == 1
    assert state.link.breaker is BreakerState.OPEN
    refused = step(state, EntryIntent(ts, "AAA", Side.LONG, D("99"), D(1)))
    assert refused.commands[0]["reason"] == "order_breaker_open"
    due = state.due
    protected = step(state, Clock(due))
    [resent] = [c for c in protected.commands if isinstance(c, SubmitOrder)]
    assert resent.symbol == "AAA" and resent.purpose == "protect"  # not held by the breaker
    state = step(protected.state, OrderAccepted(due, resent.order_id)).state
    assert state.link.breaker is BreakerState.OPEN
    moved = step(state, Tick(due, "BBB", D("101")))
    assert [c for c in moved.commands if getattr(c, "kind", "") == "stop.moved"]
    assert not [c for c in moved.commands if isinstance(c, SubmitOrder | CancelOrder)]
    half = ts + timedelta(seconds=300)
    t = step(moved.state, Tick(half, "BBB", D("101")))
    assert [c for c in t.commands if getattr(c, "kind", "") == "breaker.half_open"] == [
        Record("breaker.half_open", half, {"breaker": "orders"})
    ]
    [cancel] = [c for c in t.commands if isinstance(c, CancelOrder)]
    assert cancel.order_id == "rt-BBB-1-1-stop"
    closed = step(t.state, OrderCanceled(cancel.ts, cancel.order_id))
    assert closed.state.link.breaker is BreakerState.CLOSED
    assert [c for c in closed.commands if getattr(c, "kind", "") == "breaker.closed"] == [
        Record("breaker.closed", cancel.ts, {"breaker": "orders"})
    ]


def test_held_shares_refusals_are_not_counted_by_the_breaker():
    """Alpaca's 403 (shares held by another order) is an answer about sequencing, not a
    failing broker: five of them in a row leave the breaker closed and the count at 0."""
    state, _ = run_simulation(
        [Tick(T0, "AAA", D("100")), EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10))],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    state = step(state, Tick(_sec(1), "AAA", D("101"))).state
    state = step(state, OrderCanceled(_sec(1), "rt-AAA-1-1-stop")).state
    ts = _sec(1)
    for _ in range(5):
        order = state.positions["AAA-1"].orders.exit
        reason = "HTTP 403 code 40310000 insufficient qty available for order"
        state = step(state, OrderRejected(ts, order.id, reason, OrderRefusal.SHARES_LOCKED)).state
        ts += timedelta(seconds=3)
        state = step(state, Tick(ts, "AAA", D("101"))).state
    assert (state.link.failures, state.link.breaker) == (0, BreakerState.CLOSED)


# --- After a reconnect the broker's snapshot tells what became of each order sent before or
# during the outage (SPEC §4, P25-P27): AAA long 10 @ 100 at 1R, the link drops and returns,
# and the snapshot shows AAA's orders as below (BBB's stop working throughout).

_AAA_STOP = "rt-AAA-1-1-stop"
_AAA_NEW = "rt-AAA-1-2-stop"


def _reconnected(aaa_orders, *, confirmed: bool, aaa: int = 10):
    t = step(_opened(), Tick(_sec(1), "AAA", D("101")))  # 1R: the stop's cancel goes out
    if confirmed:
        t = step(t.state, OrderCanceled(_sec(1), _AAA_STOP))  # the new stop goes out
    state = step(t.state, Connectivity(_sec(2), False)).state
    state = step(state, Connectivity(_sec(3), True)).state
    bbb = BrokerOrder("rt-BBB-1-1-stop", "BBB", "open", D(10), side=OrderAction.SELL,
                      type=OrderType.STOP, stop_price=D("49"))  # fmt: skip
    held = (("AAA", D(aaa)), ("BBB", D(10)))
    prices = (("AAA", D(100)), ("BBB", D(50)))
    snap = BrokerSnapshot(
        _sec(4), held, (*aaa_orders, bbb), prices, (("AAA", D(101)), ("BBB", D(50)))
    )
    t = step(state, snap)
    assert t.state.link.synced and t.state.link.snapshot_asked is None
    assert not t.state.link.recovering
    [mode] = [c for c in t.commands if isinstance(c, Record) and c.kind == "mode.changed"]
    assert (mode["from"], mode["to"]) == ("recovery", "normal")
    return t


def _kinds(t):
    return [c.kind if isinstance(c, Record) else type(c).__name__ for c in t.commands]


def _stop(status: str, order_id: str = _AAA_STOP, stop: str = "99", **more) -> BrokerOrder:
    return BrokerOrder(order_id, "AAA", status, D(10), side=OrderAction.SELL, type=OrderType.OCO,
                       stop_price=D(stop), limit_price=D("104"), **more)  # fmt: skip


def test_a_cancel_lost_with_the_link_is_sent_again_on_the_backoff():
    t = _reconnected([_stop("open")], confirmed=False)
    [retry] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.retry"]
    assert (retry["order_id"], retry["command"], retry["attempt"], retry["reason"]) == (
        _AAA_STOP, "cancel", 1, "cancel lost with the connection"
    )  # fmt: skip
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert t.state.positions["AAA-1"].orders.exit.id == _AAA_STOP


def test_a_stop_canceled_during_the_outage_is_replaced_by_the_one_1r_calls_for():
    t = _reconnected([_stop("canceled")], confirmed=False)
    assert _kinds(t)[0] == "order.canceled"
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (new.order_id, new.qty, new.stop_price) == (_AAA_NEW, D(10), D("100.00"))


def test_an_order_the_broker_never_heard_of_is_dropped_and_sent_anew():
    t = _reconnected([], confirmed=False)
    [conflict] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert conflict.data == {
        "symbol": "AAA", "key": "AAA-1", "type": "order_unknown_to_broker",
        "order_ids": [_AAA_STOP], "resolution": "dropped_and_resent",
        "reason": "not in the broker's snapshot of open and changed orders",
    }  # fmt: skip
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (new.order_id, new.stop_price) == (_AAA_NEW, D("100.00"))


def test_a_stop_rejected_during_the_outage_rolls_back_to_the_last_accepted_one():
    t = _reconnected([_stop("rejected", _AAA_NEW, "100")], confirmed=True)
    [rejected] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.rejected"]
    assert (rejected["order_id"], rejected["reason"]) == (_AAA_NEW, "rejected while offline")
    [restore] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (restore.order_id, restore.stop_price) == ("rt-AAA-1-3-restore", D("99.00"))


def test_a_stop_filled_during_the_outage_closes_the_position_at_the_brokers_price_and_time():
    filled = _stop("filled", _AAA_NEW, "100", filled_qty=D(10),
                   filled_avg_price=D("99.98"), updated_at=_sec(2.5))  # fmt: skip
    t = _reconnected([filled], confirmed=True, aaa=0)
    [fill] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (fill["qty"], fill["price"], fill["executed"]) == (D(10), D("99.98"), _sec(2.5))
    [closed] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.closed"]
    assert (closed["reason"], closed["pnl"]) == ("stop", D("-0.20"))
    assert "AAA-1" not in t.state.positions


def test_the_fifth_failure_in_a_row_opens_the_breaker_for_its_cooldown_exactly():
    state = _opened()
    t = Transition(state)
    for n in range(1, 5):
        t = failed(t, T0 + timedelta(seconds=n))
        assert t.state.link.failures == n and t.state.link.breaker is BreakerState.CLOSED
        assert t.commands == ()
    at = T0 + timedelta(seconds=5)
    reopen = at + timedelta(seconds=300)
    t = failed(t, at)
    link = t.state.link
    assert (link.failures, link.breaker, link.reopen_at) == (5, BreakerState.OPEN, reopen)
    assert t.state.due <= reopen
    assert t.commands == (
        Record("breaker.opened", at, {"breaker": "orders", "failures": 5, "reopen_at": reopen}),
        Alert(at, "order_breaker_open", {"failures": 5, "reopen_at": reopen}),
    )
    more = failed(t, at + timedelta(seconds=1))  # open: counted, nothing more said
    assert more.state.link.failures == 6 and more.commands == t.commands
    assert more.state.link.reopen_at == reopen
    # the cooldown's end, on a clock: half-open
    assert step(t.state, Clock(reopen - timedelta(seconds=1))).state.link.breaker is (
        BreakerState.OPEN
    )
    half = step(t.state, Clock(reopen))
    assert half.state.link.breaker is BreakerState.HALF_OPEN
    assert [c.kind for c in half.commands if isinstance(c, Record)][:1] == ["breaker.half_open"]


def test_the_link_going_down_and_up_is_journaled_with_its_modes():
    state = _opened()
    down = step(state, Connectivity(T0 + timedelta(seconds=1), False))
    assert down.commands == (
        Record("mode.changed", T0 + timedelta(seconds=1),
               {"from": "normal", "to": "offline", "reason": "broker connection lost"}),
    )  # fmt: skip
    assert down.state.link.up is False and down.state.link.synced is False
    assert step(down.state, Connectivity(T0 + timedelta(seconds=2), False)).commands == ()
    up = step(down.state, Connectivity(T0 + timedelta(seconds=3), True))
    assert up.commands == (
        Record("mode.changed", T0 + timedelta(seconds=3),
               {"from": "offline", "to": "recovery", "reason": "broker connection restored"}),
    )  # fmt: skip
    assert up.state.link.up is True and up.state.link.recovering is True
    assert up.state.link.synced is False


def test_the_held_steps_go_in_order_and_an_open_breaker_keeps_only_the_optional_ones():
    """`flush` by hand. AAA's step is optional (its shares covered), BBB's is protection (its
    shares bare, and its stop through the last print): with the breaker open AAA's waits
    again and BBB's goes, judged at the last print (out at market); a lot gone meanwhile is
    passed over."""
    state = _opened()
    bbb = state.positions["BBB-1"]
    bare = ev(bbb, orders=ev(bbb.orders, exit=None), exposed_since=T0)
    state = state.evolve(
        positions=state.positions.set("BBB-1", bare),
        marks=state.marks.set("BBB", Tick(T0, "BBB", D("48.90"))),
        link=ev(state.link, waiting=("AAA-1", "ZZZ-9", "BBB-1"), breaker=BreakerState.OPEN,
                reopen_at=T0 + timedelta(seconds=300)),
    )  # fmt: skip
    t = flush(state, T0 + timedelta(seconds=1))
    assert t.state.link.waiting == ("AAA-1",)
    [record] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert record["reason"] == "stop 49.00 is at or through the market at 48.90"
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sale.symbol, sale.type, sale.qty) == ("BBB", OrderType.MARKET, D(10))
    closed = state.evolve(link=ev(state.link, breaker=BreakerState.CLOSED, reopen_at=None))
    t = flush(closed, T0 + timedelta(seconds=1))
    assert t.state.link.waiting == ()
    assert flush(state.evolve(link=ev(state.link, up=False)), T0).state.link.waiting == (
        "AAA-1", "ZZZ-9", "BBB-1"
    )  # fmt: skip
    unsynced = state.evolve(link=ev(state.link, synced=False))
    assert flush(unsynced, T0) == (unsynced, ())


def test_an_answer_ends_a_failure_run_and_closes_a_half_open_breaker():
    state = _opened()
    quiet = Transition(state)
    assert succeeded(quiet, T0) is quiet  # nothing to reset
    t = Transition(state)
    for n in range(3):
        t = failed(t, T0 + timedelta(seconds=n))
    assert t.state.link.failures == 3
    reset = succeeded(Transition(t.state), T0 + timedelta(seconds=4))
    assert reset.state.link.failures == 0 and reset.commands == ()
    assert reset.state.link.breaker is BreakerState.CLOSED
    half = state.evolve(link=ev(state.link, breaker=BreakerState.HALF_OPEN, failures=5))
    closed = succeeded(Transition(half), T0 + timedelta(seconds=9))
    assert closed.state.link.failures == 0 and closed.state.link.breaker is BreakerState.CLOSED
    assert closed.commands == (
        Record("breaker.closed", T0 + timedelta(seconds=9), {"breaker": "orders"}),
    )
    tripped = state.evolve(link=ev(state.link, breaker=BreakerState.OPEN, failures=5))
    kept = succeeded(Transition(tripped), T0 + timedelta(seconds=9))
    assert kept.state.link.breaker is BreakerState.OPEN and kept.state.link.failures == 0
