"""Operator actions on the phases (SPEC §8): advance by the gates, an authenticated override,
and the acknowledgement that closes the phase breaker after a downgrade."""

from __future__ import annotations

from returns.result import Success

from engine.commands import Alert
from engine.events import BreakerAck, PhaseAdvance, PhaseOverride
from engine.phase import (
    PHASE_ORDER,
    Phase,
    acknowledged,
    advanced,
    evaluate_gate,
    overridden,
    phase_record,
)
from engine.records import breaker_closed, phase_denied
from engine.state import EngineState, Transition

__all__ = ["on_breaker_ack", "on_phase_advance", "on_phase_override"]


def on_phase_advance(state: EngineState, event: PhaseAdvance) -> Transition:
    """Advance one phase if every gate holds; otherwise list every failed criterion."""
    phase = state.phase
    verdict = evaluate_gate(phase, state.config.phase)
    if isinstance(verdict, Success):
        new = advanced(phase, verdict.unwrap(), state.config.phase)
        record = phase_record(phase, new, "gates", "every gate holds", event.ts)
        return Transition(state.evolve(phase=new), (record,))
    listed = [
        {"criterion": f.name, "actual": f.actual, "required": f.required} for f in verdict.failure()
    ]
    return Transition(state, (phase_denied(phase.phase.value, listed, event.ts),))


def on_phase_override(state: EngineState, event: PhaseOverride) -> Transition:
    """An authenticated manual change to any phase (the shell checked the password)."""
    try:
        target = Phase(event.to)
    except ValueError:
        names = ", ".join(p.value for p in PHASE_ORDER)
        alert = Alert(event.ts, "phase_override_refused", {"to": event.to, "allowed": names})
        return Transition(state, (alert,))
    old = state.phase
    new = overridden(old, target, state.config.phase)
    record = phase_record(old, new, "override", event.reason, event.ts)
    return Transition(state.evolve(phase=new), (record,))


def on_breaker_ack(state: EngineState, event: BreakerAck) -> Transition:
    """An operator acknowledges the downgrade: the phase breaker closes."""
    if not state.phase.breaker_open:
        return Transition(state)
    record = breaker_closed(event.ts, {"phase": state.phase.phase.value})
    return Transition(state.evolve(phase=acknowledged(state.phase)), (record,))
