"""The engine: `step(state, event)` returns the next state and every command the event calls for."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple, assert_never

from attrs import evolve, frozen
from returns.result import Failure, Result, Success

from engine.calendar import session_of
from engine.commands import (
    Alert,
    CancelOrder,
    Command,
    OrderAction,
    OrderType,
    Record,
    SubmitOrder,
)
from engine.config import Config, ProtectionConfig
from engine.events import (
    BreakerAck,
    BrokerSnapshot,
    CancelRejected,
    Clock,
    Connectivity,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    PhaseAdvance,
    PhaseOverride,
    Side,
    Tick,
)
from engine.goal import check_goal, roll_session
from engine.ids import entry_order_id, key_of, position_key
from engine.ladder import floor_to_lot, round_in_favour, schedule, take_profit_price, tranche_sizes
from engine.model import (
    Book,
    EngineState,
    Link,
    Order,
    OrderRole,
    OrderStatus,
    PendingEntry,
    Position,
    Protection,
)
from engine.orders import (
    cancel,
    exit_unprotectable,
    is_better_stop,
    order_record,
    reconcile,
    roll_back,
    submit,
)
from engine.phase import (
    PHASE_ORDER,
    Phase,
    PhaseState,
    TradeMark,
    after_trade,
    evaluate_gate,
    on_session_end,
    position_qty,
    size_for,
    stepped_size,
)

__all__ = ["Refusal", "Transition", "fold", "step"]

_ZERO = Decimal(0)
_NO_COMMANDS: tuple[Command, ...] = ()
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
# NamedTuple construction without its Python-level __new__ frame (the per-tick fast path).
_tuple_new = tuple.__new__


class Transition(NamedTuple):
    """The next state and the commands, in order, that the event called for (a NamedTuple:
    one is built per event, and `state, commands = step(...)` reads well)."""

    state: EngineState
    commands: tuple[Command, ...] = ()


@frozen
class Refusal:
    """Why an entry was not taken."""

    reason: str
    detail: str = ""


def step(state: EngineState, event: Event) -> Transition:
    """Apply one event; return the next state and every command it calls for."""
    if type(event) is Tick:
        # The hot path, inlined: a tick inside its symbol's band, within the session, only
        # records the mark.
        book = state.books.get(event.symbol)
        daily = state.daily
        reset_at = daily.reset_at
        if (
            (book is None or (book.lo < event.price < book.hi and not book.tracked))
            and reset_at is not None
            and event.ts < reset_at
            and event.ts < state.due
        ):
            marks = state.marks.set(event.symbol, event)
            config, positions, books, _, entries, counts, routes, _, phase, stale, due, link = state
            fields = (
                config, positions, books, marks, entries, counts, routes, daily, phase, stale,
                due, link,
            )  # fmt: skip
            new = _tuple_new(EngineState, fields)
            return _tuple_new(Transition, (new, _NO_COMMANDS))
    reset_at = state.daily.reset_at
    if reset_at is None or event.ts >= reset_at:
        return _new_session(state, event)
    if event.ts >= state.due:
        # What the event says first (a fill may make a due retry moot), then what is due.
        t = _apply(state, event)
        fired = _fire_retries(t.state, event.ts, _symbol_of(state, event))
        return Transition(fired.state, (*t.commands, *fired.commands))
    return _apply(state, event)


def _apply(state: EngineState, event: Event) -> Transition:
    before = state.daily.triggered
    t = _dispatch(state, event)
    if t.state.daily.triggered and not before and state.config.goal.on_trigger == "flatten":
        return _flatten(t, event.ts)
    return t


def _dispatch(state: EngineState, event: Event) -> Transition:
    match event:
        case Tick():
            return _on_tick(state, event)
        case EntryIntent():
            return _on_entry(state, event)
        case OrderFilled():
            return _on_fill(state, event)
        case OrderAccepted():
            return _succeeded(_on_accepted(state, event), event.ts)
        case OrderCanceled():
            return _succeeded(_on_canceled(state, event), event.ts)
        case OrderRejected():
            t = _on_rejected(state, event)
            # Held shares are an answer about sequencing, not a failing broker: not counted.
            counted = event.kind != "shares_locked" and _retryable(state, event)
            return _failed(t, event.ts) if counted else t
        case CancelRejected():
            t = _on_cancel_rejected(state, event)
            return _failed(t, event.ts) if event.kind == "transient" else t
        case Connectivity():
            return _on_connectivity(state, event)
        case BrokerSnapshot():
            return _on_snapshot(state, event)
        case Clock():
            return _on_clock(state, event)
        case PhaseAdvance():
            return _on_phase_advance(state, event)
        case PhaseOverride():
            return _on_phase_override(state, event)
        case BreakerAck():
            return _on_breaker_ack(state, event)
        case _:
            assert_never(event)


def fold(state: EngineState, events: Iterable[Event]) -> tuple[EngineState, list[Command]]:
    """Step through `events` in order; return the last state and all commands."""
    commands: list[Command] = []
    for event in events:
        t = step(state, event)
        state = t.state
        commands.extend(t.commands)
    return state, commands


# --- ticks -------------------------------------------------------------------------------


def _on_tick(state: EngineState, tick: Tick) -> Transition:
    symbol = tick.symbol
    marks = state.marks.set(symbol, tick)
    book = state.books.get(symbol)
    price = tick.price
    if book is None:
        return Transition(state.with_marks(marks))
    state = state.with_marks(marks)
    out: list[Command] = []
    if book.tracked:
        # The day's P&L follows every print of a symbol with open positions (SPEC §7).
        u = price * book.q - book.c
        daily = evolve(state.daily, unrealized=state.daily.unrealized + u - book.u)
        daily, records = check_goal(daily, state.config.goal, tick.ts)
        out.extend(records)
        books = state.books.set(symbol, evolve(book, u=u))
        state = state.replace(books=books, daily=daily)
    cfg = state.config.protection
    for key in book.keys:
        pos = state.positions[key]
        trigger = pos.trigger
        if trigger is None or (price < trigger if pos.long else price > trigger):
            continue
        pos = _climb(pos, price, tick.ts, cfg, out)
        if state.link.sending:
            pos = reconcile(pos, price, tick.ts, out)
        state = _store(state, pos, tick.ts, out)
    return Transition(state, tuple(out))


def _climb(
    pos: Position, price: Decimal, ts: datetime, cfg: ProtectionConfig, out: list[Command]
) -> Position:
    """Pass every schedule level `price` reaches, in order, with each level's actions."""
    long = pos.long
    r = pos.r_at(price)
    levels = pos.schedule
    i = pos.next_level
    stop, protection, lock_r, gap_r = pos.stop, pos.protection, pos.lock_r, pos.gap_r
    to_sell = pos.to_sell
    milestones = list(pos.milestones)
    sizes = tranche_sizes(pos.original_qty, cfg)
    last = len(cfg.partials) - 1
    in_flight = pos.sell_order.open_qty if pos.sell_order is not None else _ZERO
    while i < len(levels) and (price >= levels[i].price if long else price <= levels[i].price):
        level = levels[i]
        reason = f"reached {level.r}R"
        if level.protection is not None:
            out.append(_state_record(pos, protection, level.protection, reason, r, ts))
            protection = level.protection
        if level.stop is not None and level.lock_r is not None:
            lock_r, gap_r = level.lock_r, level.r - level.lock_r
            if is_better_stop(level.stop, stop, long):
                out.append(_stop_moved(pos, stop, level.stop, r, f"{reason}: lock {lock_r}R", ts))
                stop = level.stop
        if level.tranche is not None:
            available = pos.remaining_qty - to_sell - in_flight
            if level.tranche == last and cfg.sells_everything:
                qty = available  # P7: the last tranche takes the rest.
            else:
                qty = min(sizes[level.tranche], available)
            if qty > 0:
                out.append(
                    Record(
                        "partial.ordered",
                        ts,
                        {
                            "symbol": pos.symbol,
                            "key": pos.key,
                            "milestone": level.r,
                            "tranche": level.tranche + 1,
                            "qty": qty,
                            "r": r,
                        },
                    )
                )
                to_sell += qty
                milestones.append((level.r, qty))
        i += 1
    if cfg.trail and gap_r is not None:
        trailed = round_in_favour(price - gap_r * pos.risk * pos.side.sign, pos.side, cfg)
        if is_better_stop(trailed, stop, long):
            out.append(_stop_moved(pos, stop, trailed, r, f"trail {gap_r}R below best", ts))
            stop = trailed
    trigger = levels[i].price if i < len(levels) else None
    if cfg.trail and gap_r is not None:
        # The trailed stop next rises when price passes stop + gap.
        trail_at = stop + gap_r * pos.risk * pos.side.sign
        if trigger is None or (trail_at < trigger if long else trail_at > trigger):
            trigger = trail_at
    return evolve(
        pos,
        stop=stop,
        protection=protection,
        lock_r=lock_r,
        gap_r=gap_r,
        next_level=i,
        trigger=trigger,
        to_sell=to_sell,
        milestones=tuple(milestones),
    )


