"""The engine: `step(state, event)` returns the next state and every command the event calls for.

This module only dispatches: a quiet tick takes the fast path; every other event goes to the
handler beside the rule it applies (protection, entries, fills, answers, link, operator).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_never

from engine.answers import on_accepted, on_cancel_rejected, on_canceled
from engine.commands import Command
from engine.entries import Refusal, on_entry, validate_entry
from engine.events import (
    BreakerAck,
    BrokerSnapshot,
    CancelRefusal,
    CancelRejected,
    Clock,
    Connectivity,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    PhaseAdvance,
    PhaseOverride,
    Tick,
)
from engine.fills import on_fill
from engine.goal import OnTrigger
from engine.hours import roll_market
from engine.ids import key_of, symbol_of
from engine.link import failed, fire_due, on_connectivity, succeeded
from engine.operator import on_breaker_ack, on_phase_advance, on_phase_override
from engine.protection import on_clock, on_tick
from engine.rejections import on_rejected, retryable
from engine.session import flatten, roll
from engine.snapshots import on_snapshot
from engine.state import EngineState, Transition

# `Transition` lives in engine.state and the entry gate in engine.entries; both are re-exported
# here because they are the step's own vocabulary.
__all__ = ["Refusal", "Transition", "fold", "step", "validate_entry"]

_NO_COMMANDS: tuple[Command, ...] = ()
# Refusals about order sequencing (held shares, an opposite order in the way), not a failing
# broker: the circuit breaker does not count them.
_SEQUENCING = frozenset({OrderRefusal.SHARES_LOCKED, OrderRefusal.WASH_TRADE})
# NamedTuple construction without its Python-level __new__ frame (the per-tick fast path).
_tuple_new = tuple.__new__


def step(state: EngineState, event: Event) -> Transition:
    """Apply one event; return the next state and every command it calls for."""
    if type(event) is Tick:
        # The hot path, inlined: a tick inside its symbol's band, within the session, with
        # nothing due, only records the mark.
        book = state.books.get(event.symbol)
        daily = state.daily
        reset_at = daily.reset_at
        if (
            (book is None or (book.lo < event.price < book.hi and not book.tracked))
            and reset_at is not None
            and event.ts < reset_at
            and event.ts < state.due
            and event.ts < state.market.until
        ):
            marks = state.marks.set(event.symbol, event)
            (config, positions, books, _, entries, counts, routes, _, phase, stale, due, link,
             intents, market) = state  # fmt: skip
            fields = (
                config, positions, books, marks, entries, counts, routes, daily, phase, stale,
                due, link, intents, market,
            )  # fmt: skip
            new = _tuple_new(EngineState, fields)
            return _tuple_new(Transition, (new, _NO_COMMANDS))
    if event.ts >= state.market.until:
        # A session boundary passed: the market rolls, protection changes mode.
        state, rolled = roll_market(state, event.ts)
        t = step(state, event)
        return Transition(t.state, (*rolled, *t.commands))
    reset_at = state.daily.reset_at
    if reset_at is None or event.ts >= reset_at:
        state, records = roll(state, event.ts)
        t = step(state, event)
        return Transition(t.state, (*records, *t.commands))
    if event.ts >= state.due:
        # What the event says first (a fill may make a due retry moot), then what is due.
        t = _apply(state, event)
        fired = fire_due(t.state, event.ts, _symbol_of(state, event))
        return Transition(fired.state, (*t.commands, *fired.commands))
    return _apply(state, event)


def _apply(state: EngineState, event: Event) -> Transition:
    """Dispatch; when the event triggered the daily goal set to flatten, flatten (SPEC §7)."""
    before = state.daily.triggered
    t = _dispatch(state, event)
    if t.state.daily.triggered and not before and state.config.goal.on_trigger is OnTrigger.FLATTEN:
        return flatten(t, event.ts)
    return t


def _dispatch(state: EngineState, event: Event) -> Transition:
    """One case per event; answers to requests are counted by the circuit breaker."""
    match event:
        case Tick():
            return on_tick(state, event)
        case EntryIntent():
            return on_entry(state, event)
        case OrderFilled():
            return on_fill(state, event)
        case OrderAccepted():
            return succeeded(on_accepted(state, event), event.ts)
        case OrderCanceled():
            return succeeded(on_canceled(state, event), event.ts)
        case OrderRejected():
            t = on_rejected(state, event)
            # Held shares are an answer about sequencing, not a failing broker: not counted.
            counted = event.kind not in _SEQUENCING and retryable(state, event)
            return failed(t, event.ts) if counted else t
        case CancelRejected():
            t = on_cancel_rejected(state, event)
            return failed(t, event.ts) if event.kind is CancelRefusal.TRANSIENT else t
        case Connectivity():
            return on_connectivity(state, event)
        case BrokerSnapshot():
            return on_snapshot(state, event)
        case Clock():
            return on_clock(state, event)
        case PhaseAdvance():
            return on_phase_advance(state, event)
        case PhaseOverride():
            return on_phase_override(state, event)
        case BreakerAck():
            return on_breaker_ack(state, event)
        case _:
            assert_never(event)


def _symbol_of(state: EngineState, event: Event) -> str | None:
    """The symbol an event is about (a tick, an entry, an answer about one of its orders),
    or None for the ones about everything (clock, link, phase)."""
    match event:
        case Tick() | EntryIntent():
            return event.symbol
        case OrderAccepted() | OrderRejected() | OrderFilled() | OrderCanceled() | CancelRejected():
            key = state.routes.get(event.order_id) or key_of(event.order_id)
            return symbol_of(key) if key else None
        case _:
            return None


def fold(state: EngineState, events: Iterable[Event]) -> tuple[EngineState, list[Command]]:
    """Step through `events` in order; return the last state and all commands."""
    commands: list[Command] = []
    for event in events:
        t = step(state, event)
        state = t.state
        commands.extend(t.commands)
    return state, commands
