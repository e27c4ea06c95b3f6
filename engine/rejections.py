"""A refused order (SPEC §4, P12-P14, P24): what the broker's refusal means — a retry on the
schedule, shares another order holds, evidence that the broker disagrees, a rollback to the
protection it last accepted, an exit sold at market when no stop can stand — and the
position's next order step."""

from __future__ import annotations

from decimal import Decimal

from attrs import evolve

from engine.answers import on_accepted, unknown_order
from engine.books import finish
from engine.budget import coalesce, extended_rules
from engine.commands import Alert, Command
from engine.divergence import ask, diverged
from engine.events import (
    OrderAccepted,
    OrderRefusal,
    OrderRejected,
)
from engine.ids import symbol_of
from engine.model import Order, OrderRole, OrderStatus, Position, Slot
from engine.orders import exit_unprotectable, roll_back
from engine.records import conflict, entry_blocked, order_rejected
from engine.retries import attempts, retry_entry, schedule_retry
from engine.state import EngineState, Transition

__all__ = ["on_rejected", "retryable"]

# Refusals answered by sending the same request again after the backoff.
_SEND_AGAIN = frozenset(
    {
        OrderRefusal.TRANSIENT,
        OrderRefusal.UNKNOWN,
        OrderRefusal.SHARES_LOCKED,
        OrderRefusal.WASH_TRADE,
    }
)


def _locked_evidence(
    state: EngineState, key: str, ack: OrderRejected
) -> tuple[EngineState, list[Command]]:
    """Alpaca's 403 says how many shares the broker holds (`existing`) and how many are free
    (`available`). Fewer held than ratchet counts, or (when the holding is not told) fewer
    free while no other order of ratchet's holds any, is evidence that the broker disagrees
    (shares sold by hand, a corporate action, a state restored from long ago), not a passing
    lock: the position waits for the broker's snapshot."""
    pos = state.positions.get(key)
    if pos is None or ack.available is None:
        return state, []
    lots = state.in_symbol(pos.symbol)
    believed = sum((p.fills.remaining for p in lots), Decimal(0))
    if ack.existing is not None:
        if ack.existing >= believed:
            return state, []  # the shares are there; something holds them for now
    else:
        # (the refused order itself waits for its retry by now: it is not at the broker)
        holding = sum(
            (o.open_qty for p in lots for o in (p.orders.exit, p.orders.sell)
             if o is not None and o.status in _AT_BROKER),
            Decimal(0),
        )  # fmt: skip
        if ack.available >= believed - holding:
            return state, []  # as free as ratchet believes: a lock that passes
    told = {"available": ack.available, "existing": ack.existing, "reason": ack.reason}
    state, pos, commands = diverged(
        state, pos, ack.ts, "broker holds fewer shares", {"qty": believed}, told
    )
    return state.evolve(positions=state.positions.set(key, pos)), commands


# Orders that hold shares at the broker (or may: sent, cancel not yet confirmed).
_AT_BROKER = (OrderStatus.LIVE, OrderStatus.PENDING_NEW, OrderStatus.PENDING_CANCEL,
              OrderStatus.CANCEL_WAIT)  # fmt: skip


def _selling(pos: Position) -> bool:
    """A sale is queued or in flight."""
    return pos.orders.sell is not None or pos.orders.to_sell > 0


def retryable(state: EngineState, ack: OrderRejected) -> bool:
    """Transient refusals and held shares are sent again after the backoff; so is a market
    exit (not a tranche) refused for good (a halted stock, a closed market): nothing else
    can leave the shares safe, and the breaker throttles a broker that keeps refusing."""
    if ack.kind in _SEND_AGAIN:
        return True
    key = state.routes.get(ack.order_id)
    pos = state.positions.get(key) if key is not None else None
    if ack.kind is not OrderRefusal.PERMANENT or pos is None:
        return False
    sell = pos.orders.sell
    return sell is not None and sell.id == ack.order_id and sell.role is OrderRole.EXIT


