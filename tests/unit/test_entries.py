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


def test_pre_trade_limits_refuse_entries_too_large_by_qty_or_cost():
    """[entries] max_qty and max_notional (qty x reference price): an entry over either is
    refused with that reason and what it would have been; at the limit it passes."""
    config = Config(max_qty=D(100), max_notional=D(1_000))
    state = step(EngineState.empty(config), Tick(T0, "A", D("10.00"))).state
    over_qty = step(state, EntryIntent(T0, "A", Side.LONG, D("9.50"), D(101)))
    assert over_qty.commands[0]["reason"] == "max_qty"
    over_cost = step(state, EntryIntent(T0, "A", Side.LONG, D("9.50"), D(100), D("10.01")))
    [record] = over_cost.commands
    assert record["reason"] == "max_notional" and "1001.00" in record["detail"]
    at_limit = step(state, EntryIntent(T0, "A", Side.LONG, D("9.50"), D(100)))
    assert at_limit.commands[0].kind == "entry.accepted"


def test_an_entry_id_seen_before_is_refused_as_a_duplicate():
    """A client's entry id is taken once: the same id again (accepted or refused the first
    time) is refused `duplicate_entry`, naming what became of the first; records carry it."""
    state = _after_mark()
    first = step(state, EntryIntent(T0, "A", Side.LONG, D("9.50"), D(5), id="bot-42"))
    assert first.commands[0].kind == "entry.accepted" and first.commands[0]["id"] == "bot-42"
    again = step(first.state, EntryIntent(T0, "A", Side.LONG, D("9.50"), D(5), id="bot-42"))
    [record] = again.commands
    assert record["reason"] == "duplicate_entry" and "A-1" in record["detail"]
    assert record["id"] == "bot-42" and again.state == first.state
    bad = step(state, EntryIntent(T0, "B", Side.LONG, D("9.50"), D(5), id="bot-43"))
    assert bad.commands[0]["reason"] == "no_price"
    retry = step(bad.state, EntryIntent(T0, "B", Side.LONG, D("9.50"), D(5), id="bot-43"))
    assert retry.commands[0]["reason"] == "duplicate_entry"
    assert "refused" in retry.commands[0]["detail"]
