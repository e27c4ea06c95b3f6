"""Entry intents: accepted with an order, or refused with a reason (never an exception)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from engine import EngineState, EntryIntent, Side, SubmitOrder, Tick, step
from tests.strategies import T0


def _after_mark():
    return step(EngineState.empty(), Tick(T0, "A", D("10.00"))).state


@pytest.mark.parametrize(
    ("intent", "reason"),
    [
        (EntryIntent(T0, "A", Side.LONG, D("10.50"), D(5)), "initial_risk_not_positive"),
        (EntryIntent(T0, "A", Side.SHORT, D("9.50"), D(5)), "initial_risk_not_positive"),
        (EntryIntent(T0, "A", Side.LONG, D("10.00"), D(5)), "initial_risk_not_positive"),
        (EntryIntent(T0, "A", Side.LONG, D("9.50")), "no_quantity"),
        (EntryIntent(T0, "A", Side.LONG, D("9.50"), D("0")), "invalid_qty"),
        (EntryIntent(T0, "A", Side.LONG, D("9.50"), D("1.5")), "invalid_qty"),
        (EntryIntent(T0, "A", Side.LONG, D("-1"), D(5)), "invalid_stop"),
        (EntryIntent(T0, "B", Side.LONG, D("9.50"), D(5)), "no_price"),
        (EntryIntent(T0, "", Side.LONG, D("9.50"), D(5)), "invalid_symbol"),
    ],
)
def test_bad_intents_are_blocked_with_a_reason(intent, reason):
    """Each refusal is an entry.blocked record with its reason, and the state is unchanged."""
    state = _after_mark()
    t = step(state, intent)
    assert t.state == state
    [record] = t.commands
    assert record.kind == "entry.blocked" and record["reason"] == reason


def test_a_good_intent_sends_one_entry_order_and_a_second_is_refused():
    """One position per symbol: a second entry while the first is in flight is refused."""
    intent = EntryIntent(T0, "A", Side.LONG, D("9.50"), D(5))
    t = step(_after_mark(), intent)
    orders = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert [(o.order_id, o.qty, o.action.value) for o in orders] == [("rt-A-1-entry", D(5), "buy")]
    again = step(t.state, EntryIntent(T0 + timedelta(seconds=1), "A", Side.LONG, D("9"), D(1)))
    assert again.commands[0]["reason"] == "entry_pending"
