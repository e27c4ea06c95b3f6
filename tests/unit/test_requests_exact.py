"""The broker's answers about ratchet's requests with exact values (`engine.answers`,
`engine.retries`, `engine.fills`): each kind of refused cancel, a cancel confirmed twice or
for an order ratchet never sent, a resend on the backoff, an entry confirmed canceled, and
fills of a take-profit and of a tranche, with the records and alerts each leaves."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Alert,
    CancelOrder,
    CancelRejected,
    Clock,
    Connectivity,
    EngineState,
    EntryIntent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.commands import OrderAction, OrderType, RequestSnapshot
from engine.config import Config, PriceGrid
from engine.deadlines import unprotected
from engine.events import CancelRefusal, OrderRefusal
from engine.model import (
    Awaited,
    AwaitedKind,
    CloseReason,
    Operation,
    OperationKind,
    Order,
    OrderRole,
    OrderStatus,
    Retry,
)
from engine.operations import conclude, covered, exposed, settled, touch
from engine.orders import Extended, reconcile, roll_back
from engine.rejections import retryable
from engine.retries import fire
from engine.state import BreakerState
from tests.strategies import T0
from tests.unit.test_budget_exact import two_lots
from tests.unit.test_entries_exact import _short_opened
from tests.unit.test_timeouts import STOP_ID, _opened, _sec, _tranche_sent

BUSY = "HTTP 503 busy"


def _records(commands, kind: str) -> list[Record]:
    return [c for c in commands if isinstance(c, Record) and c.kind == kind]


def _canceling() -> EngineState:
    """AAA long 10 @ 100 at 1R: its stop's cancel is out, unanswered."""
    t = step(_opened(), Tick(_sec(1), "AAA", D("101")))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]
    assert t.state.positions["AAA-1"].orders.exit.status is OrderStatus.PENDING_CANCEL
    return t.state


def test_a_transient_cancel_refusal_waits_its_delay_then_the_cancel_goes_again():
    state = _canceling()
    t = step(state, CancelRejected(_sec(2), STOP_ID, BUSY, CancelRefusal.TRANSIENT))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.exit.status is OrderStatus.CANCEL_WAIT
    assert pos.retry == Retry(1, _sec(2.5), (BUSY,), False)
    [record] = t.commands
    assert record == Record(
        "order.retry",
        _sec(2),
        {"symbol": "AAA", "key": "AAA-1", "order_id": STOP_ID, "attempt": 1, "delay": D("0.5"),
         "due": _sec(2.5), "reason": BUSY, "command": "cancel"},
    )  # fmt: skip
    assert t.state.due == _sec(2.5)
    assert step(t.state, Clock(_sec(2.4))).commands == ()
    again = step(t.state, Clock(_sec(2.5)))
    assert again.commands == (CancelOrder(_sec(2.5), STOP_ID, "AAA"),)
    pos = again.state.positions["AAA-1"]
    assert pos.orders.exit.status is OrderStatus.PENDING_CANCEL
    assert pos.retry == Retry(1, None, (BUSY,), False)
    # the second refusal waits the second delay, the third the third
    t = step(again.state, CancelRejected(_sec(3), STOP_ID, "x", CancelRefusal.TRANSIENT))
    assert t.state.positions["AAA-1"].retry == Retry(2, _sec(4), (BUSY, "x"), False)
    t = step(step(t.state, Clock(_sec(4))).state, CancelRejected(_sec(4), STOP_ID, "y",
             CancelRefusal.TRANSIENT))  # fmt: skip
    assert t.state.positions["AAA-1"].retry == Retry(3, _sec(6), (BUSY, "x", "y"), False)
    # the fourth: the operator is told (with every reason), and the schedule starts over
    t = step(step(t.state, Clock(_sec(6))).state, CancelRejected(_sec(6), STOP_ID, "z",
             CancelRefusal.TRANSIENT))  # fmt: skip
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert == Alert(
        _sec(6),
        "retries_exhausted",
        {"symbol": "AAA", "key": "AAA-1", "order_id": STOP_ID, "reason": "z",
         "kind": "transient", "command": "cancel", "attempts": 3,
         "failures": [BUSY, "x", "y", "z"], "remaining_qty": D(10),
         "resolution": "retry_again", "count": 1},
    )  # fmt: skip
    pos = t.state.positions["AAA-1"]
    assert pos.retry == Retry(1, _sec(6.5), ("z",), False) and not pos.halted
    assert [r["attempt"] for r in _records(t.commands, "order.retry")] == [1]


def test_a_cancel_refused_for_good_keeps_the_order_as_the_protection():
    state = _canceling()
    pos = state.positions["AAA-1"]
    t = step(state, CancelRejected(_sec(2), STOP_ID, "HTTP 422 no", CancelRefusal.PERMANENT))
    assert [getattr(c, "kind", None) for c in t.commands[1:]] == ["operation.done"]
    assert t.commands[:1] == (
        Alert(
            _sec(2),
            "cancel_rejected",
            {"symbol": "AAA", "key": "AAA-1", "order_id": STOP_ID, "reason": "HTTP 422 no",
             "kind": "permanent", "command": "cancel", "attempts": 0,
             "failures": ["HTTP 422 no"], "remaining_qty": D(10),
             "resolution": "order_kept_ladder_frozen"},
        ),
    )  # fmt: skip
    after = t.state.positions["AAA-1"]
    assert after.halted and after.retry is None and after.ladder.trigger is None
    assert after.orders.exit == evolve(pos.orders.exit, status=OrderStatus.LIVE)
    assert after.orders.to_sell == 0 and after.orders.milestones == ()
    assert not after.bare


def test_a_cancel_refused_because_the_order_filled_waits_for_the_fill():
    state = _canceling()
    t = step(state, CancelRejected(_sec(2), STOP_ID, "HTTP 422 filled", CancelRefusal.FILLED))
    assert t.commands == (
        Record(
            "conflict.detected",
            _sec(2),
            {"symbol": "AAA", "key": "AAA-1", "type": "cancel_after_fill",
             "order_ids": [STOP_ID], "resolution": "await_fill", "reason": "HTTP 422 filled"},
        ),
    )  # fmt: skip
    assert t.state.positions["AAA-1"] == state.positions["AAA-1"]


def test_a_cancel_refused_as_already_canceled_is_a_confirmation():
    state = _canceling()
    t = step(state, CancelRejected(_sec(2), STOP_ID, "HTTP 422 canceled", CancelRefusal.CANCELED))
    first, *rest = t.commands
    assert first == Record(
        "conflict.detected",
        _sec(2),
        {"symbol": "AAA", "key": "AAA-1", "type": "already_canceled", "order_ids": [STOP_ID],
         "resolution": "treated_as_canceled", "reason": "HTTP 422 canceled"},
    )  # fmt: skip
    [canceled] = _records(rest, "order.canceled")
    assert canceled["order_id"] == STOP_ID
    [stop] = [c for c in rest if isinstance(c, SubmitOrder)]
    assert stop.stop_price == D("100.00") and stop.qty == D(10)  # the breakeven stop goes out
    assert STOP_ID not in t.state.routes


def test_a_cancel_refused_as_not_found_asks_the_broker_and_sends_nothing():
    state = _canceling()
    t = step(state, CancelRejected(_sec(2), STOP_ID, "HTTP 404", CancelRefusal.NOT_FOUND))
    [first] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert first.data == {
        "symbol": "AAA", "key": "AAA-1", "type": "order_not_found", "order_ids": [STOP_ID],
        "resolution": "treated_as_canceled", "reason": "HTTP 404",
    }  # fmt: skip
    assert t.commands[0] == first
    assert [type(c) for c in t.commands if isinstance(c, RequestSnapshot)] == [RequestSnapshot]
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    pos = t.state.positions["AAA-1"]
    assert pos.reconciling == _sec(2) and pos.orders.exit is None


def test_answers_about_orders_that_are_gone_or_never_were():
    state = _canceling()
    t = step(state, OrderCanceled(_sec(2), STOP_ID))
    # a second confirmation of the same cancel
    again = step(t.state, OrderCanceled(_sec(3), STOP_ID))
    assert again.commands == (
        Record(
            "conflict.detected",
            _sec(3),
            {"symbol": "AAA", "key": "AAA-1", "type": "stale_answer", "order_ids": [STOP_ID],
             "resolution": "already_accounted", "reason": "canceled again"},
        ),
    )  # fmt: skip
    assert again.state.positions == t.state.positions and again.state.routes == t.state.routes
    for kind, name in (
        (CancelRefusal.FILLED, "cancel_after_fill"),
        (CancelRefusal.CANCELED, "already_canceled"),
        (CancelRefusal.NOT_FOUND, "order_not_found"),
        (CancelRefusal.TRANSIENT, "order_not_found"),
    ):
        late = step(t.state, CancelRejected(_sec(3), STOP_ID, "late", kind))
        [record] = late.commands
        assert (record["type"], record["resolution"], record["reason"], record["key"]) == (
            name, "already_accounted", "late", "AAA-1"
        )  # fmt: skip
    for event, what in (
        (OrderCanceled(_sec(1.5), "theirs-1"), "canceled"),
        (CancelRejected(_sec(1.5), "theirs-1", "no"), "cancel rejected"),
        (OrderAccepted(_sec(1.5), "theirs-1"), "accepted"),
    ):
        assert step(state, event).commands == (
            Alert(_sec(1.5), "unknown_order", {"order_id": "theirs-1", "event": what}),
        )


