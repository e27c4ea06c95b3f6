"""The broker holds fewer shares of a lot than ratchet counts (SPEC §6: sold by hand, a
corporate action): the difference is booked as having left at the last price known, the
journal says from how many to how many, and the lot's stop is re-armed for the rest, or
canceled when nothing is left."""

from __future__ import annotations

from decimal import Decimal as D

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    CloseReason,
    EngineState,
    OrderAction,
    OrderCanceled,
    OrderRefusal,
    OrderRejected,
    OrderStatus,
    OrderType,
    Record,
    SubmitOrder,
    Tick,
    step,
)
from tests.unit.test_timeouts import STOP_ID, _opened, _sec

BBB_STOP = BrokerOrder("rt-BBB-1-1-stop", "BBB", "open", D(10), side=OrderAction.SELL,
                       type=OrderType.STOP, stop_price=D("49"))  # fmt: skip


def _snapshot(aaa: int, *orders: BrokerOrder) -> BrokerSnapshot:
    return BrokerSnapshot(
        _sec(2), (("AAA", D(aaa)), ("BBB", D(10))), (*orders, BBB_STOP),
        (("AAA", D(100)), ("BBB", D(50))), (("AAA", D(101)), ("BBB", D(50))),
    )  # fmt: skip


def _aaa_stop() -> BrokerOrder:
    return BrokerOrder(STOP_ID, "AAA", "open", D(10), side=OrderAction.SELL,
                       type=OrderType.STOP, stop_price=D("99"))  # fmt: skip


def _marked() -> EngineState:
    """AAA long 10 @ 100 (stop 99 working), last traded at 100.50."""
    return step(_opened(), Tick(_sec(1), "AAA", D("100.50"))).state


def test_shares_sold_outside_are_booked_at_the_last_price_and_the_stop_re_armed():
    t = step(_marked(), _snapshot(6, _aaa_stop()))
    [record] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.reconciled"]
    assert record == Record("position.reconciled", _sec(2), {
        "symbol": "AAA", "key": "AAA-1", "change": "shrunk", "from": D(10), "to": D(6),
        "price": D("100.50"),
    })  # fmt: skip
    fills = t.state.positions["AAA-1"].fills
    assert (fills.remaining, fills.exited, fills.exit_value, fills.realized) == (
        D(6), D(4), D("402.00"), D("2.00")
    )  # fmt: skip
    assert (fills.last_qty, fills.last_price) == (D(4), D("100.50"))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]
    t = step(t.state, OrderCanceled(_sec(2), STOP_ID))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.qty, stop.stop_price) == (D(6), D("99.00"))
    assert t.state.positions["AAA-1"].close_reason is None


def test_a_lot_the_broker_no_longer_holds_is_closed_outside_and_its_stop_canceled():
    t = step(_marked(), _snapshot(0, _aaa_stop()))
    [record] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.reconciled"]
    assert (record["change"], record["from"], record["to"]) == ("closed_outside", D(10), D(0))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]
    # the lot stays until its stop's cancel is confirmed, then closes
    pos = t.state.positions["AAA-1"]
    assert pos.close_reason is CloseReason.CLOSED_OUTSIDE
    assert pos.orders.exit.status is OrderStatus.PENDING_CANCEL
    assert (pos.orders.to_sell, pos.orders.milestones) == (D(0), ())
    t = step(t.state, OrderCanceled(_sec(3), STOP_ID))
    assert "AAA-1" not in t.state.positions
    [closed] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.closed"]
    assert closed["reason"] == "closed_outside"


def test_one_share_left_is_still_a_position():
    t = step(_marked(), _snapshot(1, _aaa_stop()))
    [record] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.reconciled"]
    assert (record["change"], record["to"]) == ("shrunk", D(1))
    assert t.state.positions["AAA-1"].close_reason is None


def test_a_stop_waiting_for_its_retry_is_dropped_and_asked_for_again_for_the_rest():
    """AAA's stop move at 1R: the new stop is refused (503) and waits for its retry when a
    snapshot finds 6 shares: the waiting request (for 10) goes, with its retries, and a stop
    for the 6 is sent at once."""
    t = step(_marked(), Tick(_sec(1), "AAA", D("101")))
    t = step(t.state, OrderCanceled(_sec(1), STOP_ID))
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderRejected(_sec(1), new.order_id, "HTTP 503", OrderRefusal.TRANSIENT))
    pos = t.state.positions["AAA-1"]
    assert pos.orders.exit.status is OrderStatus.RETRY_WAIT and pos.retry is not None
    t = step(t.state, _snapshot(6))
    pos = t.state.positions["AAA-1"]
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.qty, stop.stop_price) == (D(6), D("100.00"))
    assert stop.order_id != new.order_id
    assert pos.orders.exit.id == stop.order_id
