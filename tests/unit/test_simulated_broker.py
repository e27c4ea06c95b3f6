"""The simulated broker: fills as SPEC describes; acknowledgements in the same instant."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from attrs import evolve

from engine import (
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    SubmitOrder,
    Tick,
)
from shell.broker.simulated import Faults, SimulatedBroker
from tests.strategies import T0


def _order(oid, kind, action=OrderAction.SELL, qty="10", stop=None, limit=None, symbol="A"):
    return SubmitOrder(
        T0, oid, symbol, action, kind, D(qty),
        D(stop) if stop else None, D(limit) if limit else None,
    )  # fmt: skip


def _broker():
    """A broker already holding 1,000 shares of A and B, so exits have shares to sell."""
    return SimulatedBroker(positions={"A": D(1000), "B": D(1000)})


def _tick(price, symbol="A"):
    return Tick(T0, symbol, D(price))


def test_a_stop_triggers_at_or_through_and_fills_at_the_tick_price():
    """A sell stop at 9.50 ignores 9.51, then fills at 9.20 when a print gaps through it."""
    broker = _broker()
    assert broker.execute([_order("s", OrderType.STOP, stop="9.50")]) == [OrderAccepted(T0, "s")]
    assert list(broker.on_tick(_tick("9.51"))) == []
    assert list(broker.on_tick(_tick("9.20"))) == [OrderFilled(T0, "s", D(10), D("9.20"))]
    assert list(broker.on_tick(_tick("9.00"))) == []


def test_a_buy_stop_and_a_sell_limit_mirror_each_other():
    """A buy stop triggers at or above; a sell limit fills at its limit when price reaches it."""
    broker = _broker()
    broker.execute(
        [
            _order("b", OrderType.STOP, OrderAction.BUY, stop="10.50"),
            _order("l", OrderType.LIMIT, limit="10.40", symbol="B"),
        ]
    )
    assert list(broker.on_tick(_tick("10.50"))) == [OrderFilled(T0, "b", D(10), D("10.50"))]
    assert list(broker.on_tick(_tick("10.70", "B"))) == [OrderFilled(T0, "l", D(10), D("10.40"))]


def test_an_oco_fills_one_leg_only():
    """An OCO stop 9.50 / limit 11.00 fills its limit leg once and nothing more."""
    broker = _broker()
    broker.execute([_order("o", OrderType.OCO, stop="9.50", limit="11.00")])
    assert list(broker.on_tick(_tick("11.00"))) == [OrderFilled(T0, "o", D(10), D("11.00"))]
    assert list(broker.on_tick(_tick("9.00"))) == []


def test_market_orders_fill_at_the_next_tick_or_the_last_one():
    """'next' waits for the next print; 'same' fills at the last print at once."""
    nxt = SimulatedBroker(market_fill="next", positions={"A": D(1000)})
    nxt.on_tick(_tick("10.00"))
    assert nxt.execute([_order("m", OrderType.MARKET)]) == [OrderAccepted(T0, "m")]
    assert list(nxt.on_tick(_tick("10.05"))) == [OrderFilled(T0, "m", D(10), D("10.05"))]
    same = SimulatedBroker(market_fill="same", positions={"A": D(1000)})
    same.on_tick(_tick("10.00"))
    assert same.execute([_order("m", OrderType.MARKET)])[-1] == OrderFilled(
        T0, "m", D(10), D("10.00")
    )


def test_duplicate_ids_are_refused_and_cancels_confirmed_or_refused():
    """A reused client order id is rejected; cancelling an open order is confirmed, cancelling
    one that is gone is refused."""
    broker = _broker()
    broker.execute([_order("x", OrderType.STOP, stop="9")])
    [rejected] = broker.execute([_order("x", OrderType.STOP, stop="9")])
    assert isinstance(rejected, OrderRejected) and "unique" in rejected.reason
    assert broker.execute([CancelOrder(T0, "x", "A")]) == [OrderCanceled(T0, "x")]
    [refused] = broker.execute([CancelOrder(T0, "x", "A")])
    assert isinstance(refused, CancelRejected)


def test_a_sell_beyond_the_shares_not_held_is_refused_with_alpacas_403():
    """qty_available = position - held by open sells: 5 bought, a 3-share stop holds 3, so a
    sell of 3 is refused 403 (40310000) as shares_locked, and the position never flips."""
    broker = SimulatedBroker(market_fill="same")
    broker.on_tick(_tick("10"))
    entry = evolve(_order("buy", OrderType.MARKET, OrderAction.BUY, qty="5"), purpose="entry")
    broker.execute([entry])
    assert broker.execute([_order("stop", OrderType.STOP, qty="3", stop="9")]) == [
        OrderAccepted(T0, "stop")
    ]
    [refused] = broker.execute([_order("sell", OrderType.MARKET, qty="3")])
    assert isinstance(refused, OrderRejected) and refused.kind is OrderRefusal.SHARES_LOCKED
    assert "40310000" in refused.reason and "available: 2" in refused.reason
    assert broker.positions["A"] == D(5) and broker.oversells == 0
    # Once the stop is canceled the shares are free again.
    broker.execute([CancelOrder(T0, "stop", "A")])
    events = broker.execute([_order("sell2", OrderType.MARKET, qty="5")])
    assert events[-1] == OrderFilled(T0, "sell2", D(5), D(10)) and broker.positions["A"] == 0


def test_a_marketable_limit_fills_at_the_market_and_a_resting_one_at_its_limit():
    """A buy limit 10.05 with the market at 10.00 fills at the next print (10.01); one at 9.90
    rests and fills at 9.90 when the market trades down through it."""
    broker = _broker()
    broker.on_tick(_tick("10.00"))
    broker.execute([_order("m", OrderType.LIMIT, OrderAction.BUY, limit="10.05")])
    broker.execute([_order("r", OrderType.LIMIT, OrderAction.BUY, limit="9.90")])
    assert list(broker.on_tick(_tick("10.01"))) == [OrderFilled(T0, "m", D(10), D("10.01"))]
    assert list(broker.on_tick(_tick("9.80"))) == [OrderFilled(T0, "r", D(10), D("9.90"))]


def test_a_marketable_limit_the_market_leaves_behind_rests_at_its_limit():
    """A buy limit 10.05 sent at 10.00 when the next print is 10.20 does not fill; it rests."""
    broker = _broker()
    broker.on_tick(_tick("10.00"))
    broker.execute([_order("m", OrderType.LIMIT, OrderAction.BUY, limit="10.05")])
    assert list(broker.on_tick(_tick("10.20"))) == []
    assert list(broker.on_tick(_tick("10.04"))) == [OrderFilled(T0, "m", D(10), D("10.05"))]


def test_a_cancel_of_a_filled_stop_is_refused_as_filled_even_while_a_market_order_waits():
    """422 'already filled' (kind filled) for a stop that filled, whatever else is working."""
    broker = _broker()
    broker.on_tick(_tick("10"))
    broker.execute([_order("s", OrderType.STOP, stop="9.50")])
    broker.execute([_order("m", OrderType.MARKET, qty="1")])
    fills = list(broker.on_tick(_tick("9.40")))
    assert OrderFilled(T0, "s", D(10), D("9.40")) in fills
    broker.execute([_order("m2", OrderType.MARKET, qty="1")])
    [answer] = broker.execute([CancelOrder(T0, "s", "A")])
    assert isinstance(answer, CancelRejected) and answer.kind is CancelRefusal.FILLED
    [unknown] = broker.execute([CancelOrder(T0, "nope", "A")])
    assert isinstance(unknown, CancelRejected) and unknown.kind is CancelRefusal.NOT_FOUND
    # A cancel sent again for an order already canceled: Alpaca's 422, not a 404.
    broker.execute([_order("s2", OrderType.STOP, qty="1", stop="9.00")])
    assert isinstance(broker.execute([CancelOrder(T0, "s2", "A")])[0], OrderCanceled)
    [again] = broker.execute([CancelOrder(T0, "s2", "A")])
    assert isinstance(again, CancelRejected) and again.kind is CancelRefusal.CANCELED
    assert again.reason == "HTTP 422 order is already canceled"


def test_fault_profiles_and_rates_parse_and_bad_ones_are_named():
    """`high,seed=7,late=0` = the high profile with late cancels off; a bad part is named."""
    faults = Faults.parse("high,seed=7,late=0")
    assert (faults.transient, faults.permanent, faults.locked, faults.partial) == (
        0.3, 0.05, 0.1, 0.3
    )  # fmt: skip
    assert (faults.late, faults.drop, faults.seed) == (0.0, 0.05, 7)
    for text, named in [("loud", "'loud'"), ("late=2", "late=2"), ("seed=x", "seed='x'")]:
        with pytest.raises(ValueError, match=re.escape(named)):
            Faults.parse(text)
