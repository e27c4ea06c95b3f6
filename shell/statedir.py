"""The state directory of a live run (INTERFACES: `--state-dir`, default `./ratchet-state`):

    lock                      one `run` per directory (an advisory lock, with its pid)
    snapshot.json             the engine's state and where in the journal it was taken
    journal/YYYY-MM-DD.jsonl  the write-ahead journal, one file per session date
    inbox/ outbox/            entry intents from `ratchet enter`, and the gate's answers
    alerts.jsonl              every alert, as delivered

Created readable by its owner only; nothing in it ever holds a secret.

The journal is written ahead: each event before the engine steps on it, each command the
step produced before it is carried out, and the file is fsynced before an order leaves. Its
lines: `{"kind": "checkpoint", "reason", "state"}` (the first line of every file, and again
at every restart: the state the events after it start from), `{"kind": "event", "event"}`
(an event given to the engine), then the step's records, alerts (`kind`) and order commands
(`command`), as `simulate --journal` writes them. A torn last line (a crash mid-write) is
detected at start, moved aside to `FILE.torn` and reported."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from attrs import define, field

from engine import Command, EngineState, Event
from engine.calendar import session_of
from shell.codec import command_to_json, event_from_json, event_to_json
from shell.errors import UserError
from shell.files import fsync_dir, write_atomic
from shell.statefile import state_from_json, state_to_json

__all__ = [
    "SNAPSHOT_VERSION",
    "Entry",
    "JournalLine",
    "Locked",
    "StateDir",
    "read_journal",
]

SNAPSHOT_VERSION = 1


class Locked(UserError):
    """Another `ratchet run` holds the state directory."""


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@define
class JournalLine:
    """One line of a live journal, read back: its file, number and byte offset after it."""

    path: Path
    number: int
    end: int
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "")) if "command" not in self.data else "command"

    def event(self) -> Event:
        return event_from_json(self.data["event"])

    def state(self) -> EngineState:
        return state_from_json(self.data["state"])


@define
class Entry:
    """An entry intent handed in by `ratchet enter`: its id and the JSON event."""

    id: str
    event: dict[str, Any]


def read_journal(path: Path) -> Iterator[JournalLine]:
    """The lines of one journal file, in order; a line that is not JSON is an error naming
    the file and line (a torn last line is repaired at start, before anything reads)."""
    offset = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                return  # a line still being written (or torn): not part of the journal yet
            offset += len(raw)
            try:
                data = json.loads(raw)
            except ValueError:
                raise UserError(f"{path}:{number}: not a journal line (not JSON)") from None
            if not isinstance(data, dict):
                raise UserError(f"{path}:{number}: not a journal line (not an object)")
            yield JournalLine(path, number, offset, data)


@define
class StateDir:
    """A state directory, locked for one run (or opened read-only for `status`/`replay`)."""

    path: Path
    _lock: IO[str] | None = field(default=None, init=False)
    _fh: IO[bytes] | None = field(default=None, init=False)
    _file: Path | None = field(default=None, init=False)
    _session: object = field(default=None, init=False)
    _dirty: bool = field(default=False, init=False)
    _lines: int = field(default=0, init=False)  # lines in the journal file being written

    # --- the directory -------------------------------------------------------------------

    @property
    def journal_dir(self) -> Path:
        return self.path / "journal"

    @property
    def snapshot_path(self) -> Path:
        return self.path / "snapshot.json"

    @property
    def inbox(self) -> Path:
        return self.path / "inbox"

    @property
    def outbox(self) -> Path:
        return self.path / "outbox"

    def create(self) -> None:
        """The directory and its parts, readable by the owner only."""
        old = os.umask(0o077)
        try:
            for part in (self.path, self.journal_dir, self.inbox, self.outbox):
                part.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            why = f"cannot create the state directory: {exc.strerror}"
            raise UserError(f"{self.path}: {why}") from None
        finally:
            os.umask(old)
        if not os.access(self.path, os.W_OK):
            raise UserError(f"{self.path}: the state directory is not writable")

    def lock(self) -> None:
        """Hold the directory for this process; a second `run` is refused with the holder's
        pid. The lock dies with the process (kill -9 included)."""
        self.create()
        path = self.path / "lock"
        fh = path.open("a+", encoding="utf-8")
        os.chmod(path, 0o600)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            why = f"another ratchet run holds this state directory (pid {holder})"
            raise Locked(f"{path}: {why}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock = fh

    def close(self) -> None:
        """Flush and close the journal, release the lock."""
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- the journal -----------------------------------------------------------------------

    def journal_files(self) -> list[Path]:
        """The journal's files, oldest first (their names are session dates)."""
        if not self.journal_dir.is_dir():
            return []
        return sorted(p for p in self.journal_dir.glob("*.jsonl") if p.is_file())

    def repair(self) -> list[str]:
        """A crash mid-write leaves the last journal line torn: it is moved aside (appended to
        `FILE.torn`) and the file cut back to its last whole line. Says what it did."""
        notes: list[str] = []
        files = self.journal_files()
        if not files:
            return notes
        last = files[-1]
        data = last.read_bytes()
        keep = len(data)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        else:
            # A whole last line that is not JSON (a crash between a write and its newline is
            # caught above; this is a line cut inside a multi-byte write) goes too.
            start = data.rfind(b"\n", 0, len(data) - 1) + 1 if data else 0
            try:
                if data:
                    json.loads(data[start:])
            except ValueError:
                keep = start
        if keep == len(data):
            return notes
        torn = last.with_name(last.name + ".torn")
        with torn.open("ab") as fh:
            fh.write(data[keep:] + b"\n")
        os.chmod(torn, 0o600)
        with last.open("r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        lines = data[:keep].count(b"\n")
        notes.append(
            f"{last}: a torn last line ({len(data) - keep} bytes, after line {lines}) was "
            f"kept aside in {torn.name}"
        )
        return notes

    def _file_for(self, ts: datetime, state: EngineState) -> Path:
        session = state.config.session
        day, _ = session_of(ts, session.tz, session.boundary)
        return self.journal_dir / f"{day.isoformat()}.jsonl"

    def _open(self, path: Path) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "ab")
        self._file = path
        with path.open("rb") as existing:  # lines already there (a restart on the same day)
            self._lines = sum(1 for _ in existing)
        fsync_dir(self.journal_dir)

    def _write(self, data: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(_dumps(data).encode("utf-8") + b"\n")
        self._dirty = True
        self._lines += 1

    def checkpoint(self, state: EngineState, ts: datetime, reason: str) -> None:
        """Start (or restart) the journal from `state`: the line `replay` starts from."""
        path = self._file_for(ts, state)
        if path != self._file:
            self._open(path)
        self._write({"kind": "checkpoint", "ts": ts.isoformat(), "reason": reason,
                     "state": state_to_json(state)})  # fmt: skip
        self.sync()

    def event(self, event: Event, state: EngineState) -> None:
        """Journal an event before the engine steps on it; a new session date begins a new
        file, whose first line is the state it starts from."""
        path = self._file_for(event.ts, state)
        if path != self._file:
            self._open(path)
            self._write({"kind": "checkpoint", "ts": event.ts.isoformat(), "reason": "session",
                         "state": state_to_json(state)})  # fmt: skip
        self._write({"kind": "event", "event": event_to_json(event)})

    def commands(self, commands: tuple[Command, ...] | list[Command]) -> list[int]:
        """Journal what a step produced, before any of it is carried out; the line number
        (1-based, in `current`) of each."""
        lines = []
        for command in commands:
            self._write(command_to_json(command))
            lines.append(self._lines)
        return lines

    @property
    def current(self) -> Path | None:
        """The journal file being written."""
        return self._file

    def flush(self) -> None:
        """Hand what is written to the operating system (readers see it; not yet durable)."""
        if self._fh is not None:
            self._fh.flush()

    def sync(self) -> None:
        """Flush and fsync the journal: what it holds survives a crash from now on."""
        if self._fh is not None and self._dirty:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._dirty = False

    def position(self) -> tuple[str, int]:
        """Where the journal ends now: its file (relative) and byte offset."""
        if self._fh is None or self._file is None:
            return "", 0
        self._fh.flush()
        return self._file.name, self._file.stat().st_size

    # --- the snapshot ----------------------------------------------------------------------

    def save_snapshot(self, state: EngineState) -> None:
        """Write `snapshot.json` atomically, after fsyncing the journal it points into."""
        self.sync()
        name, offset = self.position()
        body = {"version": SNAPSHOT_VERSION, "journal": name, "offset": offset,
                "state": state_to_json(state)}  # fmt: skip
        write_atomic(self.snapshot_path, (_dumps(body) + "\n").encode("utf-8"))

    def load_snapshot(self) -> tuple[EngineState, str, int] | None:
        """The snapshot's state and journal position, or None when there is none or it cannot
        be read (the journal rebuilds it)."""
        try:
            body = json.loads(self.snapshot_path.read_bytes())
            if body.get("version") != SNAPSHOT_VERSION:
                return None
            return state_from_json(body["state"]), str(body["journal"]), int(body["offset"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