def test_an_entry_canceled_by_the_broker_is_dropped_with_its_client_id():
    state = step(EngineState.empty(), Tick(T0, "AAA", D("100"))).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10), None, "mine"))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    live = step(t.state, OrderAccepted(_sec(1), order.order_id))
    assert live.state.entries["AAA-1"].order.status is OrderStatus.LIVE
    gone = step(live.state, OrderCanceled(_sec(2), order.order_id))
    assert gone.commands == (
        Record(
            "entry.blocked",
            _sec(2),
            {"symbol": "AAA", "reason": "entry_canceled", "detail": order.order_id, "id": "mine"},
        ),
    )
    assert "AAA-1" not in gone.state.entries and order.order_id not in gone.state.routes


def test_a_tranche_the_broker_canceled_goes_back_to_be_sold():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    sale = pos.orders.sell
    assert sale.open_qty == D(5) and pos.orders.to_sell == 0
    t = step(state, OrderFilled(_sec(2), sale.id, D(2), D("102")))
    t = step(t.state, OrderCanceled(_sec(3), sale.id))
    [canceled] = _records(t.commands, "order.canceled")
    assert (canceled["order_id"], canceled["qty"]) == (sale.id, D(5))
    after = t.state.positions["AAA-1"]
    # the 3 shares it did not sell are sold again (a new order), not more
    sells = [c for c in t.commands if isinstance(c, SubmitOrder) and c.purpose != "protect"]
    assert [(c.order_id, c.qty) for c in sells] == [("rt-AAA-1-3-partial", D(3))]
    assert after.orders.sell.qty == D(3) and after.orders.to_sell == 0
    assert after.orders.milestones == ((D("2.0"), D(3)),) and after.fills.remaining == D(8)


def test_an_accepted_stop_covering_every_share_closes_the_window_and_is_the_restore_point():
    state = _canceling()
    t = step(state, OrderCanceled(_sec(2), STOP_ID))
    pos = t.state.positions["AAA-1"]
    assert pos.exposed_since == _sec(2)
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    a = step(t.state, OrderAccepted(_sec(3), stop.order_id))
    pos = a.state.positions["AAA-1"]
    assert pos.exposed_since is None and pos.orders.restore == pos.orders.exit
    assert pos.orders.exit.status is OrderStatus.LIVE
    # an answer thought lost: the order waiting to be sent again was at the broker after all
    waiting = step(
        t.state, OrderRejected(_sec(3), stop.order_id, "timeout", OrderRefusal.UNKNOWN)
    ).state
    assert waiting.positions["AAA-1"].orders.exit.status is OrderStatus.RETRY_WAIT
    late = step(waiting, OrderAccepted(_sec(3.1), stop.order_id)).state.positions["AAA-1"]
    assert late.orders.exit.status is OrderStatus.LIVE and late.exposed_since is None
    assert late.retry is None or late.retry.attempts == 0


def _partials(commands) -> list[tuple[D, D]]:
    return [(r["milestone"], r["qty"]) for r in _records(commands, "partial.filled")]


def test_a_take_profit_fill_tells_every_level_and_splits_the_fill_across_the_tranches():
    """AAA long 10 @ 100, OCO stop 99 / take-profit 104 (4R). The take-profit fills whole:
    every level is journaled as reached (`take-profit filled at 104`) and the 10 shares are
    told as the three tranches (5 at 2R, 2 at 3R, the rest at 4R)."""
    t = step(_opened(), OrderFilled(_sec(2), STOP_ID, D(10), D("104")))
    states = _records(t.commands, "position.state")
    assert [(r["old"], r["new"]) for r in states] == [
        ("INITIAL_RISK", "BREAKEVEN_PROTECTED"),
        ("BREAKEVEN_PROTECTED", "PARTIAL_PROFIT_TAKEN"),
        ("PARTIAL_PROFIT_TAKEN", "ADVANCED_PROFIT_TAKEN"),
        ("ADVANCED_PROFIT_TAKEN", "FINAL_PROFIT_TAKEN"),
    ]
    assert {r["reason"] for r in states} == {"take-profit filled at 104"}
    assert {r["r"] for r in states} == {D(4)}
    assert _partials(t.commands) == [(D("2.0"), D(5)), (D("3.0"), D(2)), (D("4.0"), D(3))]
    assert "AAA-1" not in t.state.positions
    [closed] = _records(t.commands, "position.closed")
    assert closed["reason"] == "take_profit"


def test_a_take_profit_filled_in_parts_names_the_final_milestone_for_the_rest():
    """4 shares first (told at 2R, the first tranche not ordered), then 6: no tranche is left
    to name, so the rest is the final milestone's; the position is at its final state."""
    t = step(_opened(), OrderFilled(_sec(2), STOP_ID, D(4), D("104.5")))
    assert _partials(t.commands) == [(D("2.0"), D(4))]
    pos = t.state.positions["AAA-1"]
    assert pos.close_reason.value == "take_profit" and pos.ladder.trigger is None
    assert pos.ladder.next_level == 5 and pos.ladder.protection.value == "FINAL_PROFIT_TAKEN"
    assert pos.orders.exit.filled == D(4) and pos.fills.remaining == D(6)
    assert (pos.fills.realized, pos.fills.exit_value, pos.fills.exited) == (
        D("18.0"), D("418.0"), D(4)
    )  # fmt: skip
    assert (pos.fills.last_qty, pos.fills.last_price) == (D(4), D("104.5"))
    t = step(t.state, OrderFilled(_sec(3), STOP_ID, D(6), D("104")))
    assert _partials(t.commands) == [(D(4), D(6))]
    assert _records(t.commands, "position.state") == []


def test_a_fill_of_the_oco_below_its_take_profit_is_the_stop():
    t = step(_opened(), OrderFilled(_sec(2), STOP_ID, D(10), D("103.99")))
    assert [c.kind for c in t.commands if isinstance(c, Record)] == [
        "order.filled", "position.closed", "trade.closed"
    ]  # fmt: skip
    [closed] = _records(t.commands, "position.closed")
    assert closed["reason"] == "stop"


def test_a_short_take_profit_is_filled_at_or_below_its_price():
    state, _ = _short_opened()
    pos = state.positions["AAA-1"]
    assert pos.orders.exit.limit_price == D("96.00")
    t = step(state, OrderFilled(_sec(2), pos.orders.exit.id, D(10), D("96")))
    assert _records(t.commands, "position.closed")[0]["reason"] == "take_profit"
    t = step(state, OrderFilled(_sec(2), pos.orders.exit.id, D(10), D("96.01")))
    assert _records(t.commands, "position.closed")[0]["reason"] == "stop"


def _two_milestones() -> EngineState:
    """AAA at 2R with a market sale of 5 for two milestones: 3 shares for 2R, 2 for 3R."""
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    pos = evolve(pos, orders=evolve(pos.orders, milestones=((D(2), D(3)), (D(3), D(2)))))
    return state.evolve(positions=state.positions.set(pos.key, pos))


def test_a_market_sale_is_allotted_to_its_milestones_in_order():
    state = _two_milestones()
    sale = state.positions["AAA-1"].orders.sell
    t = step(state, OrderFilled(_sec(2), sale.id, D(4), D("102")))
    assert _partials(t.commands) == [(D(2), D(3)), (D(3), D(1))]
    pos = t.state.positions["AAA-1"]
    assert pos.orders.milestones == ((D(3), D(1)),) and pos.orders.sell.filled == D(4)
    assert pos.fills.remaining == D(6) and pos.close_reason is None
    t = step(t.state, OrderFilled(_sec(3), sale.id, D(1), D("102.5")))
    assert _partials(t.commands) == [(D(3), D(1))]
    pos = t.state.positions["AAA-1"]
    assert pos.orders.milestones == () and pos.fills.remaining == D(5)
    assert pos.orders.sell is None or pos.orders.sell.id != sale.id


def test_the_last_shares_sold_by_a_tranche_close_at_the_final_target_by_an_exit_as_exit():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    whole = evolve(pos, orders=evolve(pos.orders, sell=evolve(pos.orders.sell, qty=D(10))))
    s = state.evolve(positions=state.positions.set(pos.key, whole))
    t = step(s, OrderFilled(_sec(2), pos.orders.sell.id, D(10), D("102")))
    assert _records(t.commands, "position.closed")[0]["reason"] == "final_target"
    as_exit = evolve(whole.orders.sell, role=OrderRole.EXIT)
    s = state.evolve(positions=state.positions.set(pos.key, evolve(whole, orders=evolve(
        whole.orders, sell=as_exit, milestones=()))))  # fmt: skip
    t = step(s, OrderFilled(_sec(2), pos.orders.sell.id, D(10), D("102")))
    assert _records(t.commands, "position.closed")[0]["reason"] == "exit"


def test_a_fill_is_the_symbols_latest_price_unless_a_later_print_came_first():
    state = _tranche_sent()
    sale = state.positions["AAA-1"].orders.sell
    t = step(state, OrderFilled(_sec(2), sale.id, D(1), D("101.7")))
    assert t.state.marks["AAA"] == Tick(_sec(2), "AAA", D("101.7"))
    later = step(state, Tick(_sec(5), "AAA", D("102.2"))).state
    t = step(later, OrderFilled(_sec(2), sale.id, D(1), D("101.7")))
    assert t.state.marks["AAA"] == Tick(_sec(5), "AAA", D("102.2"))
    same = step(state, Tick(_sec(2), "AAA", D("102.2"))).state
    t = step(same, OrderFilled(_sec(2), sale.id, D(1), D("101.7")))
    assert t.state.marks["AAA"].price == D("101.7")  # at the same instant the fill is news


