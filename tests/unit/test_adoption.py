"""Adoption details the laws (tests/laws/test_p35_p38_adoption.py) leave to examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    Config,
    EngineState,
    OrderAction,
    OrderType,
    Record,
    SubmitOrder,
    step,
)

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def _snapshot(*orders: BrokerOrder) -> BrokerSnapshot:
    """The broker holds 100 AAA bought at 50.00, last at 50.50, with `orders` working."""
    return BrokerSnapshot(T0, (("AAA", D(100)),), orders, (("AAA", D("50.00")),),
                          (("AAA", D("50.50")),))  # fmt: skip


def test_the_owners_take_profit_is_left_alone_with_leave_and_the_ladder_frozen():
    """`[adopt] foreign_orders = "leave"`: the owner's loss-side stop for every share stays
    (no cancel, no new stop), the position's ladder is frozen, and a `foreign_order`
    conflict says so; with "cancel" the same stop is kept too when it is what the position
    wants (P37), while an owner's limit sell holding the shares is canceled."""
    stop = BrokerOrder("bot-7", "AAA", "open", D(100), side=OrderAction.SELL,
                       type=OrderType.STOP, stop_price=D("49.00"))  # fmt: skip
    t = step(EngineState.empty(Config(foreign_orders="leave")), _snapshot(stop))
    [pos] = t.state.positions.values()
    assert pos.halted and pos.orders.exit is not None and pos.orders.exit.id == "bot-7"
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    [conflict] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert (conflict["type"], conflict["resolution"]) == ("foreign_order", "left_alone")


def test_an_owners_limit_sell_that_holds_the_shares_is_canceled_and_a_stop_placed():
    """The owner's limit sell for every share blocks any stop: with the default "cancel" it
    is canceled (`foreign_order`), and once the cancel is confirmed ratchet's stop goes out,
    2% below the broker's average entry."""
    limit = BrokerOrder("bot-8", "AAA", "open", D(100), side=OrderAction.SELL,
                        type=OrderType.LIMIT, limit_price=D("60.00"))  # fmt: skip
    t = step(EngineState.empty(Config()), _snapshot(limit))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == ["bot-8"]
    [adopted] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.adopted"]
    assert (adopted["stop_source"], adopted["initial_stop"]) == ("default_risk", D("49.00"))


def test_adopted_positions_never_reuse_a_client_order_id_the_broker_has_seen():
    """A previous run's ids (`rt-AAA-3-…`) are at the broker: the adopted position is AAA-4,
    so its orders can never be refused as duplicates."""
    old = BrokerOrder("rt-AAA-3-2-stop", "AAA", "canceled", D(100), side=OrderAction.SELL,
                      type=OrderType.STOP, stop_price=D("48.00"),
                      updated_at=T0 - timedelta(days=1))  # fmt: skip
    t = step(EngineState.empty(Config()), _snapshot(old))
    assert list(t.state.positions) == ["AAA-4"]
