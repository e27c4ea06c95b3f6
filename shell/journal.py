"""Journal files: JSON Lines written to a temporary file and renamed into place when complete."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from engine import Alert, Command, Record
from shell.codec import command_to_json

__all__ = ["JournalWriter"]


class JournalWriter:
    """Write journal records to `path` atomically: temp file, fsync, rename; nothing on error."""

    def __init__(self, path: Path, *, records_only: bool = True) -> None:
        self.path = path
        self.records_only = records_only
        self.lines = 0
        self._tmp = path.with_name(f".{path.name}.tmp")
        self._fh: IO[str] = self._tmp.open("w", encoding="utf-8")

    def __call__(self, command: Command) -> None:
        """Write one command (by default only records and alerts) as a JSON line."""
        if self.records_only and not isinstance(command, Record | Alert):
            return
        self._fh.write(json.dumps(command_to_json(command), separators=(",", ":")))
        self._fh.write("\n")
        self.lines += 1

    def commit(self) -> None:
        """Make the journal visible under its name, complete and durable."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial journal."""
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
