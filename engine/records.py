"""Journal records (SPEC §2): one builder per record kind, so each kind has one shape.

Field order is part of the journal's bytes: a builder lists its fields in the order the
journal shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.commands import Record
from engine.ids import symbol_of

if TYPE_CHECKING:
    from engine.model import Order, Position, Protection

__all__ = [
    "breaker_closed",
    "breaker_half_open",
    "breaker_opened",
    "conflict",
    "entry_accepted",
    "entry_blocked",
    "goal_reset",
    "goal_triggered",
    "milliseconds",
    "mode_changed",
    "operation_done",
    "order_filled",
    "order_record",
    "order_rejected",
    "order_retry",
    "order_timeout",
    "partial_filled",
    "partial_ordered",
    "phase_changed",
    "phase_denied",
    "position_closed",
    "position_opened",
    "position_state",
    "stop_moved",
    "trade_closed",
]

_ZERO = Decimal(0)
_AVERAGE = Decimal("0.0001")


def _average(price: Decimal) -> Decimal:
    """An average price (entries or exits filled in parts) as a trader reads it: to 1/100
    of a cent; a price as traded is shown as it is."""
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        return price.quantize(_AVERAGE)
    return price


def milliseconds(span: timedelta) -> Decimal:
    """A span in milliseconds, exact to the microsecond."""
    return Decimal(span // timedelta(microseconds=1)) / 1000


# --- positions ----------------------------------------------------------------------------


def position_opened(
    pos: Position, ts: datetime, stop: Decimal, added: Decimal | None = None
) -> Record:
    """`position.opened`: the entry filled (`added`: a later fill of the same entry order grew
    the position to `qty`, its schedule re-derived from the average entry)."""
    ladder = pos.ladder
    data: dict[str, object] = {
        "symbol": pos.symbol,
        "key": pos.key,
        "side": pos.side.value,
        "qty": pos.fills.original,
        "entry": _average(ladder.entry),
        "stop": stop,
    }
    if added is not None:
        data["added"] = added
    else:
        data["order_stop"] = ladder.stop
        data["take_profit"] = ladder.take_profit
        data["protection"] = ladder.protection.value
        data["opened"] = pos.opened
    return Record("position.opened", ts, data)


def position_state(
    pos: Position, old: Protection, new: Protection, reason: str, r: Decimal, ts: datetime
) -> Record:
    """`position.state`: one protection transition (P34)."""
    return Record(
        "position.state",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "old": old.value, "new": new.value,
         "reason": reason, "r": r},
    )  # fmt: skip


def stop_moved(
    pos: Position, old: Decimal, new: Decimal, r: Decimal, reason: str, ts: datetime
) -> Record:
    """`stop.moved`: the stop the position wants changed (P31)."""
    return Record(
        "stop.moved",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "old": old, "new": new, "r": r, "reason": reason},
    )


def partial_ordered(
    pos: Position, milestone: Decimal, tranche: int, qty: Decimal, r: Decimal, ts: datetime
) -> Record:
    """`partial.ordered`: a milestone queued its tranche for sale (P5-P7, P28)."""
    return Record(
        "partial.ordered",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "milestone": milestone, "tranche": tranche,
         "qty": qty, "r": r},
    )  # fmt: skip


def partial_filled(
    pos: Position, milestone: Decimal, qty: Decimal, price: Decimal, r: Decimal, ts: datetime
) -> Record:
    """`partial.filled`: shares of a milestone's tranche sold, with R and profit (P32)."""
    return Record(
        "partial.filled",
        ts,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "milestone": milestone,
            "qty": qty,
            "price": price,
            "r": r,
            "profit": (price - pos.ladder.entry) * qty * pos.side.sign,
        },
    )


def _trade_r(pos: Position) -> tuple[Decimal, Decimal]:
    """The trade's dollar risk and R. An entry filled at or through its stop risked nothing
    measurable: its risk and R are 0 (its close reason says why), never negative."""
    dollar_risk = max(pos.risk, _ZERO) * pos.fills.original
    if dollar_risk <= 0:
        return _ZERO, _ZERO
    r = pos.fills.realized / dollar_risk
    return dollar_risk, r if r != 0 else _ZERO  # never "0E+2"


