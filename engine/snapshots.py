"""The broker's snapshot (SPEC §4 recovery, §6 existing positions): what the broker holds is
the truth. Answers lost while the link was down are replayed; then, symbol by symbol, the
engine's positions are brought to the broker's share count — shares gone are closed outside
(`closed_outside`), fewer shares shrink the newest lots, shares ratchet does not hold are
adopted and protected (P35: a loss-side stop of the user's, else `default_risk`; milestones
already passed journaled, not sold) — and orders ratchet does not know are adopted when they
are the protection a position wants (P37: a correct order is never replaced) or canceled.
Normal mode resumes once every position matches (P27)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.answers import on_accepted, on_cancel_rejected, on_canceled
from engine.books import store
from engine.commands import Alert, CancelOrder, Command, OrderAction, OrderType, Record
from engine.config import Config
from engine.events import (
    BrokerOrder,
    BrokerSnapshot,
    CancelRefusal,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    Side,
)
from engine.fills import on_fill
from engine.ids import key_of, position_key
from engine.ladder import round_in_favour, schedule, take_profit_price
from engine.link import fire_due, flush
from engine.model import (
    CloseReason,
    Fills,
    Ladder,
    Order,
    OrderRole,
    OrderStatus,
    Position,
)
from engine.protection import climb
from engine.records import conflict, mode_changed
from engine.rejections import on_rejected
from engine.state import EngineState, Transition

__all__ = ["on_snapshot"]

_ZERO = Decimal(0)
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
    """Adopt the broker's account: replay what the engine missed, bring every position to the
    broker's count, adopt or cancel orders ratchet does not know, then resume normal mode
    and send, in order, what was held back (P25-P27, P35-P38)."""
    ts = snap.ts
    out: list[Command] = []
    reported = {o.order_id: o for o in snap.orders}
    # After a dropped link, requests still unanswered were lost with it; a snapshot asked for
    # on a working link leaves requests in flight to their own answers.
    reconnected = not state.link.synced
    # Nothing goes out while the snapshot is applied: what each position needs is worked out
    # from the whole of it, at the end.
    state = state.evolve(link=evolve(state.link, synced=False))

    def apply(event: _Replayed) -> None:
        nonlocal state
        t = _replay(state, event)
        state = t.state
        out.extend(t.commands)

    for order, key in _known_orders(state):
        seen = reported.get(order.id)
        in_flight = order.status in (OrderStatus.PENDING_NEW, OrderStatus.PENDING_CANCEL)
        if in_flight and not reconnected:
            continue  # its answer is on its way
        if seen is None:
            if order.status in (OrderStatus.RETRY_WAIT, OrderStatus.CANCEL_WAIT):
                continue  # not at the broker by design: its retry is due in time
            # The broker never got it (lost with the link), or has no trace of it.
            resolution = (
                "dropped_and_resent" if order.role is not OrderRole.ENTRY else "entry_dropped"
            )
            why = "not in the broker's snapshot of open and changed orders"
            out.append(conflict(ts, key, "order_unknown_to_broker", [order.id], resolution, why))
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
    state = _count_past(state, snap)
    held = {symbol: qty for symbol, qty in snap.positions if qty != 0}
    for symbol in sorted(set(held) | set(state.books)):
        state, records = _match_symbol(state, symbol, held.get(symbol, _ZERO), snap)
        out.extend(records)
    state, records = _strays(state, snap)
    out.extend(records)
    # What could not be adopted (shares without any price to protect them from) keeps the
    # engine in recovery: entries wait for a snapshot that validates every position (P27).
    mismatches = []
    for symbol in sorted(set(held) | set(state.books)):
        ours = sum((p.fills.remaining * p.side.sign for p in state.in_symbol(symbol)), _ZERO)
        if ours != held.get(symbol, _ZERO):
            mismatches.append({"symbol": symbol, "engine": ours, "broker": held.get(symbol)})
    if mismatches:
        out.append(Alert(ts, "position_mismatch", {"positions": mismatches}))
    old = state.link
    link = evolve(old, synced=True, recovering=bool(mismatches), snapshot_asked=None)
    positions = state.positions
    for pos in state.opened_order():
        if pos.reconciling is not None:
            positions = positions.set(pos.key, evolve(pos, reconciling=None))
    state = state.evolve(link=link, positions=positions)
    if old.mode is not link.mode:
        reason = "snapshot reconciled; every position validated"
        out.append(
            mode_changed(old.mode.value, link.mode.value, reason, ts, positions=len(positions))
        )
    # Every position now as the broker holds it: its protection, then what the outage held
    # back, in order (P25), then whatever fell due.
    for pos in state.opened_order():
        if pos.key not in link.waiting:
            state = state.evolve(link=evolve(state.link, waiting=(*state.link.waiting, pos.key)))
    flushed = flush(state, ts)
    fired = fire_due(flushed.state, ts, None)
    return Transition(fired.state, (*out, *flushed.commands, *fired.commands))


def _count_past(state: EngineState, snap: BrokerSnapshot) -> EngineState:
    """Client order ids are never reused: positions adopted now are numbered after every
    `rt-SYMBOL-n-...` the broker has ever seen (a previous run's, a state restored from long
    ago)."""
    counts = state.counts
    for order in snap.orders:
        key = key_of(order.order_id)
        symbol, _, n = key.rpartition("-")
        if symbol and n.isdigit() and int(n) > counts.get(symbol, 0):
            counts = counts.set(symbol, int(n))
    return state if counts is state.counts else state.evolve(counts=counts)


def _known_orders(state: EngineState) -> list[tuple[Order, str]]:
    """Entries in the order they were taken, then positions' orders in opening order."""
    known: list[tuple[Order, str]] = []
    for pending in sorted(state.entries.values(), key=lambda e: (e.ts, e.symbol, e.key)):
        known.append((pending.order, pending.key))
    for pos in state.opened_order():
        for order in (pos.orders.entry, pos.orders.exit, pos.orders.sell):
            if order is not None:
                known.append((order, pos.key))
    return known


