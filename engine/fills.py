"""Fills (SPEC §3, §4): an entry's fill opens the position and derives its schedule; a fill of
an exit-side order reduces it (P9), allots a market sell to the milestones it was queued for
(P32), and a take-profit fill tells the climb the broker saw first."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve

from engine.answers import unknown_order
from engine.books import finish
from engine.commands import Alert, Command
from engine.config import ProtectionConfig
from engine.divergence import excess_fill, unknown_fill
from engine.events import OrderFilled, Side, Tick
from engine.ladder import round_in_favour, schedule, take_profit_price, tranche_sizes
from engine.model import (
    CloseReason,
    Fills,
    Ladder,
    Level,
    OrderRole,
    Orders,
    OrderStatus,
    PendingEntry,
    Position,
    Slot,
)
from engine.operations import exposed
from engine.records import order_filled, partial_filled, position_opened, position_state
from engine.state import EngineState, Transition

__all__ = ["on_fill"]

_ZERO = Decimal(0)


def on_fill(state: EngineState, fill: OrderFilled) -> Transition:
    """Shares of one of ratchet's orders were executed: open, grow or reduce the position,
    then take its next order step."""
    key = state.routes.get(fill.order_id)
    if key is None:
        state, commands = unknown_fill(state, fill.ts, fill.order_id, fill.qty, fill.price)
        return Transition(state, tuple(commands))
    out: list[Command] = []
    pending = state.entries.get(key)
    if pending is not None and pending.order.id == fill.order_id:
        state, pos = _open_position(state, pending, fill, out)
    else:
        held = state.positions.get(key)
        if held is None:
            return unknown_order(state, fill.order_id, fill.ts, "fill")
        pos, records = _apply_fill(held, fill, state.config.protection)
        out.extend(records)
        if fill.qty > held.fills.remaining and held.orders.slot_of(fill.order_id) is not Slot.ENTRY:
            # More shares left than the lot counts (its shares were already gone, sold
            # outside, when its stop fired): the broker's snapshot settles the symbol.
            state, asked = excess_fill(state, held, fill)
            out.extend(asked)
    # A fill is a price: the latest the engine knows for its symbol (SPEC §3), so the next
    # order step (a stop through the market?) is judged at it, not at the print before.
    mark = state.marks.get(pos.symbol)
    if mark is None or mark.ts <= fill.ts:
        state = state.evolve(
            marks=state.marks.set(pos.symbol, Tick(fill.ts, pos.symbol, fill.price))
        )
    return finish(state, pos, fill.ts, out)


def _open_position(
    state: EngineState, pending: PendingEntry, fill: OrderFilled, out: list[Command]
) -> tuple[EngineState, Position]:
    """The entry filled (maybe in part): the position opens at the fill price, its schedule
    derived from the risk to its stop (SPEC §3)."""
    cfg = state.config.protection
    symbol, side = pending.symbol, pending.side
    filled = pending.order.filled + fill.qty
    entry_order = (
        None
        if filled >= pending.order.qty
        else evolve(pending.order, filled=filled, status=OrderStatus.LIVE)
    )
    risk = (fill.price - pending.stop) * side.sign
    levels: tuple[Level, ...] = ()
    take_profit = None
    close_reason = None
    to_sell = _ZERO
    if risk > 0:
        levels = schedule(fill.price, risk, side, cfg)
        take_profit = take_profit_price(fill.price, risk, side, cfg)
    else:
        # The fill gapped through the stop: the position cannot be protected as asked.
        close_reason, to_sell = CloseReason.INITIAL_RISK_NOT_POSITIVE, fill.qty
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
        long=side is Side.LONG,
        opened=fill.executed,
        ladder=Ladder(
            entry=fill.price,
            initial_stop=pending.stop,
            stop=round_in_favour(pending.stop, side, cfg),
            schedule=levels,
            trigger=levels[0].price if levels else None,
            take_profit=take_profit,
        ),
        fills=Fills(original=fill.qty, remaining=fill.qty, cost=fill.price * fill.qty),
        orders=Orders(entry=entry_order, to_sell=to_sell),
        exposed_since=fill.executed,
        close_reason=close_reason,
        paper=pending.paper,
    )
    out.append(
        order_filled(
            pos.key, symbol, pending.order, fill.qty, fill.price, fill.qty, fill.executed, fill.ts
        )
    )
    out.append(position_opened(pos, fill.ts, pending.stop))
    state = state.evolve(entries=state.entries.delete(pending.key))
    if entry_order is None:
        state = state.evolve(routes=state.routes.delete(fill.order_id))
    return state, pos


def _apply_fill(
    pos: Position, fill: OrderFilled, cfg: ProtectionConfig
) -> tuple[Position, list[Command]]:
    """Account for a fill of one of the position's orders."""
    orders = pos.orders
    slot = orders.slot_of(fill.order_id)
    if slot is Slot.ENTRY and orders.entry is not None:
        # The added shares have no stop until the re-armed order is accepted.
        told = order_filled(
            pos.key, pos.symbol, orders.entry, fill.qty, fill.price,
            pos.fills.remaining + fill.qty, fill.executed, fill.ts,
        )  # fmt: skip
        grown, opened = _grow(pos, fill, cfg)
        return exposed(grown, fill.executed), [told, *opened]
    order = orders.get(slot) if slot is not None else None
    if order is None:
        alert = Alert(fill.ts, "unknown_order", {"order_id": fill.order_id, "event": "fill"})
        return pos, [alert]
    price, sign = fill.price, pos.side.sign
    fills = pos.fills
    q = min(fill.qty, fills.remaining)  # P9: never below zero, whatever the broker says.
    told = order_filled(
        pos.key, pos.symbol, order, q, price, fills.remaining - q, fill.executed, fill.ts
    )
    # The order is as filled as the broker says, even past the shares the lot still counts.
    filled = order.filled + fill.qty
    done = None if filled >= order.qty else evolve(order, filled=filled)
    pos = evolve(
        pos,
        fills=evolve(
            fills,
            remaining=fills.remaining - q,
            realized=fills.realized + (price - pos.ladder.entry) * q * sign,
            exit_value=fills.exit_value + price * q,
            exited=fills.exited + q,
            last_qty=q,
            last_price=price,
        ),
    )
    r = pos.r_at(price)
    if slot is Slot.EXIT:
        tp = order.limit_price
        hit_tp = tp is not None and (price >= tp if pos.long else price <= tp)
        if hit_tp:
            pos, tp_records = _take_profit_filled(pos, q, price, fill.ts, cfg)
            return evolve(pos, orders=evolve(pos.orders, exit=done)), [told, *tp_records]
        stopped = evolve(pos, orders=evolve(orders, exit=done), close_reason=CloseReason.STOP)
        return stopped, [told]
    # A market sell: a tranche (allocated to its milestones in order) or an exit.
    records: list[Command] = [told]
    milestones = list(orders.milestones)
    left = q
    while left > 0 and milestones:
        milestone, want = milestones[0]
        part = min(left, want)
        records.append(partial_filled(pos, milestone, part, price, r, fill.ts))
        left -= part
        if part == want:
            milestones.pop(0)
        else:
            milestones[0] = (milestone, want - part)
    reason = pos.close_reason
    if pos.fills.remaining <= 0 and reason is None:
        reason = CloseReason.FINAL_TARGET if order.role is OrderRole.PARTIAL else CloseReason.EXIT
    return evolve(
        pos,
        orders=evolve(orders, sell=done, milestones=tuple(milestones)),
        close_reason=reason,
    ), records