def position_closed(pos: Position, ts: datetime) -> Record:
    """`position.closed`: qty and price of the fill that closed it; pnl and r of the whole."""
    _, r = _trade_r(pos)
    reason = pos.close_reason.value if pos.close_reason is not None else "exit"
    return Record(
        "position.closed",
        ts,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "qty": pos.fills.last_qty,
            "price": pos.fills.last_price,
            "reason": reason,
            "pnl": pos.fills.realized,
            "r": r,
        },
    )


def trade_closed(pos: Position, ts: datetime) -> Record:
    """`trade.closed`: the whole position's lifecycle, the input of analytics (SPEC §9)."""
    fills = pos.fills
    dollar_risk, r = _trade_r(pos)
    exit_price = fills.exit_value / fills.exited if fills.exited else pos.ladder.entry
    return Record(
        "trade.closed",
        ts,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "side": pos.side.value,
            "qty": fills.original,
            "entry": _average(pos.ladder.entry),
            "exit": _average(exit_price),
            "opened": pos.opened,
            "closed": ts,
            "pnl": fills.realized,
            "r": r,
            "risk": dollar_risk,
            "risk_per_share": max(pos.risk, _ZERO),
            "reason": pos.close_reason.value if pos.close_reason is not None else "exit",
        },
    )


# --- entries ------------------------------------------------------------------------------


def entry_accepted(
    symbol: str,
    key: str,
    side: str,
    qty: Decimal,
    stop: Decimal,
    entry: Decimal | None,
    paper: bool,
    ts: datetime,
    client_id: str | None = None,
) -> Record:
    """`entry.accepted`: the gate let an entry intent through; its order goes out (`id`: the
    client's own entry id, when it gave one)."""
    data: dict[str, object] = {
        "symbol": symbol, "reason": "accepted", "key": key, "side": side, "qty": qty,
        "stop": stop, "entry": entry, "paper": paper,
    }  # fmt: skip
    if client_id is not None:
        data["id"] = client_id
    return Record("entry.accepted", ts, data)


def entry_blocked(
    symbol: str, reason: str, detail: str, ts: datetime, client_id: str | None = None
) -> Record:
    """`entry.blocked`: an entry refused by the gate, or its order by the broker."""
    data: dict[str, object] = {"symbol": symbol, "reason": reason, "detail": detail}
    if client_id is not None:
        data["id"] = client_id
    return Record("entry.blocked", ts, data)


# --- orders -------------------------------------------------------------------------------


def order_record(kind: str, key: str, symbol: str, order: Order, ts: datetime) -> Record:
    """The `order.submitted` / `order.canceled` record of an order."""
    price = order.stop_price if order.stop_price is not None else order.limit_price
    return Record(
        kind,
        ts,
        {
            "symbol": symbol,
            "key": key,
            "order_id": order.id,
            "type": order.type.value,
            "side": order.action.value,
            "qty": order.qty,
            "price": price,
            "stop_price": order.stop_price,
            "limit_price": order.limit_price,
            "purpose": order.role.value,
            **({"extended_hours": True} if order.extended else {}),
        },
    )


def order_filled(
    key: str,
    symbol: str,
    order: Order,
    qty: Decimal,
    price: Decimal,
    remaining: Decimal,
    executed: datetime,
    ts: datetime,
) -> Record:
    """`order.filled`: every fill the broker reports (SPEC §4), partial or whole, with what is
    left of the order and of the position; `executed` is the broker's time of it."""
    return Record(
        "order.filled",
        ts,
        {
            "symbol": symbol,
            "key": key,
            "order_id": order.id,
            "purpose": order.role.value,
            "qty": qty,
            "price": price,
            "order_filled": order.filled + qty,
            "order_open": order.qty - order.filled - qty,
            "position_qty": remaining,
            "executed": executed,
        },
    )


def order_rejected(symbol: str, key: str, order_id: str, reason: str, ts: datetime) -> Record:
    """`order.rejected`: the broker refused an order (after any retries)."""
    return Record(
        "order.rejected",
        ts,
        {"symbol": symbol, "key": key, "order_id": order_id, "reason": reason},
    )


