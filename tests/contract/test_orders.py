"""Orders (ALPACA.md §1): what alpaca-py sends and gets back, status and body exactly."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from attrs import evolve

from tests.contract.conftest import T0, client, refusal, ticks

BUY, SELL, DAY, GTC = OrderSide.BUY, OrderSide.SELL, TimeInForce.DAY, TimeInForce.GTC


def _buy(trading, qty=10, cid=None):
    return trading.submit_order(
        MarketOrderRequest(symbol="SPY", qty=qty, side=BUY, time_in_force=DAY, client_order_id=cid)
    )


def _long(market, trading, qty=10):
    """Buy `qty` at the first print (100.00)."""
    _buy(trading, qty)
    market.advance(1)


def test_a_market_order_answers_accepted_and_fills_at_the_next_print(market, updates_of):
    """POST /v2/orders: 200 with status accepted, a UUID id, the client's id echoed; on the
    stream `new`, then `fill` at the next print's price with position_qty."""
    trading = client(market)
    updates = updates_of(market)
    order = _buy(trading, cid="mine-1")
    assert order.status is OrderStatus.ACCEPTED and order.client_order_id == "mine-1"
    assert uuid.UUID(str(order.id)) and order.order_class is OrderClass.SIMPLE
    market.advance(1)
    new, fill = updates.wait(2)
    assert (new.event, fill.event) == ("new", "fill")
    assert fill.order.id == order.id and fill.order.status is OrderStatus.FILLED
    assert (fill.price, fill.qty, fill.position_qty) == (100.0, 10.0, 10.0)
    assert fill.execution_id is not None and fill.timestamp == T0


def test_a_limit_rests_and_fills_at_its_limit(market):
    """A sell limit at 100.05 rests until the market reaches it, and fills at 100.05."""
    trading = client(market)
    _long(market, trading)
    limit = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=GTC, limit_price=100.05)
    )
    market.advance(4)  # 100.01 .. 100.04
    assert trading.get_order_by_id(limit.id).status is OrderStatus.NEW
    market.advance(1)  # 100.05
    done = trading.get_order_by_id(limit.id)
    assert done.status is OrderStatus.FILLED and done.filled_avg_price == "100.05"


def test_a_stop_fills_at_the_print_that_gaps_through_it(start_exchange):
    """A sell stop at 100.50 ignores 100.51, and fills at 100.20 (gap not forgiven)."""
    market = start_exchange(ticks("101", "100.51", "100.20", "100.10"))
    trading = client(market)
    _long(market, trading)
    stop = trading.submit_order(
        StopOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=GTC, stop_price=100.5)
    )
    market.advance(1)
    assert trading.get_order_by_id(stop.id).status is OrderStatus.NEW
    market.advance(1)
    filled = trading.get_order_by_id(stop.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_avg_price == "100.2"


def test_an_oco_exit_is_a_take_profit_limit_with_a_held_stop_leg(market, updates_of):
    """order_class oco: the parent is the take-profit limit (new once routed), its leg the
    stop (held); when the stop triggers it fills and the take-profit is canceled."""
    trading = client(market)
    _long(market, trading)
    updates = updates_of(market)
    oco = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=10,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=102),
            stop_loss=StopLossRequest(stop_price=100.02),
        )
    )
    assert oco.order_class is OrderClass.OCO and oco.type.value == "limit"
    assert oco.limit_price == "102" and oco.stop_price is None
    [leg] = oco.legs
    assert (leg.type.value, leg.status, leg.stop_price) == ("stop", OrderStatus.HELD, "100.02")
    market.advance(1)  # 100.01: routed, and through the stop
    events = updates.wait(3)
    assert [(u.event, str(u.order.id)) for u in events] == [
        ("new", str(oco.id)),
        ("fill", str(leg.id)),
        ("canceled", str(oco.id)),
    ]
    assert events[1].price == 100.01 and events[1].position_qty == 0.0


def test_numbers_go_in_as_json_numbers_or_strings_and_come_back_as_strings(market):
    """alpaca-py sends floats ("qty": 10.0); the raw client body may use strings; the
    answer has every number as a string."""
    raw = client(market, raw=True)
    sent = raw.submit_order(
        LimitOrderRequest(symbol="SPY", qty=10, side=BUY, time_in_force=GTC, limit_price=99.5)
    )
    assert (sent["qty"], sent["limit_price"], sent["filled_qty"]) == ("10", "99.5", "0")
    as_strings = raw.post(
        "/orders",
        {
            "symbol": "SPY",
            "qty": "3",
            "side": "buy",
            "type": "limit",
            "limit_price": "99.25",
            "time_in_force": "day",
        },
    )
    assert (as_strings["qty"], as_strings["limit_price"]) == ("3", "99.25")
    assert as_strings["filled_avg_price"] is None and as_strings["order_class"] == ""