def _take_profit_filled(
    pos: Position, q: Decimal, price: Decimal, ts: datetime, cfg: ProtectionConfig
) -> tuple[Position, list[Command]]:
    """The OCO take-profit at the final milestone filled (the broker saw the price first).

    The position reached the final milestone, so the journal tells it as SPEC §3 does: every
    level not yet passed gets its `position.state` record, in order, and the fill is split
    across the tranches not yet ordered (their sizes from the original, the last the rest).
    """
    r = pos.r_at(price)
    ladder = pos.ladder
    protection = ladder.protection
    records: list[Command] = []
    unordered: list[tuple[Decimal, int]] = []
    for level in ladder.schedule[ladder.next_level :]:
        if level.protection is not None:
            reason = f"take-profit filled at {price}"
            records.append(position_state(pos, protection, level.protection, reason, r, ts))
            protection = level.protection
        if level.tranche is not None:
            unordered.append((level.r, level.tranche))
    sizes = tranche_sizes(pos.fills.original, cfg)
    left = q
    for i, (milestone, tranche) in enumerate(unordered):
        part = left if i == len(unordered) - 1 else min(sizes[tranche], left)
        if part > 0:
            records.append(partial_filled(pos, milestone, part, price, r, ts))
            left -= part
    if left > 0:  # no tranche left to name (a custom schedule): the fill is the final one
        records.append(partial_filled(pos, cfg.partials[-1].at_r, left, price, r, ts))
    ladder = evolve(ladder, protection=protection, next_level=len(ladder.schedule), trigger=None)
    return evolve(pos, ladder=ladder, close_reason=CloseReason.TAKE_PROFIT), records


def _grow(
    pos: Position, fill: OrderFilled, cfg: ProtectionConfig
) -> tuple[Position, list[Command]]:
    """A later fill of the entry order: the position grows, its schedule is re-derived."""
    entry_order = pos.orders.entry
    assert entry_order is not None
    ladder, fills = pos.ladder, pos.fills
    total = fills.original + fill.qty
    cost = fills.cost + fill.price * fill.qty
    entry = cost / total
    filled = entry_order.filled + fill.qty
    risk = (entry - ladder.initial_stop) * pos.side.sign
    levels = schedule(entry, risk, pos.side, cfg) if risk > 0 else ()
    i = ladder.next_level
    # A position being sold whole sells the added shares too; a halted one keeps its ladder
    # frozen.
    selling = pos.close_reason is not None and pos.close_reason.sells_all
    frozen = selling or pos.halted
    pos = evolve(
        pos,
        ladder=evolve(
            ladder,
            entry=entry,
            schedule=levels,
            trigger=None if frozen or i >= len(levels) else levels[i].price,
            take_profit=take_profit_price(entry, risk, pos.side, cfg) if risk > 0 else None,
        ),
        fills=evolve(fills, original=total, remaining=fills.remaining + fill.qty, cost=cost),
        orders=evolve(
            pos.orders,
            entry=None if filled >= entry_order.qty else evolve(entry_order, filled=filled),
            to_sell=pos.orders.to_sell + fill.qty if selling else pos.orders.to_sell,
        ),
    )
    return pos, [position_opened(pos, fill.ts, ladder.initial_stop, added=fill.qty)]
