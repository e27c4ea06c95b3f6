"""The paper exchange inside `ratchet run`'s own process: the simulated broker's matching
(the same rules as `simulate` and `ratchet exchange`) played on a recorded feed, with the live
loop's interface. Lock-step by default (`speed=0`: the next print only once the loop has
stepped everything before it, so a paper run is deterministic and matches `simulate` on the
same files); `speed > 0` plays the feed against the wall clock (1 = real time).

Non-tick events of the feed (entry intents) reach the loop at their place in the feed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from engine import BrokerSnapshot, Command, Event, MarketHours, Tick
from shell.broker.faults import Faults
from shell.broker.simulated import SimulatedBroker

__all__ = ["PaperBroker", "Stepper"]


class Stepper(Protocol):
    """What the paper exchange needs of the loop that trades it."""

    def catch_up(self, until: datetime) -> None:
        """Step what falls due before `until`."""
        ...

    def deliver(self, events: Sequence[Event], ts: datetime) -> None:
        """Step `events` now, ahead of the queue."""
        ...


class PaperBroker:
    """A `LiveBroker` (see shell.run) over a simulated broker and a recorded feed."""

    def __init__(
        self,
        feed: Iterable[Event],
        *,
        speed: float = 0.0,
        market_fill: str = "next",
        faults: Faults | None = None,
        hours: MarketHours | None = None,
    ):
        if speed < 0:
            raise ValueError(f"speed {speed}: allowed 0 (lock-step) or more")
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.sim = SimulatedBroker(
            market_fill=market_fill,  # type: ignore[arg-type]
            faults=faults,
            hours=hours,
            wash_check=True,  # as Alpaca and `simulate`
        )
        self.speed = speed
        self.now: datetime | None = None  # the feed's time: the last print played
        self.prints = 0
        feed = iter(feed)
        first = next(feed, None)
        self._feed: Iterator[Event] = feed if first is None else itertools.chain([first], feed)
        if first is not None:
            self.now = first.ts  # the loop starts at the feed's first instant

    async def start(self, symbols: Iterable[str]) -> None:
        """Nothing to connect: the exchange is in this process."""

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Every symbol of the feed is played: nothing to subscribe."""

    def submit(self, commands: Sequence[Command]) -> list[Event]:
        """Carry out the order commands; the answers, at once (the loop steps them before
        anything else, as `simulate` does)."""
        return self.sim.execute(commands)

    async def snapshot(self, ts: datetime) -> BrokerSnapshot:
        """The exchange's positions and open orders now."""
        return self.sim.snapshot(ts)

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        """Shares the order still works at the exchange (0: not working)."""
        return self.sim.working_qty(symbol, order_id)

    def reconnect_at(self) -> datetime | None:
        """When a link dropped by a fault comes back (None: it is up)."""
        return self.sim.reconnect_at()

    def reconnect(self, ts: datetime) -> list[Event]:
        """The link is back at `ts`: the broker's reconnect events (its snapshot)."""
        return self.sim.reconnect(ts)

    def uncovered(self) -> dict[str, Decimal]:
        """Per symbol held, the shares no working exit-side order covers."""
        return self.sim.uncovered()

    @property
    def oversells(self) -> int:
        """Exits that flipped a position (never allowed)."""
        return self.sim.oversells

    plays_every_symbol = True  # the loop never waits for a symbol's prints

    @property
    def lockstep(self) -> bool:
        """The loop pulls the next print when it is done with the last (`pull`)."""
        return not self.speed

    def pull(self, loop: Stepper) -> bool:
        """Lock-step: play the feed's next event now (False: the feed has ended)."""
        event = next(self._feed, None)
        if event is None:
            return False
        self._play(event, loop)
        return True

    async def play(self, loop: Stepper) -> None:
        """At a speed: play the feed against the wall clock, each event at its time."""
        started = time.monotonic()
        origin: datetime | None = None
        for event in self._feed:
            origin = origin or event.ts
            due = started + (event.ts - origin).total_seconds() / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._play(event, loop)
            await asyncio.sleep(0)

    def _play(self, event: Event, loop: Stepper) -> None:
        """One event of the feed. Before the exchange matches a print, the loop `catch_up`s to
        its time (what fell due before it reaches the exchange first); the print's fills are
        `deliver`ed to the loop before the print itself, which joins the loop's queue."""
        loop.catch_up(event.ts)
        if type(event) is Tick:
            self.now = event.ts
            self.prints += 1
            fills = self.sim.on_tick(event)
            if fills:
                loop.deliver(fills, event.ts)
        self.events.put_nowait(event)

    async def close(self) -> None:
        """Nothing to disconnect."""
