"""P3 Profitable stop invariant."""

from hypothesis import given

from tests.harness import trace
from tests.oracle import better, r_of
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p03_after_1r_the_stop_is_never_worse_than_entry(history, config, fill):
    """Once a position has reached 1R, its stop and its live stop order never sit below entry."""
    reached: set[str] = set()
    for step in trace(history.events, config, fill):
        tick = step.tick
        for pos in step.after.positions.values():
            if pos.risk <= 0:
                continue
            priced = tick is not None and tick.symbol == pos.symbol
            if (
                priced
                and r_of(tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side) >= 1
            ):
                reached.add(pos.key)
            if pos.key in reached:
                assert better(pos.ladder.stop, pos.ladder.entry, pos.side), (
                    pos.ladder.stop,
                    pos.ladder.entry,
                )
                order = pos.orders.exit
                if order is not None and order.stop_price is not None:
                    # The order may still be the old one while its cancel is in flight.
                    assert better(order.stop_price, pos.ladder.entry, pos.side) or (
                        order.status.value == "pending_cancel"
                    ), order