def _state_record(
    pos: Position, old: Protection, new: Protection, reason: str, r: Decimal, ts: datetime
) -> Record:
    """The `position.state` record of one transition."""
    return Record(
        "position.state",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "old": old.value, "new": new.value,
         "reason": reason, "r": r},
    )  # fmt: skip


def _stop_moved(
    pos: Position, old: Decimal, new: Decimal, r: Decimal, reason: str, ts: datetime
) -> Record:
    return Record(
        "stop.moved",
        ts,
        {"symbol": pos.symbol, "key": pos.key, "old": old, "new": new, "r": r, "reason": reason},
    )


# --- entries -----------------------------------------------------------------------------


def validate_entry(state: EngineState, intent: EntryIntent) -> Result[Decimal, Refusal]:
    """Check an entry intent; the quantity to buy on success, the reason on failure."""
    cfg = state.config.protection
    symbol = intent.symbol
    if not symbol:
        return Failure(Refusal("invalid_symbol", "symbol is empty"))
    # The broker nets a symbol: lots in one symbol must all be on one side.
    sides = {p.side for p in state.in_symbol(symbol)}
    sides |= {e.side for e in state.entries.values() if e.symbol == symbol}
    if sides - {intent.side}:
        return Failure(
            Refusal("opposite_side_open", f"{symbol} has open {sides.pop().value} positions")
        )
    # The link first: nothing is entered that could not be protected at once (P26).
    link = state.link
    if not link.up:
        return Failure(Refusal("broker_offline", "the broker connection is down"))
    if link.recovering:
        return Failure(
            Refusal("recovery_mode", "reconnected; waiting for a reconciled broker snapshot")
        )
    if link.breaker == "open":
        return Failure(
            Refusal(
                "order_breaker_open", f"order requests keep failing; retry after {link.reopen_at}"
            )
        )
    # The gate, in order: breaker, daily goal, open-position cap, inputs, trade limit, size.
    phases = state.config.phase
    if phases.enabled and state.phase.breaker_open:
        return Failure(
            Refusal("phase_breaker", "downgraded; an operator must acknowledge the breaker")
        )
    if state.daily.triggered:
        return Failure(
            Refusal(
                "daily_profit_protection",
                f"the day gave back {state.config.goal.giveback:%} of its peak "
                f"{state.daily.peak}; entries resume next session",
            )
        )
    cap = state.config.max_open
    if cap and len(state.positions) + len(state.entries) >= cap:
        return Failure(Refusal("max_open_positions", f"{cap} positions are open or pending"))
    if intent.qty is None and not phases.enabled:
        return Failure(Refusal("no_quantity", "the entry has no qty and no phase sizes it"))
    qty = intent.qty if intent.qty is not None else Decimal(1)
    if not qty.is_finite() or qty <= 0:
        return Failure(Refusal("invalid_qty", f"qty must be > 0, got {qty}"))
    if floor_to_lot(qty, cfg.lot_step) != qty:
        return Failure(Refusal("invalid_qty", f"qty {qty} is not a multiple of {cfg.lot_step}"))
    if not intent.stop.is_finite() or intent.stop <= 0:
        return Failure(Refusal("invalid_stop", f"stop must be > 0, got {intent.stop}"))
    mark = state.marks.get(symbol)
    reference = intent.entry if intent.entry is not None else (mark.price if mark else None)
    if reference is None:
        return Failure(Refusal("no_price", f"no price seen for {symbol} and no entry price"))
    if not reference.is_finite() or reference <= 0:
        return Failure(Refusal("invalid_entry", f"entry must be > 0, got {reference}"))
    if (reference - intent.stop) * intent.side.sign <= 0:
        return Failure(
            Refusal(
                "initial_risk_not_positive",
                f"stop {intent.stop} is not on the loss side of {reference}",
            )
        )
    if phases.enabled:
        per_session = phases.trade_limits.get(state.phase.phase)
        if per_session is not None and state.daily.trades >= per_session:
            when = state.daily.reset_at
            return Failure(
                Refusal(
                    "phase_trade_limit",
                    f"{state.phase.phase.value} allows {per_session} trade(s) per session; next "
                    f"trade allowed at {when.isoformat() if when else 'the next session'}",
                )
            )
        sized = position_qty(state.phase.size, reference, cfg.lot_step)
        if sized <= 0:
            return Failure(
                Refusal(
                    "phase_size", f"${state.phase.size} buys no {cfg.lot_step} lot at {reference}"
                )
            )
        qty = sized if intent.qty is None else min(intent.qty, sized)
    return Success(qty)


def _on_entry(state: EngineState, intent: EntryIntent) -> Transition:
    ts = intent.ts
    match validate_entry(state, intent):
        case Failure(refusal):
            record = Record(
                "entry.blocked",
                ts,
                {"symbol": intent.symbol, "reason": refusal.reason, "detail": refusal.detail},
            )
            return Transition(state, (record,))
        case Success(qty):
            pass
    symbol = intent.symbol
    count = state.counts.get(symbol, 0) + 1
    key = position_key(symbol, count)
    action = OrderAction.BUY if intent.side is Side.LONG else OrderAction.SELL
    kind = OrderType.MARKET if intent.entry is None else OrderType.LIMIT
    order = Order(
        id=entry_order_id(key),
        role=OrderRole.ENTRY,
        action=action,
        type=kind,
        qty=qty,
        limit_price=intent.entry,
    )
    paper = state.config.phase.enabled and state.phase.phase is Phase.EXPERIENCE
    pending = PendingEntry(key, symbol, intent.side, intent.stop, qty, order, ts, paper)
    out: list[Command] = [
        Record(
            "entry.accepted",
            ts,
            {
                "symbol": symbol,
                "reason": "accepted",
                "key": key,
                "side": intent.side.value,
                "qty": qty,
                "stop": intent.stop,
                "entry": intent.entry,
                "paper": paper,
            },
        )
    ]
    submit(key, symbol, order, ts, out, paper)
    new = state.replace(
        entries=state.entries.set(key, pending),
        counts=state.counts.set(symbol, count),
        routes=state.routes.set(order.id, key),
        daily=evolve(state.daily, trades=state.daily.trades + 1),
    )
    return Transition(new, tuple(out))


# --- fills -------------------------------------------------------------------------------