def test_an_entry_filled_through_its_stop_is_sold_and_the_operator_told():
    state = step(EngineState.empty(), Tick(T0, "AAA", D("100"))).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderFilled(_sec(1), order.order_id, D(10), D("98.5")))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert == Alert(
        _sec(1), "initial_risk_not_positive", {"symbol": "AAA", "entry": D("98.5"), "stop": D(99)}
    )
    pos = t.state.positions["AAA-1"]
    assert pos.close_reason.value == "initial_risk_not_positive"
    assert pos.ladder.schedule == () and pos.ladder.take_profit is None
    sells = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert [(c.qty, c.type.value) for c in sells] == [(D(10), "market")]
    assert order.order_id not in t.state.routes


def _part_filled():
    """AAA's entry for 10 (stop 99) filled 4 @ 100 at 1 s: the step and the entry order."""
    state = step(EngineState.empty(), Tick(T0, "AAA", D("100"))).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    return step(t.state, OrderFilled(_sec(1), order.order_id, D(4), D("100"))), order


def test_an_entry_filled_in_parts_keeps_its_order_until_every_share_is_in():
    t, order = _part_filled()
    pos = t.state.positions["AAA-1"]
    assert pos.orders.entry.filled == D(4) and pos.orders.entry.status is OrderStatus.LIVE
    assert pos.opened == _sec(1) and pos.exposed_since == _sec(1)
    assert t.state.routes[order.order_id] == "AAA-1"
    assert pos.ladder.trigger == D("101.0") and pos.ladder.take_profit == D("104.00")
    t = step(t.state, OrderFilled(_sec(2), order.order_id, D(6), D("101")))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.entry is None
    assert pos.ladder.entry == D("100.6") and pos.fills.original == D(10)
    assert pos.fills.cost == D("1006")
    [grown] = _records(t.commands, "position.opened")
    assert grown["added"] == D(6)


def _refused_sale() -> EngineState:
    """AAA's tranche sale of 5 refused for a passing reason at 1.2 s: it waits for its retry,
    due 0.5 s later."""
    state = _tranche_sent()
    sale = state.positions["AAA-1"].orders.sell
    t = step(state, OrderRejected(_sec(1.2), sale.id, BUSY, OrderRefusal.TRANSIENT))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.sell.status is OrderStatus.RETRY_WAIT
    assert pos.retry == Retry(1, _sec(1.7), (BUSY,), False)
    return t.state


def test_a_refused_sale_is_sent_again_under_its_own_id_when_due_and_its_fill_awaited():
    state = _refused_sale()
    sale = state.positions["AAA-1"].orders.sell
    assert state.due == _sec(1.7)
    assert step(state, Clock(_sec(1.69))).commands == ()
    t = step(state, Clock(_sec(1.7)))
    [again] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (again.order_id, again.qty, again.ts) == (sale.id, D(5), _sec(1.7))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.sell.status is OrderStatus.PENDING_NEW
    assert pos.retry == Retry(1, None, (BUSY,), False)
    assert pos.awaited is not None and pos.awaited.order_id == sale.id
    assert pos.awaited.due == _sec(6.7)  # a fill awaited 5 s from the resend
    assert t.state.due <= _sec(6.7)
    # a tick of another symbol sends it too (a retry is not scoped)
    t = step(state, Tick(_sec(1.8), "BBB", D("50")))
    assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == [sale.id]


def test_a_cancel_refused_for_a_passing_reason_is_sent_again_for_a_sale_too():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    sale = evolve(pos.orders.sell, status=OrderStatus.CANCEL_WAIT)
    pos = evolve(pos, orders=evolve(pos.orders, sell=sale), retry=Retry(1, _sec(2)))
    state = state.evolve(positions=state.positions.set(pos.key, pos), due=_sec(2))
    t = step(state, Clock(_sec(2)))
    assert [c for c in t.commands if isinstance(c, CancelOrder)] == [
        CancelOrder(_sec(2), sale.id, "AAA")
    ]
    after = t.state.positions["AAA-1"]
    assert after.orders.sell.status is OrderStatus.PENDING_CANCEL
    assert after.awaited.kind.value == "cancel" and after.awaited.due == _sec(4)


def test_nothing_is_resent_while_the_link_is_down_and_the_due_time_stays():
    state = _refused_sale()
    down = step(state, Connectivity(_sec(1.5), False)).state
    t = step(down, Clock(_sec(3)))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert t.state.positions["AAA-1"].orders.sell.status is OrderStatus.RETRY_WAIT


def test_a_held_position_waits_until_its_hold_ends_then_takes_its_step():
    state = _refused_sale()
    pos = state.positions["AAA-1"]
    held = evolve(pos, held_until=_sec(3))
    state = state.evolve(positions=state.positions.set(pos.key, held), due=_sec(1.7))
    t = step(state, Clock(_sec(2)))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert t.state.positions["AAA-1"].held_until == _sec(3)
    assert t.state.due == _sec(3)  # the retry due at 1.7 waits for the hold's end
    t = step(t.state, Clock(_sec(3)))
    assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == [pos.orders.sell.id]
    assert t.state.positions["AAA-1"].held_until is None


