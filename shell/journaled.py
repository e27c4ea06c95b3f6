"""The engine of a live run, written ahead (SPEC §6b): every event is journaled before the
engine's commands for it are carried out, every command before it is sent, and the journal is
fsynced before an order leaves. The snapshot follows every few seconds and at the end. Entry
intents handed in by `ratchet enter` are answered from the gate's records."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from attrs import define, field

from engine import (
    CancelOrder,
    Command,
    EngineState,
    EntryIntent,
    Event,
    Record,
    RequestSnapshot,
    SubmitOrder,
    Transition,
)
from shell.inbox import answer
from shell.statedir import StateDir

__all__ = ["Journaled", "LineSink", "Sink"]

Sink = Callable[[Command], None]
LineSink = Callable[[Command, str, int], None]  # a command, its journal file and line
_ORDERS = (SubmitOrder, CancelOrder, RequestSnapshot)


@define
class Journaled:
    """A state directory's journal and snapshot, kept as the engine steps. Call `step_seen`
    after each `step` (before any of its commands is carried out): `simulate`'s step
    observer has that shape."""

    sd: StateDir
    state: EngineState
    sinks: Sequence[Sink] = ()
    line_sinks: Sequence[LineSink] = ()  # told where each record is (the store reads back)
    snapshot_every: float = 5.0  # seconds of wall time between snapshots
    dry_run: bool = False
    events: int = 0
    orders: int = 0
    _last_snapshot: float = field(factory=time.monotonic)
    _entries: dict[str, str] = field(factory=dict)  # intent id -> inbox id to answer

    def begin(self, ts: datetime, reason: str) -> None:
        """The journal goes on from the state now held (a checkpoint line)."""
        self.sd.checkpoint(self.state, ts, reason)
        self.sd.save_snapshot(self.state)

    def expect_answer(self, intent: EntryIntent) -> None:
        """`intent` came from the inbox: its answer goes to the outbox once the gate speaks."""
        if intent.id is not None:
            self._entries[intent.id] = intent.id

    def awaiting(self, id: str) -> bool:
        """An entry with this inbox id was handed to the engine and is not answered yet."""
        return id in self._entries

    def step_seen(self, event: Event, before: EngineState, t: Transition) -> None:
        """Journal `event` and what the engine made of it, fsync before any order goes out,
        hand records to the sinks, answer entries, and snapshot when it is time."""
        self.sd.event(event, before)
        lines = self.sd.commands(t.commands)
        self.events += 1
        orders = [c for c in t.commands if isinstance(c, _ORDERS)]
        if orders:
            self.sd.sync()
            self.orders += sum(1 for c in orders if not isinstance(c, RequestSnapshot))
        self.state = t.state
        for command in t.commands:
            for sink in self.sinks:
                sink(command)
        if self.line_sinks and t.commands and self.sd.current is not None:
            self.sd.flush()
            source = str(self.sd.current)
            for command, line in zip(t.commands, lines, strict=True):
                for line_sink in self.line_sinks:
                    line_sink(command, source, line)
        if self._entries and isinstance(event, EntryIntent) and event.id in self._entries:
            self._answer(event, t.commands)
        now = time.monotonic()
        if now - self._last_snapshot >= self.snapshot_every:
            self.sd.save_snapshot(self.state)
            self._last_snapshot = now

    def sendable(self, commands: Sequence[Command]) -> list[Command]:
        """What goes to the broker: every order command, or in `--dry-run` (shadow mode) only
        the reads (snapshots)."""
        if not self.dry_run:
            return list(commands)
        return [c for c in commands if isinstance(c, RequestSnapshot)]

    def _answer(self, intent: EntryIntent, commands: Sequence[Command]) -> None:
        assert intent.id is not None
        reply: dict[str, object] = {"id": intent.id, "status": "blocked", "reason": "no answer"}
        for command in commands:
            if isinstance(command, Record) and command.kind == "entry.accepted":
                reply = {"id": intent.id, "status": "accepted", "key": command.data.get("key"),
                         "symbol": intent.symbol}  # fmt: skip
                break
            if isinstance(command, Record) and command.kind == "entry.blocked":
                data = command.data
                key = self.state.intents.get(intent.id)
                if data.get("reason") == "duplicate_entry" and key:
                    # Sent again (a bot retrying): the answer is the first one's.
                    reply = {"id": intent.id, "status": "accepted", "key": key,
                             "symbol": intent.symbol, "repeated": True}  # fmt: skip
                    break
                reply = {"id": intent.id, "status": "blocked", "reason": data.get("reason"),
                         "detail": data.get("detail")}  # fmt: skip
                break
        self.sd.sync()
        answer(self.sd.path, self._entries.pop(intent.id), reply)

    def close(self) -> None:
        """The last snapshot, then the journal flushed and the lock released."""
        self.sd.save_snapshot(self.state)
        self.sd.close()