def on_rejected(state: EngineState, ack: OrderRejected) -> Transition:
    """The broker refused an order. A duplicate id means an earlier send landed: adopt it.
    Held shares and transient refusals are retried on the backoff (P12); once spent, the step
    starts again as a new operation after the alert (P24). A permanent refusal rolls the
    operation back to the last accepted protection (P13, P21), or sells at market when the
    broker refuses protection itself."""
    key = state.routes.get(ack.order_id)
    if key is None:
        return unknown_order(state, ack.order_id, ack.ts, "rejected")
    pos = state.positions.get(key)
    if ack.kind is OrderRefusal.DUPLICATE:
        # The broker already holds an order with this client id: an earlier send got through
        # although its answer was lost. Adopt it rather than send another.
        t = on_accepted(state, OrderAccepted(ack.ts, ack.order_id))
        record = conflict(
            ack.ts, key, "duplicate_order", [ack.order_id], "adopted_existing", ack.reason
        )
        return Transition(t.state, (record, *t.commands))
    if pos is not None and _stale(pos, ack):
        return _replace_stale(state, pos, ack)
    conflicts: list[Command] = []
    can_retry = retryable(state, ack)
    if pos is not None and can_retry:
        if ack.kind is OrderRefusal.SHARES_LOCKED:
            # Alpaca's 403: something still holds the shares (a cancel not yet released).
            # Never sent around: wait, then send the same order again.
            holders = [
                o.id for o in (pos.orders.exit, pos.orders.sell) if o and o.id != ack.order_id
            ]
            spent = attempts(pos) >= len(state.config.retry_delays)
            resolution = "new_operation_after_alert" if spent else "retry_after_backoff"
            ids = [ack.order_id, *holders]
            conflicts.append(conflict(ack.ts, key, "shares_locked", ids, resolution, ack.reason))
        if ack.kind is OrderRefusal.WASH_TRADE:
            # Market hours: an open opposite-side order in the symbol that ratchet does not know
            # of (its own never stand in the way: the entry guard and the gate see to that)
            # is the user's: the operator is told (coalesced) and the same order is sent
            # again on the backoff, then as a new operation after the alert, until the
            # user's order is gone. Under `[adopt] foreign_orders = "cancel"` ratchet removes
            # it: the broker's snapshot names it, and it is canceled (engine.snapshots).
            spent = attempts(pos) >= len(state.config.retry_delays)
            resolution = "new_operation_after_alert" if spent else "retry_after_backoff"
            if state.config.foreign_orders == "cancel":
                resolution = "cancel_user_order"
                pos = evolve(pos, wash_blocked=pos.wash_blocked or ack.ts)
                state = state.evolve(positions=state.positions.set(pos.key, pos))
                state, asked = ask(state, ack.ts, "potential wash trade", (pos.symbol,))
                conflicts.extend(asked)
            conflicts.insert(
                0, conflict(ack.ts, key, "wash_trade", [ack.order_id], resolution, ack.reason)
            )
            pos, alerts = coalesce(
                pos,
                Alert(
                    ack.ts,
                    "wash_trade",
                    {
                        "symbol": pos.symbol,
                        "key": pos.key,
                        "order_id": ack.order_id,
                        "reason": ack.reason,
                        "resolution": resolution,
                    },
                ),
            )
            state = state.evolve(positions=state.positions.set(pos.key, pos))
            conflicts.extend(alerts)
        retried = schedule_retry(state, pos, ack)
        lost = ack.kind is OrderRefusal.UNKNOWN or (pos.retry is not None and pos.retry.uncertain)
        if retried is None and pos.retry is not None and lost:
            # The retries are spent but an earlier answer was lost: the order may be at the
            # broker, so it is never replaced by a new one (two stops could oversell). The
            # operator is told and the same request goes on being sent until the broker
            # says what became of it (accepted, or a duplicate).
            alert = _exhausted_alert(pos, ack, "resend_same_order")
            again = evolve(pos, retry=evolve(pos.retry, attempts=0, uncertain=True))
            again, alerts = coalesce(again, alert)
            retried = schedule_retry(state, again, ack)
            assert retried is not None
            return Transition(retried.state, (*conflicts, *alerts, *retried.commands))
        if retried is not None:
            extra: list[Command] = []
            state = retried.state
            if ack.kind is OrderRefusal.SHARES_LOCKED and ack.available is not None:
                state, extra = _locked_evidence(state, key, ack)
            return Transition(state, (*conflicts, *retried.commands, *extra))
    pending = state.entries.get(key)
    if (
        pending is not None
        and pending.order.id == ack.order_id
        and ack.kind in (OrderRefusal.TRANSIENT, OrderRefusal.UNKNOWN)
    ):
        # SPEC §4: an entry refused for a passing reason is sent again on the same schedule.
        retried = retry_entry(state, pending, ack)
        lost = ack.kind is OrderRefusal.UNKNOWN or (
            pending.retry is not None and pending.retry.uncertain
        )
        if retried is None and lost and pending.retry is not None:
            # An earlier answer was lost: the entry may be at the broker, so it is never
            # dropped; the same request goes on until the broker tells (P24: alerted).
            alert = Alert(
                ack.ts,
                "retries_exhausted",
                {
                    "symbol": pending.symbol,
                    "key": key,
                    "order_id": ack.order_id,
                    "reason": ack.reason,
                    "kind": ack.kind.value,
                    "attempts": pending.retry.attempts,
                    "failures": [*pending.retry.failures, ack.reason],
                    "remaining_qty": Decimal(0),
                    "stop": pending.stop,
                    "resolution": "resend_same_order",
                },
            )
            resend = evolve(pending, retry=evolve(pending.retry, attempts=0, uncertain=True))
            retried = retry_entry(state, resend, ack)
            assert retried is not None
            return Transition(retried.state, (alert, *retried.commands))
        if retried is not None:
            return retried
    state = state.evolve(routes=state.routes.delete(ack.order_id))
    symbol = symbol_of(key)  # (the position may be gone already: its key names its symbol)
    record = order_rejected(symbol, key, ack.order_id, ack.reason, ack.ts)
    if pending is not None and pending.order.id == ack.order_id:
        blocked = entry_blocked(symbol, "order_rejected", ack.reason, ack.ts, pending.client_id)
        told: list[Command] = [record, blocked]
        if pending.retry is not None and ack.kind in (OrderRefusal.TRANSIENT, OrderRefusal.UNKNOWN):
            # The retries of the entry ran out (P24): no position is opened.
            told.append(
                Alert(
                    ack.ts,
                    "retries_exhausted",
                    {
                        "symbol": symbol,
                        "key": key,
                        "order_id": ack.order_id,
                        "reason": ack.reason,
                        "kind": ack.kind.value,
                        "attempts": pending.retry.attempts,
                        "failures": [*pending.retry.failures, ack.reason],
                        "remaining_qty": Decimal(0),
                        "stop": pending.stop,
                        "resolution": "entry_blocked",
                    },
                )
            )
        return Transition(state.evolve(entries=state.entries.delete(key)), tuple(told))
    if pos is None:
        return Transition(state, (record,))
    # Transient failures whose retries ran out start the step again as a new operation (new
    # client order id, fresh retries) after the alert: the shares must not be left without
    # protection because the broker was briefly down. A permanent refusal rolls back.
    exhausted = can_retry
    refused: Order | None = None
    orders = pos.orders
    slot = orders.slot_of(ack.order_id)
    if slot is Slot.EXIT:
        refused = orders.exit
        pos = evolve(pos, orders=evolve(orders, exit=None))
    elif slot is Slot.SELL and orders.sell is not None:
        refused = orders.sell
        freed = orders.to_sell + orders.sell.open_qty
        pos = evolve(pos, orders=evolve(orders, sell=None, to_sell=freed))
    elif slot is Slot.ENTRY:
        pos = evolve(pos, orders=evolve(orders, entry=None))
    out: list[Command] = [*conflicts, record]
    resolution = "retry_as_new_operation" if exhausted else ""
    if refused is not None and not exhausted:
        # A permanent refusal: roll the operation back to the last accepted protection.
        # When the broker refuses protection itself (the first stop, or the restore), the
        # shares are sold at market, never held bare. A protective order refused while a
        # market exit sells every share is not needed any more. (A refused market exit is
        # retried: nothing else can leave the shares safe.)
        price = state.last_price(pos.symbol)
        reason = pos.close_reason
        exiting = reason is not None and reason.sells_all and _selling(pos)
        if exiting and slot is Slot.EXIT:
            resolution = "exit_in_progress"
        elif refused.role is OrderRole.RESTORE:
            pos, sent = exit_unprotectable(pos, price, ack.ts, extended_rules(state))
            out.extend(sent)
            resolution = "exit_at_market"
        else:
            pos, sent = roll_back(pos, price, ack.ts, extended_rules(state))
            out.extend(sent)
            eo = pos.orders.exit
            restored = eo is not None and eo.role is OrderRole.RESTORE
            resolution = "restored_previous_protection" if restored else "exit_at_market"
    failures = pos.retry.failures if pos.retry is not None else ()
    context: dict[str, object] = {
        "symbol": symbol,
        "key": key,
        "order_id": ack.order_id,
        "reason": ack.reason,
        "kind": ack.kind.value,
        "halted": pos.halted,
        "attempts": attempts(pos),
        "failures": [*failures, ack.reason],
        "remaining_qty": pos.fills.remaining,
        "stop": pos.ladder.stop,
        "resolution": resolution,
    }
    eo = pos.orders.exit
    if eo is not None and eo.role is OrderRole.RESTORE:
        context["restored_order_id"] = eo.id
        context["restored_stop"] = eo.stop_price
        context["restored_take_profit"] = eo.limit_price
    pos, told = coalesce(
        pos, Alert(ack.ts, "retries_exhausted" if exhausted else "order_rejected", context)
    )
    out.extend(told)
    pos = evolve(pos, retry=None)
    return finish(state, pos, ack.ts, out, reconcile_first=exhausted)