def _price(state: EngineState, symbol: str, snap: BrokerSnapshot) -> Decimal | None:
    """The latest price known for `symbol`: a print or fill, else the broker's quote."""
    mine = state.last_price(symbol)
    return mine if mine is not None else dict(snap.marks).get(symbol)


def _match_symbol(
    state: EngineState, symbol: str, theirs: Decimal, snap: BrokerSnapshot
) -> tuple[EngineState, list[Command]]:
    """Bring the engine's lots in `symbol` to the broker's signed count `theirs`."""
    lots = state.in_symbol(symbol)
    ours = sum((p.fills.remaining * p.side.sign for p in lots), _ZERO)
    if ours == theirs:
        return state, []
    ts = snap.ts
    out: list[Command] = []
    price = _price(state, symbol, snap)
    same_side = ours * theirs > 0
    excess = abs(ours) - abs(theirs) if same_side else abs(ours)
    # The lots whose exit orders the broker still works keep their shares (those orders hold
    # them), and so do lots whose exit order is on its way (sent after the snapshot was
    # taken: it will hold them); of the rest, the newest give way first.
    working = {o.order_id for o in snap.orders if o.symbol == symbol and o.status == "open"}
    held = {lot.key for lot in lots if _works(lot, working)}
    newest = lots[::-1]
    for lot in [*(p for p in newest if p.key not in held), *(p for p in newest if p.key in held)]:
        if excess <= 0:
            break
        take = min(lot.fills.remaining, excess)
        excess -= take
        at = price if price is not None else lot.ladder.entry
        shrunk, records = _shrink(lot, take, at, ts)
        out.extend(records)
        state, more = store(state, shrunk, ts)
        out.extend(more)
    left = sum((p.fills.remaining * p.side.sign for p in state.in_symbol(symbol)), _ZERO)
    if theirs != left:
        state, records = _adopt(state, symbol, theirs - left, snap, price)
        out.extend(records)
    return state, out


def _works(lot: Position, working: set[str]) -> bool:
    """The broker works one of the lot's exit-side orders (by the snapshot), or will: one was
    sent and its answer is on its way."""
    orders = lot.orders
    return any(
        o is not None and (o.id in working or o.status is OrderStatus.PENDING_NEW)
        for o in (orders.exit, orders.sell)
    )


