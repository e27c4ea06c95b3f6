"""Brokers: what ratchet's shell needs of one, whether simulated, a local exchange, or Alpaca.

A broker carries out the engine's order commands and reports what happened as engine events:
the answers it knows at once (accepted, rejected, canceled, refused cancels) from `execute`,
and what the market did to resting orders (fills) from `on_tick`. `simulate` folds the engine
over recorded events against any `Broker`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from engine import Command, Event, Tick

__all__ = ["Broker"]


class Broker(Protocol):
    """The broker side of a run."""

    @property
    def oversells(self) -> int:
        """Exits that flipped a position (never allowed: the run's P11 check)."""
        ...

    def execute(self, commands: Iterable[Command]) -> list[Event]:
        """Carry out the order commands among `commands`; the answers known now."""
        ...

    def on_tick(self, tick: Tick) -> Sequence[Event]:
        """A print of the market: the fills (and late answers) it causes, in order."""
        ...

    def disconnect(self, ts: datetime) -> None:
        """The link drops now (a recorded outage): answers wait for the reconnect."""
        ...

    def reconnect_at(self) -> datetime | None:
        """When a dropped link comes back, or None when it is up."""
        ...

    def reconnect(self, ts: datetime) -> list[Event]:
        """Time reached `ts`: a link due back by then is back (Connectivity up and the
        broker's snapshot), else nothing."""
        ...

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        """Shares the order `order_id` still works at the broker (0: not working)."""
        ...

    def uncovered(self) -> dict[str, Decimal]:
        """Per symbol held, the shares no working exit-side order (stop, take-profit, sale)
        covers: what would be lost to a gap right now."""
        ...