def _on_fill(state: EngineState, fill: OrderFilled) -> Transition:
    key = state.routes.get(fill.order_id)
    if key is None:
        return _unknown_order(state, fill.order_id, fill.ts, "fill")
    out: list[Command] = []
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == fill.order_id:
        state, pos = _open_position(state, pending, fill, out)
    else:
        pos_or_none = state.positions.get(key)
        if pos_or_none is None:
            return _unknown_order(state, fill.order_id, fill.ts, "fill")
        pos = _apply_fill(pos_or_none, fill, state.config.protection, out)
    return _finish(state, pos, fill.ts, out)


def _open_position(
    state: EngineState, pending: PendingEntry, fill: OrderFilled, out: list[Command]
) -> tuple[EngineState, Position]:
    cfg = state.config.protection
    symbol = pending.symbol
    side = pending.side
    filled = pending.order.filled + fill.qty
    entry_order = (
        None
        if filled >= pending.order.qty
        else evolve(pending.order, filled=filled, status=OrderStatus.LIVE)
    )
    risk = (fill.price - pending.stop) * side.sign
    if risk > 0:
        levels = schedule(fill.price, risk, side, cfg)
        take_profit = take_profit_price(fill.price, risk, side, cfg)
        close_reason, to_sell = "", _ZERO
    else:
        # The fill gapped through the stop: the position cannot be protected as asked.
        levels, take_profit = (), None
        close_reason, to_sell = "initial_risk_not_positive", fill.qty
        out.append(
            Alert(
                fill.ts,
                "initial_risk_not_positive",
                {"symbol": symbol, "entry": fill.price, "stop": pending.stop},
            )
        )
    pos = Position(
        key=pending.key,
        symbol=symbol,
        side=side,
        entry=fill.price,
        initial_stop=pending.stop,
        original_qty=fill.qty,
        remaining_qty=fill.qty,
        stop=round_in_favour(pending.stop, side, cfg),
        opened=fill.ts,
        schedule=levels,
        trigger=levels[0].price if levels else None,
        long=side is Side.LONG,
        take_profit=take_profit,
        entry_order=entry_order,
        to_sell=to_sell,
        close_reason=close_reason,
        paper=pending.paper,
        exposed_since=fill.ts,
    )
    out.append(
        Record(
            "position.opened",
            fill.ts,
            {
                "symbol": symbol,
                "key": pos.key,
                "side": side.value,
                "qty": pos.original_qty,
                "entry": pos.entry,
                "stop": pending.stop,
                "order_stop": pos.stop,
                "take_profit": take_profit,
                "protection": pos.protection.value,
                "opened": fill.ts,
            },
        )
    )
    state = state.replace(entries=state.entries.delete(pending.key))
    if entry_order is None:
        state = state.replace(routes=state.routes.delete(fill.order_id))
    return state, pos


def _apply_fill(
    pos: Position, fill: OrderFilled, cfg: ProtectionConfig, out: list[Command]
) -> Position:
    """Account for a fill of one of the position's exit-side orders."""
    q, price, sign = fill.qty, fill.price, pos.side.sign
    if pos.entry_order is not None and pos.entry_order.id == fill.order_id:
        # The added shares have no stop until the re-armed order is accepted.
        return _exposed(_grow(pos, fill, cfg, out), fill.ts)
    exits = (pos.exit_order, pos.sell_order)
    order = next((o for o in exits if o is not None and o.id == fill.order_id), None)
    if order is None:
        out.append(Alert(fill.ts, "unknown_order", {"order_id": fill.order_id, "event": "fill"}))
        return pos
    q = min(q, pos.remaining_qty)  # P9: never below zero, whatever the broker says.
    filled = order.filled + q
    done = None if filled >= order.qty else evolve(order, filled=filled)
    pos = evolve(
        pos,
        remaining_qty=pos.remaining_qty - q,
        realized=pos.realized + (price - pos.entry) * q * sign,
        exit_value=pos.exit_value + price * q,
        exited_qty=pos.exited_qty + q,
        last_fill_qty=q,
        last_fill_price=price,
    )
    r = pos.r_at(price)
    if order is pos.exit_order:
        tp = order.limit_price
        hit_tp = tp is not None and (price >= tp if pos.long else price <= tp)
        if hit_tp:
            return evolve(_take_profit_filled(pos, q, price, fill.ts, cfg, out), exit_order=done)
        return evolve(pos, exit_order=done, close_reason="stop")
    # A market sell: a tranche (allocated to its milestones in order) or an exit.
    milestones = list(pos.milestones)
    left = q
    while left > 0 and milestones:
        milestone, want = milestones[0]
        part = min(left, want)
        out.append(_partial_filled(pos, milestone, part, price, r, fill.ts))
        left -= part
        if part == want:
            milestones.pop(0)
        else:
            milestones[0] = (milestone, want - part)
    reason = pos.close_reason
    if pos.remaining_qty <= 0 and not reason:
        reason = "final_target" if order.role is OrderRole.PARTIAL else "exit"
    return evolve(pos, sell_order=done, milestones=tuple(milestones), close_reason=reason)


def _take_profit_filled(
    pos: Position,
    q: Decimal,
    price: Decimal,
    ts: datetime,
    cfg: ProtectionConfig,
    out: list[Command],
) -> Position:
    """The OCO take-profit at the final milestone filled (the broker saw the price first).

    The position reached the final milestone, so the journal tells it as SPEC §3 does: every
    level not yet passed gets its `position.state` record, in order, and the fill is split
    across the tranches not yet ordered (their sizes from the original, the last the rest).
    """
    r = pos.r_at(price)
    protection = pos.protection
    unordered: list[tuple[Decimal, int]] = []
    for level in pos.schedule[pos.next_level :]:
        if level.protection is not None:
            reason = f"take-profit filled at {price}"
            out.append(_state_record(pos, protection, level.protection, reason, r, ts))
            protection = level.protection
        if level.tranche is not None:
            unordered.append((level.r, level.tranche))
    sizes = tranche_sizes(pos.original_qty, cfg)
    left = q
    for i, (milestone, tranche) in enumerate(unordered):
        part = left if i == len(unordered) - 1 else min(sizes[tranche], left)
        if part > 0:
            out.append(_partial_filled(pos, milestone, part, price, r, ts))
            left -= part
    if left > 0:  # no tranche left to name (a custom schedule): the fill is the final one
        out.append(_partial_filled(pos, cfg.partials[-1].at_r, left, price, r, ts))
    return evolve(
        pos,
        protection=protection,
        next_level=len(pos.schedule),
        trigger=None,
        close_reason="take_profit",
    )


def _grow(pos: Position, fill: OrderFilled, cfg: ProtectionConfig, out: list[Command]) -> Position:
    """A later fill of the entry order: the position grows, its schedule is re-derived."""
    assert pos.entry_order is not None
    total = pos.original_qty + fill.qty
    entry = (pos.entry * pos.original_qty + fill.price * fill.qty) / total
    filled = pos.entry_order.filled + fill.qty
    risk = (entry - pos.initial_stop) * pos.side.sign
    levels = schedule(entry, risk, pos.side, cfg) if risk > 0 else ()
    i = pos.next_level
    out.append(
        Record(
            "position.opened",
            fill.ts,
            {
                "symbol": pos.symbol,
                "key": pos.key,
                "side": pos.side.value,
                "qty": total,
                "entry": entry,
                "stop": pos.initial_stop,
                "added": fill.qty,
            },
        )
    )
    return evolve(
        pos,
        entry=entry,
        original_qty=total,
        remaining_qty=pos.remaining_qty + fill.qty,
        schedule=levels,
        trigger=levels[i].price if i < len(levels) else None,
        take_profit=take_profit_price(entry, risk, pos.side, cfg) if risk > 0 else None,
        entry_order=None
        if filled >= pos.entry_order.qty
        else evolve(pos.entry_order, filled=filled),
    )


