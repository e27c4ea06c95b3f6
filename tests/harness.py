"""Fold the engine over a history against the simulated broker and keep every step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any, Literal

from attrs import frozen

from engine import Config, EngineState, Event, OrderFilled, Position, Record, SubmitOrder, Tick
from engine.commands import Command
from shell.broker.simulated import Faults, SimulatedBroker
from shell.simulate import run_simulation


@frozen
class Step:
    """One call of `step`: the event, the state before and after, and the commands."""

    event: Event
    before: EngineState
    after: EngineState
    commands: tuple[Command, ...]

    def records(self, kind: str) -> list[Record]:
        return [c for c in self.commands if isinstance(c, Record) and c.kind == kind]

    def submits(self) -> list[SubmitOrder]:
        return [c for c in self.commands if isinstance(c, SubmitOrder)]

    @property
    def tick(self) -> Tick | None:
        return self.event if isinstance(self.event, Tick) else None


def trace(
    events: Iterable[Event],
    config: Config | None = None,
    market_fill: Literal["next", "same"] | str = "next",
    faults: Faults | None = None,
    heartbeat: bool = True,
) -> list[Step]:
    """Every step of a simulation, in order (with the clock events of its heartbeat)."""
    steps: list[Step] = []
    run_simulation(
        events,
        EngineState.empty(config),
        SimulatedBroker(market_fill=market_fill, faults=faults),  # type: ignore[arg-type]
        on_step=lambda e, before, t: steps.append(Step(e, before, t.state, t.commands)),
        heartbeat=heartbeat,
    )
    return steps


def all_records(steps: Iterable[Step], kind: str | None = None) -> list[Record]:
    """Records of `kind` (or all) across steps, in order."""
    return [
        c
        for s in steps
        for c in s.commands
        if isinstance(c, Record) and (kind is None or c.kind == kind)
    ]


def open_position_ticks(steps: Iterable[Step]) -> Iterator[tuple[Step, Position]]:
    """Each tick step whose symbol had an open position before it, with that position."""
    for s in steps:
        tick = s.tick
        if tick is None:
            continue
        for pos in s.before.in_symbol(tick.symbol):
            yield s, pos


def same_instant(steps: list[Step], index: int) -> list[Step]:
    """The step at `index` and the acknowledgement steps that follow it in the same instant."""
    first = steps[index]
    out = [first]
    for s in steps[index + 1 :]:
        if isinstance(s.event, Tick) or s.event.ts != first.event.ts:
            break
        out.append(s)
    return out


def fills(steps: Iterable[Step]) -> Iterator[tuple[Step, OrderFilled]]:
    for s in steps:
        if isinstance(s.event, OrderFilled):
            yield s, s.event


def dec(value: Any) -> Decimal:
    assert isinstance(value, Decimal), value
    return value
