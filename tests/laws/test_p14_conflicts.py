"""P14 Conflicts journaled."""

from __future__ import annotations

from hypothesis import given

from engine import CancelRefusal, CancelRejected, OrderRefusal, OrderRejected
from tests.harness import trace
from tests.strategies import configs, fault_models, histories, market_fills

# What the broker says -> the conflict type the journal must name (SPEC §4).
CONFLICTS = {
    (OrderRejected, OrderRefusal.SHARES_LOCKED): "shares_locked",
    (OrderRejected, OrderRefusal.DUPLICATE): "duplicate_order",
    (CancelRejected, CancelRefusal.FILLED): "cancel_after_fill",
    (CancelRejected, CancelRefusal.NOT_FOUND): "order_not_found",
}


@given(histories(), configs(), market_fills(), fault_models())
def test_p14_every_conflict_is_journaled_with_type_order_ids_and_resolution(
    history, config, fill, faults
):
    """Each conflicting answer from the broker (403 shares held, duplicate client order id,
    cancel of a filled order, unknown order) yields, in the same step, a `conflict.detected`
    naming its type, the order ids involved and the resolution; so does a stop already
    through the market (invalid_price); and every such record carries all three."""
    for step in trace(history.events, config, fill, faults):
        conflicts = step.records("conflict.detected")
        for record in conflicts:
            assert record["type"] and record["resolution"], record
            assert isinstance(record["order_ids"], list), record
            assert record["symbol"] == history.symbol and record["key"], record
        event = step.event
        expected = CONFLICTS.get((type(event), getattr(event, "kind", None)))
        if expected is None:
            continue
        [record] = [r for r in conflicts if r["type"] == expected]
        assert event.order_id in record["order_ids"], (record, event)
