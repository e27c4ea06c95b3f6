"""P25 Offline queueing, P26 Recovery mode, P27 Recovery validation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine import (
    BrokerSnapshot,
    CancelOrder,
    Connectivity,
    EngineState,
    EntryIntent,
    LinkMode,
    SubmitOrder,
    Tick,
    fold,
    step,
)
from tests.harness import trace
from tests.strategies import configs, histories, market_fills

_SECOND = timedelta(seconds=1)


def _with_outage(history, at: int):
    """The history with the link dropping just before event `at`, and an entry tried while
    it is down (the broker comes back by itself at the first print a second later)."""
    events = list(history.events)
    at = min(at, len(events) - 1)
    ts = events[at].ts
    intent = EntryIntent(ts, history.symbol, history.side, history.stop, history.qty)
    return [*events[:at], Connectivity(ts, False), intent, *events[at:]]


@given(histories(), configs(), market_fills(), st.integers(1, 40))
def test_p25_commands_wait_offline_and_go_out_in_order_coalesced_on_reconnect(
    history, config, fill, at
):
    """Nothing is sent while the link is down, nor once it is back until the broker's
    snapshot has told what the outage hid; then each waiting position gets one order step,
    in the order their need arose, worked out from its latest wishes."""
    steps = trace(_with_outage(history, at), config, fill)
    resynced = 0
    for s in steps:
        orders = [c for c in s.commands if isinstance(c, SubmitOrder | CancelOrder)]
        if not s.before.link.sending and not s.after.link.sending:
            assert not orders, (s.event, orders)
        if isinstance(s.event, Connectivity):
            assert not orders, (s.event, orders)
        if isinstance(s.event, BrokerSnapshot) and not s.before.link.synced:
            resynced += 1
            queued = s.before.link.waiting
            keys = [c.order_id.split("-", 1)[1].rsplit("-", 2)[0] for c in orders]
            assert len(keys) == len(set(keys)), keys  # coalesced: one step per position
            held = [k for k in keys if k in queued]
            assert held == [k for k in queued if k in keys], (queued, keys)  # in order,
            assert keys[: len(held)] == held, (queued, keys)  # before what the snapshot adds
            for command in orders:
                if isinstance(command, SubmitOrder) and command.purpose == "protect":
                    pos = s.after.positions[command.order_id.split("-", 1)[1].rsplit("-", 2)[0]]
                    assert command.stop_price == pos.ladder.stop  # the latest stop, not a stale one
    [down] = [e for e in (s.event for s in steps) if isinstance(e, Connectivity)][:1]
    back = any(isinstance(s.event, Tick) and s.event.ts - down.ts >= _SECOND for s in steps)
    assert resynced == back  # the broker comes back, with its snapshot, a second later


@given(histories(), configs(), market_fills(), st.integers(1, 40))
def test_p26_every_entry_while_offline_or_recovering_is_blocked_with_a_reason(
    history, config, fill, at
):
    """Entry intents that arrive while the link is down or not yet reconciled are blocked,
    each with `broker_offline` or `recovery_mode`."""
    steps = trace(_with_outage(history, at), config, fill)
    tried = 0
    for s in steps:
        if isinstance(s.event, EntryIntent) and s.before.link.mode is not LinkMode.NORMAL:
            tried += 1
            [blocked] = s.records("entry.blocked")
            expected = "broker_offline" if not s.before.link.up else "recovery_mode"
            assert blocked["reason"] == expected
            assert not s.submits()
    assert tried >= 1  # the one tried during the outage, and any of the history's own
    # Reconnected but not yet reconciled: still refused.
    state, _ = fold(steps[-1].after, [Connectivity(ts := steps[-1].event.ts, False)])
    state, _ = fold(state, [Connectivity(ts, True)])
    intent = EntryIntent(ts, history.symbol, history.side, history.stop, history.qty)
    [blocked] = step(state, intent).commands
    assert blocked["reason"] == "recovery_mode"


RECONCILED_KINDS = ("position.reconciled", "position.adopted")


@given(histories(), configs(), market_fills(), st.integers(-2, 2), st.booleans(), st.booleans())
def test_p27_normal_mode_resumes_only_when_a_snapshot_validates_every_position(
    history, config, fill, off_by, extra_symbol, priced
):
    """After a reconnect, the broker's snapshot is the truth: share counts that differ from
    the engine's (by a few shares, or a symbol the engine does not hold) are adopted, each
    change journaled, and normal mode returns (`mode.changed`) with every symbol matching the
    broker. Shares the engine cannot adopt (no price known to protect them from) keep recovery
    on with a `position_mismatch` alert until a snapshot it can validate."""
    steps = trace(history.events, config, fill)
    state = steps[-1].after if steps else EngineState.empty(config)
    ts = history.events[-1].ts
    state, _ = fold(state, [Connectivity(ts, False), Connectivity(ts, True)])
    assert state.link.mode is LinkMode.RECOVERY
    held = {
        symbol: sum((p.fills.remaining * p.side.sign for p in state.in_symbol(symbol)), Decimal(0))
        for symbol in state.books
    }
    wrong = dict(held)
    wrong[history.symbol] = wrong.get(history.symbol, Decimal(0)) + off_by
    if extra_symbol:
        wrong["ZZZ"] = Decimal(5)
    prices = (("ZZZ", Decimal("50")),) if priced else ()
    t = step(state, BrokerSnapshot(ts, tuple(wrong.items()), prices=prices))
    changed_symbols = {
        c["symbol"] for c in t.commands if getattr(c, "kind", "") in RECONCILED_KINDS
    }
    differing = {s for s in set(wrong) | set(held) if wrong.get(s, 0) != held.get(s, 0)}
    # An unpriced symbol the engine never traded cannot be protected: it is not adopted.
    unpriced = {"ZZZ"} if extra_symbol and not priced and history.symbol != "ZZZ" else set()
    assert changed_symbols == differing - unpriced
    if unpriced:
        assert t.state.link.mode is LinkMode.RECOVERY
        [alert] = [a for a in t.commands if getattr(a, "reason", "") == "position_mismatch"]
        assert [p["symbol"] for p in alert.context["positions"]] == ["ZZZ"]
        assert not [c for c in t.commands if getattr(c, "kind", "") == "mode.changed"]
        wrong.pop("ZZZ")
        t = step(t.state, BrokerSnapshot(ts, tuple(wrong.items())))
    assert t.state.link.mode is LinkMode.NORMAL
    for symbol in set(wrong) | set(t.state.books):
        ours = sum((p.fills.remaining * p.side.sign for p in t.state.in_symbol(symbol)), Decimal(0))
        assert ours == wrong.get(symbol, Decimal(0)), symbol
    [changed] = [c for c in t.commands if getattr(c, "kind", "") == "mode.changed"]
    assert (changed["from"], changed["to"]) == ("recovery", "normal")
