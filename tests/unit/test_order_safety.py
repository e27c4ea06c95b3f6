"""Order safety under faults, case by case (SPEC §4): shares are never left without a stop in a
resting state, whatever the broker refuses, and every fill is journaled."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import (
    Alert,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Clock,
    CloseReason,
    Command,
    EngineState,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderStatus,
    Record,
    Side,
    SubmitOrder,
    Tick,
    fold,
    step,
)
from shell.broker.simulated import Faults, SimulatedBroker
from tests.strategies import T0

REFUSED = "HTTP 422 order parameters are invalid"
BUSY = "HTTP 503 service unavailable"


def _kinds(commands: list[Command] | tuple[Command, ...]) -> list[str]:
    return [c.kind if isinstance(c, Record) else c.reason for c in commands
            if isinstance(c, Record | Alert)]  # fmt: skip


def _protected(qty: int = 10) -> EngineState:
    """AAA long `qty` @ 100, stop 99, accepted."""
    state, _ = fold(
        EngineState.empty(),
        [
            Tick(T0, "AAA", D("100")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(qty)),
            OrderAccepted(T0, "rt-AAA-1-entry"),
            OrderFilled(T0, "rt-AAA-1-entry", D(qty), D("100")),
            OrderAccepted(T0, "rt-AAA-1-1-stop"),
        ],
    )
    return state


def _every_stop_refused() -> tuple[SubmitOrder | None, list[Command], EngineState]:
    """AAA long 10 @ 100 filled at T0; the broker answers every stop with a 503 until a sale
    at market comes out: that sale, everything journaled, and the state then."""
    state, _ = fold(
        EngineState.empty(),
        [
            Tick(T0, "AAA", D("100")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
            OrderAccepted(T0, "rt-AAA-1-entry"),
        ],
    )
    t = step(state, OrderFilled(T0, "rt-AAA-1-entry", D(10), D("100")))
    sale: SubmitOrder | None = None
    journal: list[Command] = list(t.commands)
    state = t.state
    pending = [c for c in t.commands if isinstance(c, SubmitOrder)]
    for _ in range(40):
        while pending:  # the broker answers every stop with a 503
            order = pending.pop(0)
            if order.purpose == "exit":
                sale = order
                continue
            t = step(state, OrderRejected(order.ts, order.order_id, BUSY, OrderRefusal.TRANSIENT))
            journal += t.commands
            state = t.state
            pending += [c for c in t.commands if isinstance(c, SubmitOrder)]
        if sale is not None:
            break
        t = step(state, Clock(state.due))
        journal += t.commands
        state = t.state
        pending += [c for c in t.commands if isinstance(c, SubmitOrder)]
    return sale, journal, state


def test_shares_whose_every_stop_is_refused_are_sold_at_the_protect_deadline():
    """The broker refuses every stop for a passing reason (503): the stop is sent again on
    the backoff, then as a new order; 10 s after the fill, with still no stop, the shares are
    sold at market (`no_stop_in_time` and a `protect_deadline` alert), exactly on time."""
    sale, journal, state = _every_stop_refused()
    assert sale is not None and sale.qty == D(10) and sale.type.value == "market"
    assert sale.ts == T0 + timedelta(seconds=10)
    assert "no_stop_in_time" in [
        r["type"] for r in journal if isinstance(r, Record) and r.kind == "conflict.detected"
    ]
    assert "protect_deadline" in _kinds(journal)
    assert state.positions["AAA-1"].close_reason is CloseReason.PROTECT_DEADLINE


def test_the_protect_deadline_journals_which_shares_were_bare_since_when_and_why():
    """What the operator reads when the deadline sells: the conflict (no order ids: the stop
    waiting for its retry is not at the broker), the alert with the shares, since when they
    were bare and the stop they should have had; the ladder climbs no further."""
    _, journal, state = _every_stop_refused()
    at = T0 + timedelta(seconds=10)
    [conflict] = [
        r for r in journal if isinstance(r, Record) and r.data.get("type") == "no_stop_in_time"
    ]
    assert conflict == Record(
        "conflict.detected",
        at,
        {"symbol": "AAA", "key": "AAA-1", "type": "no_stop_in_time", "order_ids": [],
         "resolution": "sold_at_market", "reason": "no working stop for 10 shares in 10000 ms"},
    )  # fmt: skip
    [alert] = [c for c in journal if isinstance(c, Alert) and c.reason == "protect_deadline"]
    assert alert == Alert(
        at,
        "protect_deadline",
        {"symbol": "AAA", "key": "AAA-1", "qty": D(10), "bare_since": T0, "stop": D("99.00")},
    )
    pos = state.positions["AAA-1"]
    assert pos.ladder.trigger is None and pos.orders.milestones == ()
    assert pos.orders.exit is None and pos.retry is None
    # before that: the first stop's three retries (0.5 s, 1 s, 2 s) spent at 3.5 s, the
    # operator told with every failure, and the stop tried again as a new order
    first = next(c for c in journal if isinstance(c, Alert) and c.reason == "retries_exhausted")
    assert first == Alert(
        T0 + timedelta(seconds=3.5),
        "retries_exhausted",
        {"symbol": "AAA", "key": "AAA-1", "order_id": "rt-AAA-1-1-stop", "reason": BUSY,
         "kind": "transient", "halted": False, "attempts": 3, "failures": [BUSY] * 4,
         "remaining_qty": D(10), "stop": D("99.00"), "resolution": "retry_as_new_operation",
         "count": 1},
    )  # fmt: skip


def test_a_cancel_refused_four_times_is_sent_again_not_halted():
    """At 1R the stop's cancel is refused with 503 four times: three resends on the backoff,
    then `retries_exhausted` and the schedule starts over; the position is never halted and
    its old stop keeps working meanwhile."""
    t = step(_protected(), Tick(T0 + timedelta(seconds=1), "AAA", D("101")))
    [cancel] = [c for c in t.commands if isinstance(c, CancelOrder)]
    state, ts, kinds = t.state, cancel.ts, []
    for _ in range(4):
        t = step(state, CancelRejected(ts, cancel.order_id, BUSY, CancelRefusal.TRANSIENT))
        kinds += _kinds(t.commands)
        ts = t.state.due
        t = step(t.state, Clock(ts))
        assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [cancel.order_id]
        state = t.state
    assert kinds.count("order.retry") == 4 and kinds.count("retries_exhausted") == 1
    pos = state.positions["AAA-1"]
    assert not pos.halted and pos.orders.exit is not None
    assert pos.orders.exit.status is OrderStatus.PENDING_CANCEL  # still working, being canceled


def test_a_cancel_refused_for_good_keeps_the_stop_and_freezes_the_ladder():
    """The broker will not cancel the stop (422 not cancelable): it stays, working, as the
    protection; the ladder freezes (no more stop moves or tranches are journaled) and the
    operator is told; nothing is left bare."""
    t = step(_protected(), Tick(T0 + timedelta(seconds=1), "AAA", D("101")))
    [cancel] = [c for c in t.commands if isinstance(c, CancelOrder)]
    t = step(t.state, CancelRejected(cancel.ts, cancel.order_id, "HTTP 422 order is not "
                                     "cancelable", CancelRefusal.PERMANENT))  # fmt: skip
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "cancel_rejected"
    assert alert.context["resolution"] == "order_kept_ladder_frozen"
    pos = t.state.positions["AAA-1"]
    assert pos.halted and pos.ladder.trigger is None
    assert pos.orders.exit is not None and pos.orders.exit.status is OrderStatus.LIVE
    assert pos.orders.exit.open_qty == pos.fills.remaining and not pos.bare
    later = step(t.state, Tick(T0 + timedelta(seconds=2), "AAA", D("103.50")))
    assert not [c for c in later.commands if isinstance(c, Record | SubmitOrder | CancelOrder)]


def test_shares_filled_while_the_position_is_sold_for_want_of_a_stop_are_sold_too():
    """The entry fills in two halves. The first half's stop is refused for good: it is sold at
    market (`protection_refused`). The second half, filled meanwhile, joins the sale (no stop
    is asked for it, no halt, nothing bare at rest): the position closes whole."""
    state, _ = fold(
        EngineState.empty(),
        [
            Tick(T0, "AAA", D("100")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
            OrderAccepted(T0, "rt-AAA-1-entry"),
            OrderFilled(T0, "rt-AAA-1-entry", D(5), D("100")),
        ],
    )
    t = step(state, OrderRejected(T0, "rt-AAA-1-1-stop", REFUSED, OrderRefusal.PERMANENT))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    events: list[Event] = [
        OrderAccepted(T0, sale.order_id),
        OrderFilled(T0, "rt-AAA-1-entry", D(5), D("100")),
        OrderFilled(T0, sale.order_id, D(5), D("99.90")),
    ]
    sent: list[SubmitOrder] = []
    state = t.state
    for event in events:
        t = step(state, event)
        sent += [c for c in t.commands if isinstance(c, SubmitOrder)]
        state = t.state
        assert not any(p.halted for p in state.positions.values())
    [second] = sent
    assert (second.purpose, second.qty, second.type.value) == ("exit", D(5), "market")
    t = step(state, OrderAccepted(T0, second.order_id))
    t = step(t.state, OrderFilled(T0, second.order_id, D(5), D("99.80")))
    [closed] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.closed"]
    assert closed["reason"] == "protection_refused" and "AAA-1" not in t.state.positions


def test_every_fill_is_journaled_partial_exits_and_stop_fills_included():
    """A stop that fills in part, and the rest later: one `order.filled` per fill, with what
    is left of the order and of the position."""
    state = _protected()
    t = step(state, OrderFilled(T0, "rt-AAA-1-1-stop", D(4), D("98.95")))
    [first] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (first["qty"], first["order_open"], first["position_qty"]) == (D(4), D(6), D(6))
    assert first["purpose"] == "protect"
    t = step(t.state, OrderFilled(T0, "rt-AAA-1-1-stop", D(6), D("98.90")))
    [second] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (second["qty"], second["order_open"], second["position_qty"]) == (D(6), D(0), D(0))


def test_a_lost_answer_is_resent_under_the_same_id_and_the_duplicate_adopted():
    """The broker creates the stop but its answer is lost (a timeout: outcome unknown). The
    engine sends the same request again after the backoff, never a new order; the broker
    answers 422 duplicate, and the engine adopts the order it already holds."""
    broker = SimulatedBroker(market_fill="same", faults=Faults(lost=1.0))
    tick = Tick(T0, "AAA", D("100"))
    broker.on_tick(tick)
    state = step(EngineState.empty(), tick).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)))
    seen: list[Event] = []
    journal: list[Command] = []
    queue = list(broker.execute(t.commands))
    state = t.state
    for _ in range(30):
        while queue:
            event = queue.pop(0)
            seen.append(event)
            t = step(state, event)
            journal += t.commands
            state = t.state
            queue += broker.execute(t.commands)
        pos = state.positions.get("AAA-1")
        stop = pos.orders.exit if pos is not None else None
        if stop is not None and stop.status is OrderStatus.LIVE:
            break
        t = step(state, Clock(state.due))
        journal += t.commands
        state = t.state
        queue += broker.execute(t.commands)
    stop_refusals = [e for e in seen if isinstance(e, OrderRejected) and "stop" in e.order_id]
    assert [e.kind for e in stop_refusals] == [OrderRefusal.UNKNOWN, OrderRefusal.DUPLICATE]
    stops = {c.order_id for c in journal if isinstance(c, SubmitOrder) and c.purpose == "protect"}
    assert stops == {"rt-AAA-1-1-stop"}  # one order, sent twice under its own id
    assert broker.working_qty("AAA", "rt-AAA-1-1-stop") == D(10)
    assert state.positions["AAA-1"].orders.exit.status is OrderStatus.LIVE


def test_an_entry_whose_answer_was_lost_is_never_dropped_when_its_retries_run_out():
    """AAA's entry: the first answer is lost (it may be at the broker), then three 503s. With
    the retries spent the entry is not dropped (a second entry could double the position):
    the operator is told with every failure (`resend_same_order`) and the same request goes
    on being sent under the same id, its schedule started over."""
    state, _ = fold(EngineState.empty(), [
        Tick(T0, "AAA", D("100")),
        EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
    ])  # fmt: skip
    entry = "rt-AAA-1-entry"
    reasons = ["timeout", BUSY, BUSY, BUSY]
    ts = T0
    for i, reason in enumerate(reasons):
        kind = OrderRefusal.UNKNOWN if i == 0 else OrderRefusal.TRANSIENT
        t = step(state, OrderRejected(ts, entry, reason, kind))
        state = t.state
        if i == len(reasons) - 1:
            break
        assert not [c for c in t.commands if isinstance(c, Alert)]
        ts = state.due  # the retry goes out when due, under the same id
        resent = step(state, Clock(ts))
        assert [c.order_id for c in resent.commands if isinstance(c, SubmitOrder)] == [entry]
        state = resent.state
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert == Alert(ts, "retries_exhausted", {
        "symbol": "AAA", "key": "AAA-1", "order_id": entry, "reason": BUSY, "kind": "transient",
        "attempts": 3, "failures": reasons, "remaining_qty": D(0), "stop": D(99),
        "resolution": "resend_same_order",
    })  # fmt: skip
    [retry] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.retry"]
    assert (retry["order_id"], retry["attempt"]) == (entry, 1)
    pending = t.state.entries["AAA-1"]
    assert (pending.retry.attempts, pending.retry.uncertain) == (1, True)
    assert pending.order.status is OrderStatus.RETRY_WAIT