def test_waiting_entries_are_sent_when_due_in_a_fixed_order():
    state = step(EngineState.empty(), Tick(T0, "BBB", D("50"))).state
    state = step(state, Tick(T0, "AAA", D("100"))).state
    out = []
    for sym, price in (("BBB", "49"), ("AAA", "99")):
        t = step(state, EntryIntent(T0, sym, Side.LONG, D(price), D(1)))
        [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
        state = step(t.state, OrderRejected(T0, order.order_id, BUSY, OrderRefusal.TRANSIENT)).state
        out.append(order.order_id)
    entries = state.entries
    assert [e.retry.due for e in entries.values()] == [_sec(0.5)] * 2
    assert step(state, Clock(_sec(0.4))).commands == ()
    t = step(state, Clock(_sec(0.5)))
    # at one instant, by symbol (then key), never by a map's order
    assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == sorted(out)
    for e in t.state.entries.values():
        assert e.order.status is OrderStatus.PENDING_NEW and e.retry.due is None
    # the link down: an entry is never protection, it waits (its due time stays)
    down = step(state, Connectivity(_sec(0.2), False)).state
    t = step(down, Clock(_sec(1)))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert {e.retry.due for e in t.state.entries.values()} == {_sec(0.5)}


def _settled_pos():
    """AAA-1 as `_opened` leaves it: 10 shares, its OCO (99 / 104) accepted, no operation."""
    pos = _opened().positions["AAA-1"]
    assert pos.operation is None and pos.orders.restore is not None and not pos.bare
    return pos


def test_an_order_command_opens_an_operation_of_the_kind_it_is_or_joins_the_one_in_flight():
    pos = _settled_pos()
    moved = touch(pos, "a", _sec(1))
    assert moved.operation == Operation(OperationKind.STOP_MOVE, _sec(1), ("a",))
    arming = touch(evolve(pos, orders=evolve(pos.orders, restore=None)), "a", _sec(1))
    assert arming.operation.kind is OperationKind.ARM
    again = touch(touch(moved, "b", _sec(2)), "a", _sec(3))
    assert again.operation == Operation(OperationKind.STOP_MOVE, _sec(1), ("a", "b"))
    queued = evolve(moved, orders=evolve(moved.orders, to_sell=D(1)))
    assert touch(queued, "c", _sec(2)).operation.kind is OperationKind.PARTIAL_EXIT
    closing = evolve(queued, close_reason=CloseReason.STOP)
    assert touch(closing, "c", _sec(2)).operation.kind is OperationKind.EXIT
    selling = _tranche_sent().positions["AAA-1"]
    assert selling.orders.sell is not None and selling.orders.to_sell == 0
    assert touch(selling, "x", _sec(2)).operation.kind is OperationKind.PARTIAL_EXIT


def test_an_unprotected_window_opens_once_and_its_length_counts_toward_the_operation():
    pos = _settled_pos()
    bare = exposed(pos, _sec(1))
    assert bare.exposed_since == _sec(1)
    assert exposed(bare, _sec(2)).exposed_since == _sec(1)
    empty = evolve(pos, fills=evolve(pos.fills, remaining=D(0)))
    assert exposed(empty, _sec(1)).exposed_since is None
    assert covered(pos, _sec(3)) is pos
    assert covered(bare, _sec(3)).exposed_since is None and covered(bare, _sec(3)).operation is None
    op = Operation(OperationKind.STOP_MOVE, _sec(0), ("a",), timedelta(milliseconds=250))
    timed = covered(evolve(bare, operation=op), _sec(3.5))
    assert timed.operation.exposed == timedelta(milliseconds=2750)


def test_an_operation_is_settled_only_when_its_protection_is_as_the_ladder_wants():
    pos = _settled_pos()
    eo = pos.orders.exit
    assert settled(pos)
    assert not settled(evolve(pos, orders=evolve(pos.orders, to_sell=D(1))))
    assert not settled(evolve(pos, orders=evolve(pos.orders, exit=evolve(eo, qty=D(9)))))
    assert not settled(evolve(pos, orders=evolve(pos.orders, exit=evolve(eo, stop_price=D(98)))))
    for status in (OrderStatus.PENDING_NEW, OrderStatus.PENDING_CANCEL):
        assert not settled(evolve(pos, orders=evolve(pos.orders, exit=evolve(eo, status=status))))
    assert not settled(evolve(pos, orders=evolve(pos.orders, exit=None)))
    gone = evolve(pos, fills=evolve(pos.fills, remaining=D(0)))
    assert not settled(gone) and settled(evolve(gone, orders=evolve(gone.orders, exit=None)))
    halted = evolve(pos, halted=True, orders=evolve(pos.orders, exit=evolve(eo, stop_price=D(1))))
    assert settled(halted)
    assert not settled(evolve(halted, orders=evolve(halted.orders, exit=evolve(eo, qty=D(11)))))
    assert not settled(evolve(halted, orders=evolve(halted.orders, exit=None)))
    restore = evolve(eo, role=OrderRole.RESTORE)
    ladder = pos.ladder
    rolled = evolve(pos, orders=evolve(pos.orders, exit=restore, refused=(ladder.stop, None)))
    assert not settled(rolled)
    wanted = (ladder.stop, ladder.take_profit)
    assert settled(evolve(rolled, orders=evolve(rolled.orders, refused=wanted)))


def test_an_operation_ends_applied_rolled_back_or_closed_with_its_record():
    pos = _settled_pos()
    op = Operation(OperationKind.STOP_MOVE, _sec(1), ("a", "b"), timedelta(milliseconds=300))
    busy = evolve(pos, operation=op)
    assert conclude(pos, _sec(2), closing=False) == (pos, [])
    done, [record] = conclude(busy, _sec(2), closing=False)
    assert done.operation is None
    assert record == Record(
        "operation.done",
        _sec(2),
        {"symbol": "AAA", "key": "AAA-1", "operation": "stop_move", "outcome": "applied",
         "started": _sec(1), "order_ids": ["a", "b"], "duration_ms": D(1000),
         "unprotected_ms": D(300)},
    )  # fmt: skip
    waiting = evolve(busy, orders=evolve(pos.orders, to_sell=D(1)))
    assert conclude(waiting, _sec(2), closing=False) == (waiting, [])
    _, [closed] = conclude(evolve(waiting, exposed_since=_sec(1.5)), _sec(2), closing=True)
    assert (closed["outcome"], closed["unprotected_ms"]) == ("closed", D(800))
    _, [kept] = conclude(evolve(busy, halted=True), _sec(2), closing=False)
    assert kept["outcome"] == "rolled_back"
    restored = evolve(pos.orders.exit, role=OrderRole.RESTORE)
    wanted = (pos.ladder.stop, pos.ladder.take_profit)
    back = evolve(busy, orders=evolve(pos.orders, exit=restored, refused=wanted))
    _, [rolled] = conclude(back, _sec(2), closing=False)
    assert rolled["outcome"] == "rolled_back"


def _new_stop_sent() -> tuple[EngineState, str]:
    """AAA at 1R, the old stop's cancel confirmed: the breakeven stop (100) is sent."""
    t = step(_canceling(), OrderCanceled(_sec(2), STOP_ID))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert stop.order_id == "rt-AAA-1-2-stop" and stop.stop_price == D("100.00")
    return t.state, stop.order_id


def test_a_stop_refused_for_good_restores_the_last_accepted_protection_with_its_context():
    state, oid = _new_stop_sent()
    t = step(state, OrderRejected(_sec(2.1), oid, "HTTP 422 bad", OrderRefusal.PERMANENT))
    [restore] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (restore.order_id, restore.purpose, restore.stop_price, restore.limit_price) == (
        "rt-AAA-1-3-restore", "restore", D("99.00"), D("104.00")
    )  # fmt: skip
    [rejected] = _records(t.commands, "order.rejected")
    assert rejected.data == {"symbol": "AAA", "key": "AAA-1", "order_id": oid,
                             "reason": "HTTP 422 bad"}  # fmt: skip
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert == Alert(
        _sec(2.1),
        "order_rejected",
        {"symbol": "AAA", "key": "AAA-1", "order_id": oid, "reason": "HTTP 422 bad",
         "kind": "permanent", "halted": False, "attempts": 0, "failures": ["HTTP 422 bad"],
         "remaining_qty": D(10), "stop": D("100.00"),
         "resolution": "restored_previous_protection", "restored_order_id": "rt-AAA-1-3-restore",
         "restored_stop": D("99.00"), "restored_take_profit": D("104.00"), "count": 1},
    )  # fmt: skip
    assert oid not in t.state.routes
    # the restore refused too: the shares are sold at market, never left bare
    t = step(t.state, OrderRejected(_sec(2.2), restore.order_id, "no", OrderRefusal.PERMANENT))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sale.type.value, sale.qty, sale.purpose) == ("market", D(10), "exit")
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.context["resolution"] == "exit_at_market"


def test_a_stop_whose_answers_were_lost_is_sent_again_under_its_id_forever():
    """Three lost answers (timeouts) spend the retries; the fourth is not a reason to send
    another stop (the first may be at the broker): the operator is told and the same order
    is sent again on a fresh schedule, still marked uncertain."""
    state, oid = _new_stop_sent()
    at = 2.1
    for n in range(3):
        t = step(state, OrderRejected(_sec(at), oid, f"lost {n}", OrderRefusal.UNKNOWN))
        assert not [c for c in t.commands if isinstance(c, Alert)]
        due = t.state.positions["AAA-1"].retry.due
        t = step(t.state, Clock(due))
        assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == [oid]
        state, at = t.state, (due - _sec(0)).total_seconds() + 0.01
    assert state.positions["AAA-1"].retry.attempts == 3
    t = step(state, OrderRejected(_sec(at), oid, "lost 3", OrderRefusal.UNKNOWN))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "retries_exhausted"
    assert alert.context == {
        "symbol": "AAA", "key": "AAA-1", "order_id": oid, "reason": "lost 3", "kind": "unknown",
        "halted": False, "attempts": 3, "failures": ["lost 0", "lost 1", "lost 2", "lost 3"],
        "remaining_qty": D(10), "stop": D("100.00"), "resolution": "resend_same_order",
        "count": 1,
    }  # fmt: skip
    pos = t.state.positions["AAA-1"]
    assert pos.retry.attempts == 1 and pos.retry.uncertain
    assert pos.retry.due == _sec(at) + timedelta(milliseconds=500)
    assert pos.orders.exit.id == oid and pos.orders.exit.status is OrderStatus.RETRY_WAIT
    # a later passing refusal keeps it uncertain: still never replaced
    t = step(step(t.state, Clock(pos.retry.due)).state,
             OrderRejected(pos.retry.due, oid, "busy", OrderRefusal.TRANSIENT))  # fmt: skip
    assert t.state.positions["AAA-1"].retry.uncertain


def test_a_refusal_for_held_shares_names_the_orders_holding_them():
    state = _two_milestones()
    pos = state.positions["AAA-1"]
    sale = pos.orders.sell
    t = step(state, OrderRejected(_sec(1.2), sale.id, "HTTP 403 held", OrderRefusal.SHARES_LOCKED))
    [record] = _records(t.commands, "conflict.detected")
    assert record.data == {
        "symbol": "AAA", "key": "AAA-1", "type": "shares_locked", "order_ids": [sale.id],
        "resolution": "retry_after_backoff", "reason": "HTTP 403 held",
    }  # fmt: skip
    assert t.state.positions["AAA-1"].retry.attempts == 1


def test_a_held_shares_refusal_telling_fewer_shares_is_evidence_of_a_divergence():
    state = _tranche_sent()
    sale = state.positions["AAA-1"].orders.sell

    def refused(available, existing):
        ack = OrderRejected(_sec(1.2), sale.id, "HTTP 403", OrderRefusal.SHARES_LOCKED,
                            None if available is None else D(available),
                            None if existing is None else D(existing))  # fmt: skip
        t = step(state, ack)
        return [c for c in t.commands if isinstance(c, Record) and c.kind == "divergence.detected"]

    assert refused(None, None) == []
    assert refused("0", "10") == []  # the broker holds them all: something holds them for now
    [found] = refused("0", "9")
    assert found["believed"] == {"qty": D(10)}
    assert found["broker"] == {"available": D(0), "existing": D(9), "reason": "HTTP 403"}
    assert found["evidence"] == "broker holds fewer shares"
    # the holding not told: as free as ratchet believes (nothing else of its holds them)
    assert refused("10", None) == []
    assert len(refused("9", None)) == 1


