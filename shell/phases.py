"""Phase progression on a state directory: rebuild where the account stands, ask the engine,
and keep `phase-history.jsonl` (append-only; never holds a password)."""

from __future__ import annotations

import csv
import hmac
import io
import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine import BreakerAck, Command, EngineState, PhaseAdvance, PhaseOverride, Record, step
from engine.calendar import session_of
from engine.config import Config
from engine.phase import (
    PHASE_ORDER,
    Phase,
    PhaseState,
    TradeMark,
    acknowledged,
    advanced,
    after_trade,
    gate_criteria,
    next_phase,
    overridden,
    size_for,
    trades_left,
)
from shell.codec import BadLine, format_ts, parse_ts, read_json_lines, to_jsonable
from shell.performance import read_trades

__all__ = [
    "HISTORY",
    "PASSWORD_ENV",
    "append_history",
    "check_history",
    "decide",
    "export_csv",
    "password_matches",
    "rebuild",
    "record_json",
    "render_status",
    "status",
]

HISTORY = "phase-history.jsonl"
PASSWORD_ENV = "PHASE_OVERRIDE_PASSWORD"


def password_matches(given: str, env: dict[str, str] | os._Environ[str]) -> bool | None:
    """Constant-time comparison with PHASE_OVERRIDE_PASSWORD; None when it is not set."""
    expected = env.get(PASSWORD_ENV, "")
    if not expected:
        return None
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _history(state_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of phase-history.jsonl, each checked (a JSON object with a `kind` and a
    valid `ts`; a phase change names a known phase). The history decides the phase, so a line
    that cannot be read refuses the whole file: BadLine names it."""
    path = state_dir / HISTORY
    if not path.exists():
        return
    for number, data in read_json_lines(path):
        try:
            if isinstance(data, ValueError):
                raise data
            yield _checked(data)
        except ValueError as exc:
            raise BadLine(str(path), number, str(exc)) from None


_PHASES = ", ".join(p.value for p in PHASE_ORDER)


def check_history(state_dir: Path) -> None:
    """Read phase-history.jsonl through: BadLine names the first line that cannot be read (so
    a command refuses before it appends anything)."""
    for _ in _history(state_dir):
        pass


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    kind = record.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind = {kind!r}: expected a record kind, e.g. phase.changed")
    ts = record.get("ts")
    if not isinstance(ts, str):
        raise ValueError(f"ts = {ts!r}: expected an ISO-8601 time with an offset")
    parse_ts(ts)
    if kind == "phase.changed":
        to = record.get("to")
        if to not in {p.value for p in PHASE_ORDER}:
            raise ValueError(f"phase.changed: to = {to!r}: allowed {_PHASES}")
    return record


def rebuild(state_dir: Path, config: Config) -> tuple[PhaseState, list[BadLine]]:
    """The phase state implied by the journals' closed trades and the phase history, in time
    order (downgrades are re-derived from the trades, so history downgrades are not re-applied)."""
    cfg = config.phase
    bad: list[BadLine] = []
    items: list[tuple[datetime, int, Any]] = []
    for path in sorted((state_dir / "journal").glob("*.jsonl")):
        for trade in read_trades(path, bad):
            items.append((trade.closed, 0, trade))
    for record in _history(state_dir):
        items.append((parse_ts(record["ts"]), 1, record))
    items.sort(key=lambda item: (item[0], item[1]))
    state = PhaseState(phase=cfg.start, size=size_for(cfg.start, cfg))
    tz, boundary = config.session.tz, config.session.boundary
    for ts, kind, item in items:
        if kind == 0:
            session, _ = session_of(ts, tz, boundary)
            state, _, _ = after_trade(state, cfg, TradeMark(session, item.pnl))
        elif item.get("kind") == "phase.changed" and item.get("trigger") == "gates":
            state = advanced(state, Phase(item["to"]), cfg)
        elif item.get("kind") == "phase.changed" and item.get("trigger") == "override":
            state = overridden(state, Phase(item["to"]), cfg)
        elif item.get("kind") == "breaker.closed":
            state = acknowledged(state)
    return state, bad


def decide(
    state_dir: Path, config: Config, event: PhaseAdvance | PhaseOverride | BreakerAck
) -> tuple[Command, ...]:
    """Let the engine decide on an operator event, from the rebuilt phase state."""
    phase, _ = rebuild(state_dir, config)
    engine = EngineState.empty(config).evolve(phase=phase)
    return step(engine, event).commands


def append_history(state_dir: Path, records: list[dict[str, Any]]) -> None:
    """Append records to phase-history.jsonl (created on first use), flushed to disk."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / HISTORY).open("a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(to_jsonable(record), separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def record_json(record: Record) -> dict[str, Any]:
    return {"kind": record.kind, "ts": format_ts(record.ts), **record.data}


def status(state_dir: Path, config: Config, now: datetime) -> dict[str, Any]:
    """Phase, size, breaker, every gate criterion (actual vs required) and this session's
    trades left, with when the next one is allowed."""
    phase, bad = rebuild(state_dir, config)
    cfg = config.phase
    criteria = [
        {"criterion": c.name, "actual": str(c.as_criterion().actual),
         "required": c.as_criterion().required, "ok": c.ok}
        for c in gate_criteria(phase, cfg)
    ]  # fmt: skip
    session, next_session = session_of(now, config.session.tz, config.session.boundary)
    today = _entries_in_session(state_dir, config, session)
    left = trades_left(phase, cfg, today)
    nxt = next_phase(phase.phase)
    return {
        "phase": phase.phase.value,
        "next_phase": nxt.value if nxt else None,
        "size": str(phase.size),
        "paper_only": phase.phase is Phase.EXPERIENCE,
        "breaker_open": phase.breaker_open,
        "session": session.isoformat(),
        "trades_this_session": today,
        "trades_left": left,
        "next_trade_allowed": None if left is None or left > 0 else format_ts(next_session),
        "gates": criteria,
        "bad_lines": [str(b) for b in bad],
    }


def _entries_in_session(state_dir: Path, config: Config, session: date) -> int:
    count = 0
    for path in sorted((state_dir / "journal").glob("*.jsonl")):
        for _, data in read_json_lines(path):
            if isinstance(data, dict) and data.get("kind") == "entry.accepted":
                try:
                    when = parse_ts(str(data.get("ts")))
                except ValueError:
                    continue  # a bad line: read_trades reports the journal's bad lines
                day, _ = session_of(when, config.session.tz, config.session.boundary)
                count += day == session
    return count


def render_status(info: dict[str, Any]) -> str:
    """`ratchet phase status` as text."""
    paper = "  (paper only)" if info["paper_only"] else ""
    breaker = "OPEN: acknowledge with `ratchet phase ack`" if info["breaker_open"] else "closed"
    left = "no limit" if info["trades_left"] is None else f"{info['trades_left']} left"
    nxt = f"; next trade allowed {info['next_trade_allowed']}" if info["next_trade_allowed"] else ""
    lines = [
        f"phase         {info['phase']}{paper}",
        f"size          ${info['size']} per position",
        f"breaker       {breaker}",
        f"this session  {info['session']}: {info['trades_this_session']} trade(s), {left}{nxt}",
    ]
    if info["next_phase"]:
        lines.append(f"gates to {info['next_phase']}:")
        for row in info["gates"]:
            mark = "ok" if row["ok"] else "NO"
            lines.append(
                f"  {mark:<3}{row['criterion']:<20} {row['actual']:>12}  required {row['required']}"
            )
    return "\n".join(lines)


def export_csv(state_dir: Path, start: date | None, end: date | None) -> str:
    """The phase history between two dates (inclusive, UTC) as CSV."""
    columns = ["ts", "kind", "from", "to", "trigger", "reason", "size_from", "size_to",
               "accepted"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in _history(state_dir):
        day = parse_ts(record["ts"]).date()
        if (start is None or day >= start) and (end is None or day <= end):
            writer.writerow({k: record.get(k, "") for k in columns})
    return buffer.getvalue()
