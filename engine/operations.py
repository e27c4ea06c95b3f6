"""Operations and exposure windows (SPEC §4): an operation opens at a position's first order
command and is done only when every order it touched is confirmed where its protection wants
it (P22, P23); shares without an accepted protective order are timed from the broker's facts
(a fill, a cancel confirmation) to the acceptance that covers them again."""

from __future__ import annotations

from datetime import datetime

from attrs import evolve

from engine.commands import Command
from engine.model import (
    Operation,
    OperationKind,
    OrderRole,
    OrderStatus,
    Position,
)
from engine.records import operation_done

__all__ = ["conclude", "covered", "exposed", "settled", "touch"]

_NOTHING: list[Command] = []


def touch(pos: Position, order_id: str, ts: datetime) -> Position:
    """An order command for the position goes out: it opens the operation (a stop move when
    the broker already accepted a protection, else arming) or joins the one in flight; a sale
    makes it an exit (or a partial exit)."""
    op = pos.operation
    if op is None:
        kind = OperationKind.STOP_MOVE if pos.orders.restore is not None else OperationKind.ARM
        op = Operation(kind, ts, (order_id,))
    elif order_id not in op.order_ids:
        op = evolve(op, order_ids=(*op.order_ids, order_id))
    if pos.orders.sell is not None or pos.orders.to_sell > 0:
        kind = OperationKind.EXIT if pos.close_reason is not None else OperationKind.PARTIAL_EXIT
        if kind is not op.kind:
            op = evolve(op, kind=kind)
    return evolve(pos, operation=op)


def exposed(pos: Position, ts: datetime) -> Position:
    """The protective order is gone while shares remain: an unprotected window opens."""
    if pos.fills.remaining > 0 and pos.exposed_since is None:
        return evolve(pos, exposed_since=ts)
    return pos


def covered(pos: Position, ts: datetime) -> Position:
    """A protective order was accepted: the open unprotected window (if any) closes and its
    length counts toward the operation in flight."""
    since = pos.exposed_since
    if since is None:
        return pos
    op = pos.operation
    if op is None:
        return evolve(pos, exposed_since=None)
    return evolve(pos, exposed_since=None, operation=evolve(op, exposed=op.exposed + (ts - since)))


def settled(pos: Position) -> bool:
    """Every order of the position is confirmed where its protection wants it (P23)."""
    orders = pos.orders
    if orders.sell is not None or orders.to_sell > 0:
        return False
    eo = orders.exit
    remaining = pos.fills.remaining
    if remaining <= 0:
        return eo is None
    if pos.halted:  # the order the broker would not cancel is the protection now
        return eo is not None and eo.status is OrderStatus.LIVE and eo.open_qty == remaining
    if eo is None or eo.status is not OrderStatus.LIVE or eo.open_qty != remaining:
        return False
    ladder = pos.ladder
    if eo.role is OrderRole.RESTORE:
        return orders.refused == (ladder.stop, ladder.take_profit)
    return eo.stop_price == ladder.stop and eo.limit_price == ladder.take_profit


def conclude(pos: Position, ts: datetime, closing: bool) -> tuple[Position, list[Command]]:
    """Close the operation in flight, with its `operation.done` record, once the position is
    settled or closing."""
    op = pos.operation
    if op is None or not (closing or settled(pos)):
        return pos, _NOTHING
    if closing:
        pos = covered(pos, ts)
        assert pos.operation is not None
        op = pos.operation
    eo = pos.orders.exit
    # Rolled back: the last accepted protection re-armed, or kept in place by a broker that
    # would not cancel it (a halted ladder).
    kept = pos.halted or (eo is not None and eo.role is OrderRole.RESTORE)
    outcome = "closed" if closing else "rolled_back" if kept else "applied"
    record = operation_done(pos, outcome, ts, op.started, op.order_ids, op.kind.value, op.exposed)
    return evolve(pos, operation=None), [record]