def test_a_market_exit_refused_for_good_is_sent_again_a_tranche_is_not():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    sale = pos.orders.sell
    assert not retryable(state, OrderRejected(_sec(1.2), sale.id, "x", OrderRefusal.PERMANENT))
    assert retryable(state, OrderRejected(_sec(1.2), sale.id, "x", OrderRefusal.TRANSIENT))
    exit_sale = evolve(pos, orders=evolve(pos.orders, sell=evolve(sale, role=OrderRole.EXIT)))
    s = state.evolve(positions=state.positions.set(pos.key, exit_sale))
    assert retryable(s, OrderRejected(_sec(1.2), sale.id, "x", OrderRefusal.PERMANENT))
    assert not retryable(s, OrderRejected(_sec(1.2), "rt-AAA-1-9-x", "x", OrderRefusal.PERMANENT))
    # another order of the position (its stop) refused for good beside the exit: not retried
    routed = s.evolve(routes=s.routes.set("rt-AAA-1-5-stop", "AAA-1"))
    other = OrderRejected(_sec(1.2), "rt-AAA-1-5-stop", "x", OrderRefusal.PERMANENT)
    assert not retryable(routed, other)
    assert not retryable(s, OrderRejected(_sec(1.2), "nobody", "x", OrderRefusal.PERMANENT))
    t = step(s, OrderRejected(_sec(1.2), sale.id, "halted", OrderRefusal.PERMANENT))
    assert t.state.positions["AAA-1"].orders.sell.status is OrderStatus.RETRY_WAIT
    assert step(state, OrderRejected(_sec(1.2), "theirs", "x")).commands == (
        Alert(_sec(1.2), "unknown_order", {"order_id": "theirs", "event": "rejected"}),
    )


def test_a_wash_trade_refusal_asks_for_the_snapshot_under_cancel_and_waits_under_leave():
    state = _tranche_sent()
    sale = state.positions["AAA-1"].orders.sell
    ack = OrderRejected(_sec(1.2), sale.id, "HTTP 403 wash", OrderRefusal.WASH_TRADE)
    t = step(state, ack)
    [record, *_] = _records(t.commands, "conflict.detected")
    assert (record["type"], record["resolution"]) == ("wash_trade", "cancel_user_order")
    assert t.state.positions["AAA-1"].wash_blocked == _sec(1.2)
    assert [c.symbols for c in t.commands if isinstance(c, RequestSnapshot)] == [("AAA",)]
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.context == {"symbol": "AAA", "key": "AAA-1", "order_id": sale.id,
                             "reason": "HTTP 403 wash", "resolution": "cancel_user_order",
                             "count": 1}  # fmt: skip
    leave = state._replace(config=evolve(state.config, foreign_orders="leave"))
    t = step(leave, ack)
    [record] = _records(t.commands, "conflict.detected")
    assert record["resolution"] == "retry_after_backoff"
    assert t.state.positions["AAA-1"].wash_blocked is None
    assert not [c for c in t.commands if isinstance(c, RequestSnapshot)]


def _pos(**orders_kw):
    """AAA-1 (long 10 @ 100, OCO 99 / 104 live) with its orders changed."""
    pos = _settled_pos()
    return evolve(pos, orders=evolve(pos.orders, **orders_kw))


def _limit_sale(price: str, qty="10", action=OrderAction.SELL):
    return Order("rt-AAA-1-5-exit", OrderRole.EXIT, action, OrderType.LIMIT, D(qty),
                 limit_price=D(price), status=OrderStatus.LIVE, extended=True)  # fmt: skip


EXT = Extended(D("0.002"), PriceGrid(), False)


def test_an_extended_limit_sale_is_withdrawn_only_a_whole_offset_away_or_at_the_open():
    pos = _pos(exit=None, sell=_limit_sale("100"))
    assert reconcile(pos, D("99.80"), _sec(1), extended=EXT) == (pos, [])  # 0.2 away: stays
    assert reconcile(pos, D("100.50"), _sec(1), extended=EXT) == (pos, [])  # above: fills
    assert reconcile(pos, None, _sec(1), extended=EXT) == (pos, [])
    for price, ext in ((D("99.79"), EXT), (D("100"), None)):
        after, cmds = reconcile(pos, price, _sec(1), extended=ext)
        assert cmds == [CancelOrder(_sec(1), "rt-AAA-1-5-exit", "AAA")]
        assert after.orders.sell.status is OrderStatus.PENDING_CANCEL
    buy_back = _limit_sale("100", action=OrderAction.BUY)
    short = evolve(pos, side=Side.SHORT, long=False, orders=evolve(pos.orders, sell=buy_back))
    assert reconcile(short, D("100.20"), _sec(1), extended=EXT) == (short, [])
    assert reconcile(short, D("99"), _sec(1), extended=EXT) == (short, [])
    assert reconcile(short, D("100.21"), _sec(1), extended=EXT)[1] == [
        CancelOrder(_sec(1), "rt-AAA-1-5-exit", "AAA")
    ]
    market = evolve(pos, orders=evolve(pos.orders, sell=evolve(
        pos.orders.sell, type=OrderType.MARKET, limit_price=None)))  # fmt: skip
    assert reconcile(market, D("90"), _sec(1), extended=EXT) == (market, [])
    waiting = evolve(pos, orders=evolve(pos.orders, sell=evolve(
        pos.orders.sell, status=OrderStatus.PENDING_NEW)))  # fmt: skip
    assert reconcile(waiting, D("90"), _sec(1)) == (waiting, [])


def _stuck(eo_qty: str, to_sell: str, due=None, other=False):
    """AAA-1 whose stop (for `eo_qty`) is being canceled, its confirmation alerted (due None)."""
    pos = _settled_pos()
    eo = evolve(pos.orders.exit, qty=D(eo_qty), status=OrderStatus.PENDING_CANCEL)
    waited = Awaited(AwaitedKind.CANCEL, "other" if other else eo.id, _sec(0), due, 4)
    return evolve(pos, awaited=waited, orders=evolve(pos.orders, exit=eo, to_sell=D(to_sell),
                                                     milestones=((D(2), D(to_sell)),)))  # fmt: skip


def test_shares_a_stuck_cancel_does_not_hold_are_sold_not_left_waiting():
    pos = _stuck("7", "5")
    after, cmds = reconcile(pos, D("102"), _sec(9))
    [sale] = [c for c in cmds if isinstance(c, SubmitOrder)]
    assert (sale.qty, sale.type, sale.purpose) == (D(3), OrderType.MARKET, "partial")
    assert after.orders.to_sell == D(2) and after.orders.sell.qty == D(3)
    for waiting in (_stuck("10", "5"), _stuck("7", "5", due=_sec(10)), _stuck("7", "5", other=True),
                    _stuck("7", "0")):  # fmt: skip
        assert reconcile(waiting, D("102"), _sec(9)) == (waiting, [])


def test_a_halted_ladder_sells_only_what_its_stop_does_not_hold():
    pos = evolve(_pos(to_sell=D(4), milestones=((D(2), D(4)),)), halted=True)
    assert reconcile(pos, D("102"), _sec(1)) == (pos, [])  # the stop holds all 10
    pos = evolve(pos, orders=evolve(pos.orders, exit=evolve(pos.orders.exit, qty=D(8))))
    after, cmds = reconcile(pos, D("102"), _sec(1))
    assert [c.qty for c in cmds if isinstance(c, SubmitOrder)] == [D(2)]
    assert after.orders.to_sell == D(2)
    bare = evolve(pos, orders=evolve(pos.orders, exit=None))
    assert [c.qty for c in reconcile(bare, D("102"), _sec(1))[1] if isinstance(c, SubmitOrder)] == [
        D(4)
    ]


def test_a_queued_tranche_frees_its_shares_first_and_waits_for_a_print_outside_the_session():
    pos = _pos(to_sell=D(5), milestones=((D(2), D(5)),))
    _, cmds = reconcile(pos, D("102"), _sec(1))
    assert cmds == [CancelOrder(_sec(1), STOP_ID, "AAA")]
    small = evolve(pos, orders=evolve(pos.orders, exit=evolve(pos.orders.exit, qty=D(5))))
    _, cmds = reconcile(small, D("102"), _sec(1))
    assert [c.qty for c in cmds if isinstance(c, SubmitOrder)] == [D(5)]
    assert reconcile(small, None, _sec(1), extended=EXT) == (small, [])
    _, cmds = reconcile(small, D("102"), _sec(1), extended=EXT)
    [sale] = [c for c in cmds if isinstance(c, SubmitOrder)]
    assert (sale.type, sale.limit_price, sale.extended_hours) == (
        OrderType.LIMIT,
        D("101.79"),
        True,
    )
    deferred = Extended(D("0.002"), PriceGrid(), True)
    assert reconcile(small, D("102"), _sec(1), extended=deferred)[1][:1] == [
        CancelOrder(_sec(1), STOP_ID, "AAA")
    ]  # the tranche waits for the open; the stop for 5 is not what the ladder wants
    exiting = evolve(small, close_reason=CloseReason.STOP_THROUGH_MARKET)
    assert [c.qty for c in reconcile(exiting, D("102"), _sec(1), extended=deferred)[1]
            if isinstance(c, SubmitOrder)] == [D(5)]  # fmt: skip


