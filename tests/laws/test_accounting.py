"""Accounting: what the journal says a trade made is what its fills made, to the cent."""

from collections import defaultdict
from decimal import Decimal

from hypothesis import given

from tests.harness import fills, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_trade_pnl_and_quantities_are_the_sum_of_its_exit_fills(history, config, fill):
    """For each closed trade: pnl = what its exit fills brought minus what its entry fills
    cost (x side), exactly; the exit fills add up to the original quantity, exit is their
    average price (to 1/100 of a cent), and r is pnl over the initial dollar risk."""
    steps = trace(history.events, config, fill)
    cost, sold, value = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    side = {}
    for step, event in fills(steps):
        key = event.order_id[3:].removesuffix("-entry")
        if event.order_id.endswith("-entry"):
            cost[key] += event.price * event.qty
        for pos in step.before.positions.values():
            side[pos.key] = pos.side.sign
            if event.order_id in {o.id for o in (pos.orders.exit, pos.orders.sell) if o}:
                sold[pos.key] += event.qty
                value[pos.key] += event.price * event.qty
    for step in steps:
        for trade in step.records("trade.closed"):
            key = trade["key"]
            sign = 1 if trade["side"] == "long" else -1
            assert trade["pnl"] == (value[key] - cost[key]) * sign
            assert trade["qty"] == sold[key]
            average = value[key] / sold[key]
            if average.as_tuple().exponent < -4:
                average = average.quantize(Decimal("0.0001"))
            assert trade["exit"] == average
            if trade["risk"] > 0:
                assert trade["r"] == trade["pnl"] / trade["risk"]
