"""Entry intents: accepted with an order, or refused with a reason (never an exception)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from engine import Config, EngineState, EntryIntent, Side, SubmitOrder, Tick, step
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


def test_lots_in_one_symbol_get_their_own_keys_and_must_share_a_side():
    """A second long in A is a second lot (its own key and ids); a short in A while longs are
    open is refused, since the broker nets a symbol."""
    t = step(_after_mark(), EntryIntent(T0, "A", Side.LONG, D("9.50"), D(5)))
    orders = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert [(o.order_id, o.qty, o.action.value) for o in orders] == [("rt-A-1-entry", D(5), "buy")]
    later = T0 + timedelta(seconds=1)
    again = step(t.state, EntryIntent(later, "A", Side.LONG, D("9"), D(1)))
    assert [c.order_id for c in again.commands if isinstance(c, SubmitOrder)] == ["rt-A-2-entry"]
    short = step(again.state, EntryIntent(later, "A", Side.SHORT, D("11"), D(1)))
    assert short.commands[0]["reason"] == "opposite_side_open"


def test_the_open_position_limit_refuses_the_next_entry():
    """With max_open = 1, a second entry anywhere is refused while the first is open."""
    state = EngineState.empty(Config(max_open=1))
    state = step(state, Tick(T0, "A", D("10"))).state
    state = step(state, Tick(T0, "B", D("20"))).state
    state = step(state, EntryIntent(T0, "A", Side.LONG, D("9"), D(1))).state
    refused = step(state, EntryIntent(T0, "B", Side.LONG, D("19"), D(1)))
    assert refused.commands[0]["reason"] == "max_open_positions"