def test_a_closed_lot_cancels_its_stop_and_a_stop_as_wanted_stays():
    pos = _settled_pos()
    assert reconcile(pos, D("100.5"), _sec(1)) == (pos, [])
    gone = evolve(pos, fills=evolve(pos.fills, remaining=D(0)))
    assert reconcile(gone, D("100.5"), _sec(1))[1] == [CancelOrder(_sec(1), STOP_ID, "AAA")]
    empty = evolve(gone, orders=evolve(gone.orders, exit=None))
    assert reconcile(empty, D("100.5"), _sec(1)) == (empty, [])
    moved = evolve(pos, ladder=evolve(pos.ladder, stop=D("100.00")))
    assert reconcile(moved, D("100.5"), _sec(1))[1] == [CancelOrder(_sec(1), STOP_ID, "AAA")]
    restored = evolve(pos.orders.exit, role=OrderRole.RESTORE)
    kept = evolve(moved, orders=evolve(pos.orders, exit=restored,
                                       refused=(D("100.00"), pos.ladder.take_profit)))  # fmt: skip
    assert reconcile(kept, D("100.5"), _sec(1)) == (kept, [])
    bare = evolve(moved, orders=evolve(pos.orders, exit=None))
    after, cmds = reconcile(bare, D("100.00"), _sec(1))
    [record] = [c for c in cmds if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert record["reason"] == "stop 100.00 is at or through the market at 100.00"
    assert after.close_reason is CloseReason.STOP_THROUGH_MARKET and after.ladder.trigger is None
    after, cmds = reconcile(bare, D("100.01"), _sec(1))
    [stop] = [c for c in cmds if isinstance(c, SubmitOrder)]
    assert (stop.type, stop.qty, stop.stop_price, stop.limit_price) == (
        OrderType.OCO, D(10), D("100.00"), D("104.00")
    )  # fmt: skip


def test_a_stop_refused_while_an_exit_sells_every_share_is_not_needed_any_more():
    """AAA is being sold whole (its stop was through the market): a stop sent for it before
    and refused for good now is neither restored nor sold around (`exit_in_progress`)."""
    state, oid = _new_stop_sent()
    pos = state.positions["AAA-1"]
    sale = Order("rt-AAA-1-3-exit", OrderRole.EXIT, OrderAction.SELL, OrderType.MARKET, D(10),
                 status=OrderStatus.LIVE)  # fmt: skip
    selling = evolve(pos, close_reason=CloseReason.STOP_THROUGH_MARKET,
                     orders=evolve(pos.orders, sell=sale))  # fmt: skip
    state = state.evolve(positions=state.positions.set(pos.key, selling),
                         routes=state.routes.set(sale.id, pos.key))  # fmt: skip
    t = step(state, OrderRejected(_sec(2.1), oid, "HTTP 422 no", OrderRefusal.PERMANENT))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert (alert.reason, alert.context["resolution"]) == ("order_rejected", "exit_in_progress")
    after = t.state.positions["AAA-1"]
    assert after.orders.exit is None and after.orders.sell == sale
    # a queued sale (not yet sent) counts as selling too
    queued = evolve(selling, orders=evolve(selling.orders, sell=None, to_sell=D(10)))
    q = state.evolve(positions=state.positions.set(pos.key, queued))
    t = step(q, OrderRejected(_sec(2.1), oid, "HTTP 422 no", OrderRefusal.PERMANENT))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.context["resolution"] == "exit_in_progress"
    # not selling every share: the last accepted protection is restored
    partial = evolve(selling, close_reason=None)
    p = state.evolve(positions=state.positions.set(pos.key, partial))
    t = step(p, OrderRejected(_sec(2.1), oid, "HTTP 422 no", OrderRefusal.PERMANENT))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.context["resolution"] != "exit_in_progress"


def test_the_protect_deadline_sells_exactly_the_shares_nothing_holds():
    """AAA-1, 10 shares bare since 1 s, at 11 s: direct calls of `deadlines.unprotected`."""
    cfg = Config()
    base = evolve(_settled_pos(), exposed_since=_sec(1))
    eo = base.orders.exit
    # no stop at all: all 10 sold, the ladder stopped, the retry dropped
    bare = evolve(base, orders=evolve(base.orders, exit=None, milestones=((D(2), D(5)),)),
                  retry=Retry(2, None, ("x",)))  # fmt: skip
    pos, cmds = unprotected(bare, _sec(11), cfg)
    assert cmds == [
        Record("conflict.detected", _sec(11), {
            "symbol": "AAA", "key": "AAA-1", "type": "no_stop_in_time", "order_ids": [],
            "resolution": "sold_at_market",
            "reason": "no working stop for 10 shares in 10000 ms"}),
        Alert(_sec(11), "protect_deadline", {"symbol": "AAA", "key": "AAA-1", "qty": D(10),
                                              "bare_since": _sec(1), "stop": D("99.00")}),
    ]  # fmt: skip
    assert pos.orders.to_sell == D(10) and pos.orders.milestones == () and pos.retry is None
    assert pos.ladder.trigger is None and pos.close_reason is CloseReason.PROTECT_DEADLINE
    # a stop for 6 working: the other 4 sold, the ladder and the retry kept
    six = evolve(base, orders=evolve(base.orders, exit=evolve(eo, qty=D(6))),
                 retry=Retry(1, None, ("x",)))  # fmt: skip
    pos, cmds = unprotected(six, _sec(11), cfg)
    assert cmds[1].context["qty"] == D(4) and cmds[0]["order_ids"] == [STOP_ID]
    assert pos.orders.exit == six.orders.exit and pos.orders.to_sell == D(4)
    assert pos.ladder == six.ladder and pos.close_reason is None and pos.retry == six.retry
    # the same stop refused and waiting for its retry is not at the broker: all 10 go
    refused = evolve(six.orders.exit, status=OrderStatus.RETRY_WAIT)
    waiting = evolve(six, orders=evolve(six.orders, exit=refused))
    pos, cmds = unprotected(waiting, _sec(11), cfg)
    assert cmds[1].context["qty"] == D(10) and pos.orders.exit is None and pos.retry is None
    # ...unless its answer was lost: it may be there, and keeps its 6
    lost = evolve(waiting, retry=Retry(1, None, ("x",), True))
    pos, cmds = unprotected(lost, _sec(11), cfg)
    assert cmds[1].context["qty"] == D(4) and pos.orders.exit == lost.orders.exit
    # another lot's order holds 3 of the symbol's shares: only 7 are spare
    pos, cmds = unprotected(bare, _sec(11), cfg, spare=D(7))
    assert cmds[1].context["qty"] == D(7) and pos.orders.to_sell == D(7)
    assert unprotected(bare, _sec(11), cfg, spare=D(0)) == (bare, [])
    # a sale of 3 on its way beside the stop for 6: 1 share is bare
    sale = Order("s", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET, D(3))
    _, cmds = unprotected(evolve(six, orders=evolve(six.orders, sell=sale)), _sec(11), cfg)
    assert cmds[1].context["qty"] == D(1)
    # 8 spare, 6 of them under the stop: 2 may be sold
    _, cmds = unprotected(six, _sec(11), cfg, spare=D(8))
    assert cmds[1].context["qty"] == D(2)
    # the stop holds every share: nothing to do; a window not timed counts from now
    assert unprotected(base, _sec(11), cfg) == (base, [])
    untimed = evolve(bare, exposed_since=None)
    _, cmds = unprotected(untimed, _sec(11), cfg)
    assert cmds[1].context["bare_since"] == _sec(11)
    assert cmds[0]["reason"] == "no working stop for 10 shares in 0 ms"


def test_a_roll_back_by_hand_restores_sells_or_waits_as_the_position_stands():
    pos = _settled_pos()
    old = pos.orders.restore
    queued = _pos(to_sell=D(3), milestones=((D(2), D(3)),))
    after, cmds = roll_back(queued, D("100.5"), _sec(1))
    assert cmds == [] and after.orders.to_sell == 0 and after.orders.milestones == ()
    assert after.orders.refused == (pos.ladder.stop, pos.ladder.take_profit)
    # nothing at the broker: the last accepted protection goes back
    bare = _pos(exit=None)
    after, cmds = roll_back(bare, D("100.5"), _sec(1))
    [restore] = [c for c in cmds if isinstance(c, SubmitOrder)]
    assert (restore.purpose, restore.qty, restore.stop_price, restore.limit_price) == (
        "restore", D(10), old.stop_price, old.limit_price
    )  # fmt: skip
    gone = evolve(bare, fills=evolve(bare.fills, remaining=D(0)))
    assert roll_back(gone, D("100.5"), _sec(1))[1] == []
    # nothing to restore: sold, at market in the session, by a limit outside it
    unprotectable = _pos(exit=None, restore=None)
    _, cmds = roll_back(unprotectable, D("100.5"), _sec(1))
    assert [(c.type, c.qty) for c in cmds if isinstance(c, SubmitOrder)] == [
        (OrderType.MARKET, D(10))
    ]
    _, cmds = roll_back(unprotectable, D("100"), _sec(1), EXT)
    assert [(c.type, c.limit_price) for c in cmds if isinstance(c, SubmitOrder)] == [
        (OrderType.LIMIT, D("99.80"))
    ]
    # the old stop is through the market: out, by a limit outside the session
    _, cmds = roll_back(bare, D("98.5"), _sec(1), EXT)
    assert [(c.type, c.limit_price) for c in cmds if isinstance(c, SubmitOrder)] == [
        (OrderType.LIMIT, D("98.30"))
    ]
    # beside a limit sale: what the sale's state calls for (re-priced only a whole offset away)
    selling = _pos(exit=None, sell=_limit_sale("100"))
    assert roll_back(selling, D("99.90"), _sec(1), EXT)[1] == []
    assert roll_back(selling, D("99.50"), _sec(1), EXT)[1] == [
        CancelOrder(_sec(1), "rt-AAA-1-5-exit", "AAA")
    ]


def _overdue(eo_qty: str | None, *, halted=False, status=OrderStatus.LIVE, to_sell="0"):
    """AAA-1 (10 shares) selling 4 at market, that sale's fill overdue (alerted once), with a
    stop for `eo_qty` shares (None: no stop)."""
    pos = _settled_pos()
    sale = Order("rt-AAA-1-5-partial", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET,
                 D(4), status=OrderStatus.LIVE)  # fmt: skip
    eo = None if eo_qty is None else evolve(pos.orders.exit, qty=D(eo_qty), status=status)
    waited = Awaited(AwaitedKind.FILL, sale.id, _sec(0), None, 1)
    orders = evolve(pos.orders, exit=eo, sell=sale, to_sell=D(to_sell),
                    milestones=((D(2), D(4)),))  # fmt: skip
    return evolve(pos, orders=orders, awaited=waited, halted=halted)


def test_the_shares_beside_an_overdue_sale_get_their_stop_or_follow_it_out():
    # no stop: one for the 6 the sale does not sell
    after, cmds = reconcile(_overdue(None), D("101"), _sec(9))
    [stop] = [c for c in cmds if isinstance(c, SubmitOrder)]
    assert (stop.qty, stop.stop_price) == (D(6), D("99.00"))
    # a stop for all 6 already: nothing; one for 4 (shares added since): replaced
    assert reconcile(_overdue("6"), D("101"), _sec(9))[1] == []
    assert reconcile(_overdue("4"), D("101"), _sec(9))[1] == [CancelOrder(_sec(9), STOP_ID, "AAA")]
    waiting = _overdue("4", status=OrderStatus.PENDING_NEW)
    assert reconcile(waiting, D("101"), _sec(9)) == (waiting, [])  # its answer comes first
    # 2 still queued count as covered
    assert reconcile(_overdue("4", to_sell="2"), D("101"), _sec(9))[1] == []
    # through the market with no stop: the 6 follow the sale out, said as a stop through it
    pos = _overdue(None)
    after, cmds = reconcile(pos, D("98.9"), _sec(9))
    [record] = [c for c in cmds if isinstance(c, Record)]
    assert record["reason"] == "stop 99.00 is at or through the market at 98.9"
    assert after.orders.to_sell == D(6) and after.orders.milestones == ()
    assert after.close_reason is CloseReason.STOP_THROUGH_MARKET and after.ladder.trigger is None
    # a halted ladder whose stop covers 4: the other 2 follow the sale, no record, reason kept
    after, cmds = reconcile(_overdue("4", halted=True), D("101"), _sec(9))
    assert cmds == []
    assert after.orders.to_sell == D(2) and after.close_reason is None


def test_beside_an_overdue_sale_a_refused_stop_sends_the_rest_out_quietly():
    """The stop the ladder wants was refused for good (no stop at the broker, the market not
    through it): the 6 shares follow the sale out, with no `invalid_price` record and the
    position's own close reason kept."""
    pos = _overdue(None)
    wanted = (pos.ladder.stop, pos.ladder.take_profit)
    refused = evolve(pos, orders=evolve(pos.orders, refused=wanted))
    after, cmds = reconcile(refused, D("101"), _sec(9))
    assert cmds == [] and after.orders.to_sell == D(6) and after.close_reason is None
    flat = evolve(_overdue("4", halted=True), close_reason=CloseReason.FLATTEN)
    after, cmds = reconcile(flat, D("101"), _sec(9))
    assert cmds == [] and after.close_reason is CloseReason.FLATTEN


def test_a_sale_refused_beside_a_live_stop_waits_alone_for_its_retry():
    state = _opened()
    pos = _overdue("6")  # a stop for 6, a sale of 4
    sale = pos.orders.sell
    state = state.evolve(positions=state.positions.set(pos.key, evolve(pos, awaited=None)),
                         routes=state.routes.set(sale.id, pos.key))  # fmt: skip
    t = step(state, OrderRejected(_sec(1), sale.id, BUSY, OrderRefusal.TRANSIENT))
    after = t.state.positions["AAA-1"]
    assert after.orders.sell.status is OrderStatus.RETRY_WAIT
    assert after.orders.exit.status is OrderStatus.LIVE
    [record] = _records(t.commands, "order.retry")
    assert (record["order_id"], record["command"], record["key"]) == (sale.id, "submit", "AAA-1")
    # the stop refused beside the sale: the stop waits, the sale is untouched
    t = step(state, OrderRejected(_sec(1), STOP_ID, BUSY, OrderRefusal.TRANSIENT))
    after = t.state.positions["AAA-1"]
    assert after.orders.exit.status is OrderStatus.RETRY_WAIT
    assert after.orders.sell.status is OrderStatus.LIVE


def test_an_entry_refused_keeps_whether_its_answer_was_lost():
    state = step(EngineState.empty(), Tick(T0, "AAA", D("100"))).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    for kind, lost in ((OrderRefusal.TRANSIENT, False), (OrderRefusal.UNKNOWN, True)):
        r = step(t.state, OrderRejected(_sec(1), order.order_id, "x", kind))
        pending = r.state.entries["AAA-1"]
        assert pending.retry == Retry(1, _sec(1.5), ("x",), lost)
        [record] = _records(r.commands, "order.retry")
        assert record.data == {
            "symbol": "AAA", "key": "AAA-1", "order_id": order.order_id, "attempt": 1,
            "delay": D("0.5"), "due": _sec(1.5), "reason": "x", "command": "submit",
        }  # fmt: skip


def test_a_refusal_of_an_order_the_position_no_longer_holds_leaves_its_sale_alone():
    state = _opened()
    pos = evolve(_overdue("6"), awaited=None)
    sale = pos.orders.sell
    routes = state.routes.set(sale.id, pos.key).set("rt-AAA-1-4-stop", pos.key)
    state = state.evolve(positions=state.positions.set(pos.key, pos), routes=routes)
    t = step(state, OrderRejected(_sec(1), "rt-AAA-1-4-stop", BUSY, OrderRefusal.TRANSIENT))
    after = t.state.positions["AAA-1"]
    assert after.orders.sell == sale and after.orders.exit == pos.orders.exit
    assert "rt-AAA-1-4-stop" not in t.state.routes


def test_a_print_exactly_at_a_due_time_or_a_trigger_is_not_a_quiet_one():
    """The tick fast path is for prints strictly inside the band, strictly before anything is
    due: a print of another symbol exactly at a retry's due time sends it; a print exactly at
    the trigger climbs."""
    state = _refused_sale()
    sale = state.positions["AAA-1"].orders.sell
    assert state.due == _sec(1.7) and state.books["BBB"].lo < D(50) < state.books["BBB"].hi
    t = step(state, Tick(_sec(1.7), "BBB", D("50")))
    assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == [sale.id]
    opened = _opened()
    assert opened.books["AAA"].hi == D("101.0")
    t = step(opened, Tick(_sec(1), "AAA", D("101.0")))
    assert "position.state" in [c.kind for c in t.commands if isinstance(c, Record)]
    t = step(opened, Tick(_sec(1), "AAA", D("100.99")))
    assert t.commands == ()


def test_an_entry_refused_for_good_is_blocked_with_the_brokers_words_and_its_id():
    state = step(EngineState.empty(), Tick(T0, "AAA", D("100"))).state
    t = step(state, EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10), None, "mine"))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    r = step(t.state, OrderRejected(_sec(1), order.order_id, "HTTP 422 no", OrderRefusal.PERMANENT))
    assert r.commands == (
        Record("order.rejected", _sec(1), {"symbol": "AAA", "key": "AAA-1",
                                           "order_id": order.order_id, "reason": "HTTP 422 no"}),
        Record("entry.blocked", _sec(1), {"symbol": "AAA", "reason": "order_rejected",
                                          "detail": "HTTP 422 no", "id": "mine"}),
    )  # fmt: skip
    assert len(r.state.entries) == 0 and order.order_id not in r.state.routes
    # after its retries: the operator is told why no position opened
    s = t.state
    for n in range(3):
        s = step(s, OrderRejected(_sec(1 + n), order.order_id, f"b{n}", OrderRefusal.TRANSIENT))
        s = step(s.state, Clock(s.state.entries["AAA-1"].retry.due)).state
    r = step(s, OrderRejected(_sec(9), order.order_id, "b3", OrderRefusal.TRANSIENT))
    kinds = [c.kind if isinstance(c, Record) else c.reason for c in r.commands]
    assert kinds == ["order.rejected", "entry.blocked", "retries_exhausted"]
    assert r.commands[2].context == {
        "symbol": "AAA", "key": "AAA-1", "order_id": order.order_id, "reason": "b3",
        "kind": "transient", "attempts": 3, "failures": ["b0", "b1", "b2", "b3"],
        "remaining_qty": D(0), "stop": D(99), "resolution": "entry_blocked",
    }  # fmt: skip


