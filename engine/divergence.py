"""Divergence (SPEC §4, §6): when the broker says something that
contradicts what the engine believes — fewer shares free than nothing else should hold, no
such order for one believed working, a fill of an order ratchet does not know — it is
evidence, not a passing fault. It is journaled (`divergence.detected`: what ratchet believed,
what the broker said), the position sends nothing more, and the broker's snapshot is asked
for; applying it adopts the broker's truth (engine.snapshots)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from attrs import evolve

from engine.commands import Command, Record, RequestSnapshot
from engine.events import OrderFilled
from engine.model import Position
from engine.state import EngineState

__all__ = ["ASK_AGAIN", "ask", "ask_again", "diverged", "excess_fill", "unknown_fill"]

# A snapshot asked for and not applied within this is asked for again.
ASK_AGAIN = timedelta(seconds=5)


def ask(state: EngineState, ts: datetime, why: str, symbols: tuple[str, ...]) -> tuple[
    EngineState, list[Command]
]:  # fmt: skip
    """Ask the broker for its snapshot, unless one is already asked for."""
    link = state.link
    if link.snapshot_asked is not None:
        return state, []
    link = evolve(link, snapshot_asked=ts)
    state = state.evolve(link=link, due=min(state.due, ts + ASK_AGAIN))
    return state, [RequestSnapshot(ts, why, symbols)]


def diverged(
    state: EngineState,
    pos: Position,
    ts: datetime,
    evidence: str,
    believed: Mapping[str, object],
    broker: Mapping[str, object],
) -> tuple[EngineState, Position, list[Command]]:
    """The broker contradicts the engine about `pos`: journal it, hold the position's
    requests until the broker's snapshot is applied, and ask for it."""
    record = Record(
        "divergence.detected",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "evidence": evidence, "believed": dict(believed),
         "broker": dict(broker)},
    )  # fmt: skip
    if pos.reconciling is None:
        pos = evolve(pos, reconciling=ts)
    state, asked = ask(state, ts, evidence, (pos.symbol,))
    return state, pos, [record, *asked]


def unknown_fill(
    state: EngineState, ts: datetime, order_id: str, qty: object, price: object
) -> tuple[EngineState, list[Command]]:
    """A fill of an order ratchet does not know (the user's bot's, or one it lost track of):
    the broker's snapshot will tell what is held, and what is held is protected (SPEC §6)."""
    record = Record(
        "divergence.detected",
        ts,
        {"symbol": "", "key": "", "evidence": "fill of an unknown order",
         "believed": {"order_id": order_id, "known": False},
         "broker": {"order_id": order_id, "qty": qty, "price": price}},
    )  # fmt: skip
    state, asked = ask(state, ts, "fill of an unknown order", ())
    return state, [record, *asked]


def excess_fill(
    state: EngineState, pos: Position, fill: OrderFilled
) -> tuple[EngineState, list[Command]]:
    """A fill of one of the lot's orders for more shares than the lot still counts: the
    broker's snapshot will tell what the symbol holds."""
    record = Record(
        "divergence.detected",
        fill.ts,
        {"symbol": pos.symbol, "key": pos.key, "evidence": "fill beyond the shares held",
         "believed": {"qty": pos.fills.remaining},
         "broker": {"order_id": fill.order_id, "qty": fill.qty, "price": fill.price}},
    )  # fmt: skip
    state, asked = ask(state, fill.ts, "fill beyond the shares held", (pos.symbol,))
    return state, [record, *asked]


def ask_again(state: EngineState, now: datetime) -> tuple[EngineState, list[Command]]:
    """A snapshot asked for long ago and never applied (the answer was lost) is asked for
    again."""
    asked = state.link.snapshot_asked
    if asked is None or now < asked + ASK_AGAIN:
        return state, []
    state = state.evolve(link=evolve(state.link, snapshot_asked=None))
    return ask(state, now, "snapshot not received", ())
