"""The broker link (SPEC §4): the offline queue, the circuit breaker over failed requests, and
the snapshot that reconciles the engine with the broker after a reconnect (P25-P27)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.books import store
from engine.budget import next_step
from engine.commands import Alert, Command
from engine.divergence import ask_again
from engine.events import (
    Connectivity,
)
from engine.records import (
    breaker_closed,
    breaker_half_open,
    breaker_opened,
    mode_changed,
)
from engine.retries import fire
from engine.state import BreakerState, EngineState, Link, Transition

__all__ = ["failed", "fire_due", "flush", "on_connectivity", "succeeded"]

_ZERO = Decimal(0)


def failed(t: Transition, ts: datetime) -> Transition:
    """A request failed for a passing reason: count it; the fifth in a row (or any failure of
    the half-open trial) opens the breaker, holding every order step for the cooldown."""
    state = t.state
    link = state.link
    cfg = state.config
    failures = link.failures + 1
    if link.breaker is BreakerState.OPEN or (
        failures < cfg.breaker_failures and link.breaker is BreakerState.CLOSED
    ):
        return Transition(state.evolve(link=evolve(link, failures=failures)), t.commands)
    reopen_at = ts + cfg.breaker_cooldown
    link = evolve(link, failures=failures, breaker=BreakerState.OPEN, reopen_at=reopen_at)
    record = breaker_opened(ts, {"breaker": "orders", "failures": failures, "reopen_at": reopen_at})
    alert = Alert(ts, "order_breaker_open", {"failures": failures, "reopen_at": reopen_at})
    state = state.evolve(link=link, due=min(state.due, reopen_at))
    return Transition(state, (*t.commands, record, alert))


def succeeded(t: Transition, ts: datetime) -> Transition:
    """The broker answered a request: the failure run ends; a half-open breaker closes."""
    link = t.state.link
    if link.failures == 0 and link.breaker is BreakerState.CLOSED:
        return t
    if link.breaker is not BreakerState.HALF_OPEN:
        return Transition(t.state.evolve(link=evolve(link, failures=0)), t.commands)
    state = t.state.evolve(link=evolve(link, failures=0, breaker=BreakerState.CLOSED))
    flushed = flush(state, ts)
    record = breaker_closed(ts, {"breaker": "orders"})
    return Transition(flushed.state, (*t.commands, record, *flushed.commands))


def fire_due(state: EngineState, now: datetime, scope: str | None) -> Transition:
    """What falls due at `now`: an open breaker whose cooldown is over turns half-open and
    lets the held steps through; then every due retry and answer deadline fires."""
    state, asked = ask_again(state, now)
    link = state.link
    if link.breaker is BreakerState.OPEN and link.reopen_at is not None and now >= link.reopen_at:
        record = breaker_half_open(now)
        state = state.evolve(link=evolve(link, breaker=BreakerState.HALF_OPEN, reopen_at=None))
        t = flush(state, now)
        fired = fire(t.state, now, None)
        return Transition(fired.state, (*asked, record, *t.commands, *fired.commands))
    fired = fire(state, now, scope)
    return Transition(fired.state, (*asked, *fired.commands))


def flush(state: EngineState, ts: datetime) -> Transition:
    """Work out and send, in the order their need arose, the order steps held while nothing
    could be sent (P25): one per position, from its latest wishes."""
    link = state.link
    if not (link.up and link.synced) or not link.waiting:
        return Transition(state)
    out: list[Command] = []
    held: list[str] = []  # optional work the open breaker still holds
    state = state.evolve(link=evolve(link, waiting=()))
    for key in link.waiting:
        pos = state.positions.get(key)
        if pos is None:
            continue
        if not link.open_for(pos):
            held.append(key)
            continue
        pos, sent = next_step(state, pos, state.last_price(pos.symbol), ts)
        out.extend(sent)
        state, more = store(state, pos, ts)
        out.extend(more)
    if held:
        link = state.link
        state = state.evolve(link=evolve(link, waiting=(*held, *link.waiting)))
    return Transition(state, tuple(out))


def _mode_changed(old: Link, new: Link, ts: datetime, reason: str) -> list[Command]:
    if old.mode is new.mode:
        return []
    return [mode_changed(old.mode.value, new.mode.value, reason, ts)]


def on_connectivity(state: EngineState, event: Connectivity) -> Transition:
    """Down: hold every order step. Up: recovery (entries refused until a snapshot is
    reconciled); the held steps wait for the broker's snapshot, which tells what the outage
    hid (fills, orders that never arrived), and go out, in order, as soon as it is applied."""
    old = state.link
    if event.up == old.up:
        return Transition(state)
    if not event.up:
        link = evolve(old, up=False, synced=False)
        records = _mode_changed(old, link, event.ts, "broker connection lost")
        return Transition(state.evolve(link=link), tuple(records))
    link = evolve(old, up=True, recovering=True)
    records = _mode_changed(old, link, event.ts, "broker connection restored")
    return Transition(state.evolve(link=link), tuple(records))
