"""Accounting: what the journal says a trade made is what its fills made, to the cent."""

from collections import defaultdict
from decimal import Decimal

from hypothesis import given

from tests.harness import fills, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_trade_pnl_and_quantities_are_the_sum_of_its_exit_fills(history, config, fill):
    """For each closed trade: pnl = sum of (fill - entry) x qty x side over its exit fills,
    the exit fills add up to the original quantity, exit is their average price, and r is
    pnl over the initial dollar risk."""
    steps = trace(history.events, config, fill)
    made, sold, value = defaultdict(Decimal), defaultdict(Decimal), defaultdict(Decimal)
    for step, event in fills(steps):
        for pos in step.before.positions.values():
            if event.order_id in {o.id for o in (pos.orders.exit, pos.orders.sell) if o}:
                made[pos.key] += (event.price - pos.ladder.entry) * event.qty * pos.side.sign
                sold[pos.key] += event.qty
                value[pos.key] += event.price * event.qty
    for step in steps:
        for trade in step.records("trade.closed"):
            key = trade["key"]
            assert trade["pnl"] == made[key]
            assert trade["qty"] == sold[key]
            assert trade["exit"] == value[key] / sold[key]
            if trade["risk"] > 0:
                assert trade["r"] == trade["pnl"] / trade["risk"]
