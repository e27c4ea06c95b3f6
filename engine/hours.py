"""Market hours: Alpaca works stops and market orders only in the regular session,
so outside it the engine watches every position's stop itself, and a print through it sells
the shares with an extended-hours limit in the same step. The sessions are data
(`Config.hours`); the first event at or after a session boundary rolls the market, and every
position's protection changes mode there (`protection.mode`: `broker_stop` or `watched`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from attrs import evolve

from engine.books import store
from engine.budget import next_step
from engine.commands import Alert, CancelOrder, Command, Record
from engine.model import CloseReason, OrderStatus, Position
from engine.records import conflict, entry_blocked
from engine.state import Book, EngineState, Market

__all__ = ["BROKER_STOP", "WATCHED", "protection_mode", "roll_market", "watched_exit"]

BROKER_STOP = "broker_stop"  # the broker's stop order protects the position
WATCHED = "watched"  # the regular session is closed: the engine watches the stop itself
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_ZERO = Decimal(0)


def protection_mode(state: EngineState) -> str:
    """Which protection is active for the open positions now."""
    return WATCHED if state.watching else BROKER_STOP


def roll_market(state: EngineState, ts: datetime) -> tuple[EngineState, list[Command]]:
    """The first event at or after the market's next boundary: the session it is in now, and,
    when that changed, every position's protection mode (journaled) and its next order step
    (at the open: tranches that waited and extended-hours sales go at market)."""
    hours = state.config.hours
    assert hours is not None  # a market only rolls when a calendar was given
    regular, until = hours.at(ts)
    out: list[Command] = []
    old = state.market
    if until is None:
        if old.known:
            last = hours.days[-1].close if hours.days else None
            out.append(
                Alert(ts, "market_hours_unknown", {"calendar": hours.name, "last_close": last})
            )
        market = Market(True, _FAR, known=False)  # past the calendar: the rules are off
    else:
        market = Market(regular, until, True)
    before = protection_mode(state)
    state = state.evolve(market=market)
    if market.regular == old.regular:
        return state, out
    after = protection_mode(state)
    books = state.books
    for symbol in sorted(books.keys()):
        lots = tuple(state.positions[k] for k in books[symbol].keys)
        book = Book.of(lots, state.last_price(symbol), state.config.goal.enabled, state.watching)
        books = books.set(symbol, book)
    state = state.evolve(books=books)
    if not market.regular:
        state, canceled = _cancel_entries(state, ts)
        out.extend(canceled)
    session = "regular" if market.regular else "extended"
    for lot in state.opened_order():
        pos = lot
        if after != before:
            out.append(
                Record(
                    "protection.mode",
                    ts,
                    {
                        "symbol": pos.symbol,
                        "key": pos.key,
                        "mode": after,
                        "previous": before,
                        "session": session,
                        "stop": pos.ladder.stop,
                    },
                )
            )
        if state.link.open_for(pos):
            pos, sent = next_step(state, pos, state.last_price(pos.symbol), ts)
            out.extend(sent)
            state, more = store(state, pos, ts)
            out.extend(more)
    return state, out


def _cancel_entries(state: EngineState, ts: datetime) -> tuple[EngineState, list[Command]]:
    """The regular session closed: entries still working are canceled. An entry is for now;
    left working it would wait for the next open (filling there at the gap, with no stop
    until then) and stand in the way of the symbol's sales meanwhile (a potential wash
    trade)."""
    out: list[Command] = []
    entries, routes = state.entries, state.routes
    why = "the regular session closed before the entry filled"
    for pending in sorted(entries.values(), key=lambda e: e.key):
        order = pending.order
        if order.status is OrderStatus.RETRY_WAIT:
            # Not at the broker (waiting for its retry, or for exits to clear): dropped.
            out.append(entry_blocked(pending.symbol, "market_closed", why, ts, pending.client_id))
            entries, routes = entries.delete(pending.key), routes.delete(order.id)
            continue
        if order.status not in (OrderStatus.LIVE, OrderStatus.PENDING_NEW):
            continue
        out.append(conflict(ts, pending.key, "market_closed", [order.id], "entry_canceled", why))
        out.append(CancelOrder(ts, order.id, pending.symbol))
        moved = evolve(order, status=OrderStatus.PENDING_CANCEL)
        entries = entries.set(pending.key, evolve(pending, order=moved))
    return state.evolve(entries=entries, routes=routes), out


def watched_exit(pos: Position, price: Decimal, ts: datetime) -> tuple[Position, list[Command]]:
    """Outside the regular session a print went through the stop the engine watches: every
    share not already being sold is queued for an extended-hours limit sale (the broker stop,
    which would wait for the open, is canceled first to free them), journaled and alerted."""
    orders = pos.orders
    in_flight = orders.sell.open_qty if orders.sell is not None else _ZERO
    qty = pos.fills.remaining - in_flight
    data: dict[str, object] = {
        "symbol": pos.symbol,
        "key": pos.key,
        "mode": WATCHED,
        "stop": pos.ladder.stop,
        "price": price,
        "qty": qty,
        "action": "exit_extended_limit",
    }
    pos = evolve(
        pos,
        ladder=evolve(pos.ladder, trigger=None),
        orders=evolve(orders, to_sell=qty, milestones=()),
        close_reason=CloseReason.WATCHED_STOP,
    )
    return pos, [Record("protection.triggered", ts, data), Alert(ts, "watched_stop", data)]