def _stale(pos: Position, ack: OrderRejected) -> bool:
    """A definite refusal of an exit-side order for more shares than the position counts now
    (the broker's snapshot shrank it while the order was on its way): sending it again would
    only be refused again."""
    if ack.kind in (OrderRefusal.UNKNOWN, OrderRefusal.DUPLICATE):
        return False  # it may be at the broker: its fate is asked, not assumed
    orders = pos.orders
    for order in (orders.exit, orders.sell):
        if order is not None and order.id == ack.order_id:
            return order.open_qty > pos.fills.remaining
    return False


def _replace_stale(state: EngineState, pos: Position, ack: OrderRejected) -> Transition:
    """Drop the stale order; the next order step asks for what the shares left call for."""
    orders = pos.orders
    so = orders.sell
    if so is not None and so.id == ack.order_id:
        queued = min(orders.to_sell + so.open_qty, pos.fills.remaining)
        orders = evolve(orders, sell=None, to_sell=queued)
        qty = so.open_qty
    else:
        assert orders.exit is not None
        qty = orders.exit.open_qty
        orders = evolve(orders, exit=None)
    state = state.evolve(routes=state.routes.delete(ack.order_id))
    why = (
        f"{ack.reason}; the order was for {qty} shares and the position counts "
        f"{pos.fills.remaining} since the broker's snapshot"
    )
    record = conflict(ack.ts, pos.key, "stale_order", [ack.order_id], "replaced", why)
    return finish(state, evolve(pos, orders=orders, retry=None), ack.ts, [record])


def _exhausted_alert(pos: Position, ack: OrderRejected, resolution: str) -> Alert:
    """`retries_exhausted` (P24) with the operation's full context."""
    failures = pos.retry.failures if pos.retry is not None else ()
    return Alert(
        ack.ts,
        "retries_exhausted",
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "order_id": ack.order_id,
            "reason": ack.reason,
            "kind": ack.kind.value,
            "halted": pos.halted,
            "attempts": attempts(pos),
            "failures": [*failures, ack.reason],
            "remaining_qty": pos.fills.remaining,
            "stop": pos.ladder.stop,
            "resolution": resolution,
        },
    )