def _partial_filled(
    pos: Position, milestone: Decimal, qty: Decimal, price: Decimal, r: Decimal, ts: datetime
) -> Record:
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
            "profit": (price - pos.entry) * qty * pos.side.sign,
        },
    )


# --- acknowledgements --------------------------------------------------------------------


def _on_accepted(state: EngineState, ack: OrderAccepted) -> Transition:
    key = state.routes.get(ack.order_id)
    if key is None:
        return _unknown_order(state, ack.order_id, ack.ts, "accepted")
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == ack.order_id:
        order = evolve(pending.order, status=OrderStatus.LIVE)
        return Transition(
            state.replace(entries=state.entries.set(key, evolve(pending, order=order)))
        )
    pos = state.positions.get(key)
    if pos is None:
        return Transition(state)
    pos = _with_order_status(pos, ack.order_id, OrderStatus.LIVE, only_from=OrderStatus.PENDING_NEW)
    if pos.attempts:
        pos = evolve(pos, attempts=0, failures=())  # the order step got through
    eo = pos.exit_order
    if eo is not None and eo.id == ack.order_id and eo.status is OrderStatus.LIVE:
        # This is now the protection a refused operation rolls back to; when it covers every
        # share the unprotected window closes.
        if eo.open_qty >= pos.remaining_qty:
            pos = _covered(pos, ack.ts)
        pos = evolve(pos, restore=eo)
    return _finish(state, pos, ack.ts, [])


def _on_canceled(state: EngineState, ack: OrderCanceled) -> Transition:
    key = state.routes.get(ack.order_id)
    if key is None:
        known = key_of(ack.order_id)
        if not known:
            return _unknown_order(state, ack.order_id, ack.ts, "canceled")
        # A second confirmation (a cancel sent again after a timeout, or already treated
        # as canceled): the order was accounted for when the first answer came.
        record = _conflict(ack, known, "stale_answer", [ack.order_id], "already_accounted")
        return Transition(state, (record,))
    state = state.replace(routes=state.routes.delete(ack.order_id))
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == ack.order_id:
        record = Record(
            "entry.blocked",
            ack.ts,
            {"symbol": pending.symbol, "reason": "entry_canceled", "detail": ack.order_id},
        )
        return Transition(state.replace(entries=state.entries.delete(key)), (record,))
    pos = state.positions.get(key)
    if pos is None:
        return Transition(state)
    out: list[Command] = []
    for order in (pos.exit_order, pos.sell_order, pos.entry_order):
        if order is not None and order.id == ack.order_id:
            out.append(order_record("order.canceled", pos.key, pos.symbol, order, ack.ts))
    if pos.attempts:
        pos = evolve(pos, attempts=0, failures=())  # the cancel got through
    if pos.exit_order is not None and pos.exit_order.id == ack.order_id:
        pos = _exposed(evolve(pos, exit_order=None), ack.ts)
    elif pos.sell_order is not None and pos.sell_order.id == ack.order_id:
        # A tranche the broker dropped goes back to be sold again.
        pos = evolve(pos, sell_order=None, to_sell=pos.to_sell + pos.sell_order.open_qty)
    elif pos.entry_order is not None and pos.entry_order.id == ack.order_id:
        pos = evolve(pos, entry_order=None)
    return _finish(state, pos, ack.ts, out)


def _on_rejected(state: EngineState, ack: OrderRejected) -> Transition:
    key = state.routes.get(ack.order_id)
    if key is None:
        return _unknown_order(state, ack.order_id, ack.ts, "rejected")
    pos = state.positions.get(key)
    if ack.kind == "duplicate":
        # The broker already holds an order with this client id: an earlier send got through
        # although its answer was lost. Adopt it rather than send another.
        t = _on_accepted(state, OrderAccepted(ack.ts, ack.order_id))
        conflict = _conflict(ack, key, "duplicate_order", [ack.order_id], "adopted_existing")
        return Transition(t.state, (conflict, *t.commands))
    conflicts: list[Command] = []
    retryable = _retryable(state, ack)
    if pos is not None and retryable:
        if ack.kind == "shares_locked":
            # Alpaca's 403: something still holds the shares (a cancel not yet released).
            # Never sent around: wait, then send the same order again.
            holders = [o.id for o in (pos.exit_order, pos.sell_order) if o and o.id != ack.order_id]
            spent = pos.attempts >= len(state.config.retry_delays)
            resolution = "new_operation_after_alert" if spent else "retry_after_backoff"
            ids = [ack.order_id, *holders]
            conflicts.append(_conflict(ack, key, "shares_locked", ids, resolution))
        retried = _schedule_retry(state, pos, ack)
        if retried is not None:
            return Transition(retried.state, (*conflicts, *retried.commands))
    state = state.replace(routes=state.routes.delete(ack.order_id))
    pending = state.entries.get(key)
    symbol = pending.symbol if pending is not None else pos.symbol if pos is not None else ""
    record = Record(
        "order.rejected",
        ack.ts,
        {"symbol": symbol, "key": key, "order_id": ack.order_id, "reason": ack.reason},
    )
    if pending is not None and pending.order.id == ack.order_id:
        blocked = Record(
            "entry.blocked",
            ack.ts,
            {"symbol": symbol, "reason": "order_rejected", "detail": ack.reason},
        )
        return Transition(state.replace(entries=state.entries.delete(key)), (record, blocked))
    if pos is None:
        return Transition(state, (record,))
    # Transient failures whose retries ran out start the step again as a new operation (new
    # client order id, fresh retries) after the alert: the shares must not be left without
    # protection because the broker was briefly down. A permanent refusal rolls back.
    exhausted = retryable
    refused: Order | None = None
    if pos.exit_order is not None and pos.exit_order.id == ack.order_id:
        refused = pos.exit_order
        pos = evolve(pos, exit_order=None)
    elif pos.sell_order is not None and pos.sell_order.id == ack.order_id:
        refused = pos.sell_order
        pos = evolve(pos, sell_order=None, to_sell=pos.to_sell + pos.sell_order.open_qty)
    elif pos.entry_order is not None and pos.entry_order.id == ack.order_id:
        pos = evolve(pos, entry_order=None)
    out: list[Command] = [*conflicts, record]
    resolution = "retry_as_new_operation" if exhausted else ""
    if refused is not None and not exhausted:
        # A permanent refusal: roll the operation back to the last accepted protection.
        # When the broker refuses protection itself (the first stop, or the restore), the
        # shares are sold at market, never held bare. (A refused market exit is retried;
        # any other refusal while one is pending leaves nothing safe to send: halt.)
        mark = state.marks.get(pos.symbol)
        price = mark.price if mark else None
        if pos.close_reason in _MARKET_EXITS:
            pos = evolve(pos, halted=True)
        elif refused.role is OrderRole.RESTORE:
            pos = exit_unprotectable(pos, price, ack.ts, out)
        else:
            pos = roll_back(pos, price, ack.ts, out)
        eo = pos.exit_order
        if pos.halted:
            resolution = "halted_unprotected" if pos.remaining_qty > 0 else "halted"
        elif eo is not None and eo.role is OrderRole.RESTORE:
            resolution = "restored_previous_protection"
        else:
            resolution = "exit_at_market"
    context = {
        "symbol": symbol,
        "key": key,
        "order_id": ack.order_id,
        "reason": ack.reason,
        "kind": ack.kind,
        "halted": pos.halted,
        "attempts": pos.attempts,
        "failures": [*pos.failures, ack.reason],
        "remaining_qty": pos.remaining_qty,
        "stop": pos.stop,
        "resolution": resolution,
    }
    if pos.exit_order is not None and pos.exit_order.role is OrderRole.RESTORE:
        context["restored_order_id"] = pos.exit_order.id
        context["restored_stop"] = pos.exit_order.stop_price
        context["restored_take_profit"] = pos.exit_order.limit_price
    out.append(Alert(ack.ts, "retries_exhausted" if exhausted else "order_rejected", context))
    pos = evolve(pos, attempts=0, failures=(), retry_due=None)
    return _finish(state, pos, ack.ts, out, reconcile_first=exhausted)


