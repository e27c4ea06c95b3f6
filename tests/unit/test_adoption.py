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
    assert conflict == Record("conflict.detected", T0, {
        "symbol": "AAA", "key": "AAA-1", "type": "foreign_order", "order_ids": ["bot-7"],
        "resolution": "left_alone",
        "reason": "[adopt] foreign_orders = leave: the user's stop stays; the ladder is frozen",
    })  # fmt: skip
    assert pos.ladder.trigger is None and pos.orders.restore == pos.orders.exit


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


def _adopted(snap: BrokerSnapshot, config: Config | None = None):
    t = step(EngineState.empty(config or Config()), snap)
    records = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.adopted"]
    return t, records


def _held(qty: str, mark: str, *orders: BrokerOrder, entry: str = "50.00") -> BrokerSnapshot:
    return BrokerSnapshot(T0, (("AAA", D(qty)),), orders, (("AAA", D(entry)),),
                          (("AAA", D(mark)),))  # fmt: skip


def test_shares_without_a_stop_are_adopted_with_the_default_risk_and_the_whole_ladder():
    """100 AAA at 50.00, last 50.50, no order: stop 2% away (49.00), 1R at 51.00, the
    take-profit at 4R (54.00), the journal says all of it, and the stop goes at once."""
    t, [record] = _adopted(_held("100", "50.50"))
    assert record == Record("position.adopted", T0, {
        "symbol": "AAA", "key": "AAA-1", "side": "long", "qty": D(100), "entry": D("50.00"),
        "initial_stop": D("49.00"), "stop_source": "default_risk", "stop": D("49.00"),
        "r": D("0.5"), "protection": "INITIAL_RISK", "order_adopted": None,
    })  # fmt: skip
    pos = t.state.positions["AAA-1"]
    assert (pos.ladder.trigger, pos.ladder.take_profit) == (D(51), D(54))
    assert (pos.fills.original, pos.fills.remaining, pos.fills.cost) == (D(100), D(100), D(5000))
    assert pos.exposed_since == T0 and t.state.counts["AAA"] == 1
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.qty, stop.stop_price, stop.limit_price, stop.action) == (
        D(100), D("49.00"), D("54.00"), OrderAction.SELL
    )  # fmt: skip


def test_a_short_is_adopted_with_its_stop_above_and_its_ladder_below():
    t, [record] = _adopted(_held("-100", "49.50"))
    assert (record["side"], record["qty"], record["initial_stop"], record["r"]) == (
        "short", D(100), D("51.00"), D("0.5")
    )  # fmt: skip
    pos = t.state.positions["AAA-1"]
    assert (pos.ladder.trigger, pos.ladder.take_profit) == (D(49), D(46))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.action, stop.stop_price) == (OrderAction.BUY, D("51.00"))


def test_shares_adopted_above_1r_start_with_the_stop_the_ladder_had_reached():
    """The last price is already 1.2R: the stop is adopted at entry (1R's lock), journaled as
    reached before adoption; no tranche is sold on adoption."""
    t, [record] = _adopted(_held("100", "52.10"))
    assert (record["stop"], record["r"], record["protection"]) == (
        D("51.00"), D("2.1"), "PARTIAL_PROFIT_TAKEN"
    )  # fmt: skip
    assert [c.purpose for c in t.commands if isinstance(c, SubmitOrder)] == ["protect"]
    t, [record] = _adopted(_held("100", "51.20"))
    assert (record["stop"], record["protection"]) == (D("50.00"), "BREAKEVEN_PROTECTED")


def test_the_owners_tightest_loss_side_stop_covering_every_share_is_adopted():
    """Of the owner's stops only those on the loss side that cover all 100 shares count; the
    tightest of them (49.50) becomes the position's stop, working, so nothing is sent and
    the shares are not bare."""
    far = BrokerOrder("bot-1", "AAA", "open", D(100), side=OrderAction.SELL,
                      type=OrderType.STOP, stop_price=D("48.00"))  # fmt: skip
    near = BrokerOrder("bot-2", "AAA", "open", D(100), side=OrderAction.SELL,
                       type=OrderType.STOP, stop_price=D("49.50"))  # fmt: skip
    short_of = BrokerOrder("bot-3", "AAA", "open", D(120), filled_qty=D(30),
                           side=OrderAction.SELL, type=OrderType.STOP,
                           stop_price=D("49.90"))  # fmt: skip
    above = BrokerOrder("bot-4", "AAA", "open", D(100), side=OrderAction.SELL,
                        type=OrderType.STOP, stop_price=D("50.20"))  # fmt: skip
    t, [record] = _adopted(_held("100", "50.10", far, near, short_of, above))
    assert (record["initial_stop"], record["stop_source"], record["order_adopted"]) == (
        D("49.50"), "own_stop", "bot-2"
    )  # fmt: skip
    assert t.state.routes["bot-2"] == "AAA-1"
    pos = t.state.positions["AAA-1"]
    assert pos.orders.exit is not None and pos.orders.exit.id == "bot-2"
    assert pos.exposed_since is None
    # the ladder is measured from the owner's stop: 1R = 0.50 above entry
    assert pos.ladder.trigger == D("50.50")


def test_held_shares_without_a_price_are_evidence_not_a_position():
    t = step(EngineState.empty(Config()), BrokerSnapshot(T0, (("AAA", D(100)),)))
    assert not t.state.positions
    [record] = [c for c in t.commands if isinstance(c, Record) and c.kind == "divergence.detected"]
    assert record == Record("divergence.detected", T0, {
        "symbol": "AAA", "key": "", "evidence": "held shares without a price",
        "believed": {"qty": D(0)}, "broker": {"qty": D(100)},
    })  # fmt: skip
    # a sub-dollar stock has a price all the same
    t, [record] = _adopted(_held("1000", "0.52", entry="0.50"))
    assert (record["entry"], record["initial_stop"]) == (D("0.50"), D("0.49"))


def test_the_owners_oco_is_taken_over_as_it_is_and_a_bare_stop_as_a_sell_stop():
    """The owner's stop with a take-profit (OCO) keeps its limit; an order the broker reports
    without a type is taken as a stop. Either is the restore point of the
    position's next operation."""
    oco = BrokerOrder("bot-5", "AAA", "open", D(100), side=OrderAction.SELL, type=OrderType.OCO,
                      stop_price=D("49.50"), limit_price=D("55.00"))  # fmt: skip
    t = step(EngineState.empty(Config(foreign_orders="leave")), _held("100", "50.10", oco))
    exit_order = t.state.positions["AAA-1"].orders.exit
    assert (exit_order.type, exit_order.stop_price, exit_order.limit_price, exit_order.qty) == (
        OrderType.OCO, D("49.50"), D("55.00"), D(100)
    )  # fmt: skip
    assert t.state.positions["AAA-1"].orders.restore == exit_order
    bare = BrokerOrder("bot-6", "AAA", "open", D(100), side=OrderAction.SELL, stop_price=D("49.50"))
    t = step(EngineState.empty(Config(foreign_orders="leave")), _held("100", "50.10", bare))
    exit_order = t.state.positions["AAA-1"].orders.exit
    assert (exit_order.action, exit_order.type, exit_order.limit_price) == (
        OrderAction.SELL, OrderType.STOP, None
    )  # fmt: skip
