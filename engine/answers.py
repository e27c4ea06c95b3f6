"""The broker's answers about ratchet's orders (SPEC §4): accepted, canceled and cancel
rejected (a refused order: `engine.rejections`). Each decides what the answer means for the
position (protection confirmed, shares freed, a conflict journaled) and takes its next order
step."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import assert_never

from attrs import evolve

from engine.books import finish
from engine.budget import coalesce
from engine.commands import Alert, Command
from engine.divergence import diverged
from engine.events import (
    CancelRefusal,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
)
from engine.ids import key_of
from engine.model import OrderStatus, Position, Slot
from engine.operations import covered, exposed
from engine.records import conflict, entry_blocked, order_record
from engine.retries import attempts, book_retry, reset_attempts
from engine.state import EngineState, Transition

__all__ = [
    "on_accepted",
    "on_cancel_rejected",
    "on_canceled",
    "unknown_order",
]


def unknown_order(state: EngineState, oid: str, ts: datetime, what: str) -> Transition:
    """An answer about an order ratchet does not know: the operator is told."""
    return Transition(state, (Alert(ts, "unknown_order", {"order_id": oid, "event": what}),))


def _with_status(pos: Position, oid: str, status: OrderStatus, only_from: OrderStatus) -> Position:
    """The position with order `oid` moved to `status`, if it stands at `only_from`."""
    orders = pos.orders
    slot = orders.slot_of(oid)
    order = orders.get(slot) if slot is not None else None
    if slot is None or order is None or order.status is not only_from:
        return pos
    moved = evolve(order, status=status)
    match slot:
        case Slot.EXIT:
            orders = evolve(orders, exit=moved)
        case Slot.SELL:
            orders = evolve(orders, sell=moved)
        case Slot.ENTRY:
            orders = evolve(orders, entry=moved)
        case _ as unreachable:
            assert_never(unreachable)
    return evolve(pos, orders=orders)


def on_accepted(state: EngineState, ack: OrderAccepted) -> Transition:
    """The broker took an order (P23: an operation is done only once its orders are). An
    accepted protective order covering every share closes the unprotected window and becomes
    the protection a refused operation rolls back to (P13)."""
    key = state.routes.get(ack.order_id)
    if key is None:
        return unknown_order(state, ack.order_id, ack.ts, "accepted")
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == ack.order_id:
        order = evolve(pending.order, status=OrderStatus.LIVE)
        entries = state.entries.set(key, evolve(pending, order=order))
        return Transition(state.evolve(entries=entries))
    pos = state.positions.get(key)
    if pos is None:
        return Transition(state)
    pos = _with_status(pos, ack.order_id, OrderStatus.LIVE, only_from=OrderStatus.PENDING_NEW)
    # An answer thought lost (a timeout) arrives after all: the order waiting to be sent
    # again is at the broker.
    pos = _with_status(pos, ack.order_id, OrderStatus.LIVE, only_from=OrderStatus.RETRY_WAIT)
    pos = reset_attempts(pos)  # the order step got through
    eo = pos.orders.exit
    if eo is not None and eo.id == ack.order_id and eo.status is OrderStatus.LIVE:
        if eo.open_qty >= pos.fills.remaining:
            pos = covered(pos, ack.ts)
        pos = evolve(pos, orders=evolve(pos.orders, restore=eo))
    return finish(state, pos, ack.ts, [])


def on_canceled(state: EngineState, ack: OrderCanceled) -> Transition:
    """A cancel is confirmed (P10: only now may a new stop go out). The shares it held are
    free: a protective order gone opens an unprotected window; a tranche the broker dropped
    goes back to be sold again."""
    key = state.routes.get(ack.order_id)
    if key is None:
        known = key_of(ack.order_id)
        if not known:
            return unknown_order(state, ack.order_id, ack.ts, "canceled")
        # A second confirmation (a cancel sent again after a timeout, or already treated
        # as canceled): the order was accounted for when the first answer came.
        record = conflict(
            ack.ts, known, "stale_answer", [ack.order_id], "already_accounted", "canceled again"
        )
        return Transition(state, (record,))
    state = state.evolve(routes=state.routes.delete(ack.order_id))
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == ack.order_id:
        record = entry_blocked(
            pending.symbol, "entry_canceled", ack.order_id, ack.ts, pending.client_id
        )
        return Transition(state.evolve(entries=state.entries.delete(key)), (record,))
    pos = state.positions.get(key)
    if pos is None:
        return Transition(state)
    out: list[Command] = []
    orders = pos.orders
    slot = orders.slot_of(ack.order_id)
    order = orders.get(slot) if slot is not None else None
    if order is not None:
        out.append(order_record("order.canceled", pos.key, pos.symbol, order, ack.ts))
    pos = reset_attempts(pos)  # the cancel got through
    if slot is Slot.EXIT:
        pos = exposed(evolve(pos, orders=evolve(orders, exit=None)), ack.effective)
    elif slot is Slot.SELL and orders.sell is not None:
        freed = orders.to_sell + orders.sell.open_qty
        pos = evolve(pos, orders=evolve(orders, sell=None, to_sell=freed))
    elif slot is Slot.ENTRY:
        pos = evolve(pos, orders=evolve(orders, entry=None))
    return finish(state, pos, ack.ts, out)


_CANCEL_CONFLICTS = {
    CancelRefusal.FILLED: "cancel_after_fill",
    CancelRefusal.CANCELED: "already_canceled",
    CancelRefusal.NOT_FOUND: "order_not_found",
}


def on_cancel_rejected(state: EngineState, ack: CancelRejected) -> Transition:
    """The broker refused a cancel. Not found or already canceled: the order is gone, as a
    cancel would have left it. Filled first: its fill is on the way, awaited. Transient: the
    cancel is sent again on the backoff. Anything else halts the ladder with an alert."""
    key = state.routes.get(ack.order_id)
    pos = state.positions.get(key) if key is not None else None
    if pos is None:
        # Filled (or gone) and already accounted for: nothing is left to cancel.
        known = key_of(ack.order_id)
        if not known:
            return unknown_order(state, ack.order_id, ack.ts, "cancel rejected")
        kind = _CANCEL_CONFLICTS.get(ack.kind, "order_not_found")
        record = conflict(ack.ts, known, kind, [ack.order_id], "already_accounted", ack.reason)
        return Transition(state, (record,))
    match ack.kind:
        case CancelRefusal.NOT_FOUND | CancelRefusal.CANCELED:
            asked: list[Command] = []
            if ack.kind is CancelRefusal.NOT_FOUND:
                # An order believed working that the broker has never heard of: it may have
                # filled, or been canceled by someone else. Nothing more is sent for the
                # position until the broker's snapshot tells.
                believed = {"order_id": ack.order_id, "working": True}
                state, pos, asked = diverged(
                    state, pos, ack.ts, "order not found at the broker", believed,
                    {"order_id": ack.order_id, "reason": ack.reason},
                )  # fmt: skip
                state = state.evolve(positions=state.positions.set(pos.key, pos))
            t = on_canceled(state, OrderCanceled(ack.ts, ack.order_id))
            kind = _CANCEL_CONFLICTS[ack.kind]
            record = conflict(
                ack.ts, pos.key, kind, [ack.order_id], "treated_as_canceled", ack.reason
            )
            return Transition(t.state, (record, *t.commands, *asked))
        case CancelRefusal.FILLED:
            # It filled before the cancel arrived: wait for its fill (still PENDING_CANCEL, so
            # nothing else is sent for the position meanwhile).
            record = conflict(
                ack.ts, pos.key, "cancel_after_fill", [ack.order_id], "await_fill", ack.reason
            )
            return Transition(state, (record,))
        case CancelRefusal.TRANSIENT:
            # Sent again on the backoff; once the retries are spent the operator is told and
            # the schedule starts over (the stop being canceled still works meanwhile).
            delays = state.config.retry_delays
            commands: list[Command] = []
            if attempts(pos) >= len(delays):
                alert = _cancel_alert(pos, ack, "retries_exhausted", "retry_again")
                pos, told = coalesce(evolve(pos, retry=None), alert)
                commands.extend(told)
            pos = _with_status(
                pos, ack.order_id, OrderStatus.CANCEL_WAIT, OrderStatus.PENDING_CANCEL
            )
            pos, retry_record = book_retry(pos, ack, delays[attempts(pos)], "cancel")
            return finish(state, pos, ack.ts, [*commands, retry_record], reconcile_first=False)
        case CancelRefusal.PERMANENT:
            pass
        case _ as unreachable:
            assert_never(unreachable)
    # The broker will not cancel it: the order stays, working, as the protection, and the
    # ladder freezes (no more stop moves or tranches). Shares it does not cover are sold at
    # market once `protect_deadline` passes; protection never stops.
    pos = _with_status(pos, ack.order_id, OrderStatus.LIVE, only_from=OrderStatus.PENDING_CANCEL)
    alert = _cancel_alert(pos, ack, "cancel_rejected", "order_kept_ladder_frozen")
    pos = evolve(
        pos,
        halted=True,
        retry=None,
        ladder=evolve(pos.ladder, trigger=None),
        orders=evolve(pos.orders, to_sell=Decimal(0), milestones=()),
    )
    return finish(state, pos, ack.ts, [alert], reconcile_first=False)


def _cancel_alert(pos: Position, ack: CancelRejected, reason: str, resolution: str) -> Alert:
    """The operator's alert about a refused cancel, with its full context."""
    failures = pos.retry.failures if pos.retry is not None else ()
    return Alert(
        ack.ts,
        reason,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "order_id": ack.order_id,
            "reason": ack.reason,
            "kind": ack.kind.value,
            "command": "cancel",
            "attempts": attempts(pos),
            "failures": [*failures, ack.reason],
            "remaining_qty": pos.fills.remaining,
            "resolution": resolution,
        },
    )
