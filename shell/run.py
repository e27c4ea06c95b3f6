"""`ratchet run`: the live loop (SPEC §6b).

Every source feeds one queue: the broker's prints, order answers and fills (its `events`
queue), the clock's heartbeat, entry intents handed in by `ratchet enter`. One task takes them
in order and steps the engine; before an event it gives the engine a clock event for whatever
fell due earlier (a retry, an answer deadline), as `simulate` does. Each step is journaled
ahead of its commands (shell.journaled) and its orders go to the broker, which never blocks
the stepping: its answers come back through the queue.

Start: the state is recovered from the state directory (snapshot + journal), a checkpoint
opens the session's journal, and the engine sees the link go down and come back followed by
the broker's snapshot: the engine's recovery, which verifies every position, adopts what the
broker holds that ratchet did not open (SPEC §6, properties 35-38) and refuses entries until
then. Stop (SIGINT/SIGTERM, the feed's end): no more entries, a last snapshot, the journal
flushed, the broker's stops left working.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from attrs import define, evolve, field

from engine import (
    Alert,
    BrokerSnapshot,
    Clock,
    Command,
    Connectivity,
    EngineState,
    EntryIntent,
    Event,
    OrderFilled,
    OrderStatus,
    Record,
    Tick,
    step,
)
from shell.inbox import answer, pending
from shell.journaled import Journaled
from shell.simulate import Summary

__all__ = ["LiveBroker", "Loop", "LoopResult"]

_IN_FLIGHT = (OrderStatus.PENDING_NEW, OrderStatus.PENDING_CANCEL)
_MAX_CATCH_UP = 10_000  # clock events before one event: more means the engine is not advancing
_PRICE_WAIT = 10.0  # seconds an entry waits for its symbol's first print
_FLUSH_EVERY = 0.05  # seconds: an idle loop hands its journal to the OS at least this often
_YIELD_EVERY = 64  # events stepped back to back before the other tasks get a turn
_TIMINGS = 100_000  # the latest steps' wall times kept (memory stays flat all day)


class LiveBroker(Protocol):
    """What the loop needs of a broker: the paper exchange in this process or the Alpaca
    adapter (to Alpaca or to a `ratchet exchange`)."""

    events: asyncio.Queue[Event]

    async def start(self, symbols: Iterable[str]) -> None:
        """Connect (streams, REST) and listen to `symbols`' trades."""
        ...

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Listen to more symbols' trades."""
        ...

    def submit(self, commands: Sequence[Command]) -> Sequence[Event] | None:
        """Send the order commands; never blocks: the answers come back as events on the
        queue (a broker in this process may return them at once instead)."""
        ...

    async def snapshot(self, ts: datetime) -> BrokerSnapshot:
        """The broker's positions and open orders now."""
        ...

    async def close(self) -> None:
        """Disconnect; orders at the broker keep working."""
        ...


@define
class LoopResult:
    """How a run ended, and what it did."""

    state: EngineState
    summary: Summary
    reason: str  # "feed ended", "signal SIGTERM", "scanned"
    elapsed: float
    step_seconds: Sequence[float] = ()  # the latest events' wall time to step and journal


