"""The engine's books: a position a handler has decided about goes back into the state through
one short pipeline of pure steps — close the operation it finished, route its orders, close the
position when nothing is left, re-band its symbol's book, mark the day's P&L (SPEC §7), record
a closed trade for the phases (SPEC §8), arm its answer deadline, and hold its next step in the
offline queue while nothing can be sent (SPEC §4)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import evolve
from immutables import Map

from engine.budget import next_step
from engine.commands import Command
from engine.deadlines import arm, next_due
from engine.goal import Daily, check_goal
from engine.model import OrderStatus, Position
from engine.operations import conclude, covered, settled
from engine.phase import TradeMark, record_trade
from engine.records import position_closed, trade_closed
from engine.state import Book, EngineState, Transition

__all__ = ["finish", "store"]

_ZERO = Decimal(0)


def finish(
    state: EngineState,
    pos: Position,
    ts: datetime,
    commands: list[Command],
    *,
    reconcile_first: bool = True,
) -> Transition:
    """After a handler's `commands`: take the position's next order step (at its symbol's
    last price) unless told not to, then store it."""
    if reconcile_first and state.link.open_for(pos):
        pos, sent = next_step(state, pos, state.last_price(pos.symbol), ts)
        if sent:
            commands = [*commands, *sent]
    state, more = store(state, pos, ts)
    return Transition(state, (*commands, *more))


def store(state: EngineState, pos: Position, ts: datetime) -> tuple[EngineState, list[Command]]:
    """Put `pos` back into the state (or close it when nothing is left); return the records
    that follow from it (operation done, position and trade closed, goal, phase)."""
    orders = pos.orders
    closing = (
        pos.fills.remaining <= 0
        and orders.exit is None
        and orders.sell is None
        and orders.entry is None
    )
    eo = orders.exit
    if (
        pos.exposed_since is not None
        and eo is not None
        and eo.status is OrderStatus.LIVE
        and 0 < pos.fills.remaining <= eo.open_qty
    ):
        # The stop the broker works covers every share now (a sale beside it filled): the
        # unprotected window closes here, not only when a stop is accepted.
        pos = covered(pos, ts)
    pos, out = conclude(pos, ts, closing)
    out = list(out)
    routes = _route(state.routes, pos)
    if closing:
        # Every share is out: the P&L is what the exits brought minus what the entries cost,
        # exactly (fill by fill against an average entry rounds when entries filled in parts).
        fills = pos.fills
        exact = (fills.exit_value - fills.cost) * pos.side.sign
        if exact != fills.realized:
            pos = evolve(pos, fills=evolve(fills, realized=exact))
        out.append(position_closed(pos, ts))
        out.append(trade_closed(pos, ts))
        routes = _unroute(routes, pos.key)
    pos = arm(pos, ts, state.config)
    positions, books = _rebook(state, pos, closing)
    daily = state.daily
    if state.config.goal.enabled:
        daily, records = _mark_day(state, pos, books, ts)
        out.extend(records)
    phase = state.phase
    if closing and state.config.phase.enabled and daily.session is not None:
        mark = TradeMark(daily.session, pos.fills.realized)
        phase, phase_records = record_trade(phase, state.config.phase, mark, ts)
        out.extend(phase_records)
    due = state.due
    if not closing:
        when = next_due(pos, state.config)
        if when is not None and when < due:
            due = when
    link = state.link
    held = not link.open_for(pos)
    if held and not closing and pos.key not in link.waiting and not settled(pos):
        link = evolve(link, waiting=(*link.waiting, pos.key))  # the offline queue (P25)
    new = EngineState(
        state.config,
        positions,
        books,
        state.marks,
        state.entries,
        state.counts,
        routes,
        daily,
        phase,
        state.stale,
        due,
        link,
        state.intents,
        state.market,
    )
    return new, out


def _route(routes: Map[str, str], pos: Position) -> Map[str, str]:
    """Answers about the position's working orders find it by their client order id."""
    for order in (pos.orders.exit, pos.orders.sell):
        if order is not None and order.id not in routes:
            routes = routes.set(order.id, pos.key)
    return routes


def _unroute(routes: Map[str, str], key: str) -> Map[str, str]:
    """A closed position's ids are forgotten (a later answer is a stale one)."""
    for order_id in [oid for oid, k in routes.items() if k == key]:
        routes = routes.delete(order_id)
    return routes


def _rebook(
    state: EngineState, pos: Position, closing: bool
) -> tuple[Map[str, Position], Map[str, Book]]:
    """The positions and the symbol's book (its lots and their trigger band) with `pos`."""
    key, symbol = pos.key, pos.symbol
    book = state.books.get(symbol)
    keys = book.keys if book is not None else ()
    if closing:
        positions = state.positions.delete(key) if key in state.positions else state.positions
        keys = tuple(k for k in keys if k != key)
    else:
        positions = state.positions.set(key, pos)
        if key not in keys:
            keys = (*keys, key)
    if keys:
        lots = tuple(positions[k] for k in keys)
        mark = state.last_price(symbol)
        book = Book.of(lots, mark, state.config.goal.enabled, state.watching)
        books = state.books.set(symbol, book)
    else:
        books = state.books.delete(symbol) if symbol in state.books else state.books
    return positions, books


def _mark_day(
    state: EngineState, pos: Position, books: Map[str, Book], ts: datetime
) -> tuple[Daily, list[Command]]:
    """The day's P&L with what the position realized in this step and every book's marks."""
    old = state.positions.get(pos.key)
    realized = pos.fills.realized - (old.fills.realized if old is not None else _ZERO)
    # In symbol order: a sum of long decimals rounds, so its order must not be a hash map's.
    unrealized = sum((books[symbol].u for symbol in sorted(books.keys())), _ZERO)
    daily = evolve(state.daily, realized=state.daily.realized + realized, unrealized=unrealized)
    daily, records = check_goal(daily, state.config.goal, ts)
    return daily, list(records)
