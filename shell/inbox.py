"""Entries from a bot to a running loop, through the state directory (readable by its owner
only): `ratchet enter` (or `submit_entry` from Python) drops `inbox/ID.json`; the loop takes
it as an entry intent at its next turn and answers in `outbox/ID.json` with the gate's
verdict. Idempotent by id: an id already answered gets the same answer again.

    from shell.inbox import submit_entry
    answer = submit_entry("ratchet-state", "AAPL", "long", stop="177.80", qty=100, id="bot-42")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine import EntryIntent, Side
from shell.errors import UserError
from shell.files import write_atomic

__all__ = ["Answer", "NotRunning", "answer", "pending", "submit_entry"]

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
Answer = dict[str, Any]


class NotRunning(UserError):
    """No `ratchet run` holds the state directory: nobody would take the entry."""


def _running(state_dir: Path) -> bool:
    """True while a `ratchet run` holds the directory's lock."""
    path = state_dir / "lock"
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        return False


def _decimal(name: str, value: object) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise UserError(f"{name} = {value!r}: expected a number") from None
    if not number.is_finite() or number <= 0:
        raise UserError(f"{name} = {value!r}: expected a positive number")
    return number


def submit_entry(
    state_dir: str | Path,
    symbol: str,
    side: str,
    stop: object,
    qty: object | None = None,
    id: str | None = None,
    wait: float = 30.0,
) -> Answer:
    """Hand an entry intent to the loop running on `state_dir` and wait for the gate's
    answer: `{"id", "status": "accepted"|"blocked", "reason", "key"}`."""
    state_dir = Path(state_dir)
    symbol = symbol.strip().upper()
    if not symbol or not symbol.replace(".", "").replace("/", "").isalnum():
        raise UserError(f"symbol = {symbol!r}: expected a ticker such as AAPL")
    if side not in ("long", "short"):
        raise UserError(f"side = {side!r}: allowed 'long' or 'short'")
    body: dict[str, Any] = {"symbol": symbol, "side": side, "stop": str(_decimal("stop", stop))}
    if qty is not None:
        body["qty"] = str(_decimal("qty", qty))
    if id is None:
        id = f"enter-{secrets.token_hex(8)}"
    elif not _ID.match(id):
        raise UserError(f"id = {id!r}: allowed 1 to 64 letters, digits and _ . : -")
    body["id"] = id
    done = state_dir / "outbox" / f"{id}.json"
    if done.exists():
        return _read_answer(done)
    if not _running(state_dir):
        raise NotRunning(f"{state_dir}: no ratchet run holds this state directory "
                         "(start `ratchet run` first)")  # fmt: skip
    write_atomic(state_dir / "inbox" / f"{id}.json", json.dumps(body).encode("utf-8"))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if done.exists():
            return _read_answer(done)
        time.sleep(0.05)
    raise UserError(f"{state_dir}: no answer for entry {id} within {wait:g} s "
                    "(is the loop stuck? see `ratchet status`)")  # fmt: skip


def _read_answer(path: Path) -> Answer:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise UserError(f"{path}: unreadable answer") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: unreadable answer")
    return data


def pending(state_dir: Path, ts: datetime) -> Iterator[tuple[str, EntryIntent | str]]:
    """The entries waiting in the inbox, oldest first: (id, intent) — or (id, reason) for one
    that cannot be read (answered as blocked). The file stays until `answer` removes it."""
    inbox = state_dir / "inbox"
    try:
        files = [p for p in inbox.iterdir() if p.suffix == ".json" and _ID.match(p.stem)]
    except OSError:
        return
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    for path in files:
        try:
            body = json.loads(path.read_bytes())
            intent = EntryIntent(
                ts=ts,
                symbol=str(body["symbol"]),
                side=Side(body["side"]),
                stop=_decimal("stop", body["stop"]),
                qty=_decimal("qty", body["qty"]) if body.get("qty") is not None else None,
                id=path.stem,
            )
        except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
            yield path.stem, f"unreadable entry: {exc}"
            continue
        yield path.stem, intent


def answer(state_dir: Path, id: str, reply: Answer) -> None:
    """Write the gate's answer for entry `id` and take it out of the inbox."""
    write_atomic(state_dir / "outbox" / f"{id}.json", json.dumps(reply).encode("utf-8"))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_dir / "inbox" / f"{id}.json")
