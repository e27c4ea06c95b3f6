"""The broker link (SPEC §4): the offline queue, the circuit breaker over failed requests, and
the snapshot that reconciles the engine with the broker after a reconnect (P25-P27)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.answers import on_accepted, on_cancel_rejected, on_canceled, on_rejected
from engine.books import store
from engine.commands import Alert, Command
from engine.events import (
    BrokerSnapshot,
    CancelRefusal,
    CancelRejected,
    Connectivity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from engine.fills import on_fill
from engine.model import Order, OrderRole, OrderStatus
from engine.orders import reconcile
from engine.records import (
    breaker_closed,
    breaker_half_open,
    breaker_opened,
    conflict,
    mode_changed,
)
from engine.retries import fire
from engine.state import BreakerState, EngineState, Link, Transition

__all__ = ["failed", "fire_due", "flush", "on_connectivity", "on_snapshot", "succeeded"]

_ZERO = Decimal(0)


def failed(t: Transition, ts: datetime) -> Transition:
    """A request failed for a passing reason: count it; the fifth in a row (or any failure of
    the half-open trial) opens the breaker, holding every order step for the cooldown."""
    state = t.state
    link = state.link
    cfg = state.config
    failures = link.failures + 1
    if link.breaker is BreakerState.OPEN or (
        failures < cfg.breaker_failures and link.breaker is BreakerState.CLOSED
    ):
        return Transition(state.evolve(link=evolve(link, failures=failures)), t.commands)
    reopen_at = ts + cfg.breaker_cooldown
    link = evolve(link, failures=failures, breaker=BreakerState.OPEN, reopen_at=reopen_at)
    record = breaker_opened(ts, {"breaker": "orders", "failures": failures, "reopen_at": reopen_at})
    alert = Alert(ts, "order_breaker_open", {"failures": failures, "reopen_at": reopen_at})
    state = state.evolve(link=link, due=min(state.due, reopen_at))
    return Transition(state, (*t.commands, record, alert))


def succeeded(t: Transition, ts: datetime) -> Transition:
    """The broker answered a request: the failure run ends; a half-open breaker closes."""
    link = t.state.link
    if link.failures == 0 and link.breaker is BreakerState.CLOSED:
        return t
    if link.breaker is not BreakerState.HALF_OPEN:
        return Transition(t.state.evolve(link=evolve(link, failures=0)), t.commands)
    state = t.state.evolve(link=evolve(link, failures=0, breaker=BreakerState.CLOSED))
    flushed = flush(state, ts)
    record = breaker_closed(ts, {"breaker": "orders"})
    return Transition(flushed.state, (*t.commands, record, *flushed.commands))


def fire_due(state: EngineState, now: datetime, scope: str | None) -> Transition:
    """What falls due at `now`: an open breaker whose cooldown is over turns half-open and
    lets the held steps through; then every due retry and answer deadline fires."""
    link = state.link
    if link.breaker is BreakerState.OPEN and link.reopen_at is not None and now >= link.reopen_at:
        record = breaker_half_open(now)
        state = state.evolve(link=evolve(link, breaker=BreakerState.HALF_OPEN, reopen_at=None))
        t = flush(state, now)
        fired = fire(t.state, now, None)
        return Transition(fired.state, (record, *t.commands, *fired.commands))
    return fire(state, now, scope)


def flush(state: EngineState, ts: datetime) -> Transition:
    """Work out and send, in the order their need arose, the order steps held while nothing
    could be sent (P25): one per position, from its latest wishes."""
    link = state.link
    if not (link.up and link.synced) or not link.waiting:
        return Transition(state)
    out: list[Command] = []
    held: list[str] = []  # optional work the open breaker still holds
    state = state.evolve(link=evolve(link, waiting=()))
    for key in link.waiting:
        pos = state.positions.get(key)
        if pos is None:
            continue
        if not link.open_for(pos):
            held.append(key)
            continue
        pos, sent = reconcile(pos, state.last_price(pos.symbol), ts)
        out.extend(sent)
        state, more = store(state, pos, ts)
        out.extend(more)
    if held:
        link = state.link
        state = state.evolve(link=evolve(link, waiting=(*held, *link.waiting)))
    return Transition(state, tuple(out))


def _mode_changed(old: Link, new: Link, ts: datetime, reason: str) -> list[Command]:
    if old.mode is new.mode:
        return []
    return [mode_changed(old.mode.value, new.mode.value, reason, ts)]


def on_connectivity(state: EngineState, event: Connectivity) -> Transition:
    """Down: hold every order step. Up: recovery (entries refused until a snapshot is
    reconciled); the held steps wait for the broker's snapshot, which tells what the outage
    hid (fills, orders that never arrived), and go out, in order, as soon as it is applied."""
    old = state.link
    if event.up == old.up:
        return Transition(state)
    if not event.up:
        link = evolve(old, up=False, synced=False)
        records = _mode_changed(old, link, event.ts, "broker connection lost")
        return Transition(state.evolve(link=link), tuple(records))
    link = evolve(old, up=True, recovering=True)
    records = _mode_changed(old, link, event.ts, "broker connection restored")
    return Transition(state.evolve(link=link), tuple(records))


_Replayed = OrderFilled | OrderAccepted | OrderCanceled | CancelRejected | OrderRejected


def _replay(state: EngineState, event: _Replayed) -> Transition:
    """An answer the outage hid, as if it had come in time. Replayed answers are facts read
    from the snapshot, not requests that failed or got through now: the breaker does not
    count them."""
    match event:
        case OrderFilled():
            return on_fill(state, event)
        case OrderAccepted():
            return on_accepted(state, event)
        case OrderCanceled():
            return on_canceled(state, event)
        case CancelRejected():
            return on_cancel_rejected(state, event)
        case OrderRejected():
            return on_rejected(state, event)


def on_snapshot(state: EngineState, snap: BrokerSnapshot) -> Transition:
    """Reconcile the broker's account with the engine's: answers that were lost while the
    link was down are replayed (fills, acceptances, cancels), orders the broker never got are
    sent again as new ones, and then every position is validated against the broker's share
    count. Normal mode resumes only when all match (P27)."""
    ts = snap.ts
    out: list[Command] = []
    reported = {o.order_id: o for o in snap.orders}

    def apply(event: _Replayed) -> None:
        nonlocal state
        t = _replay(state, event)
        state = t.state
        out.extend(t.commands)

    # Entries in the order they were taken, then positions in the order they were opened.
    known: list[tuple[Order, str]] = []
    for pending in sorted(state.entries.values(), key=lambda e: (e.ts, e.symbol, e.key)):
        known.append((pending.order, pending.key))
    for pos in state.opened_order():
        for order in (pos.orders.entry, pos.orders.exit, pos.orders.sell):
            if order is not None:
                known.append((order, pos.key))
    for order, key in known:
        seen = reported.get(order.id)
        if seen is None:
            if order.status in (OrderStatus.RETRY_WAIT, OrderStatus.CANCEL_WAIT):
                continue  # not at the broker by design: its retry is due in time
            # The broker never got it (lost with the link), or has no trace of it.
            resolution = (
                "dropped_and_resent" if order.role is not OrderRole.ENTRY else "entry_dropped"
            )
            out.append(
                conflict(
                    ts,
                    key,
                    "order_unknown_to_broker",
                    [order.id],
                    resolution,
                    "not in the broker's snapshot of open and changed orders",
                )
            )
            apply(OrderCanceled(ts, order.id))
            continue
        missed = seen.filled_qty - order.filled
        if missed > 0:
            price = seen.filled_avg_price if seen.filled_avg_price is not None else _ZERO
            apply(OrderFilled(ts, order.id, missed, price, at=seen.updated_at))
        if seen.status == "open" and order.status in (
            OrderStatus.PENDING_NEW,
            OrderStatus.RETRY_WAIT,  # its answer was lost, but it got there
        ):
            apply(OrderAccepted(ts, order.id))
        elif seen.status == "open" and order.status is OrderStatus.PENDING_CANCEL:
            reason = "cancel lost with the connection"
            apply(CancelRejected(ts, order.id, reason, CancelRefusal.TRANSIENT))
        elif seen.status == "canceled" and seen.filled_qty < order.qty:
            apply(OrderCanceled(ts, order.id, at=seen.updated_at))
        elif seen.status == "rejected":
            apply(OrderRejected(ts, order.id, "rejected while offline"))
    broker = {symbol: qty for symbol, qty in snap.positions if qty != 0}
    mismatches = []
    for symbol in sorted(set(broker) | set(state.books)):
        ours = sum((p.fills.remaining * p.side.sign for p in state.in_symbol(symbol)), _ZERO)
        theirs = broker.get(symbol, _ZERO)
        if ours != theirs:
            mismatches.append({"symbol": symbol, "engine": ours, "broker": theirs})
    old = state.link
    link = evolve(old, synced=True)
    if mismatches:
        out.append(Alert(ts, "position_mismatch", {"positions": mismatches}))
    else:
        link = evolve(link, recovering=False)
        if old.mode is not link.mode:
            reason = "snapshot reconciled; every position validated"
            out.append(
                mode_changed(
                    old.mode.value, link.mode.value, reason, ts, positions=len(state.positions)
                )
            )
    # What the outage held back goes out now, in order, from what the snapshot told (P25).
    flushed = flush(state.evolve(link=link), ts)
    fired = fire_due(flushed.state, ts, None)
    return Transition(fired.state, (*out, *flushed.commands, *fired.commands))