def test_an_order_is_found_by_id_and_by_client_order_id(market):
    """GET /v2/orders/{id} and GET /v2/orders:by_client_order_id (the literal colon)."""
    trading = client(market)
    order = _buy(trading, cid="find-me")
    assert trading.get_order_by_id(order.id).client_order_id == "find-me"
    assert trading.get_order_by_client_id("find-me").id == order.id
    status, body, _ = refusal(lambda: trading.get_order_by_client_id("nobody"))
    assert (status, body) == (404, {"code": 40410000, "message": "order not found"})
    status, body, _ = refusal(lambda: trading.get_order_by_id(str(uuid.uuid4())))
    assert (status, body) == (404, {"code": 40410000, "message": "order not found"})


def test_get_orders_filters_as_alpaca_py_sends_them(start_exchange):
    """status open/closed/all, limit, after/until (exclusive), direction, nested=True,
    symbols (comma-separated), side."""
    feed = sorted([*ticks(*["100"] * 5), *ticks(*["20"] * 5, symbol="BAC")], key=lambda t: t.ts)
    market = start_exchange(feed)
    trading = client(market)
    first = _buy(trading, qty=2)  # fills at the first print
    market.advance(2)
    limits = [
        trading.submit_order(
            LimitOrderRequest(symbol=s, qty=1, side=BUY, time_in_force=GTC, limit_price=p)
        )
        for s, p in [("SPY", 90), ("BAC", 10)]
    ]
    market.advance(2)
    late = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side=SELL, time_in_force=GTC, limit_price=120)
    )

    def ids(**query):
        return [str(o.id) for o in trading.get_orders(GetOrdersRequest(**query))]

    opened = [str(o.id) for o in (*limits, late)]
    assert ids() == opened[::-1]  # open by default, newest first
    assert ids(status=QueryOrderStatus.CLOSED) == [str(first.id)]
    assert ids(status=QueryOrderStatus.ALL, direction="asc") == [str(first.id), *opened]
    assert ids(status=QueryOrderStatus.ALL, limit=2) == [str(late.id), opened[1]]
    assert ids(symbols=["BAC"]) == [opened[1]]
    assert ids(symbols=["SPY", "BAC"], side=SELL) == [str(late.id)]
    after = late.submitted_at - timedelta(microseconds=1)
    assert ids(after=after) == [str(late.id)]
    assert ids(until=late.submitted_at, status=QueryOrderStatus.ALL) == [
        opened[1],
        opened[0],
        str(first.id),
    ]
    oco = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=1,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=130),
            stop_loss=StopLossRequest(stop_price=80),
        )
    )
    [leg] = oco.legs
    flat = ids(symbols=["SPY"])
    assert str(oco.id) in flat and str(leg.id) in flat  # legs listed on their own
    nested = trading.get_orders(GetOrdersRequest(symbols=["SPY"], nested=True))
    assert str(leg.id) not in [str(o.id) for o in nested]
    [parent] = [o for o in nested if o.id == oco.id]
    assert [str(x.id) for x in parent.legs] == [str(leg.id)]
    by_id = trading.get_order_by_id(oco.id, GetOrderByIdRequest(nested=True))
    assert [str(x.id) for x in by_id.legs] == [str(leg.id)]
    assert trading.get_order_by_id(oco.id).legs is None


def test_replace_makes_a_new_order_and_the_old_one_replaced(market, updates_of):
    """PATCH: 200 with the new order (new id, `replaces` the old, a new client_order_id unless
    one is given); the old is `replaced` with replaced_by; the stream tells pending_replace then
    replaced, carrying the old order."""
    trading = client(market)
    _long(market, trading)
    stop = trading.submit_order(
        StopOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=GTC, stop_price=99)
    )
    market.advance(1)
    updates = updates_of(market)
    moved = trading.replace_order_by_id(stop.id, ReplaceOrderRequest(stop_price=99.5))
    assert moved.id != stop.id and str(moved.replaces) == str(stop.id)
    assert moved.stop_price == "99.5" and moved.client_order_id != stop.client_order_id
    old = trading.get_order_by_id(stop.id)
    assert old.status is OrderStatus.REPLACED and str(old.replaced_by) == str(moved.id)
    assert old.replaced_at is not None
    updates.wait(2)
    assert updates.events()[:2] == [("pending_replace", str(stop.id)), ("replaced", str(stop.id))]
    market.advance(1)  # the replacement is routed: it may be replaced in turn
    named = trading.replace_order_by_id(
        moved.id, ReplaceOrderRequest(stop_price=99.25, client_order_id="moved-2")
    )
    assert named.client_order_id == "moved-2"
    market.advance(1)
    assert trading.get_order_by_id(named.id).status is OrderStatus.NEW