def _shrink(
    pos: Position, take: Decimal, price: Decimal, ts: datetime
) -> tuple[Position, list[Command]]:
    """The broker holds `take` fewer shares of this lot: they left outside ratchet (sold by
    hand, a corporate action); booked at the last price known. Its orders that the broker
    still works (or will: sent, its answer on its way) are canceled when nothing is left, else
    re-armed for the rest."""
    fills = pos.fills
    sign = pos.side.sign
    remaining = fills.remaining - take
    pos = evolve(
        pos,
        fills=evolve(
            fills,
            remaining=remaining,
            exited=fills.exited + take,
            exit_value=fills.exit_value + price * take,
            realized=fills.realized + (price - pos.ladder.entry) * take * sign,
            last_qty=take,
            last_price=price,
        ),
        orders=evolve(pos.orders, to_sell=min(pos.orders.to_sell, remaining)),
    )
    # A request waiting for its retry is not at the broker (the snapshot said so): it was
    # for the old count, so it goes, and the next order step asks for the right one.
    orders = pos.orders
    exit_order, sell_order = orders.exit, orders.sell
    if exit_order is not None and exit_order.status is OrderStatus.RETRY_WAIT:
        exit_order = None
    if sell_order is not None and sell_order.status is OrderStatus.RETRY_WAIT:
        sell_order = None
    if (exit_order, sell_order) != (orders.exit, orders.sell):
        pos = evolve(pos, orders=evolve(orders, exit=exit_order, sell=sell_order), retry=None)
    change = "closed_outside" if remaining <= 0 else "shrunk"
    record = Record(
        "position.reconciled",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "change": change, "from": fills.remaining,
         "to": remaining, "price": price},
    )  # fmt: skip
    commands: list[Command] = [record]
    if remaining <= 0:
        pos = evolve(pos, close_reason=CloseReason.CLOSED_OUTSIDE)
        orders = pos.orders
        for order in (orders.exit, orders.sell):
            if order is not None and order.status in _AT_BROKER:
                commands.append(CancelOrder(ts, order.id, pos.symbol))
        pending = OrderStatus.PENDING_CANCEL
        pos = evolve(
            pos,
            orders=evolve(
                orders,
                exit=_pending_or_gone(orders.exit, pending),
                sell=_pending_or_gone(orders.sell, pending),
                to_sell=_ZERO,
                milestones=(),
            ),
        )
    return pos, commands


# Orders the broker works, or will: sent after the snapshot was taken, their answer on its
# way (left alone they would hold shares of the symbol no lot accounts for).
_AT_BROKER = (OrderStatus.LIVE, OrderStatus.PENDING_NEW)


def _pending_or_gone(order: Order | None, pending: OrderStatus) -> Order | None:
    """A working order whose cancel goes out now awaits it; one not at the broker is gone."""
    if order is None or order.status not in _AT_BROKER:
        return None
    return evolve(order, status=pending)


def _adopt(
    state: EngineState,
    symbol: str,
    qty: Decimal,
    snap: BrokerSnapshot,
    price: Decimal | None,
) -> tuple[EngineState, list[Command]]:
    """Shares the broker holds that no position of ratchet's does: a new position, protected
    as SPEC §6 says (P35). `qty` is signed."""
    cfg = state.config
    ts = snap.ts
    side = Side.LONG if qty > 0 else Side.SHORT
    shares = abs(qty)
    entry = dict(snap.prices).get(symbol) or price
    if entry is None or entry <= 0:
        alert = Record(
            "divergence.detected",
            ts,
            {"symbol": symbol, "key": "", "evidence": "held shares without a price",
             "believed": {"qty": _ZERO}, "broker": {"qty": qty}},
        )  # fmt: skip
        return state, [alert]
    theirs = _their_stop(snap, symbol, side, entry, shares)
    if theirs is not None and theirs.stop_price is not None:
        initial, source = theirs.stop_price, "own_stop"
    else:
        away = entry * cfg.default_risk
        initial, source = entry - away * side.sign, "default_risk"
    pcfg = cfg.protection
    initial = round_in_favour(initial, side, pcfg)
    risk = (entry - initial) * side.sign
    count = state.counts.get(symbol, 0) + 1
    key = position_key(symbol, count)
    levels = schedule(entry, risk, side, pcfg) if risk > 0 else ()
    pos = Position(
        key=key,
        symbol=symbol,
        side=side,
        long=side is Side.LONG,
        opened=ts,
        ladder=Ladder(
            entry=entry,
            initial_stop=initial,
            stop=initial,
            schedule=levels,
            trigger=levels[0].price if levels else None,
            take_profit=take_profit_price(entry, risk, side, pcfg) if risk > 0 else None,
        ),
        fills=Fills(original=shares, remaining=shares, cost=entry * shares),
        exposed_since=ts,
    )
    out: list[Command] = []
    now = price if price is not None else entry
    if levels:
        pos, passed = climb(pos, now, ts, pcfg, sell=False)
        out.extend(passed)
    adopted_order: str | None = None
    if theirs is not None:
        # (`store` routes the order taken over to the position, as it does every working order)
        pos, adopted_order, records = _take_over(pos, theirs, cfg, ts)
        out.extend(records)
    r = pos.r_at(now)
    record = Record(
        "position.adopted",
        ts,
        {"symbol": symbol, "key": key, "side": side.value, "qty": shares, "entry": entry,
         "initial_stop": initial, "stop_source": source, "stop": pos.ladder.stop, "r": r,
         "protection": pos.ladder.protection.value, "order_adopted": adopted_order},
    )  # fmt: skip
    state = state.evolve(counts=state.counts.set(symbol, count))
    state, more = store(state, pos, ts)
    return state, [record, *out, *more]