def test_a_duplicate_id_refusal_adopts_the_order_an_earlier_send_placed():
    state, oid = _new_stop_sent()
    t = step(state, OrderRejected(_sec(2.1), oid, "HTTP 422 duplicate", OrderRefusal.DUPLICATE))
    assert t.commands[0] == Record(
        "conflict.detected",
        _sec(2.1),
        {"symbol": "AAA", "key": "AAA-1", "type": "duplicate_order", "order_ids": [oid],
         "resolution": "adopted_existing", "reason": "HTTP 422 duplicate"},
    )  # fmt: skip
    assert t.state.positions["AAA-1"].orders.exit.status is OrderStatus.LIVE


def test_a_refusal_for_a_position_already_gone_is_only_journaled():
    state, oid = _new_stop_sent()
    gone = state.evolve(positions=state.positions.delete("AAA-1"))
    t = step(gone, OrderRejected(_sec(2.1), oid, "late", OrderRefusal.PERMANENT))
    assert t.commands == (
        Record("order.rejected", _sec(2.1),
               {"symbol": "AAA", "key": "AAA-1", "order_id": oid, "reason": "late"}),
    )  # fmt: skip
    assert oid not in t.state.routes


def test_the_rest_of_an_entry_refused_leaves_the_shares_filled_protected():
    """An entry filled in part, the rest of its order refused for good: the position keeps
    the shares it has (its stop goes on), the entry order is forgotten."""
    t, order = _part_filled()
    assert t.state.positions["AAA-1"].orders.entry is not None
    r = step(t.state, OrderRejected(_sec(2), order.order_id, "halted", OrderRefusal.PERMANENT))
    pos = r.state.positions["AAA-1"]
    assert pos.orders.entry is None and pos.fills.remaining == D(4)
    assert pos.orders.exit is not None and pos.orders.exit.qty == D(4)
    assert [c.kind for c in r.commands if isinstance(c, Record)][:1] == ["order.rejected"]


