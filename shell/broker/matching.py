"""The fill rules shared by `ratchet simulate` and `ratchet exchange`: one account's order book.

Market orders fill at the next print of their symbol (or the last one, with
`market_fill="same"`), and so does a limit that is already marketable when it arrives (at the
market, while still within its limit; otherwise it rests at its price); a stop triggers on the
first print at or through it and fills at that print's price (a gap is not forgiven); a limit
fills at its price when the market reaches it; an OCO is a stop and a take-profit limit sharing
one quantity, and whichever triggers first fills it. Shares held by working orders of one side
are not available to another order of that side. Each symbol keeps a price band (the nearest
trigger on either side), so a print inside it is matched in one comparison.

Given the market's regular sessions (`hours`; None: always regular), stops trigger, market
orders fill and plain limits trade only inside them, as at Alpaca (ALPACA.md §1.11, §7): orders
that a print outside would have traded wait for the first regular print, gaps included (counted
in `waited`); only limits flagged `extended_hours` trade outside.

The book decides fills; it refuses nothing itself. Who may place what (duplicates, faults, the
shares available, a potential wash trade that `crosses` finds) is the caller's business:
`SimulatedBroker` and the exchange's venue.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from attrs import define, evolve, field

from engine import (
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Event,
    MarketHours,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderType,
    SubmitOrder,
    Tick,
)

__all__ = ["WASH_TRADE", "Book", "Track", "Working", "trigger_price"]

_NOTHING: tuple[Event, ...] = ()
_INF = Decimal("Infinity")
_DAWN = datetime(1, 1, 1, tzinfo=UTC)
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
# Alpaca's words for an order that could trade against an open opposite order of the account
# (403, code 40310000, the code of insufficient qty too: told apart by the message).
WASH_TRADE = "potential wash trade detected. use complex orders"


@define
class Track:
    """What the book would report about one order it placed."""

    command: SubmitOrder
    status: str = "open"  # open, filled or canceled
    filled: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    updated: datetime | None = None  # its last fill or cancel

    @property
    def average(self) -> Decimal | None:
        return self.value / self.filled if self.filled else None


@define
class Working:
    """An order the book works, and the part of it not filled yet."""

    command: SubmitOrder
    open_qty: Decimal


@define
class Book:
    """Resting orders, orders waiting for the next print, and the positions their fills make.

    `split`, when given, is asked before a market order of 2 shares or more fills: True fills
    half of it (rounded down) at this print and leaves the rest for the next one.
    """

    market_fill: Literal["next", "same"] = "next"
    positions: dict[str, Decimal] = field(factory=dict)
    split: Callable[[], bool] | None = None
    hours: MarketHours | None = None
    # Orders a print outside the regular session would have traded, which waited for the open:
    # stops it went through, and market (or plain limit) orders it found waiting.
    stops_waited: set[str] = field(factory=set)
    orders_waited: set[str] = field(factory=set)
    orders: dict[str, Track] = field(factory=dict)
    changed: set[str] = field(factory=set)  # orders whose status changed (cleared by callers)
    oversells: int = 0
    fills: int = 0
    _resting: dict[str, dict[str, Working]] = field(factory=dict)
    _markets: dict[str, list[Working]] = field(factory=dict)
    _bands: dict[str, tuple[Decimal, Decimal]] = field(factory=dict)
    _last: dict[str, Decimal] = field(factory=dict)
    _cancels: dict[str, list[CancelOrder]] = field(factory=dict)  # due at the next print
    _filled: set[str] = field(factory=set)
    _same: bool = field(init=False, default=False)
    _regular: bool = field(init=False, default=True)
    _since: datetime = field(init=False, default=_DAWN)
    _until: datetime = field(init=False, default=_FAR)

    def __attrs_post_init__(self) -> None:
        self._same = self.market_fill == "same"
        if self.hours is not None:
            self._until = _DAWN

    def regular(self, ts: datetime) -> bool:
        """Whether `ts` is inside a regular session (always, without `hours`); past the end of
        the calendar the session rules are off."""
        if self._since <= ts < self._until:
            return self._regular
        assert self.hours is not None
        regular, until = self.hours.at(ts)
        self._regular = regular or until is None
        self._since, self._until = ts, until if until is not None else _FAR
        return self._regular

    # --- orders ----------------------------------------------------------------------------

    def place(self, order: SubmitOrder, at_once: bool = False) -> OrderFilled | None:
        """Work `order` from now on; with `market_fill="same"` (or `at_once`) a market order
        (or a marketable limit) fills at the last print at once, and that fill is returned."""
        self.orders[order.order_id] = Track(order)
        working = Working(order, order.qty)
        last = self._last.get(order.symbol)
        # A limit already through the market executes like a market order, at the market
        # (capped by its limit), as an exchange fills a marketable limit.
        marketable = (
            order.type is OrderType.LIMIT
            and last is not None
            and order.limit_price is not None
            and trigger_price(order, last) is not None
        )
        if order.type is OrderType.MARKET or marketable:
            now = at_once or self._same
            if now and not order.extended_hours and not self.regular(order.ts):
                now = False  # outside the regular session it waits for the open
            if now and at_once and last is not None:
                return self._fill(working, last, order.ts)  # whole, at the last print
            if now and last is not None:
                return self._market_fill(working, last, order.ts)
            self._markets.setdefault(order.symbol, []).append(working)
        else:
            self._resting.setdefault(order.symbol, {})[order.order_id] = working
            self._narrow_band(order)
        return None

    def cancel(self, command: CancelOrder) -> Event:
        """Stop working an order now: OrderCanceled, or CancelRejected saying why not
        (`filled`, `canceled` or `not_found`)."""
        book = self._resting.get(command.symbol, {})
        if command.order_id in book:
            del book[command.order_id]
            self._rebuild_band(command.symbol)
            self._status(command.order_id, "canceled", command.ts)
            return OrderCanceled(command.ts, command.order_id)
        markets = self._markets.get(command.symbol, [])
        for working in markets:
            if working.command.order_id == command.order_id:
                markets.remove(working)
                if not markets:
                    del self._markets[command.symbol]
                self._status(command.order_id, "canceled", command.ts)
                return OrderCanceled(command.ts, command.order_id)
        if command.order_id in self._filled:
            reason = "HTTP 422 order is already filled"
            return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.FILLED)
        known = self.orders.get(command.order_id)
        if known is not None and known.status == "canceled":
            reason = "HTTP 422 order is already canceled"
            return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.CANCELED)
        reason = "HTTP 404 order not found"
        return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.NOT_FOUND)

    def cancel_at_next_print(self, command: CancelOrder) -> None:
        """Carry out `command` at its symbol's next print, after that print has had its chance
        to fill the order (a late cancel)."""
        self._cancels.setdefault(command.symbol, []).append(command)

    def _status(self, oid: str, status: str, ts: datetime) -> None:
        track = self.orders.get(oid)
        if track is not None:
            track.status = status
            track.updated = ts
            self.changed.add(oid)

    # --- the market ------------------------------------------------------------------------

    def match(self, tick: Tick) -> tuple[Event, ...] | list[Event]:
        """Match the working orders of `tick`'s symbol against it; return the fills (and the
        late cancels carried out), in the order they happened."""
        symbol, price = tick.symbol, tick.price
        self._last[symbol] = price
        band = self._bands.get(symbol)
        # Hot path: nothing waits for the next print and the price is inside the band.
        if not self._markets and not self._cancels and (band is None or band[0] < price < band[1]):
            return _NOTHING
        fills: list[Event] = []
        regular = self.regular(tick.ts)
        markets = self._markets.pop(symbol, None)
        waiting: list[Working] = []
        for working in markets or ():
            command = working.command
            if not regular and not command.extended_hours:
                waiting.append(working)  # queued for the next regular session
                self.orders_waited.add(command.order_id)
                continue
            limit = command.limit_price
            if limit is None or trigger_price(command, price) is not None:
                fills.append(self._market_fill(working, price, tick.ts))
            else:  # a limit the market moved away from: it rests at its price
                self._resting.setdefault(symbol, {})[command.order_id] = working
                self._rebuild_band(symbol)
        if waiting:
            self._markets[symbol] = [*waiting, *self._markets.get(symbol, ())]
        book = self._resting.get(symbol)
        if book and band is not None and not band[0] < price < band[1]:
            for oid, working in list(book.items()):
                command = working.command
                fill_price = trigger_price(command, price)
                if fill_price is None:
                    continue
                if not regular and not command.extended_hours:
                    if _stop_hit(command, price):
                        self.stops_waited.add(oid)  # a broker stop sleeps until the open
                    continue
                del book[oid]
                fills.append(self._fill(working, fill_price, tick.ts))
            self._rebuild_band(symbol)
        for late in self._cancels.pop(symbol, ()):
            fills.append(self.cancel(evolve(late, ts=tick.ts)))
        return fills

    def _market_fill(self, working: Working, price: Decimal, ts: datetime) -> OrderFilled:
        """A market order (or marketable limit) at this print: whole, or, when `split` says
        so, half of it now and the rest waiting for the next print."""
        split = self.split
        if split is not None and working.open_qty >= 2 and split():
            part = (working.open_qty / 2).to_integral_value(rounding="ROUND_FLOOR")
            self._markets.setdefault(working.command.symbol, []).append(working)
            return self._fill(working, price, ts, part)
        return self._fill(working, price, ts)

    def _fill(
        self, working: Working, price: Decimal, ts: datetime, part: Decimal | None = None
    ) -> OrderFilled:
        order = working.command
        qty = working.open_qty if part is None else part
        working.open_qty -= qty
        if working.open_qty <= 0:
            self._filled.add(order.order_id)
        track = self.orders.get(order.order_id)
        if track is not None:
            track.value += qty * price
            track.filled += qty
            track.updated = ts
            if working.open_qty <= 0:
                track.status = "filled"
            self.changed.add(order.order_id)
        signed = qty if order.action is OrderAction.BUY else -qty
        before = self.positions.get(order.symbol, Decimal(0))
        after = before + signed
        if before != 0 and (after * before < 0):
            self.oversells += 1  # an exit that flipped the position: never allowed
        self.positions[order.symbol] = after
        self.fills += 1
        return OrderFilled(ts, order.order_id, qty, price)

    def _narrow_band(self, order: SubmitOrder) -> None:
        """The band with one more resting order: the same as rebuilding it, in O(1)."""
        lo, hi = self._bands.get(order.symbol, (-_INF, _INF))
        sell = order.action is OrderAction.SELL
        if order.stop_price is not None:
            if sell:
                lo = max(lo, order.stop_price)
            else:
                hi = min(hi, order.stop_price)
        if order.limit_price is not None:
            if sell:
                hi = min(hi, order.limit_price)
            else:
                lo = max(lo, order.limit_price)
        if lo != -_INF or hi != _INF:
            self._bands[order.symbol] = (lo, hi)

    def _rebuild_band(self, symbol: str) -> None:
        lo, hi = -_INF, _INF
        for working in self._resting.get(symbol, {}).values():
            order = working.command
            sell = order.action is OrderAction.SELL
            if order.stop_price is not None:
                if sell:
                    lo = max(lo, order.stop_price)
                else:
                    hi = min(hi, order.stop_price)
            if order.limit_price is not None:
                if sell:
                    hi = min(hi, order.limit_price)
                else:
                    lo = max(lo, order.limit_price)
        if lo == -_INF and hi == _INF:
            self._bands.pop(symbol, None)
        else:
            self._bands[symbol] = (lo, hi)

    def forget(self, symbol: str) -> None:
        """The position in `symbol` and every order working in it vanish without a word (a
        broker account restored from long ago, a position moved away): nothing is reported."""
        self.positions[symbol] = Decimal(0)
        for working in self.working(symbol):
            self._status(working.command.order_id, "canceled", working.command.ts)
        self._resting.pop(symbol, None)
        self._markets.pop(symbol, None)
        self._cancels.pop(symbol, None)
        self._bands.pop(symbol, None)

    def crosses(self, order: SubmitOrder) -> list[str]:
        """The working orders of the other side in `order`'s symbol that it could trade
        against (a market order against any priced order or waiting market order, a limit
        against those it overlaps): Alpaca refuses such an order as a potential wash trade.
        Stops rest off the book until triggered, and a complex order (OCO) is exempt."""
        if order.type in (OrderType.STOP, OrderType.OCO):
            return []
        buy = order.action is OrderAction.BUY
        found: list[str] = []
        for working in self.working(order.symbol):
            other = working.command
            if other.action is order.action:
                continue
            theirs = other.limit_price
            if other.type is OrderType.MARKET or (
                theirs is not None
                and (
                    order.limit_price is None
                    or (order.limit_price >= theirs if buy else order.limit_price <= theirs)
                )
            ):
                found.append(other.order_id)
        return found

    # --- views -----------------------------------------------------------------------------

    def last(self, symbol: str) -> Decimal | None:
        """The last print of `symbol` the book has seen."""
        return self._last.get(symbol)

    def working(self, symbol: str) -> list[Working]:
        """Orders of `symbol` resting or waiting for the next print."""
        return [*self._resting.get(symbol, {}).values(), *self._markets.get(symbol, [])]

    def is_working(self, symbol: str, order_id: str) -> bool:
        return any(w.command.order_id == order_id for w in self.working(symbol))

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        """Shares the order `order_id` still works (0 when it is not working)."""
        return sum(
            (w.open_qty for w in self.working(symbol) if w.command.order_id == order_id),
            Decimal(0),
        )

    def held(self, symbol: str, action: OrderAction) -> Decimal:
        """Shares held by working orders of `action` in `symbol` (what is left of each)."""
        return sum(
            (w.open_qty for w in self.working(symbol) if w.command.action is action),
            Decimal(0),
        )

    def available(self, symbol: str, action: OrderAction) -> Decimal:
        """Shares an order of `action` may still take out of the position in `symbol`: its
        size less what working orders of that side hold (Alpaca's qty_available)."""
        return abs(self.positions.get(symbol, Decimal(0))) - self.held(symbol, action)


def _stop_hit(order: SubmitOrder, price: Decimal) -> bool:
    """`price` is at or through `order`'s stop."""
    stop = order.stop_price
    if stop is None:
        return False
    return price <= stop if order.action is OrderAction.SELL else price >= stop


def trigger_price(order: SubmitOrder, price: Decimal) -> Decimal | None:
    """The fill price if `price` triggers `order`, else None."""
    sell = order.action is OrderAction.SELL
    stop, limit = order.stop_price, order.limit_price
    if stop is not None and (price <= stop if sell else price >= stop):
        return price  # a stop becomes a market order: the tick's price, gap and all
    if limit is not None and (price >= limit if sell else price <= limit):
        return limit
    return None