def _their_stop(
    snap: BrokerSnapshot, symbol: str, side: Side, entry: Decimal, shares: Decimal
) -> BrokerOrder | None:
    """The tightest stop on the loss side that covers the shares: the owner's, or one of
    ratchet's that the engine no longer accounts for (a state restored from long ago)."""
    exit_side = OrderAction.SELL if side is Side.LONG else OrderAction.BUY
    found: BrokerOrder | None = None
    for order in snap.orders:
        if (
            order.symbol != symbol
            or order.status != "open"
            or order.side is not exit_side
            or order.stop_price is None
            or order.qty - order.filled_qty < shares
        ):
            continue
        stop = order.stop_price
        if (stop - entry) * side.sign >= 0:
            continue  # on the profit side: not a stop loss
        if found is None or found.stop_price is None or (stop - found.stop_price) * side.sign > 0:
            found = order
    return found


def _take_over(
    pos: Position, theirs: BrokerOrder, cfg: Config, ts: datetime
) -> tuple[Position, str, list[Command]]:
    """The user's stop protects the adopted shares: it becomes the position's protective
    order, working (a correct order is never canceled, P37). When it is not what the ladder
    wants, the next order step replaces it (`foreign_orders = "cancel"`), or, left alone
    (`"leave"`), it freezes the ladder and the operator is told the position cannot be
    protected as configured."""
    stop = theirs.stop_price
    assert stop is not None
    order = Order(
        id=theirs.order_id,
        role=OrderRole.PROTECT,
        action=_exit_side(pos.side),  # the side `_their_stop` matched
        type=theirs.type or OrderType.STOP,
        qty=theirs.qty - theirs.filled_qty,
        stop_price=stop,
        limit_price=theirs.limit_price,
        status=OrderStatus.LIVE,
    )
    # `_their_stop` takes only a stop whose open quantity covers every share: no share of the
    # position is left without it.
    assert order.open_qty >= pos.fills.remaining
    pos = evolve(pos, orders=evolve(pos.orders, exit=order, restore=order), exposed_since=None)
    if cfg.foreign_orders == "leave":
        record = conflict(
            ts, pos.key, "foreign_order", [order.id], "left_alone",
            "[adopt] foreign_orders = leave: the user's stop stays; the ladder is frozen",
        )  # fmt: skip
        pos = evolve(pos, halted=True, ladder=evolve(pos.ladder, trigger=None))
        return pos, order.id, [record]
    return pos, order.id, []


def _strays(state: EngineState, snap: BrokerSnapshot) -> tuple[EngineState, list[Command]]:
    """Orders the broker works that ratchet does not account for: ratchet's own (an old
    state restored) are canceled unless they are exactly a position's protection; the user's
    that hold shares of a position ratchet protects are canceled (`foreign_orders =
    "cancel"`) or reported."""
    out: list[Command] = []
    ts = snap.ts
    accounted = set(state.routes.keys())
    for order in sorted(snap.orders, key=lambda o: o.order_id):
        if order.status != "open" or order.order_id in accounted:
            continue
        lots = state.in_symbol(order.symbol)
        pos = next(iter(lots), None)
        ours = order.order_id.startswith("rt-")
        # A sale of ratchet's refused as a potential wash trade: the user's orders on the
        # other side of the symbol stand in its way.
        blocked = next((p for p in lots if p.wash_blocked is not None), None)
        in_the_way = not ours and blocked is not None and order.side is not _exit_side(blocked.side)
        if in_the_way:
            pos = blocked
        elif not ours and (pos is None or order.side is not _exit_side(pos.side)):
            continue  # the user's own business: nothing of ratchet's depends on it
        if not ours and state.config.foreign_orders == "leave":
            continue
        key = key_of(order.order_id) or (pos.key if pos is not None else order.symbol)
        kind = "stray_order" if ours else "foreign_order"
        why = (
            "ratchet's order the engine does not account for"
            if ours
            else "the user's order stands in the way of ratchet's sale (potential wash trade)"
            if in_the_way
            else "the user's order holds shares ratchet protects"
        )
        out.append(conflict(ts, key, kind, [order.order_id], "canceled", why))
        out.append(CancelOrder(ts, order.order_id, order.symbol))
    # The snapshot has named whatever stood in the way: the refused sales are sent again on
    # their retry schedule.
    positions = state.positions
    for lot in state.opened_order():
        if lot.wash_blocked is not None:
            positions = positions.set(lot.key, evolve(lot, wash_blocked=None))
    return state.evolve(positions=positions), out


def _exit_side(side: Side) -> OrderAction:
    return OrderAction.SELL if side is Side.LONG else OrderAction.BUY