@define
class Loop:
    """One live run over `broker`, journaled by `journaled` (which holds the engine state)."""

    journaled: Journaled
    broker: LiveBroker
    clock: Callable[[], datetime]  # the loop's time: the feed's (paper, exchange) or the wall's
    heartbeat: float | None = 1.0  # seconds between clock events (None: only due events)
    inbox: bool = True  # take entries handed in by `ratchet enter`
    restarted: bool = False
    on_step: Callable[[Event, EngineState, tuple[Command, ...]], None] | None = None
    on_ready: Callable[[EngineState], None] | None = None  # after the startup reconciliation
    drain: float = 10.0  # seconds a stop waits for the operations under way to finish
    summary: Summary = field(factory=Summary)
    _stopping: str | None = None
    _subscribed: set[str] = field(factory=set)
    _held: dict[str, list[EntryIntent]] = field(factory=dict)  # entries waiting for a price
    _held_since: dict[str, float] = field(factory=dict)
    last_ts: datetime | None = None  # the time of the last event stepped
    _timings: deque[float] = field(factory=lambda: deque(maxlen=_TIMINGS))
    _uncovered: Callable[[], dict[str, Decimal]] | None = None  # the broker's bare shares
    plays_every_symbol: bool = False  # a paper feed: no symbol to subscribe to, ever
    _since_yield: int = 0
    _flushed: float = 0.0  # when the journal was last handed to the operating system
    _answers: deque[Event] = field(factory=deque)  # given at once by the broker: next
    _exposed: bool = False  # orders or fills since the broker's bare shares were last measured

    def __attrs_post_init__(self) -> None:
        self._uncovered = getattr(self.broker, "uncovered", None)
        self.plays_every_symbol = bool(getattr(self.broker, "plays_every_symbol", False))

    @property
    def state(self) -> EngineState:
        """The engine's state now."""
        return self.journaled.state

    def stop(self, reason: str) -> None:
        """End the run after the event being stepped (signal handlers call this)."""
        if self._stopping is None:
            self._stopping = reason

    async def run(
        self, *, scan_only: bool = False, idle_grace: float = 0.5, scan_timeout: float = 15.0
    ) -> LoopResult:
        """Run until the feed ends, a signal, or (with `scan_only`) until the startup scan is
        applied and answered."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop, f"signal {sig.name}")
        symbols = sorted({pos.symbol for pos in self.state.positions.values()})
        await self.broker.start(symbols)
        self._subscribed.update(symbols)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._startup()
            play = getattr(self.broker, "play", None)
            pull = getattr(self.broker, "pull", None)
            if not getattr(self.broker, "lockstep", False) or scan_only:
                pull = None  # the broker's feed plays on its own (or there is none)
            feed = None
            if play is not None and pull is None and not scan_only:
                feed = asyncio.create_task(play(self))
                tasks.append(feed)
            if self.heartbeat is not None and not scan_only:
                tasks.append(asyncio.create_task(self._beat(self.heartbeat)))
            if self.inbox and not scan_only:
                tasks.append(asyncio.create_task(self._poll_inbox()))
            queue = self.broker.events
            settled: float | None = None  # since when a scan has waited for nothing
            began = time.monotonic()
            draining: float | None = None  # a stop was asked for: operations finish first
            while True:
                if self._stopping is not None:
                    # A stop asked from outside (a signal): the operations under way finish
                    # first (a stop being moved is re-armed, answers awaited), so no share is
                    # left without its working stop; `drain` seconds at most.
                    now = time.monotonic()
                    draining = draining or now
                    dry = self.journaled.dry_run  # nothing was sent: nothing to wait for
                    if dry or not self._unsettled() or now - draining >= self.drain:
                        break
                if scan_only:
                    # A scan ends once nothing it sent waits for an answer (for `idle_grace`
                    # seconds, prints aside), at once when it sends nothing, or at its timeout.
                    now = time.monotonic()
                    if self._waiting() and not self.journaled.dry_run:
                        settled = None
                    else:
                        settled = settled or now
                    if self.journaled.dry_run or (settled and now - settled >= idle_grace):
                        self._stopping = "scanned"
                        break
                    if now - began >= scan_timeout:
                        self._stopping = "scan ended with answers outstanding"
                        break
                if queue.empty():
                    self._measure()
                    now = time.monotonic()
                    if now - self._flushed >= _FLUSH_EVERY:  # readers (status) see it
                        self.journaled.sd.flush()
                        self._flushed = now
                    if pull is not None:
                        if pull(self):  # lock-step: the next print, now that all is stepped
                            continue
                        self.summary.exposure.finish(self.last_ts or self.clock())
                        self._stopping = "feed ended"
                        break
                    if feed is not None and feed.done():
                        feed.result()  # a feed that failed ends the run with its error
                        if queue.empty():
                            if self.last_ts is not None:
                                self.summary.exposure.finish(self.last_ts)
                            self._stopping = "feed ended"
                            break
                    try:
                        async with asyncio.timeout(0.05):  # (wait_for can swallow a cancel)
                            event = await queue.get()
                    except TimeoutError:
                        continue
                else:
                    event = queue.get_nowait()
                    if self._since_yield >= _YIELD_EVERY:  # let the other tasks run
                        self._since_yield = 0
                        await asyncio.sleep(0)
                    self._since_yield += 1
                self.feed(event)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        return LoopResult(
            self.state,
            self.summary,
            self._stopping or "stopped",
            time.perf_counter() - started,
            tuple(self._timings),
        )

    async def _startup(self) -> None:
        """A checkpoint, then the engine's recovery: the link down and back up, and the broker's
        snapshot (every position verified and the broker's own adopted before any entry)."""
        now = self.clock()
        self.journaled.begin(now, "restart" if self.restarted else "start")
        self.feed(Connectivity(now, up=False))
        self.feed(Connectivity(now, up=True))
        self.feed(await self.broker.snapshot(now))
        if self.on_ready is not None:
            self.on_ready(self.state)

    def _measure(self) -> None:
        """Once everything queued is stepped: the shares without a working stop now (a paper
        broker can tell; the summary's exposure windows)."""
        if self._exposed and self._uncovered is not None and self.last_ts is not None:
            self.summary.exposure.observe(self._uncovered(), self.last_ts)
        self._exposed = False

    def _unsettled(self) -> bool:
        """An operation is under way: an answer awaited, or shares without their working
        protective order."""
        return self._waiting() or any(p.bare for p in self.state.positions.values())

    def _waiting(self) -> bool:
        """Something the engine still waits for from the broker (an answer, a snapshot)."""
        state = self.state
        if state.link.recovering:
            return True
        for pos in state.positions.values():
            if pos.reconciling is not None:
                return True
            for order in (pos.orders.entry, pos.orders.exit, pos.orders.sell):
                if order is not None and order.status in _IN_FLIGHT:
                    return True
        return False

    def feed(self, event: Event) -> None:
        """Step `event`, after the clock events for what fell due before it. An entry for a
        symbol whose prints the broker does not send yet waits (at most `_PRICE_WAIT` s) for
        its first print: the gate needs a price."""
        if isinstance(event, EntryIntent) and self._awaits_price(event):
            return
        if isinstance(event, Tick) and self._held:
            held = self._held.pop(event.symbol, None)
            if held is not None:
                self._held_since.pop(event.symbol, None)
                self._feed(event)
                for intent in held:
                    self._feed(_at(intent, event.ts))
                return
        if isinstance(event, Clock) and self._held:
            self._release(time.monotonic())
        self._feed(event)

    def _awaits_price(self, intent: EntryIntent) -> bool:
        """Hold `intent` until its symbol prints, subscribing to it (True), or not (False)."""
        symbol = intent.symbol
        if self.plays_every_symbol or self.state.last_price(symbol) is not None:
            return False
        if symbol not in self._subscribed:
            self._subscribed.add(symbol)
            self.broker.subscribe([symbol])
        self._held.setdefault(symbol, []).append(intent)
        self._held_since.setdefault(symbol, time.monotonic())
        return True

    def _release(self, now: float) -> None:
        """Entries that waited `_PRICE_WAIT` s for a print go to the gate as they are."""
        for symbol in sorted(self._held):
            if now - self._held_since[symbol] >= _PRICE_WAIT:
                del self._held_since[symbol]
                for intent in self._held.pop(symbol):
                    self._feed(intent)

    def _feed(self, event: Event) -> None:
        last = self.last_ts
        ts = event.ts
        if last is not None and ts < last:
            ts = last  # never backward: an answer stamped before the print that came first
            event = _at(event, ts)
        if type(event) is not Clock:
            self.catch_up(ts)
        self._step(event)
        self._drain()
        self.last_ts = ts

    def catch_up(self, until: datetime) -> None:
        """Time passes from the last event until `until`: what falls due in between gets its
        clock event at its instant, in order (at once, if it fell due while nothing could
        act), and a broker whose link dropped comes back when due. A paper exchange calls
        this before it matches a print, as `simulate` does."""
        reconnect_at = getattr(self.broker, "reconnect_at", None)
        back = reconnect_at() if reconnect_at is not None else None
        # A session boundary of the market gets its clock event too, at its instant (once
        # the first event has rolled the market to the session it starts in).
        boundary = self.last_ts is not None and self.state.market.until < until
        if not (self.state.due < until or boundary or back is not None):
            return
        reached = self.last_ts
        stalled: datetime | None = None  # an instant at which nothing could act
        for _ in range(_MAX_CATCH_UP):
            back = reconnect_at() if reconnect_at is not None else None
            when = min(self.state.due, self.state.market.until)
            if reached is not None and when < reached:
                when = reached
            if back is not None and back < until and (back <= when or when == stalled):
                if reached is not None and back < reached:
                    back = reached
                self._answers.extend(self.broker.reconnect(back))  # type: ignore[attr-defined]
                self._drain()
                self._observe(back)
                reached = back
                continue
            if when >= until or when == stalled:
                break
            self._step(Clock(when))
            self._drain()
            self._observe(when)
            reached = when
            if self.state.due <= when:
                stalled = when
        if reached is not None:
            self.last_ts = reached

    def deliver(self, events: Sequence[Event], ts: datetime) -> None:
        """Step `events` now, ahead of the queue (a paper exchange's fills, before the print
        that caused them), then measure the broker's bare shares at `ts`."""
        for event in events:
            self.feed(event)
        self._observe(ts)

    def _observe(self, ts: datetime) -> None:
        if self._uncovered is not None:
            self.summary.exposure.observe(self._uncovered(), ts)
        self._exposed = False

    def _drain(self) -> None:
        """Step the answers a broker gave at once, and theirs, before anything else (as
        `simulate` does)."""
        while self._answers:
            self._step(self._answers.popleft())

    def _step(self, event: Event) -> None:
        began = time.perf_counter()
        before = self.state
        t = step(before, event)
        self.journaled.step_seen(event, before, t)
        orders: list[Command] = []
        for command in t.commands:
            if type(command) is Record or type(command) is Alert:
                self.summary.observe(command)
            else:
                orders.append(command)
        sendable = self.journaled.sendable(orders)
        if sendable:
            self._answers.extend(self.broker.submit(sendable) or ())
        kind = type(event)
        if kind is Tick or kind is EntryIntent:  # what a feed records (as `simulate` counts)
            self.summary.ticks += kind is Tick
            self.summary.events += 1
        if orders or kind is OrderFilled:
            self._exposed = True
        if self.on_step is not None:
            self.on_step(event, before, t.commands)
        self._timings.append(time.perf_counter() - began)
        new = {p.symbol for p in t.state.positions.values()} - self._subscribed
        if new:
            self._subscribed.update(new)
            self.broker.subscribe(sorted(new))

    async def _beat(self, every: float) -> None:
        """The heartbeat (property 29): a clock event at least every `every` seconds."""
        while True:
            await asyncio.sleep(every)
            self.broker.events.put_nowait(Clock(self.clock()))

    async def _poll_inbox(self, every: float = 0.1) -> None:
        """Entries handed in by `ratchet enter` join the queue; an unreadable one is answered
        at once. After a stop begins, none is taken."""
        path = self.journaled.sd.path
        while self._stopping is None:
            for id, item in pending(path, self.clock()):
                if self.journaled.awaiting(id):
                    continue
                if isinstance(item, str):
                    answer(path, id, {"id": id, "status": "blocked", "reason": item})
                    continue
                self.journaled.expect_answer(item)
                self.broker.events.put_nowait(item)
            await asyncio.sleep(every)


def _at(event: Event, ts: datetime) -> Event:
    """`event` stamped at `ts`."""
    return evolve(event, ts=ts)
