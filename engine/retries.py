"""The retry schedule (SPEC §4, P12, P24): a request refused for a passing reason is sent again
after 0.5 s, 1 s and 2 s (due times kept in state, fired by later events); answer deadlines
that fell due fire here too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from attrs import evolve

from engine.books import store
from engine.budget import gate, next_step, spare
from engine.commands import CancelOrder, Command
from engine.deadlines import arm, next_due, protect_due, timed_out, unprotected
from engine.divergence import ASK_AGAIN
from engine.entries import resting_exits
from engine.events import CancelRejected, OrderRefusal, OrderRejected
from engine.model import OrderStatus, PendingEntry, Position, Retry, Slot
from engine.orders import submit_command
from engine.records import order_retry
from engine.state import EngineState, Transition

__all__ = [
    "attempts",
    "book_retry",
    "fire",
    "reset_attempts",
    "retry_entry",
    "schedule_retry",
]

_FAR = datetime(9999, 12, 31, tzinfo=UTC)


def book_retry(
    pos: Position, ack: OrderRejected | CancelRejected, delay: timedelta, command: str
) -> tuple[Position, Command]:
    """Count one more attempt, set when it is due, and say so in `order.retry`."""
    due = ack.ts + delay
    retry = pos.retry
    attempts = (retry.attempts if retry is not None else 0) + 1
    failures = (*(retry.failures if retry is not None else ()), ack.reason)
    # Once an answer was lost the order may be at the broker, whatever later resends hear.
    uncertain = (retry is not None and retry.uncertain) or (
        isinstance(ack, OrderRejected) and ack.kind is OrderRefusal.UNKNOWN
    )
    pos = evolve(pos, retry=Retry(attempts, due, failures, uncertain))
    record = order_retry(
        pos.symbol, pos.key, ack.order_id, attempts, delay, due, ack.reason, command, ack.ts
    )
    return pos, record


def retry_entry(state: EngineState, pending: PendingEntry, ack: OrderRejected) -> Transition | None:
    """An entry's order refused for a passing reason: send it again after the backoff (the
    same client id: if the first send landed, the broker says so), or None when spent."""
    delays = state.config.retry_delays
    used = pending.retry.attempts if pending.retry is not None else 0
    if used >= len(delays):
        return None
    delay = delays[used]
    due = ack.ts + delay
    failures = (*(pending.retry.failures if pending.retry is not None else ()), ack.reason)
    uncertain = (pending.retry is not None and pending.retry.uncertain) or (
        ack.kind is OrderRefusal.UNKNOWN
    )
    waiting = evolve(
        pending,
        order=evolve(pending.order, status=OrderStatus.RETRY_WAIT),
        retry=Retry(used + 1, due, failures, uncertain),
    )
    record = order_retry(
        pending.symbol, pending.key, ack.order_id, used + 1, delay, due, ack.reason, "submit",
        ack.ts,
    )  # fmt: skip
    state = state.evolve(entries=state.entries.set(pending.key, waiting), due=min(state.due, due))
    return Transition(state, (record,))


def attempts(pos: Position) -> int:
    """Retries used by the order step in progress."""
    return pos.retry.attempts if pos.retry is not None else 0


def reset_attempts(pos: Position) -> Position:
    """The order step got through: its attempts start again from zero (a resend still due
    stays due), and so does the count of its coalesced alerts."""
    if pos.alerted:
        pos = evolve(pos, alerted=())
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
    """Send again every request whose retry is due, fire every deadline that fell due, and
    work out when the next one is due. Positions act in the order they were opened.

    Deadlines (answers, protection) fire on a clock event or an event of the position's own
    symbol (`scope` None means any symbol), so updates to different symbols still commute
    (P30). Resends reuse the order's client id, already part of the operation in flight. An
    open breaker holds only positions whose every share is covered (SPEC §4)."""
    link = state.link
    if not (link.up and link.synced):
        return Transition(state)  # held until the link is back; `due` stays
    out: list[Command] = []
    due = _FAR if link.reopen_at is None else link.reopen_at
    if link.snapshot_asked is not None:
        due = min(due, link.snapshot_asked + ASK_AGAIN)
    cfg = state.config
    for current in state.opened_order():
        key = current.key
        pos = current
        if not link.open_for(pos):
            when = next_due(pos, cfg)
            if when is not None:
                due = min(due, when)
            continue
        in_scope = scope is None or scope == pos.symbol
        # A position whose broker snapshot is awaited sends nothing, and one past its request
        # budget waits until `held_until` (its due times stay); bare shares past their
        # deadline are sold whatever the budget.
        quiet = pos.reconciling is not None or (pos.held_until is not None and pos.held_until > now)
        acted = pos.held_until is not None and not quiet
        if acted:
            pos = evolve(pos, held_until=None)  # its held step is taken again below
        waiting = pos.awaited
        if (
            waiting is not None
            and waiting.due is not None
            and waiting.due <= now
            and in_scope
            and not quiet
        ):
            pos, commands = gate(state, pos, *timed_out(pos, now, cfg), now)
            out.extend(commands)
            acted = True
        bare_until = protect_due(pos, cfg)
        force = False
        if bare_until is not None and bare_until <= now and in_scope and pos.reconciling is None:
            pos, commands = unprotected(pos, now, cfg, spare(state, pos))
            out.extend(commands)
            acted = force = True
        if acted:
            # What the deadline calls for next (an overdue sale's stop for the shares it
            # does not sell; a sale of bare shares), then back into the books.
            pos, sent = next_step(state, pos, state.last_price(pos.symbol), now, force)
            out.extend(sent)
            state, more = store(state, pos, now)
            out.extend(more)
            pos = state.positions.get(key, pos)
        retry = pos.retry
        quiet = pos.reconciling is not None or (pos.held_until is not None and pos.held_until > now)
        if retry is not None and retry.due is not None and retry.due <= now and not quiet:
            resent, commands = _resend(pos, now)
            pos, commands = gate(state, pos, arm(resent, now, cfg), commands, now)
            out.extend(commands)
        if key in state.positions:
            state = state.evolve(positions=state.positions.set(key, pos))
            when = next_due(pos, cfg)
            if when is not None:
                due = min(due, when)
    for pending in sorted(state.entries.values(), key=lambda e: (e.ts, e.symbol, e.key)):
        retry = pending.retry
        if retry is None or retry.due is None:
            continue
        if retry.due > now or not link.sending:  # an entry is never protection: it waits
            due = min(due, retry.due)
            continue
        if _waits_for_exits(state, pending):
            later = evolve(pending, retry=evolve(retry, due=now + cfg.retry_delays[0]))
            state = state.evolve(entries=state.entries.set(pending.key, later))
            due = min(due, now + cfg.retry_delays[0])
            continue
        order = evolve(pending.order, status=OrderStatus.PENDING_NEW)
        out.extend(submit_command(pending.key, pending.symbol, order, now, pending.paper))
        again = evolve(pending, order=order, retry=evolve(retry, due=None))
        state = state.evolve(entries=state.entries.set(pending.key, again))
    return Transition(state.evolve(due=due), tuple(out))


def _waits_for_exits(state: EngineState, pending: PendingEntry) -> bool:
    """`[entries] wash_trade = "wait"`: the entry stays unsent while an exit of its symbol
    rests at the broker (it could trade against it: a potential wash trade)."""
    return state.config.wash_trade == "wait" and bool(resting_exits(state, pending.symbol)[1])


def _resend(pos: Position, now: datetime) -> tuple[Position, list[Command]]:
    """Send again the position's requests that waited for their retry."""
    out: list[Command] = []
    orders = pos.orders
    exit_order, sell_order = orders.exit, orders.sell
    if exit_order is not None and exit_order.status is OrderStatus.RETRY_WAIT:
        exit_order = evolve(exit_order, status=OrderStatus.PENDING_NEW)
        out.extend(submit_command(pos.key, pos.symbol, exit_order, now, pos.paper))
    if sell_order is not None and sell_order.status is OrderStatus.RETRY_WAIT:
        sell_order = evolve(sell_order, status=OrderStatus.PENDING_NEW)
        out.extend(submit_command(pos.key, pos.symbol, sell_order, now, pos.paper))
    if exit_order is not None and exit_order.status is OrderStatus.CANCEL_WAIT:
        out.append(CancelOrder(now, exit_order.id, pos.symbol))
        exit_order = evolve(exit_order, status=OrderStatus.PENDING_CANCEL)
    if sell_order is not None and sell_order.status is OrderStatus.CANCEL_WAIT:
        out.append(CancelOrder(now, sell_order.id, pos.symbol))
        sell_order = evolve(sell_order, status=OrderStatus.PENDING_CANCEL)
    retry = pos.retry
    assert retry is not None
    resent = evolve(
        pos,
        orders=evolve(orders, exit=exit_order, sell=sell_order),
        retry=evolve(retry, due=None),
    )
    return resent, out