def test_held_shares_evidence_counts_what_the_symbols_other_orders_hold():
    """Two lots of AAA (10 and 6). The second lot's sale of its 6 is refused 403 with 6 free
    and the holding not told: the first lot's working stop holds the other 10, so that is a
    passing lock; with 5 free, or with that stop not at the broker, it is evidence."""
    state = two_lots()
    two = state.positions["AAA-2"]
    sale = Order("rt-AAA-2-7-exit", OrderRole.EXIT, OrderAction.SELL, OrderType.MARKET, D(6))
    two = evolve(two, orders=evolve(two.orders, exit=None, sell=sale))
    state = state.evolve(positions=state.positions.set(two.key, two),
                         routes=state.routes.set(sale.id, two.key))  # fmt: skip

    def evidence(s: EngineState, free: str) -> bool:
        ack = OrderRejected(_sec(1), sale.id, "403", OrderRefusal.SHARES_LOCKED, D(free))
        t = step(s, ack)
        return any(isinstance(c, Record) and c.kind == "divergence.detected" for c in t.commands)

    assert not evidence(state, "6")
    assert evidence(state, "5")
    one = state.positions["AAA-1"]
    not_there = evolve(one.orders.exit, status=OrderStatus.RETRY_WAIT)
    waiting = evolve(one, orders=evolve(one.orders, exit=not_there))
    assert evidence(state.evolve(positions=state.positions.set(one.key, waiting)), "6")


def test_shares_added_to_a_frozen_or_selling_position_do_not_restart_its_ladder():
    t, order = _part_filled()
    pos = t.state.positions["AAA-1"]

    def grown(p):
        s = t.state.evolve(positions=t.state.positions.set(p.key, p))
        return step(s, OrderFilled(_sec(2), order.order_id, D(6), D("100"))).state.positions[
            "AAA-1"
        ]

    assert grown(pos).ladder.trigger == D("101.0")
    halted = grown(evolve(pos, halted=True))
    assert halted.ladder.trigger is None and halted.orders.to_sell == 0
    flat = evolve(pos, close_reason=CloseReason.FLATTEN, orders=evolve(pos.orders, to_sell=D(4)))
    selling = grown(flat)
    sold = selling.orders.sell.open_qty if selling.orders.sell is not None else 0
    assert selling.ladder.trigger is None and selling.orders.to_sell + sold == D(10)


def test_fire_works_out_exactly_when_the_next_thing_falls_due():
    """`retries.fire` by hand: what it leaves in `state.due` is the earliest of what is still
    pending, so that no later event passes it by on the quiet path."""
    base = _refused_sale()  # AAA's sale waits for its retry at 1.7 s
    assert fire(base, _sec(1.5), None).state.due == _sec(1.7)
    # the breaker's reopening comes first when it is earlier
    opened = base.evolve(link=evolve(base.link, breaker=BreakerState.OPEN, reopen_at=_sec(1.6)))
    assert fire(opened, _sec(1.5), None).state.due == _sec(1.6)
    # a snapshot asked at 0.1 s is asked again 5 s later
    asked = base.evolve(link=evolve(base.link, snapshot_asked=_sec(-4)))
    assert fire(asked, _sec(0.5), None).state.due == _sec(1)
    # a position the open breaker holds (its shares covered) keeps its own due time
    held = _opened()
    bbb = evolve(held.positions["BBB-1"], retry=Retry(1, _sec(2)))
    tripped = evolve(held.link, breaker=BreakerState.OPEN, reopen_at=_sec(300))
    held = held.evolve(positions=held.positions.set(bbb.key, bbb), link=tripped)
    assert fire(held, _sec(1.5), None).state.due == _sec(2)
    # entries: one due later keeps its time; one waiting for exits is looked at again
    state = step(EngineState.empty(), Tick(T0, "CCC", D("10"))).state
    t = step(state, EntryIntent(T0, "CCC", Side.LONG, D("9"), D(1)))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderRejected(_sec(1), order.order_id, BUSY, OrderRefusal.TRANSIENT))
    assert fire(t.state, _sec(1.2), None).state.due == _sec(1.5)
    down = t.state.evolve(link=evolve(t.state.link, up=False))
    assert fire(down, _sec(2), None).state.due == t.state.due  # held: its time stays
    sent = fire(t.state, _sec(1.5), None)
    assert [c.order_id for c in sent.commands if isinstance(c, SubmitOrder)] == [order.order_id]
    assert sent.state.due > _sec(1000)  # nothing pending any more


def test_fire_holds_a_waiting_entry_while_exits_rest_and_sends_a_protection_past_its_hold():
    waits = _resting_exit_state()
    pending = next(iter(waits.entries.values()))
    assert pending.retry.due == _sec(0.5)
    t = fire(waits, _sec(0.5), None)
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert next(iter(t.state.entries.values())).retry.due == _sec(1)
    assert t.state.due == _sec(1)


def _resting_exit_state() -> EngineState:
    """AAA held with its take-profit resting, `wash_trade = "wait"`: a second AAA entry waits
    unsent, looked at again every first retry delay."""
    state = _opened()._replace(config=Config(wash_trade="wait"))
    return step(state, EntryIntent(_sec(0), "AAA", Side.LONG, D("99"), D(2))).state


def test_a_stop_move_held_by_the_budget_goes_at_the_holds_end_exactly():
    state = _opened()
    pos = state.positions["AAA-1"]
    moved = evolve(pos, ladder=evolve(pos.ladder, stop=D("100.00")), held_until=_sec(3))
    state = state.evolve(positions=state.positions.set(pos.key, moved), due=_sec(3))
    assert fire(state, _sec(2.9), None).commands == ()
    t = fire(state, _sec(3), None)
    assert [c for c in t.commands if isinstance(c, CancelOrder)] == [
        CancelOrder(_sec(3), STOP_ID, "AAA")
    ]
    assert t.state.positions["AAA-1"].held_until is None


def test_fire_sends_nothing_before_the_snapshot_and_passes_an_entry_not_yet_due():
    base = _refused_sale()
    unsynced = base.evolve(link=evolve(base.link, synced=False))
    assert fire(unsynced, _sec(2), None) == (unsynced, ())
    state = step(EngineState.empty(), Tick(T0, "CCC", D("10"))).state
    orders = []
    for at, refused_at in ((0, 1.0), (0.1, 0.1)):
        t = step(state, EntryIntent(_sec(at), "CCC", Side.LONG, D("9"), D(1)))
        [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
        state = step(t.state, OrderRejected(_sec(refused_at), order.order_id, BUSY,
                                            OrderRefusal.TRANSIENT)).state  # fmt: skip
        orders.append(order.order_id)
    t = fire(state, _sec(0.6), None)  # the first entry is due at 1.5 s, the second at 0.6 s
    assert [c.order_id for c in t.commands if isinstance(c, SubmitOrder)] == [orders[1]]
    assert t.state.due == _sec(1.5)


def test_a_fill_of_an_order_the_position_no_longer_holds_is_told_not_counted():
    state = _opened()
    state = state.evolve(routes=state.routes.set("rt-AAA-1-8-stop", "AAA-1"))
    t = step(state, OrderFilled(_sec(1), "rt-AAA-1-8-stop", D(3), D("99")))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert == Alert(
        _sec(1), "unknown_order", {"order_id": "rt-AAA-1-8-stop", "event": "fill"}
    )
    assert t.state.positions["AAA-1"].fills == state.positions["AAA-1"].fills


def test_a_later_fill_of_the_entry_is_journaled_with_the_positions_new_size():
    t, order = _part_filled()
    t = step(t.state, OrderFilled(_sec(2), order.order_id, D(6), D("101"), at=_sec(1.5)))
    [filled] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (filled["qty"], filled["price"], filled["position_qty"], filled["executed"]) == (
        D(6), D(101), D(10), _sec(1.5)
    )  # fmt: skip
    assert (filled["order_filled"], filled["order_open"]) == (D(10), D(0))