_RETRYABLE = frozenset({"transient", "shares_locked"})
_MARKET_EXITS = frozenset({"stop_through_market", "protection_refused"})


def _retryable(state: EngineState, ack: OrderRejected) -> bool:
    """Transient refusals and held shares are sent again after the backoff; so is a market
    exit refused for good (a halted stock, a closed market): nothing else can leave the
    shares safe, and the breaker throttles a broker that keeps refusing."""
    if ack.kind in _RETRYABLE:
        return True
    key = state.routes.get(ack.order_id)
    pos = state.positions.get(key) if key is not None else None
    return (
        ack.kind == "permanent"
        and pos is not None
        and pos.close_reason in _MARKET_EXITS
        and pos.sell_order is not None
        and pos.sell_order.id == ack.order_id
    )


def _conflict(
    ack: OrderRejected | CancelRejected | OrderCanceled,
    key: str,
    kind: str,
    order_ids: list[str],
    resolution: str,
) -> Record:
    """A `conflict.detected` record (P14): its type, the orders involved, how it is resolved,
    and the broker's words (a repeated cancel confirmation has none: "canceled again")."""
    return Record(
        "conflict.detected",
        ack.ts,
        {
            "symbol": key.rsplit("-", 1)[0],
            "key": key,
            "type": kind,
            "order_ids": order_ids,
            "resolution": resolution,
            "reason": "canceled again" if isinstance(ack, OrderCanceled) else ack.reason,
        },
    )


def _schedule_retry(state: EngineState, pos: Position, ack: OrderRejected) -> Transition | None:
    """A transient refusal of one of the position's orders: send it again after the next
    backoff delay (SPEC §4), or None when the retries are spent."""
    delays = state.config.retry_delays
    if pos.attempts >= len(delays):
        return None
    waiting = OrderStatus.RETRY_WAIT
    if pos.exit_order is not None and pos.exit_order.id == ack.order_id:
        pos = evolve(pos, exit_order=evolve(pos.exit_order, status=waiting))
    elif pos.sell_order is not None and pos.sell_order.id == ack.order_id:
        pos = evolve(pos, sell_order=evolve(pos.sell_order, status=waiting))
    else:
        return None
    pos, record = _book_retry(pos, ack, delays[pos.attempts], "submit")
    out: list[Command] = [record]
    return Transition(_store(state, pos, ack.ts, out), tuple(out))


def _book_retry(
    pos: Position, ack: OrderRejected | CancelRejected, delay: timedelta, command: str
) -> tuple[Position, Record]:
    """Count one more attempt, set when it is due, and say so in `order.retry`."""
    due = ack.ts + delay
    pos = evolve(
        pos, attempts=pos.attempts + 1, retry_due=due, failures=(*pos.failures, ack.reason)
    )
    record = Record(
        "order.retry",
        ack.ts,
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "order_id": ack.order_id,
            "attempt": pos.attempts,
            "delay": Decimal(str(delay.total_seconds())),
            "due": due,
            "reason": ack.reason,
            "command": command,
        },
    )
    return pos, record


def _symbol_of(state: EngineState, event: Event) -> str | None:
    """The symbol an event is about (a tick, an entry, an answer about one of its orders),
    or None for the ones about everything (clock, link, phase)."""
    symbol = getattr(event, "symbol", None)
    if symbol is not None:
        return str(symbol)
    oid = getattr(event, "order_id", None)
    if oid is None:
        return None
    key = state.routes.get(oid) or key_of(oid)
    return key.rsplit("-", 1)[0] if key else None


def _fire_retries(state: EngineState, now: datetime, scope: str | None = None) -> Transition:
    """Send again every order whose retry is due; recompute the next due time. An open
    breaker whose cooldown is over turns half-open and lets the held steps through.

    Answer timeouts fire on a clock event or an event of the position's own symbol (`scope`
    None means any symbol), so updates to different symbols still commute (P30)."""
    link = state.link
    if link.breaker == "open" and link.reopen_at is not None and now >= link.reopen_at:
        record = Record("breaker.half_open", now, {"breaker": "orders"})
        state = state.replace(link=evolve(link, breaker="half_open", reopen_at=None))
        t = _flush(state, now)
        fired = _fire_retries(t.state, now)
        return Transition(fired.state, (record, *t.commands, *fired.commands))
    if not link.sending:
        return Transition(state)  # held until the link is back; `due` stays
    out: list[Command] = []
    due = _FAR if link.reopen_at is None else link.reopen_at
    for key, current in list(state.positions.items()):
        pos = current
        if pos.ack_due is not None:
            if pos.ack_due <= now and (scope is None or scope == pos.symbol):
                pos = _timed_out(pos, now, state.config, out)
                state = state.replace(positions=state.positions.set(key, pos))
            if pos.ack_due is not None:
                due = min(due, pos.ack_due)
        when = pos.retry_due
        if when is None:
            continue
        if when > now:
            due = min(due, when)
            continue
        exit_order, sell_order = pos.exit_order, pos.sell_order
        if exit_order is not None and exit_order.status is OrderStatus.RETRY_WAIT:
            exit_order = evolve(exit_order, status=OrderStatus.PENDING_NEW)
            submit(key, pos.symbol, exit_order, now, out, pos.paper)
        if sell_order is not None and sell_order.status is OrderStatus.RETRY_WAIT:
            sell_order = evolve(sell_order, status=OrderStatus.PENDING_NEW)
            submit(key, pos.symbol, sell_order, now, out, pos.paper)
        if exit_order is not None and exit_order.status is OrderStatus.CANCEL_WAIT:
            exit_order = cancel(exit_order, now, pos.symbol, out)
        if sell_order is not None and sell_order.status is OrderStatus.CANCEL_WAIT:
            sell_order = cancel(sell_order, now, pos.symbol, out)
        resent = evolve(pos, exit_order=exit_order, sell_order=sell_order, retry_due=None)
        state = state.replace(positions=state.positions.set(key, resent))
    return Transition(state.replace(due=due), tuple(out))


_CANCEL_CONFLICTS = {
    "filled": "cancel_after_fill",
    "canceled": "already_canceled",
    "not_found": "order_not_found",
}


