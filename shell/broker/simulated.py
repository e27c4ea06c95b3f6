"""A simulated broker: deterministic, no I/O; it fills resting orders against the ticks it sees.

The fill rules are the shared order book's (`shell.broker.matching`): market orders at the
next tick of the symbol (or the last one, with `market_fill="same"`), a marketable limit at the
market within its limit, a stop at the first tick at or through it at that tick's price (a gap
is not forgiven), a limit at its price; with `hours`, stops and market orders only in the
regular session. Acknowledgements come back in the same instant as the command; `faults` makes
them misbehave the way Alpaca does, from a seed. Like Alpaca it refuses an order that could
trade against an open opposite order in its symbol (a potential wash trade, 403), and an
`extended_hours` order that is not a limit (422).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from attrs import define, evolve, field

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Command,
    Connectivity,
    Event,
    MarketHours,
    OrderAccepted,
    OrderAction,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    RequestSnapshot,
    SubmitOrder,
    Tick,
)
from shell.broker.faults import PROFILES, Faults
from shell.broker.matching import WASH_TRADE, Book

__all__ = ["PROFILES", "Faults", "SimulatedBroker"]

_NOTHING: tuple[Event, ...] = ()

_RECONNECT = timedelta(seconds=1)


@define
class SimulatedBroker:
    """The broker of `ratchet simulate` and of the tests; the only mutable thing in a fold."""

    market_fill: Literal["next", "same"] = "next"
    positions: dict[str, Decimal] = field(factory=dict)
    faults: Faults | None = None
    hours: MarketHours | None = None
    # Refuse potential wash trades as Alpaca does (`ratchet simulate` and the exchange do; off
    # by default for the protocol tests, whose faults leave a lot's own entry working beside
    # its exit, a case the engine does not sequence yet).
    wash_check: bool = False
    reconnects: int = 0
    wash_trades: int = 0  # orders refused as potential wash trades
    _ids: set[str] = field(factory=set)
    _down_at: datetime | None = None
    _rng: random.Random = field(init=False, factory=random.Random)
    _basis: dict[str, tuple[Decimal, Decimal]] = field(init=False, factory=dict)
    _owner: int = field(init=False, default=0)
    _book: Book = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.faults.seed if self.faults else 0)
        # The book fills into this broker's own positions dict, so callers see it change.
        split = self._split if self.faults is not None else None
        self._book = Book(
            market_fill=self.market_fill, positions=self.positions, split=split, hours=self.hours
        )

    @property
    def oversells(self) -> int:
        """Exits that flipped a position (never allowed)."""
        return self._book.oversells

    @property
    def fills(self) -> int:
        return self._book.fills

    @property
    def stops_waited(self) -> int:
        """Stops a print outside the regular session went through, which waited for the open."""
        return len(self._book.stops_waited)

    @property
    def orders_waited(self) -> int:
        """Market (and plain limit) orders that found the regular session closed and waited."""
        return len(self._book.orders_waited)

    # --- the engine's commands -------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> list[Event]:
        """Carry out order commands; return the acknowledgements (and same-instant fills).
        A `RequestSnapshot` is answered with the broker's snapshot."""
        acks: list[Event] = []
        for command in commands:
            if type(command) is RequestSnapshot:
                if self._down_at is None:
                    acks.append(self.snapshot(command.ts))
                continue
            if type(command) not in (SubmitOrder, CancelOrder):
                continue
            if self._down_at is not None:
                continue  # nothing gets through a dropped connection
            faults = self.faults
            if faults is not None and faults.drop and self._rng.random() < faults.drop:
                # The connection drops with this request: half the time it reached the
                # broker (and is carried out, its answer lost), half the time it did not.
                self.disconnect(command.ts)
                if self._rng.random() < 0.5:
                    self._silently(command)
                acks.append(Connectivity(command.ts, False))
                continue
            if type(command) is SubmitOrder:
                acks.extend(self._submit(command))
            elif type(command) is CancelOrder:
                answer = self._cancel(command)
                if answer is not None:
                    acks.append(answer)
        self._note(acks)
        return acks

    def snapshot(self, ts: datetime) -> BrokerSnapshot:
        """Everything the broker holds: positions with their average entry prices and last
        prices, and every order it has had (as GET /v2/positions and /v2/orders?status=all)."""
        orders = tuple(
            BrokerOrder(
                oid, t.command.symbol, t.status, t.command.qty, t.filled, t.average, t.updated,
                t.command.action, t.command.type, t.command.stop_price, t.command.limit_price,
            )
            for oid, t in self._book.orders.items()
        )  # fmt: skip
        positions = tuple(sorted((s, q) for s, q in self.positions.items() if q != 0))
        prices = tuple((s, self._basis[s][1] / abs(q)) for s, q in positions if s in self._basis)
        marks = tuple((s, last) for s, _ in positions if (last := self._book.last(s)) is not None)
        return BrokerSnapshot(ts, positions, orders, prices, marks)

    def _note(self, events: Iterable[Event]) -> None:
        """Keep each position's cost (average entry x shares) as its fills come."""
        for event in events:
            if type(event) is not OrderFilled:
                continue
            track = self._book.orders.get(event.order_id)
            if track is None:
                continue
            symbol = track.command.symbol
            signed = event.qty if track.command.action is OrderAction.BUY else -event.qty
            qty, cost = self._basis.get(symbol, (Decimal(0), Decimal(0)))
            after = qty + signed
            if qty == 0 or qty * signed > 0:
                cost += event.price * event.qty  # adding to the position
            elif after * qty > 0:
                cost -= cost / abs(qty) * event.qty  # reducing it: the average stays
            else:
                cost = abs(after) * event.price  # flat, or flipped at this price
            self._basis[symbol] = (after, cost)

    def disconnect(self, ts: datetime) -> None:
        """The link drops now (a recorded outage): nothing is answered until it comes back,
        at the first print a second or more later, with a snapshot."""
        if self._down_at is None:
            self._down_at = ts
            self._book.changed.clear()

    def _silently(self, command: Command) -> None:
        """Carry out a command whose answer is lost."""
        if type(command) is SubmitOrder:
            self._note(self._submit(command))
        elif type(command) is CancelOrder:
            self._book.cancel(command)

    def _reconnect(self, ts: datetime) -> list[Event]:
        """The link is back: say so, then report positions and the orders that are open or
        changed while it was down (as GET /v2/positions and /v2/orders would)."""
        self._down_at = None
        changed = self._book.changed
        whole = self.snapshot(ts)
        orders = tuple(o for o in whole.orders if o.status == "open" or o.order_id in changed)
        changed.clear()
        self.reconnects += 1
        return [Connectivity(ts, True), evolve(whole, orders=orders)]

    def _submit(self, order: SubmitOrder) -> list[Event]:
        ts = order.ts
        if order.order_id in self._ids:
            reason = "HTTP 422 client_order_id must be unique"
            return [OrderRejected(ts, order.order_id, reason, OrderRefusal.DUPLICATE)]
        if order.qty <= 0:
            return [OrderRejected(ts, order.order_id, "qty must be > 0")]
        if order.extended_hours and order.type is not OrderType.LIMIT:
            reason = "HTTP 422 code 42210000 extended hours order must be DAY limit orders"
            return [OrderRejected(ts, order.order_id, reason, OrderRefusal.PERMANENT)]
        exiting = order.purpose != "entry"
        faults = self.faults
        if faults is not None:
            refused = self._fault(order, exiting, faults)
            if refused is not None:
                return [refused]
        if self.wash_check and self._book.crosses(order):
            self.wash_trades += 1
            reason = f"HTTP 403 code 40310000 {WASH_TRADE}"
            return [OrderRejected(ts, order.order_id, reason, OrderRefusal.WASH_TRADE)]
        if exiting:
            available = self._book.available(order.symbol, order.action)
            if order.qty > available:
                return [_insufficient(order, available, self._holding(order.symbol))]
        self._ids.add(order.order_id)
        fill = self._book.place(order)
        answer: Event = OrderAccepted(ts, order.order_id)
        if faults is not None and faults.lost and self._rng.random() < faults.lost:
            # The order exists, but the answer never arrives: the client times out.
            reason = "HTTP timeout: the answer to the submission was lost"
            answer = OrderRejected(ts, order.order_id, reason, OrderRefusal.UNKNOWN)
        return [answer] if fill is None else [answer, fill]

    def _fault(self, order: SubmitOrder, exiting: bool, faults: Faults) -> Event | None:
        """The refusal a fault calls for, if the dice say so. A refused request creates no
        order, so the same client order id may be sent again."""
        rng, ts, oid = self._rng, order.ts, order.order_id
        if rng.random() < faults.transient:
            if rng.random() < 0.5:
                return OrderRejected(ts, oid, "HTTP 429 too many requests", OrderRefusal.TRANSIENT)
            return OrderRejected(ts, oid, "HTTP 503 service unavailable", OrderRefusal.TRANSIENT)
        if exiting and rng.random() < faults.permanent:
            reason = "HTTP 422 order parameters are invalid"
            return OrderRejected(ts, oid, reason, OrderRefusal.PERMANENT)
        if exiting and order.action is OrderAction.SELL and rng.random() < faults.locked:
            return _insufficient(order, Decimal(0), self._holding(order.symbol))
        return None

    def _split(self) -> bool:
        """The `partial` fault: does this market order fill in two parts?"""
        assert self.faults is not None
        return self._rng.random() < self.faults.partial

    def _cancel(self, command: CancelOrder) -> Event | None:
        faults = self.faults
        if faults is not None:
            if self._rng.random() < faults.transient:
                reason = "HTTP 503 service unavailable"
                return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.TRANSIENT)
            working = self._book.is_working(command.symbol, command.order_id)
            if self._rng.random() < faults.late and working:
                # Accepted as pending_cancel; it takes effect at the symbol's next print,
                # after that print has had its chance to fill the order.
                self._book.cancel_at_next_print(command)
                return None
            if faults.stuck and working and self._rng.random() < faults.stuck:
                reason = "HTTP 422 order is not cancelable"
                return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.PERMANENT)
        return self._book.cancel(command)

    # --- the market ------------------------------------------------------------------------

    def reconnect_at(self) -> datetime | None:
        """When a dropped link comes back (a second after it fell), or None when it is up."""
        return None if self._down_at is None else self._down_at + _RECONNECT

    def reconnect(self, ts: datetime) -> list[Event]:
        """Time reached `ts` with no print: a dropped link due back by then is back, with its
        snapshot (nothing when it is up or not due yet)."""
        back = self.reconnect_at()
        if back is None or ts < back:
            return []
        return self._reconnect(ts)

    def on_tick(self, tick: Tick) -> tuple[Event, ...] | list[Event]:
        """Match resting orders against one tick; return the fills it causes (while the link
        is down they happen but are not told; the link comes back a second after it fell)."""
        if self._down_at is not None:
            if tick.ts - self._down_at < _RECONNECT:
                self._note(self._book.match(tick))
                return _NOTHING
            reconnected = self._reconnect(tick.ts)
            matched = self._book.match(tick)
            self._note(matched)
            return [*reconnected, *matched]
        matched = self._book.match(tick)
        if matched:
            self._note(matched)
        return matched

    # --- the account's owner, behind the engine's back ------------------------------------

    def close_by_hand(self, symbol: str, qty: Decimal, ts: datetime) -> list[Event]:
        """The account's owner sells (or buys back) `qty` shares of `symbol` by hand, as
        Alpaca's close-position does: the symbol's open orders are canceled first (their
        trade updates say so), then an order of the owner's fills at market, at the last
        print, and its fill is reported like any other."""
        held = self.positions.get(symbol, Decimal(0))
        qty = min(qty, abs(held))
        if qty <= 0 or self._down_at is not None:
            return []
        events: list[Event] = [
            self._book.cancel(CancelOrder(ts, w.command.order_id, symbol))
            for w in self._book.working(symbol)
        ]
        self._owner += 1
        order = SubmitOrder(
            ts, f"owner-{self._owner}", symbol,
            OrderAction.SELL if held > 0 else OrderAction.BUY, OrderType.MARKET, qty,
            purpose="owner",
        )  # fmt: skip
        self._ids.add(order.order_id)
        fill = self._book.place(order, at_once=True)
        if fill is not None:
            events.append(fill)
        self._note(events)
        return events

    def hold(self, symbol: str, qty: Decimal, average: Decimal) -> None:
        """The account already holds `qty` shares of `symbol` (signed) bought at `average`
        (positions ratchet did not open: the owner's bot's, or a previous run's)."""
        self.positions[symbol] = qty
        self._basis[symbol] = (qty, abs(qty) * average)

    def place_for_owner(self, order: SubmitOrder) -> None:
        """An order of the owner's works at the broker (its client id is not ratchet's)."""
        self._ids.add(order.order_id)
        self._book.place(order)

    def forget(self, symbol: str) -> None:
        """The broker no longer holds `symbol` or any order in it, and says nothing (an account
        restored from long ago, a position moved to another account)."""
        self._book.forget(symbol)
        self._basis.pop(symbol, None)

    # --- views for tests and summaries -----------------------------------------------------

    def open_orders(self, symbol: str) -> list[SubmitOrder]:
        """Orders resting or waiting for the next tick in `symbol`."""
        return [w.command for w in self._book.working(symbol)]

    def created(self, order_id: str) -> bool:
        """True once an order with this client id exists (a resend is then a duplicate)."""
        return order_id in self._ids

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        """Shares the order `order_id` still works (0 when it is not working)."""
        return self._book.working_qty(symbol, order_id)

    def uncovered(self) -> dict[str, Decimal]:
        """Per symbol held, the shares no working exit-side order covers."""
        out: dict[str, Decimal] = {}
        for symbol, qty in self.positions.items():
            if qty == 0:
                continue
            exit_side = OrderAction.SELL if qty > 0 else OrderAction.BUY
            out[symbol] = max(abs(qty) - self._book.held(symbol, exit_side), Decimal(0))
        return out

    def held(self, symbol: str, action: OrderAction) -> Decimal:
        """Shares held by open orders of `action` in `symbol` (what is left of each)."""
        return self._book.held(symbol, action)

    def _holding(self, symbol: str) -> Decimal:
        """The whole position in `symbol`, unsigned (the 403 body's `existing_qty`)."""
        return abs(self.positions.get(symbol, Decimal(0)))


def _insufficient(order: SubmitOrder, available: Decimal, existing: Decimal) -> OrderRejected:
    """Alpaca's 403: code 40310000, the shares are held by other orders (its body tells the
    shares free and the whole position)."""
    reason = (
        f"HTTP 403 code 40310000 insufficient qty available for order "
        f"(requested: {order.qty}, available: {available})"
    )
    return OrderRejected(
        order.ts, order.order_id, reason, OrderRefusal.SHARES_LOCKED, available, existing
    )
