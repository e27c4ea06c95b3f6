"""Folding a live journal back: `recover` rebuilds the engine's state at start (the snapshot,
then every event journaled after it), and `replay` checks a journal decision by decision
(`ratchet replay`: every command and record must come out identical)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attrs import define

from engine import Config, EngineState, step
from shell.codec import command_to_json
from shell.errors import UserError
from shell.statedir import JournalLine, StateDir, read_journal

__all__ = ["Recovered", "ReplayResult", "recover", "replay"]


@define
class Recovered:
    """The state a restart goes on from, and what the user is told about how."""

    state: EngineState
    notes: list[str]
    events: int  # events folded after the snapshot
    fresh: bool  # nothing to recover: a new state directory


def _fold_lines(lines: Iterable[JournalLine], state: EngineState | None) -> tuple[
    EngineState | None, int
]:  # fmt: skip
    """`state` carried through the events of `lines` (a checkpoint line sets it)."""
    events = 0
    for line in lines:
        kind = line.kind
        if kind == "checkpoint":
            state = line.state()
        elif kind == "event":
            if state is None:
                raise UserError(f"{line.path}:{line.number}: an event before any checkpoint")
            state = step(state, line.event()).state
            events += 1
    return state, events


def recover(sd: StateDir, config: Config, *, repair: bool = True) -> Recovered:
    """The state to go on from: the snapshot and the journal after it (or the whole journal
    when the snapshot is missing or unreadable), with the configuration now in force. With
    `repair` off (`status`, beside a running loop) nothing is written."""
    notes = sd.repair() if repair else []
    files = sd.journal_files()
    snap = sd.load_snapshot()
    if not files:
        return Recovered(EngineState.empty(config), notes, 0, fresh=snap is None)
    names = [p.name for p in files]
    state: EngineState | None = None
    start = 0
    if snap is not None and snap[1] in names:
        state, name, offset = snap
        start = names.index(name)
        if offset > files[start].stat().st_size:
            state = None  # the snapshot is ahead of the journal: rebuild
    if state is None:
        if sd.snapshot_path.exists():
            notes.append(f"{sd.snapshot_path}: unreadable or ahead of the journal: the state "
                         "is rebuilt from the journal")  # fmt: skip
        start, offset = 0, 0
    total = 0
    for index in range(start, len(files)):
        skip = offset if index == start else 0
        lines = (line for line in read_journal(files[index]) if line.end > skip)
        state, events = _fold_lines(lines, state)
        total += events
    assert state is not None
    if state.config != config:
        state = state._replace(config=config)
    return Recovered(state, notes, total, fresh=False)


@define
class ReplayResult:
    """What `ratchet replay` found: events and commands checked, or the first difference."""

    events: int
    commands: int
    difference: str | None = None


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def replay(paths: list[Path]) -> ReplayResult:
    """Fold the journal's events through the engine from the checkpoint each file starts from
    and compare every command and record with the journal's. At a restart (a checkpoint that
    follows a crash) and at the journal's very end, the last event's commands may be cut
    short: a prefix of what the engine produces is accepted there."""
    state: EngineState | None = None
    events = commands = 0
    expected: list[tuple[JournalLine, str]] = []  # what the journal holds for the last event
    produced: list[str] = []  # what the engine produced for it
    at: JournalLine | None = None

    def settle(prefix_ok: bool) -> str | None:
        nonlocal commands
        for i, got in enumerate(produced):
            if i >= len(expected):
                if prefix_ok:
                    return None
                assert at is not None
                return (f"{at.path}:{at.number}: the engine produced more after this event: "
                        f"{got}")  # fmt: skip
            line, journaled = expected[i]
            if journaled != got:
                return f"{line.path}:{line.number}: expected {journaled}, got {got}"
            commands += 1
        if len(expected) > len(produced):
            line, journaled = expected[len(produced)]
            return f"{line.path}:{line.number}: the journal holds {journaled}, the engine nothing"
        return None

    for index, path in enumerate(paths):
        if not path.is_file():
            raise UserError(f"{path}: no such journal file")
        for line in read_journal(path):
            kind = line.kind
            if kind == "checkpoint":
                if at is not None:
                    restart = line.data.get("reason") == "restart"
                    difference = settle(prefix_ok=restart)
                    if difference:
                        return ReplayResult(events, commands, difference)
                    at, expected, produced = None, [], []
                checkpoint = line.state()
                if state is not None and state._replace(config=checkpoint.config) != checkpoint:
                    why = "the checkpoint is not the state the journal folds to"
                    return ReplayResult(events, commands, f"{path}:{line.number}: {why}")
                state = checkpoint
            elif kind == "event":
                if at is not None:
                    difference = settle(prefix_ok=False)
                    if difference:
                        return ReplayResult(events, commands, difference)
                if state is None:
                    why = "an event before any checkpoint"
                    return ReplayResult(events, commands, f"{path}:{line.number}: {why}")
                t = step(state, line.event())
                state = t.state
                events += 1
                at, expected = line, []
                produced = [_dumps(command_to_json(c)) for c in t.commands]
            else:
                if at is None:
                    why = "a command with no event before it"
                    return ReplayResult(events, commands, f"{path}:{line.number}: {why}")
                expected.append((line, _dumps(line.data)))
        last = index == len(paths) - 1
        if at is not None and last:
            difference = settle(prefix_ok=True)
            if difference:
                return ReplayResult(events, commands, difference)
    return ReplayResult(events, commands)