def _on_cancel_rejected(state: EngineState, ack: CancelRejected) -> Transition:
    key = state.routes.get(ack.order_id)
    pos = state.positions.get(key) if key is not None else None
    if pos is None:
        # Filled (or gone) and already accounted for: nothing is left to cancel.
        known = key_of(ack.order_id)
        if not known:
            return _unknown_order(state, ack.order_id, ack.ts, "cancel rejected")
        kind = _CANCEL_CONFLICTS.get(ack.kind, "order_not_found")
        record = _conflict(ack, known, kind, [ack.order_id], "already_accounted")
        return Transition(state, (record,))
    if ack.kind in ("not_found", "canceled"):
        # The broker has no such open order: it is gone, as a cancel would have left it.
        t = _on_canceled(state, OrderCanceled(ack.ts, ack.order_id))
        kind = _CANCEL_CONFLICTS[ack.kind]
        record = _conflict(ack, pos.key, kind, [ack.order_id], "treated_as_canceled")
        return Transition(t.state, (record, *t.commands))
    if ack.kind == "filled":
        # It filled before the cancel arrived: wait for its fill (still PENDING_CANCEL, so
        # nothing else is sent for the position meanwhile).
        record = _conflict(ack, pos.key, "cancel_after_fill", [ack.order_id], "await_fill")
        return Transition(state, (record,))
    if ack.kind == "transient":
        delays = state.config.retry_delays
        if pos.attempts < len(delays):
            pos = _with_order_status(
                pos, ack.order_id, OrderStatus.CANCEL_WAIT, only_from=OrderStatus.PENDING_CANCEL
            )
            pos, record = _book_retry(pos, ack, delays[pos.attempts], "cancel")
            return _finish(state, pos, ack.ts, [record], reconcile_first=False)
    pos = _with_order_status(
        pos, ack.order_id, OrderStatus.LIVE, only_from=OrderStatus.PENDING_CANCEL
    )
    alert = Alert(
        ack.ts,
        "cancel_rejected",
        {
            "symbol": pos.symbol,
            "key": pos.key,
            "order_id": ack.order_id,
            "reason": ack.reason,
            "kind": ack.kind,
            "attempts": pos.attempts,
            "failures": [*pos.failures, ack.reason],
            "halted": True,
        },
    )
    pos = evolve(pos, halted=True, attempts=0, failures=(), retry_due=None)
    return _finish(state, pos, ack.ts, [alert], reconcile_first=False)


def _with_order_status(
    pos: Position, oid: str, status: OrderStatus, only_from: OrderStatus
) -> Position:
    def moved(order: Order | None) -> Order | None:
        if order is not None and order.id == oid and order.status is only_from:
            return evolve(order, status=status)
        return order

    return evolve(
        pos,
        exit_order=moved(pos.exit_order),
        sell_order=moved(pos.sell_order),
        entry_order=moved(pos.entry_order),
    )


def _unknown_order(state: EngineState, oid: str, ts: datetime, what: str) -> Transition:
    return Transition(state, (Alert(ts, "unknown_order", {"order_id": oid, "event": what}),))


# --- bookkeeping -------------------------------------------------------------------------


def _finish(
    state: EngineState,
    pos: Position,
    ts: datetime,
    out: list[Command],
    *,
    reconcile_first: bool = True,
) -> Transition:
    """Take the position's next order step (at the symbol's last price), then store it."""
    if reconcile_first and state.link.sending:
        mark = state.marks.get(pos.symbol)
        pos = reconcile(pos, mark.price if mark else None, ts, out)
    return Transition(_store(state, pos, ts, out), tuple(out))


def _exposed(pos: Position, ts: datetime) -> Position:
    """The protective order is gone while shares remain: an unprotected window opens."""
    if pos.remaining_qty > 0 and pos.exposed_since is None:
        return evolve(pos, exposed_since=ts)
    return pos


def _covered(pos: Position, ts: datetime) -> Position:
    """A protective order was accepted: the open unprotected window (if any) closes."""
    since = pos.exposed_since
    if since is None:
        return pos
    return evolve(pos, exposed_since=None, exposed=pos.exposed + (ts - since))


def _settled(pos: Position) -> bool:
    """Every order of the position is confirmed where its protection wants it (P23)."""
    if pos.sell_order is not None or pos.to_sell > 0:
        return False
    eo = pos.exit_order
    if pos.remaining_qty <= 0:
        return eo is None
    if eo is None or eo.status is not OrderStatus.LIVE or eo.open_qty != pos.remaining_qty:
        return False
    if eo.role is OrderRole.RESTORE:
        return pos.refused == (pos.stop, pos.take_profit)
    return eo.stop_price == pos.stop and eo.limit_price == pos.take_profit


def _ms(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1)) / 1000


def _track_operation(pos: Position, ts: datetime, out: list[Command], closing: bool) -> Position:
    """Open the position's operation at its first order command; close it, with its
    `operation.done` record, once every order it touched is confirmed (SPEC §4, P22, P23)."""
    prefix = f"rt-{pos.key}-"
    sent = [
        c.order_id
        for c in out
        if ((type(c) is SubmitOrder and c.purpose != "entry") or type(c) is CancelOrder)
        and c.order_id.startswith(prefix)
    ]
    if sent:
        if pos.op_started is None:
            kind = "stop_move" if pos.restore is not None else "arm"
            pos = evolve(pos, op_started=ts, op_kind=kind, op_orders=(), exposed=timedelta(0))
        orders = pos.op_orders + tuple(o for o in dict.fromkeys(sent) if o not in pos.op_orders)
        kind = pos.op_kind
        if pos.sell_order is not None or pos.to_sell > 0:
            kind = "exit" if pos.close_reason else "partial_exit"
        pos = evolve(pos, op_orders=orders, op_kind=kind)
    started = pos.op_started
    if started is None or not (closing or _settled(pos)):
        return pos
    if closing:
        pos = _covered(pos, ts)
    eo = pos.exit_order
    outcome = (
        "closed"
        if closing
        else "rolled_back"
        if eo is not None and eo.role is OrderRole.RESTORE
        else "applied"
    )
    out.append(
        Record(
            "operation.done",
            ts,
            {
                "symbol": pos.symbol,
                "key": pos.key,
                "operation": pos.op_kind,
                "outcome": outcome,
                "started": started,
                "order_ids": list(pos.op_orders),
                "duration_ms": _ms(ts - started),
                "unprotected_ms": _ms(pos.exposed),
            },
        )
    )
    return evolve(pos, op_started=None, op_kind="", op_orders=(), exposed=timedelta(0))


def _store(state: EngineState, pos: Position, ts: datetime, out: list[Command]) -> EngineState:
    """Store `pos` (or close it when nothing is left); route its new orders; re-band its book."""
    open_orders = pos.exit_order or pos.sell_order or pos.entry_order
    closing = pos.remaining_qty <= 0 and open_orders is None
    if out or pos.op_started is not None:
        pos = _track_operation(pos, ts, out, closing)
    key, symbol = pos.key, pos.symbol
    routes = state.routes
    for command in out:
        if type(command) is SubmitOrder and command.order_id.startswith(f"rt-{key}-"):
            routes = routes.set(command.order_id, key)
    for order in (pos.exit_order, pos.sell_order):
        if order is not None and order.open_qty <= 0 and order.id in routes:
            routes = routes.delete(order.id)
    book = state.books.get(symbol)
    keys = book.keys if book is not None else ()
    if closing:
        out.extend(_close_records(pos, ts))
        for order_id in [oid for oid, k in routes.items() if k == key]:
            routes = routes.delete(order_id)
        positions = state.positions.delete(key) if key in state.positions else state.positions
        keys = tuple(k for k in keys if k != key)
    else:
        positions = state.positions.set(key, pos)
        if key not in keys:
            keys = (*keys, key)
    mark = state.marks.get(symbol)
    tracked = state.config.goal.enabled
    if keys:
        lots = tuple(positions[k] for k in keys)
        books = state.books.set(symbol, Book.of(lots, mark.price if mark else None, tracked))
    else:
        books = state.books.delete(symbol) if symbol in state.books else state.books
    old = state.positions.get(key)
    realized = pos.realized - (old.realized if old is not None else _ZERO)
    daily = state.daily
    if tracked:
        unrealized = sum((b.u for b in books.values()), _ZERO)
        daily = evolve(daily, realized=daily.realized + realized, unrealized=unrealized)
        daily, records = check_goal(daily, state.config.goal, ts)
        out.extend(records)
    phase = state.phase
    if closing and state.config.phase.enabled and daily.session is not None:
        phase = _phase_after_trade(phase, state, TradeMark(daily.session, pos.realized), ts, out)
    due = state.due
    if pos.retry_due is not None and not closing and pos.retry_due < due:
        due = pos.retry_due
    awaited = _awaited(pos)
    if awaited != pos.ack_for:
        cfg = state.config
        wait = cfg.cancel_timeout if awaited.startswith("cancel:") else cfg.fill_timeout
        until = ts + wait if awaited else None
        pos = evolve(pos, ack_for=awaited, ack_since=ts, ack_due=until, timeouts=0)
        if not closing:
            positions = positions.set(key, pos)
    if pos.ack_due is not None and not closing and pos.ack_due < due:
        due = pos.ack_due
    link = state.link
    if not link.sending and not closing and key not in link.waiting and not _settled(pos):
        link = evolve(link, waiting=(*link.waiting, key))  # the offline queue (P25)
    return state.replace(
        positions=positions,
        books=books,
        routes=routes,
        daily=daily,
        phase=phase,
        due=due,
        link=link,
    )


