"""P32 Partial journaled."""

from decimal import Decimal

from hypothesis import given

from tests.harness import fills, trace
from tests.oracle import r_of
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p32_every_partial_fill_has_a_record_with_r_qty_and_profit(history, config, fill):
    """A fill of a tranche order yields partial.filled records for exactly its quantity,
    each with the fill price, R at that price and profit = (price - entry) x qty x side."""
    for step, event in fills(trace(history.events, config, fill)):
        for pos in step.before.positions.values():
            order = pos.orders.sell
            if order is None or order.id != event.order_id or order.role.value != "partial":
                continue
            records = [r for r in step.records("partial.filled") if r["key"] == pos.key]
            assert sum((r["qty"] for r in records), Decimal(0)) == event.qty
            for record in records:
                assert record["price"] == event.price
                assert record["r"] == r_of(
                    event.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side
                )
                profit = (event.price - pos.ladder.entry) * record["qty"] * pos.side.sign
                assert record["profit"] == profit
