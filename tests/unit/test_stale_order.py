"""An exit order refused for more shares than its lot counts (SPEC §4): the broker's snapshot
shrank the lot while the order was on its way, so sending it again could only be refused
again. It is dropped as `stale_order` and the order step asks for what the shares left call
for. (A history that reaches this through the order-protocol machine is pinned in
`tests/machines/test_regressions.py`; here the snapshot's shrinking is set by hand.)"""

from __future__ import annotations

from decimal import Decimal as D

from attrs import evolve

from engine import (
    EngineState,
    OrderCanceled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    Record,
    SubmitOrder,
    Tick,
    step,
)
from tests.unit.test_timeouts import STOP_ID, _opened, _sec

FORBIDDEN = "HTTP 403 insufficient qty available for order"


def _shrunk(state: EngineState, remaining: int) -> EngineState:
    pos = state.positions["AAA-1"]
    pos = evolve(pos, fills=evolve(pos.fills, remaining=D(remaining)))
    return state.evolve(positions=state.positions.set("AAA-1", pos))


def _sent(state: EngineState, price: str) -> tuple[EngineState, SubmitOrder]:
    """AAA (long 10 @ 100, stop 99) ticks at `price`: the stop is canceled, and once that is
    confirmed the next order goes out."""
    t = step(state, Tick(_sec(1), "AAA", D(price)))
    t = step(t.state, OrderCanceled(_sec(1), STOP_ID))
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    return t.state, order


def _stale(commands) -> list[Record]:
    return [
        c for c in commands
        if isinstance(c, Record) and c.kind == "conflict.detected" and c["type"] == "stale_order"
    ]  # fmt: skip


def test_a_stop_refused_for_more_shares_than_the_lot_counts_is_replaced_by_one_for_them():
    state, stop = _sent(_opened(), "101")  # 1R: the stop moves to entry
    assert (stop.type, stop.qty, stop.stop_price) == (OrderType.OCO, D(10), D("100.00"))
    t = step(_shrunk(state, 4), OrderRejected(_sec(2), stop.order_id, FORBIDDEN,
                                              OrderRefusal.SHARES_LOCKED, D(4), D(4)))  # fmt: skip
    assert _stale(t.commands) == [
        Record(
            "conflict.detected",
            _sec(2),
            {"symbol": "AAA", "key": "AAA-1", "type": "stale_order",
             "order_ids": [stop.order_id], "resolution": "replaced",
             "reason": f"{FORBIDDEN}; the order was for 10 shares and the position counts 4 "
                       "since the broker's snapshot"},
        )
    ]  # fmt: skip
    [again] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert again.order_id != stop.order_id
    assert (again.type, again.qty, again.stop_price, again.ts) == (
        OrderType.OCO, D(4), D("100.00"), _sec(2)
    )  # fmt: skip
    assert stop.order_id not in t.state.routes
    pos = t.state.positions["AAA-1"]
    assert pos.retry is None
    assert pos.orders.exit is not None and pos.orders.exit.id == again.order_id


def test_a_sale_refused_for_more_shares_than_the_lot_counts_sells_what_is_left():
    state, sale = _sent(_opened(), "102")  # 2R: half is sold at market
    assert (sale.type, sale.qty) == (OrderType.MARKET, D(5))
    t = step(_shrunk(state, 3), OrderRejected(_sec(2), sale.order_id, FORBIDDEN))
    [record] = _stale(t.commands)
    assert record["reason"] == (
        f"{FORBIDDEN}; the order was for 5 shares and the position counts 3 since the "
        "broker's snapshot"
    )
    [again] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (again.type, again.qty, again.purpose) == (OrderType.MARKET, D(3), "partial")
    assert again.order_id != sale.order_id and sale.order_id not in t.state.routes
    assert t.state.positions["AAA-1"].orders.sell.id == again.order_id


def test_an_order_for_no_more_than_the_lot_counts_or_maybe_at_the_broker_is_not_stale():
    state, stop = _sent(_opened(), "101")
    exact = step(_shrunk(state, 10), OrderRejected(_sec(2), stop.order_id, FORBIDDEN))
    assert _stale(exact.commands) == []
    lost = step(_shrunk(state, 4), OrderRejected(_sec(2), stop.order_id, "timeout",
                                                 OrderRefusal.UNKNOWN))  # fmt: skip
    assert _stale(lost.commands) == []
    assert stop.order_id in lost.state.routes