def _awaited(pos: Position) -> str:
    """The broker answer the position waits for and times: a cancel's confirmation or a
    market sell's fill (`cancel:ID`, `fill:ID`), or "" for none."""
    for order in (pos.exit_order, pos.sell_order):
        if order is not None and order.status is OrderStatus.PENDING_CANCEL:
            return f"cancel:{order.id}"
    sell = pos.sell_order
    if (
        sell is not None
        and sell.type is OrderType.MARKET
        and sell.status in (OrderStatus.PENDING_NEW, OrderStatus.LIVE)
    ):
        return f"fill:{sell.id}"
    return ""


def _timed_out(pos: Position, now: datetime, cfg: Config, out: list[Command]) -> Position:
    """An answer did not come in time (SPEC §4). A cancel is sent again every cancel timeout,
    as many times as there are retry delays (the broker treats a repeated cancel as the same
    request); then, or at once for a fill that does not come, the operator is alerted and the
    position keeps waiting: a market sell is never sent twice."""
    what, _, oid = pos.ack_for.partition(":")
    since = pos.ack_since if pos.ack_since is not None else now
    attempt = pos.timeouts + 1
    resend = what == "cancel" and attempt <= len(cfg.retry_delays)
    data = {
        "symbol": pos.symbol,
        "key": pos.key,
        "order_id": oid,
        "awaited": "cancel_confirmation" if what == "cancel" else "fill",
        "waited_ms": _ms(now - since),
        "attempt": attempt,
        "action": "cancel_resent" if resend else "alerted",
    }
    out.append(Record("order.timeout", now, data))
    if resend:
        out.append(CancelOrder(now, oid, pos.symbol))
        return evolve(pos, timeouts=attempt, ack_due=now + cfg.cancel_timeout)
    out.append(Alert(now, "ack_timeout", {k: v for k, v in data.items() if k != "action"}))
    return evolve(pos, timeouts=attempt, ack_due=None)


def _phase_after_trade(
    phase: PhaseState, state: EngineState, mark: TradeMark, ts: datetime, out: list[Command]
) -> PhaseState:
    new, lower, reason = after_trade(phase, state.config.phase, mark)
    if lower is not None:
        out.append(_phase_changed(phase, new, "downgrade", reason or "", ts))
        out.append(Record("breaker.opened", ts, {"reason": reason, "phase": lower.value}))
    return new


def _phase_changed(
    old: PhaseState, new: PhaseState, trigger: str, reason: str, ts: datetime
) -> Record:
    return Record(
        "phase.changed",
        ts,
        {
            "from": old.phase.value,
            "to": new.phase.value,
            "trigger": trigger,
            "reason": reason,
            "size_from": old.size,
            "size_to": new.size,
        },
    )


def _on_clock(state: EngineState, clock: Clock) -> Transition:
    """SPEC §5: every clock event re-checks every open position; a position whose last price
    is older than `stale_after` raises one `stale_price` alert per stale price."""
    limit = state.config.stale_after
    out: list[Command] = []
    stale = state.stale
    for symbol, book in state.books.items():
        mark = state.marks.get(symbol)
        since = mark.ts if mark is not None else min(state.positions[k].opened for k in book.keys)
        age = clock.ts - since
        if age > limit and stale.get(symbol) != since:
            stale = stale.set(symbol, since)
            out.append(
                Alert(
                    clock.ts,
                    "stale_price",
                    {
                        "symbol": symbol,
                        "last_price": mark.price if mark is not None else None,
                        "last_ts": since,
                        "age_s": age.total_seconds(),
                        "positions": list(book.keys),
                    },
                )
            )
    return Transition(state.replace(stale=stale) if out else state, tuple(out))


def _on_phase_advance(state: EngineState, event: PhaseAdvance) -> Transition:
    """Advance one phase if every gate holds; otherwise list every failed criterion."""
    phase = state.phase
    match evaluate_gate(phase, state.config.phase):
        case Success(target):
            new = evolve(
                phase, phase=target, size=stepped_size(phase.size, target, state.config.phase)
            )
            record = _phase_changed(phase, new, "gates", "every gate holds", event.ts)
            return Transition(state.replace(phase=new), (record,))
        case Failure(failures):
            denied = Record(
                "phase.denied",
                event.ts,
                {
                    "phase": phase.phase.value,
                    "failures": [
                        {"criterion": f.name, "actual": f.actual, "required": f.required}
                        for f in failures
                    ],
                },
            )
            return Transition(state, (denied,))
    raise AssertionError("unreachable")  # pragma: no cover


def _on_phase_override(state: EngineState, event: PhaseOverride) -> Transition:
    """An authenticated manual change to any phase (the shell checked the password)."""
    try:
        target = Phase(event.to)
    except ValueError:
        names = ", ".join(p.value for p in PHASE_ORDER)
        alert = Alert(event.ts, "phase_override_refused", {"to": event.to, "allowed": names})
        return Transition(state, (alert,))
    old = state.phase
    new = evolve(old, phase=target, size=size_for(target, state.config.phase), loss_streak=0)
    return Transition(
        state.replace(phase=new), (_phase_changed(old, new, "override", event.reason, event.ts),)
    )


def _on_breaker_ack(state: EngineState, event: BreakerAck) -> Transition:
    if not state.phase.breaker_open:
        return Transition(state)
    record = Record("breaker.closed", event.ts, {"phase": state.phase.phase.value})
    return Transition(state.replace(phase=evolve(state.phase, breaker_open=False)), (record,))


def _new_session(state: EngineState, event: Event) -> Transition:
    """The first event at or after the session boundary starts a new session (SPEC §7)."""
    cfg = state.config.session
    session, reset_at = session_of(event.ts, cfg.tz, cfg.boundary)
    daily, records = roll_session(state.daily, session, reset_at, event.ts)
    phase = on_session_end(state.phase, state.config.phase) if state.daily.session else state.phase
    t = step(state.replace(daily=daily, phase=phase), event)
    return Transition(t.state, (*records, *t.commands))


def _flatten(t: Transition, ts: datetime) -> Transition:
    """Protection triggered with on_trigger = "flatten": close every position at market."""
    state, out = t.state, list(t.commands)
    for key in list(state.positions):
        pos = state.positions[key]
        in_flight = pos.sell_order.open_qty if pos.sell_order is not None else _ZERO
        pos = evolve(
            pos,
            to_sell=pos.remaining_qty - in_flight,
            milestones=(),
            close_reason="flatten",
            trigger=None,
        )
        if state.link.sending:
            mark = state.marks.get(pos.symbol)
            pos = reconcile(pos, mark.price if mark else None, ts, out)
        state = _store(state, pos, ts, out)
    return Transition(state, tuple(out))