def order_retry(
    symbol: str,
    key: str,
    order_id: str,
    attempt: int,
    delay: timedelta,
    due: datetime,
    reason: str,
    command: str,
    ts: datetime,
) -> Record:
    """`order.retry`: a refused request (submit or cancel) is sent again at `due`."""
    return Record(
        "order.retry",
        ts,
        {
            "symbol": symbol,
            "key": key,
            "order_id": order_id,
            "attempt": attempt,
            "delay": Decimal(str(delay.total_seconds())),
            "due": due,
            "reason": reason,
            "command": command,
        },
    )


def order_timeout(data: dict[str, object], ts: datetime) -> Record:
    """`order.timeout`: an awaited answer did not come in time (its fields built by the
    deadline that fired, shared with the operator's alert)."""
    return Record("order.timeout", ts, data)


def conflict(
    ts: datetime,
    key: str,
    kind: str,
    order_ids: Sequence[str],
    resolution: str,
    reason: str,
    **detail: object,
) -> Record:
    """`conflict.detected` (P14): its type, the orders involved, how it is resolved, and why
    (the broker's words, or what the engine saw)."""
    data: dict[str, object] = {
        "symbol": symbol_of(key),
        "key": key,
        "type": kind,
        "order_ids": list(order_ids),
        "resolution": resolution,
        "reason": reason,
    }
    data.update(detail)
    return Record("conflict.detected", ts, data)


def operation_done(
    pos: Position, outcome: str, ts: datetime, started: datetime, order_ids: Sequence[str],
    kind: str, exposed: timedelta,
) -> Record:  # fmt: skip
    """`operation.done` (P23): an operation confirmed applied, rolled back or closed."""
    return Record(
        "operation.done",
        ts,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "operation": kind,
            "outcome": outcome,
            "started": started,
            "order_ids": list(order_ids),
            "duration_ms": milliseconds(ts - started),
            "unprotected_ms": milliseconds(exposed),
        },
    )


# --- the broker link ----------------------------------------------------------------------


def mode_changed(
    old: str, new: str, reason: str, ts: datetime, positions: int | None = None
) -> Record:
    """`mode.changed`: normal, offline or recovery (with the positions validated, on return
    to normal after a snapshot)."""
    data: dict[str, object] = {"from": old, "to": new, "reason": reason}
    if positions is not None:
        data["positions"] = positions
    return Record("mode.changed", ts, data)


def breaker_opened(ts: datetime, data: dict[str, object]) -> Record:
    """`breaker.opened`: the order breaker (failures in a row) or the phase breaker (a
    downgrade) opened; `data` names which and why."""
    return Record("breaker.opened", ts, data)


def breaker_half_open(ts: datetime) -> Record:
    """`breaker.half_open`: the order breaker's cooldown is over; the next request probes."""
    return Record("breaker.half_open", ts, {"breaker": "orders"})


def breaker_closed(ts: datetime, data: dict[str, object]) -> Record:
    """`breaker.closed`: the order breaker's probe succeeded, or an operator acknowledged
    the phase breaker."""
    return Record("breaker.closed", ts, data)


# --- the daily goal and phases ------------------------------------------------------------


def goal_triggered(ts: datetime, data: dict[str, object]) -> Record:
    """`goal.triggered`: the day gave back too much of its peak (SPEC §7)."""
    return Record("goal.triggered", ts, data)


def goal_reset(ts: datetime, data: dict[str, object]) -> Record:
    """`goal.reset`: a new session began; the previous one's peak and P&L."""
    return Record("goal.reset", ts, data)


def phase_changed(
    old_phase: str,
    new_phase: str,
    trigger: str,
    reason: str,
    size_from: Decimal,
    size_to: Decimal,
    ts: datetime,
) -> Record:
    """`phase.changed` (SPEC §8): by the gates, a downgrade or an override."""
    return Record(
        "phase.changed",
        ts,
        {"from": old_phase, "to": new_phase, "trigger": trigger, "reason": reason,
         "size_from": size_from, "size_to": size_to},
    )  # fmt: skip


def phase_denied(phase: str, failures: list[dict[str, str]], ts: datetime) -> Record:
    """`phase.denied`: an advance refused, with every failed criterion."""
    return Record("phase.denied", ts, {"phase": phase, "failures": failures})