def test_replace_is_refused_while_the_order_is_accepted(market):
    """An order not yet routed (status accepted) cannot be replaced: 422."""
    trading = client(market)
    order = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=90)
    )
    status, body, _ = refusal(
        lambda: trading.replace_order_by_id(order.id, ReplaceOrderRequest(limit_price=91))
    )
    assert (status, body) == (
        422,
        {"code": 42210000, "message": "unable to replace order, order isn't sent to exchange yet"},
    )


def test_replace_of_a_filled_order_is_refused(market):
    """A filled order cannot be replaced: 422 `order is already in "filled" state`."""
    trading = client(market)
    order = _buy(trading)
    market.advance(1)
    status, body, _ = refusal(
        lambda: trading.replace_order_by_id(order.id, ReplaceOrderRequest(qty=5))
    )
    assert (status, body) == (
        422,
        {"code": 42210000, "message": 'order is already in "filled" state'},
    )


def test_cancel_answers_204_then_pending_cancel_and_canceled_on_the_stream(market, updates_of):
    """DELETE /v2/orders/{id}: 204 with no body (alpaca-py returns None); the stream tells
    pending_cancel then canceled."""
    trading = client(market)
    updates = updates_of(market)
    order = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=90)
    )
    market.advance(1)
    assert trading.cancel_order_by_id(order.id) is None
    updates.wait(3)
    assert updates.events() == [
        ("new", str(order.id)),
        ("pending_cancel", str(order.id)),
        ("canceled", str(order.id)),
    ]
    assert trading.get_order_by_id(order.id).status is OrderStatus.CANCELED


def test_cancel_of_a_filled_order_is_422_and_of_an_unknown_one_404(market):
    """Alpaca's bodies: 422 `order is already in "filled" state`, 404 order not found."""
    trading = client(market)
    order = _buy(trading)
    market.advance(1)
    status, body, _ = refusal(lambda: trading.cancel_order_by_id(order.id))
    assert (status, body) == (
        422,
        {"code": 42210000, "message": 'order is already in "filled" state'},
    )
    status, body, _ = refusal(lambda: trading.cancel_order_by_id(str(uuid.uuid4())))
    assert (status, body) == (404, {"code": 40410000, "message": "order not found"})


def test_cancel_all_answers_207_with_one_entry_per_order(market):
    """DELETE /v2/orders: 207, [{id, status: 200, body: null}] for every open order."""
    trading = client(market)
    orders = [
        trading.submit_order(
            LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=p)
        )
        for p in (90, 91)
    ]
    answers = trading.cancel_orders()
    assert sorted((str(a.id), a.status, a.body) for a in answers) == sorted(
        (str(o.id), 200, None) for o in orders
    )
    assert trading.get_orders() == []


def test_a_client_order_id_is_single_use_even_after_cancel(market):
    """422 40010001 "client_order_id must be unique" for an id used before, canceled or not."""
    trading = client(market)
    order = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=90, client_order_id="once"
        )
    )
    trading.cancel_order_by_id(order.id)
    status, body, _ = refusal(lambda: _buy(trading, qty=1, cid="once"))
    assert (status, body) == (422, {"code": 40010001, "message": "client_order_id must be unique"})


def test_a_sell_beyond_the_available_shares_is_403_with_alpacas_body(market):
    """10 held, a stop holds 10: a sell of 4 is refused 403 40310000 with available,
    existing_qty, held_for_orders and symbol."""
    trading = client(market)
    _long(market, trading)
    trading.submit_order(
        StopOrderRequest(symbol="SPY", qty=10, side=SELL, time_in_force=GTC, stop_price=99)
    )
    status, body, _ = refusal(
        lambda: trading.submit_order(
            MarketOrderRequest(symbol="SPY", qty=4, side=SELL, time_in_force=DAY)
        )
    )
    assert (status, body) == (
        403,
        {
            "code": 40310000,
            "message": "insufficient qty available for order (requested: 4, available: 0)",
            "available": "0",
            "existing_qty": "10",
            "held_for_orders": "10",
            "symbol": "SPY",
        },
    )


def test_sub_penny_prices_are_refused_422(market):
    """At $1 or more at most 2 decimals, below $1 at most 4: 422 42210000 naming the price."""
    trading = client(market)
    status, body, _ = refusal(
        lambda: trading.submit_order(
            LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=99.123)
        )
    )
    assert (status, body) == (
        422,
        {
            "code": 42210000,
            "message": "invalid limit_price 99.123. sub-penny increment does not fulfill "
            "minimum pricing criteria",
        },
    )
    status, body, _ = refusal(
        lambda: trading.submit_order(
            StopOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, stop_price=0.12345)
        )
    )
    assert status == 422 and body["message"].startswith("invalid stop_price 0.12345. sub-penny")
    fine = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=0.1234)
    )
    assert fine.limit_price == "0.1234"


