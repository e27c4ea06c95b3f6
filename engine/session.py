"""Sessions (SPEC §7, §10): one boundary (default 04:00 America/New_York) rolls every daily
counter; and the goal's optional action when it triggers, flattening every position."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.books import store
from engine.budget import next_step
from engine.calendar import session_of
from engine.commands import Command
from engine.goal import roll_session
from engine.model import CloseReason
from engine.phase import on_session_end
from engine.state import EngineState, Transition

__all__ = ["flatten", "roll"]

_ZERO = Decimal(0)


def roll(state: EngineState, ts: datetime) -> tuple[EngineState, list[Command]]:
    """The first event at or after the session boundary starts a new session: the goal's
    counters reset (`goal.reset`) and the phase rules close the session that ended."""
    cfg = state.config.session
    session, reset_at = session_of(ts, cfg.tz, cfg.boundary)
    daily, records = roll_session(state.daily, session, reset_at, ts)
    phase = state.phase
    if state.daily.session is not None:
        phase = on_session_end(phase, state.config.phase)
    return state.evolve(daily=daily, phase=phase), list(records)


def flatten(t: Transition, ts: datetime) -> Transition:
    """Protection triggered with `on_trigger = "flatten"`: close every position at market."""
    state, out = t.state, list(t.commands)
    for lot in state.opened_order():
        pos = lot
        sell = pos.orders.sell
        in_flight = sell.open_qty if sell is not None else _ZERO
        pos = evolve(
            pos,
            ladder=evolve(pos.ladder, trigger=None),
            orders=evolve(pos.orders, to_sell=pos.fills.remaining - in_flight, milestones=()),
            close_reason=CloseReason.FLATTEN,
        )
        if state.link.open_for(pos):
            pos, sent = next_step(state, pos, state.last_price(pos.symbol), ts)
            out.extend(sent)
        state, more = store(state, pos, ts)
        out.extend(more)
    return Transition(state, tuple(out))
