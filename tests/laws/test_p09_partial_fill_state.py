"""P9 State after partial fill."""

from hypothesis import given

from tests.harness import fills, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p09_a_fill_reduces_the_remaining_quantity_at_once(history, config, fill):
    """After an exit-side fill of q shares, remaining = previous - q in the same step, >= 0."""
    for step, event in fills(trace(history.events, config, fill)):
        for pos in step.before.positions.values():
            exits = [o for o in (pos.orders.exit, pos.orders.sell) if o is not None]
            if not any(o.id == event.order_id for o in exits):
                continue
            after = step.after.positions.get(pos.key)
            remaining = after.fills.remaining if after is not None else 0
            assert remaining == pos.fills.remaining - event.qty
            assert remaining >= 0