def test_orders_carry_the_feeds_time(market):
    """created_at/submitted_at are the exchange's clock: the time of the last print."""
    trading = client(market)
    market.advance(3)
    order = _buy(trading)
    assert order.submitted_at == T0 + timedelta(seconds=2) == order.created_at
    assert trading.get_clock().timestamp == T0 + timedelta(seconds=2)


def test_quantities_and_prices_keep_their_decimals(market):
    """A fractional DAY market order keeps its 9 decimals as a string."""
    raw = client(market, raw=True)
    order = raw.submit_order(
        MarketOrderRequest(symbol="SPY", qty=0.123456789, side=BUY, time_in_force=DAY)
    )
    assert order["qty"] == "0.123456789"
    market.advance(1)
    position = raw.get_open_position("SPY")
    assert (position["qty"], position["avg_entry_price"]) == ("0.123456789", "100")
    assert Decimal(position["market_value"]) == Decimal("12.3456789")


def test_in_real_time_an_order_is_routed_as_soon_as_it_is_answered(start_exchange, updates_of):
    """Played against the clock (speed 1), `new` follows the answer without waiting for a
    print (the next one is a minute away)."""
    minute_apart = [
        evolve(t, ts=T0 + timedelta(minutes=i)) for i, t in enumerate(ticks("100", "101"))
    ]
    market = start_exchange(minute_apart, speed=1.0)
    trading = client(market)
    updates = updates_of(market)
    order = trading.submit_order(
        LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=90)
    )
    [new] = updates.wait(1, timeout=0.8)
    assert (new.event, new.order.id) == ("new", order.id)


def _oco(trading, take=102, loss=99):
    return trading.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=10,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=take),
            stop_loss=StopLossRequest(stop_price=loss),
        )
    )


def test_an_oco_leg_or_parent_is_replaced_in_its_group(market):
    """PATCH the stop leg: a new leg (held) under the same parent, the shares still held
    once; PATCH the take-profit: a new parent with the same leg; the new prices work."""
    trading = client(market)
    _long(market, trading)
    oco = _oco(trading)
    market.advance(1)
    [leg] = oco.legs
    new_leg = trading.replace_order_by_id(leg.id, ReplaceOrderRequest(stop_price=99.5))
    assert new_leg.status is OrderStatus.HELD and str(new_leg.replaces) == str(leg.id)
    parent = trading.get_order_by_id(oco.id, GetOrderByIdRequest(nested=True))
    assert [str(x.id) for x in parent.legs] == [str(new_leg.id)]
    assert trading.get_open_position("SPY").qty_available == "0"
    new_parent = trading.replace_order_by_id(oco.id, ReplaceOrderRequest(limit_price=100.05))
    assert [str(x.id) for x in new_parent.legs] == [str(new_leg.id)]
    assert trading.get_order_by_id(oco.id).status is OrderStatus.REPLACED
    market.advance(4)  # 100.02 .. 100.05: the new take-profit fills, the leg is canceled
    assert trading.get_order_by_id(new_parent.id).filled_avg_price == "100.05"
    assert trading.get_order_by_id(new_leg.id).status is OrderStatus.CANCELED
    assert trading.get_all_positions() == []


def test_canceling_an_oco_leg_cancels_the_group(market):
    """DELETE of the stop leg cancels the take-profit too (one group, one cancel)."""
    trading = client(market)
    _long(market, trading)
    oco = _oco(trading)
    market.advance(1)
    assert trading.cancel_order_by_id(oco.legs[0].id) is None
    assert trading.get_order_by_id(oco.id).status is OrderStatus.CANCELED
    assert trading.get_open_position("SPY").qty_available == "10"


def test_a_short_is_covered_by_a_buy_stop_and_cannot_be_flipped(market):
    """Selling from flat opens a short (negative qty, side short); a buy stop holds its shares,
    so a larger buy is refused 403; the stop covers it when the market rises through it."""
    raw = client(market, raw=True)
    raw.submit_order(MarketOrderRequest(symbol="SPY", qty=5, side=SELL, time_in_force=DAY))
    market.advance(1)
    position = raw.get_open_position("SPY")
    assert (position["qty"], position["side"], position["market_value"]) == ("-5", "short", "-500")
    raw.submit_order(
        StopOrderRequest(symbol="SPY", qty=5, side=BUY, time_in_force=GTC, stop_price=100.03)
    )
    assert raw.get_open_position("SPY")["qty_available"] == "0"
    status, body, _ = refusal(
        lambda: raw.submit_order(
            MarketOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=DAY)
        )
    )
    assert status == 403 and body["available"] == "0"
    market.advance(3)  # 100.01 .. 100.03
    assert raw.get_all_positions() == []
    assert market.books()["oversells"] == 0