def _close_records(pos: Position, ts: datetime) -> list[Command]:
    dollar_risk = pos.risk * pos.original_qty
    r = pos.realized / dollar_risk if dollar_risk > 0 else _ZERO
    exit_price = pos.exit_value / pos.exited_qty if pos.exited_qty else pos.entry
    return [
        Record(
            "position.closed",
            ts,
            {
                # qty and price of the fill that closed it; pnl and r of the whole position.
                "symbol": pos.symbol,
                "key": pos.key,
                "qty": pos.last_fill_qty,
                "price": pos.last_fill_price,
                "reason": pos.close_reason or "exit",
                "pnl": pos.realized,
                "r": r,
            },
        ),
        Record(
            "trade.closed",
            ts,
            {
                "symbol": pos.symbol,
                "key": pos.key,
                "side": pos.side.value,
                "qty": pos.original_qty,
                "entry": pos.entry,
                "exit": exit_price,
                "opened": pos.opened,
                "closed": ts,
                "pnl": pos.realized,
                "r": r,
                "risk": dollar_risk,
                "risk_per_share": pos.risk,
                "reason": pos.close_reason or "exit",
            },
        ),
    ]


# --- the broker link: offline queue, circuit breaker, recovery (SPEC §4) -------------------


def _failed(t: Transition, ts: datetime) -> Transition:
    """A request failed for a passing reason: count it; the fifth in a row (or any failure of
    the half-open trial) opens the breaker, holding every order step for the cooldown."""
    state = t.state
    link = state.link
    cfg = state.config
    failures = link.failures + 1
    if link.breaker == "open" or (failures < cfg.breaker_failures and link.breaker == "closed"):
        return Transition(state.replace(link=evolve(link, failures=failures)), t.commands)
    reopen_at = ts + cfg.breaker_cooldown
    link = evolve(link, failures=failures, breaker="open", reopen_at=reopen_at)
    record = Record(
        "breaker.opened",
        ts,
        {"breaker": "orders", "failures": failures, "reopen_at": reopen_at},
    )
    alert = Alert(ts, "order_breaker_open", {"failures": failures, "reopen_at": reopen_at})
    state = state.replace(link=link, due=min(state.due, reopen_at))
    return Transition(state, (*t.commands, record, alert))


def _succeeded(t: Transition, ts: datetime) -> Transition:
    """The broker answered a request: the failure run ends; a half-open breaker closes."""
    link = t.state.link
    if link.failures == 0 and link.breaker == "closed":
        return t
    if link.breaker != "half_open":
        return Transition(t.state.replace(link=evolve(link, failures=0)), t.commands)
    state = t.state.replace(link=evolve(link, failures=0, breaker="closed"))
    flushed = _flush(state, ts)
    record = Record("breaker.closed", ts, {"breaker": "orders"})
    return Transition(flushed.state, (*t.commands, record, *flushed.commands))


def _flush(state: EngineState, ts: datetime) -> Transition:
    """Work out and send, in the order their need arose, the order steps held while nothing
    could be sent (P25): one per position, from its latest wishes."""
    link = state.link
    if not link.sending or not link.waiting:
        return Transition(state)
    out: list[Command] = []
    state = state.replace(link=evolve(link, waiting=()))
    for key in link.waiting:
        pos = state.positions.get(key)
        if pos is None:
            continue
        mark = state.marks.get(pos.symbol)
        pos = reconcile(pos, mark.price if mark else None, ts, out)
        state = _store(state, pos, ts, out)
    return Transition(state, tuple(out))


def _mode_changed(old: Link, new: Link, ts: datetime, reason: str) -> list[Command]:
    if old.mode == new.mode:
        return []
    return [Record("mode.changed", ts, {"from": old.mode, "to": new.mode, "reason": reason})]


def _on_connectivity(state: EngineState, event: Connectivity) -> Transition:
    """Down: hold every order step. Up: recovery (entries refused until a snapshot is
    reconciled); the held steps wait for the broker's snapshot, which tells what the outage
    hid (fills, orders that never arrived), and go out, in order, as soon as it is applied."""
    old = state.link
    if event.up == old.up:
        return Transition(state)
    if not event.up:
        link = evolve(old, up=False, synced=False)
        records = _mode_changed(old, link, event.ts, "broker connection lost")
        return Transition(state.replace(link=link), tuple(records))
    link = evolve(old, up=True, recovering=True)
    records = _mode_changed(old, link, event.ts, "broker connection restored")
    return Transition(state.replace(link=link), tuple(records))


def _on_snapshot(state: EngineState, snap: BrokerSnapshot) -> Transition:
    """Reconcile the broker's account with the engine's: answers that were lost while the
    link was down are replayed (fills, acceptances, cancels), orders the broker never got are
    sent again as new ones, and then every position is validated against the broker's share
    count. Normal mode resumes only when all match (P27)."""
    ts = snap.ts
    out: list[Command] = []
    reported = {o.order_id: o for o in snap.orders}

    def apply(event: Event) -> None:
        nonlocal state
        t = _dispatch(state, event)
        state = t.state
        out.extend(t.commands)

    known: list[tuple[Order, str]] = []
    for key, pending in state.entries.items():
        known.append((pending.order, key))
    for key, pos in state.positions.items():
        for order in (pos.entry_order, pos.exit_order, pos.sell_order):
            if order is not None:
                known.append((order, key))
    for order, key in known:
        seen = reported.get(order.id)
        if seen is None:
            if order.status in (OrderStatus.RETRY_WAIT, OrderStatus.CANCEL_WAIT):
                continue  # not at the broker by design: its retry is due in time
            # The broker never got it (lost with the link), or has no trace of it.
            out.append(
                Record(
                    "conflict.detected",
                    ts,
                    {
                        "symbol": key.rsplit("-", 1)[0],
                        "key": key,
                        "type": "order_unknown_to_broker",
                        "order_ids": [order.id],
                        "resolution": "dropped_and_resent"
                        if order.role is not OrderRole.ENTRY
                        else "entry_dropped",
                    },
                )
            )
            apply(OrderCanceled(ts, order.id))
            continue
        missed = seen.filled_qty - order.filled
        if missed > 0:
            price = seen.filled_avg_price if seen.filled_avg_price is not None else _ZERO
            apply(OrderFilled(ts, order.id, missed, price))
        if seen.status == "open" and order.status is OrderStatus.PENDING_NEW:
            apply(OrderAccepted(ts, order.id))
        elif seen.status == "open" and order.status is OrderStatus.PENDING_CANCEL:
            apply(CancelRejected(ts, order.id, "cancel lost with the connection", "transient"))
        elif seen.status == "canceled" and seen.filled_qty < order.qty:
            apply(OrderCanceled(ts, order.id))
        elif seen.status == "rejected":
            apply(OrderRejected(ts, order.id, "rejected while offline", "permanent"))
    broker = {symbol: qty for symbol, qty in snap.positions if qty != 0}
    mismatches = []
    for symbol in sorted(set(broker) | set(state.books)):
        ours = sum((p.remaining_qty * p.side.sign for p in state.in_symbol(symbol)), _ZERO)
        theirs = broker.get(symbol, _ZERO)
        if ours != theirs:
            mismatches.append({"symbol": symbol, "engine": ours, "broker": theirs})
    old = state.link
    link = evolve(old, synced=True)
    if mismatches:
        out.append(Alert(ts, "position_mismatch", {"positions": mismatches}))
    else:
        link = evolve(link, recovering=False)
        if old.mode != link.mode:
            reason = "snapshot reconciled; every position validated"
            data = {"from": old.mode, "to": link.mode, "reason": reason}
            out.append(Record("mode.changed", ts, {**data, "positions": len(state.positions)}))
    # What the outage held back goes out now, in order, from what the snapshot told (P25).
    flushed = _flush(state.replace(link=link), ts)
    fired = _fire_retries(flushed.state, ts)
    return Transition(fired.state, (*out, *flushed.commands, *fired.commands))
