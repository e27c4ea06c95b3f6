"""The retry schedule (SPEC §4, P12, P24): a request refused for a passing reason is sent again
after 0.5 s, 1 s and 2 s (due times kept in state, fired by later events); answer deadlines
that fell due fire here too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attrs import evolve

from engine.books import store
from engine.commands import CancelOrder, Command
from engine.deadlines import timed_out
from engine.events import CancelRejected, OrderRejected
from engine.model import OrderStatus, Position, Retry, Slot
from engine.orders import submit_command
from engine.records import order_retry
from engine.state import EngineState, Transition

__all__ = ["attempts", "book_retry", "fire", "reset_attempts", "schedule_retry"]

_FAR = datetime(9999, 12, 31, tzinfo=UTC)


def book_retry(
    pos: Position, ack: OrderRejected | CancelRejected, delay: timedelta, command: str
) -> tuple[Position, Command]:
    """Count one more attempt, set when it is due, and say so in `order.retry`."""
    due = ack.ts + delay
    retry = pos.retry
    attempts = (retry.attempts if retry is not None else 0) + 1
    failures = (*(retry.failures if retry is not None else ()), ack.reason)
    pos = evolve(pos, retry=Retry(attempts, due, failures))
    record = order_retry(pos, ack.order_id, attempts, delay, due, ack.reason, command, ack.ts)
    return pos, record


def attempts(pos: Position) -> int:
    """Retries used by the order step in progress."""
    return pos.retry.attempts if pos.retry is not None else 0


def reset_attempts(pos: Position) -> Position:
    """The order step got through: its attempts start again from zero (a resend still due
    stays due)."""
    retry = pos.retry
    if retry is None:
        return pos
    return evolve(pos, retry=None if retry.due is None else Retry(0, retry.due))


def schedule_retry(state: EngineState, pos: Position, ack: OrderRejected) -> Transition | None:
    """A transient refusal of one of the position's orders: send it again after the next
    backoff delay, or None when the retries are spent (or the order is not the position's
    exit or sell)."""
    delays = state.config.retry_delays
    used = attempts(pos)
    if used >= len(delays):
        return None
    orders = pos.orders
    slot = orders.slot_of(ack.order_id)
    if slot is Slot.EXIT and orders.exit is not None:
        orders = evolve(orders, exit=evolve(orders.exit, status=OrderStatus.RETRY_WAIT))
    elif slot is Slot.SELL and orders.sell is not None:
        orders = evolve(orders, sell=evolve(orders.sell, status=OrderStatus.RETRY_WAIT))
    else:
        return None
    pos, record = book_retry(evolve(pos, orders=orders), ack, delays[used], "submit")
    state, more = store(state, pos, ack.ts)
    return Transition(state, (record, *more))


def fire(state: EngineState, now: datetime, scope: str | None) -> Transition:
    """Send again every request whose retry is due, fire every answer deadline that fell due,
    and work out when the next one is due.

    Answer deadlines fire on a clock event or an event of the position's own symbol (`scope`
    None means any symbol), so updates to different symbols still commute (P30). Resends
    reuse the order's client id, already part of the operation in flight."""
    link = state.link
    if not link.sending:
        return Transition(state)  # held until the link is back; `due` stays
    out: list[Command] = []
    due = _FAR if link.reopen_at is None else link.reopen_at
    cfg = state.config
    for key, current in list(state.positions.items()):
        pos = current
        waiting = pos.awaited
        if waiting is not None and waiting.due is not None:
            if waiting.due <= now and (scope is None or scope == pos.symbol):
                pos, commands = timed_out(pos, now, cfg)
                out.extend(commands)
                state = state.evolve(positions=state.positions.set(key, pos))
            waiting = pos.awaited
            if waiting is not None and waiting.due is not None:
                due = min(due, waiting.due)
        retry = pos.retry
        when = retry.due if retry is not None else None
        if retry is None or when is None:
            continue
        if when > now:
            due = min(due, when)
            continue
        orders = pos.orders
        exit_order, sell_order = orders.exit, orders.sell
        if exit_order is not None and exit_order.status is OrderStatus.RETRY_WAIT:
            exit_order = evolve(exit_order, status=OrderStatus.PENDING_NEW)
            out.extend(submit_command(key, pos.symbol, exit_order, now, pos.paper))
        if sell_order is not None and sell_order.status is OrderStatus.RETRY_WAIT:
            sell_order = evolve(sell_order, status=OrderStatus.PENDING_NEW)
            out.extend(submit_command(key, pos.symbol, sell_order, now, pos.paper))
        if exit_order is not None and exit_order.status is OrderStatus.CANCEL_WAIT:
            out.append(CancelOrder(now, exit_order.id, pos.symbol))
            exit_order = evolve(exit_order, status=OrderStatus.PENDING_CANCEL)
        if sell_order is not None and sell_order.status is OrderStatus.CANCEL_WAIT:
            out.append(CancelOrder(now, sell_order.id, pos.symbol))
            sell_order = evolve(sell_order, status=OrderStatus.PENDING_CANCEL)
        resent = evolve(
            pos,
            orders=evolve(orders, exit=exit_order, sell=sell_order),
            retry=evolve(retry, due=None),
        )
        state = state.evolve(positions=state.positions.set(key, resent))
    return Transition(state.evolve(due=due), tuple(out))
