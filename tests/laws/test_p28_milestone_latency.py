"""P28 Milestone latency."""

from decimal import Decimal

from hypothesis import given

from tests.harness import same_instant, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p28_the_tranche_order_leaves_in_the_instant_its_milestone_is_reached(
    history, config, fill
):
    """A tick that orders tranches gets the market order for them out in that same instant:
    the tick's step starts the exit (freeing the shares), its acknowledgements finish it."""
    steps = trace(history.events, config, fill)
    for index, step in enumerate(steps):
        if step.tick is None:
            continue
        for pos in step.before.in_symbol(step.tick.symbol):
            ordered = sum(
                (r["qty"] for r in step.records("partial.ordered") if r["key"] == pos.key),
                Decimal(0),
            )
            if not ordered:
                continue
            sent = sum(
                (
                    s.qty
                    for later in same_instant(steps, index)
                    for s in later.submits()
                    if s.purpose == "partial" and s.order_id.startswith(f"rt-{pos.key}-")
                ),
                Decimal(0),
            )
            assert sent == ordered + pos.orders.to_sell, (sent, ordered, pos.orders.to_sell)
