"""The exchange's account: Alpaca's orders, positions and answers over the shared order book.

No I/O and no clock of its own: the feed's prints set the time (`on_print`), requests come in
as (method, path, query, body) and go out as a `Reply`, and what the trade_updates stream must
tell is queued in `outbox`. The fill rules are `shell.broker.matching.Book`'s, the same as
`ratchet simulate`'s; `--faults` draws from one seeded generator in the order requests and
prints arrive, so the same client against the same feed meets the same faults.

An order answers `accepted` and is routed (`new` on the stream) by `route()`: at the next
print, where it can also fill, or (the exchange playing in real time) right after its answer.
An OCO is two Alpaca orders over one book entry: the take-profit limit (the parent, `new`)
and the stop-loss (its leg, `held`); whichever triggers fills and the other is canceled.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from attrs import define, field

from engine import (
    CancelOrder,
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
from shell.broker.faults import Faults
from shell.broker.matching import WASH_TRADE, Book
from shell.exchange.wire import (
    NOT_FOUND,
    Refused,
    error,
    market_clock,
    num,
    parse_decimal,
    parse_time,
    refuse,
    stable_id,
    sub_penny,
    ts,
)

__all__ = [
    "OPEN_STATUSES",
    "Order",
    "Reply",
    "Venue",
    "Wire",
]

OPEN_STATUSES = frozenset(
    {"accepted", "new", "partially_filled", "held", "pending_new", "pending_cancel"}
)
_NOT_ROUTED = frozenset({"accepted", "pending_new"})
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP}
_SIDES = {"buy": OrderAction.BUY, "sell": OrderAction.SELL}
_TIME_IN_FORCE = ("day", "gtc")
_ZERO = Decimal(0)
_NANO = Decimal("0.000000001")
_RECONNECT = timedelta(seconds=1)

Wire = Literal["answer", "reset", "slow"]


@define
class Reply:
    """An HTTP answer, or how it goes missing: `reset` (the connection is cut without one) or
    `slow` (it comes later than any client waits)."""

    status: int
    body: Any = None  # JSON-able; None for an empty body
    wire: Wire = "answer"
    text: str | None = None  # a plain-text body instead of JSON (a proxy's 503)
    limited: bool = False  # a 429: the rate-limit headers say nothing remains


@define
class Order:
    """One Alpaca order as the exchange keeps it."""

    id: str
    seq: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    time_in_force: str
    created_at: datetime
    key: str  # the book entry this order works through
    order_class: str = ""
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    extended_hours: bool = False
    status: str = "accepted"
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    filled_qty: Decimal = _ZERO
    value: Decimal = _ZERO
    legs: list[str] = field(factory=list)
    parent: str | None = None
    intent: str = ""  # position_intent, from the position when the order was placed
    doomed: bool = False  # accepted now, rejected when routed (the `permanent` fault)

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def average(self) -> Decimal | None:
        return (self.value / self.filled_qty).quantize(_NANO) if self.filled_qty else None


@define
class _Holding:
    """A position: signed quantity and the average price of the shares held."""

    qty: Decimal = _ZERO
    average: Decimal = _ZERO


@define
class Venue:
    """One paper account on the exchange; see the module docstring."""

    start: datetime
    symbols: frozenset[str] = frozenset()
    cash: Decimal = Decimal(100_000)
    faults: Faults | None = None
    hours: MarketHours | None = None  # regular sessions; None: always regular
    clock: datetime = field(init=False)
    prints: int = 0
    outbox: list[dict[str, Any]] = field(factory=list)
    down_since: datetime | None = None  # the `drop` fault: the link is down since then
    drops: int = 0
    wash_trades: int = 0  # orders refused as potential wash trades
    _book: Book = field(init=False)
    _rng: random.Random = field(init=False)
    _orders: dict[str, Order] = field(factory=dict)
    _by_client: dict[str, str] = field(factory=dict)
    _members: dict[str, list[str]] = field(factory=dict)  # book entry -> its orders
    _holdings: dict[str, _Holding] = field(factory=dict)
    _days: dict[str, tuple[date, Decimal]] = field(factory=dict)  # session day, last close
    _unrouted: list[Order] = field(factory=list)  # accepted, not yet routed
    _seq: int = 0
    _executions: int = 0
    _oversold: list[dict[str, str]] = field(factory=list)
    _duplicates: list[str] = field(factory=list)
    _refused: dict[str, int] = field(factory=dict)
    _asset_ids: dict[str, str] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.clock = self.start
        self._rng = random.Random(self.faults.seed if self.faults else 0)
        split = self._split if self.faults is not None else None
        self._book = Book(market_fill="next", split=split, hours=self.hours)

    # --- the feed --------------------------------------------------------------------------

    def on_print(self, tick: Tick) -> bool:
        """The market trades: route the accepted orders, match the book, move the clock
        (never back). True when the print ends an outage (the link is back)."""
        self.clock = max(self.clock, tick.ts)
        self.prints += 1
        day = tick.ts.date()
        seen = self._days.get(tick.symbol)
        if seen is None or seen[0] != day:  # a new session: the last price is its reference
            self._days[tick.symbol] = (day, self._book.last(tick.symbol) or tick.price)
        back = False
        if self.down_since is not None and tick.ts - self.down_since >= _RECONNECT:
            self.down_since = None
            back = True
        self.route()
        before = self._book.oversells
        for event in self._book.match(tick):
            self._apply(event)
        if self._book.oversells != before:
            self._oversold.append({"ts": ts(tick.ts), "symbol": tick.symbol})
        return back

    def reopens(self, tick: Tick) -> bool:
        """Does `tick` end the outage of a dropped link (a second or more after it fell)?"""
        return self.down_since is not None and tick.ts - self.down_since >= _RECONNECT

    def route(self) -> None:
        """Orders accepted so far reach the market: `new` (or `rejected`, for a doomed one)."""
        if not self._unrouted:
            return
        waiting, self._unrouted = self._unrouted, []
        for order in waiting:
            if order.status not in _NOT_ROUTED or order.parent is not None:
                continue
            if order.doomed:
                self._set(order, "rejected", failed_at=self.clock)
                for leg in order.legs:
                    self._set(self._orders[leg], "rejected", failed_at=self.clock)
                self._tell("rejected", order)
            else:
                self._set(order, "new")
                self._tell("new", order)

    # --- requests --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, list[str]], body: bytes) -> Reply:
        """Answer one Trading API request (path without the query string)."""
        try:
            return self._route(method, path, query, body)
        except Refused as refused:
            code = str(refused.body.get("code", refused.status))
            self._refused[code] = self._refused.get(code, 0) + 1
            return Reply(refused.status, refused.body)

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], body: bytes) -> Reply:
        parts = path.rstrip("/").split("/")[1:]  # "/v2/orders/x" -> ["v2", "orders", "x"]
        if parts[:1] != ["v2"] or len(parts) < 2:
            raise refuse(404, 40410000, "endpoint not found")
        resource, rest = parts[1], parts[2:]
        if resource == "orders" and not rest:
            if method == "POST":
                return self._mutation(lambda: self._submit(_json(body)))
            if method == "GET":
                return Reply(200, self._list(query))
            if method == "DELETE":
                return self._mutation(self._cancel_all)
        elif resource == "orders:by_client_order_id" and not rest and method == "GET":
            client_id = _one(query, "client_order_id") or ""
            oid = self._by_client.get(client_id)
            if oid is None:
                raise Refused(404, NOT_FOUND)
            return Reply(200, self._json(self._orders[oid], nested=True))
        elif resource == "orders" and len(rest) == 1:
            if method == "GET":
                order = self._order(rest[0])
                return Reply(200, self._json(order, nested=_flag(query, "nested")))
            if method == "PATCH":
                return self._mutation(lambda: self._replace(rest[0], _json(body)))
            if method == "DELETE":
                return self._mutation(lambda: self._cancel(rest[0]))
        elif resource == "positions" and not rest:
            if method == "GET":
                return Reply(200, [self._position_json(s) for s in self._symbols_held()])
            if method == "DELETE":
                cancel = _flag(query, "cancel_orders")
                return self._mutation(lambda: self._close_all(cancel))
        elif resource == "positions" and len(rest) == 1:
            symbol = self._symbol_of(rest[0])
            if method == "GET":
                if symbol not in self._symbols_held():
                    raise refuse(404, 40410000, "position does not exist")
                return Reply(200, self._position_json(symbol))
            if method == "DELETE":
                return self._mutation(lambda: self._close(symbol, query))
        elif resource == "account" and not rest and method == "GET":
            return Reply(200, self._account_json())
        elif resource == "clock" and not rest and method == "GET":
            return Reply(200, market_clock(self.clock, self.hours))
        elif resource == "assets" and method == "GET":
            if not rest:
                return Reply(200, [self._asset_json(s) for s in sorted(self.symbols)])
            if len(rest) == 1:
                symbol = self._symbol_of(rest[0])
                if symbol not in self.symbols:
                    raise refuse(404, 40410000, f"asset not found for {rest[0]}")
                return Reply(200, self._asset_json(symbol))
        else:
            raise refuse(404, 40410000, "endpoint not found")
        raise refuse(405, 40510000, "method not allowed")

    def _mutation(self, carry_out: Callable[[], Reply]) -> Reply:
        """A request that changes the account, through the faults that can befall it: an
        outage, a dropped connection (carried out or not), a passing refusal."""
        if self.down_since is not None:
            return Reply(503, wire="reset")  # nothing gets through a dropped connection
        faults = self.faults
        if faults is not None and faults.drop and self._rng.random() < faults.drop:
            # The connection drops with this request: half the time it reached the exchange
            # (carried out; the client then sees the answer cut or too late), half the time
            # it did not.
            self.down_since = self.clock
            self.drops += 1
            if self._rng.random() < 0.5:
                with contextlib.suppress(Refused):
                    carry_out()
                return Reply(503, wire="reset" if self._rng.random() < 0.5 else "slow")
            return Reply(503, wire="reset")
        if faults is not None and self._rng.random() < faults.transient:
            if self._rng.random() < 0.5:
                return Reply(429, error(42910000, "rate limit exceeded"), limited=True)
            return Reply(503, text="503 Service Unavailable")
        return carry_out()

    # --- submit ----------------------------------------------------------------------------

    def _submit(self, body: dict[str, Any]) -> Reply:
        request = self._order_request(body)
        client_id = request["client_order_id"]
        if client_id is not None and client_id in self._by_client:
            self._duplicates.append(client_id)
            raise refuse(422, 40010001, "client_order_id must be unique")
        reducing = self._reducing(request["symbol"], request["side"])
        doomed = False
        faults = self.faults
        if faults is not None and reducing:
            if self._rng.random() < faults.permanent:
                doomed = True  # answered `accepted`, rejected on the stream when routed
            elif request["side"] == "sell" and self._rng.random() < faults.locked:
                raise Refused(403, self._insufficient(request["symbol"], request["qty"], _ZERO))
        if request["order_class"] != "oco":
            probe = SubmitOrder(
                self.clock, "", request["symbol"], _SIDES[request["side"]],
                _TYPES[request["type"]], request["qty"], request["stop_price"],
                request["limit_price"], extended_hours=request["extended_hours"],
            )  # fmt: skip
            if self._book.crosses(probe):
                self.wash_trades += 1
                raise refuse(403, 40310000, WASH_TRADE)
        if reducing:
            self._check_available(request["symbol"], request["side"], request["qty"])
        order = self._place(request, doomed)
        return Reply(200, self._json(order, nested=True))

    def _order_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a POST /v2/orders body the way Alpaca does, as far as the exchange
        supports it (market, limit, stop; OCO exits)."""
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise refuse(422, 40010001, "symbol is required")
        symbol = symbol.upper()
        if symbol not in self.symbols:
            raise refuse(422, 42210000, f"asset {symbol!r} not found")
        side = body.get("side")
        if side not in _SIDES:
            raise refuse(422, 40010001, "side must be buy or sell")
        kind = body.get("type")
        order_class = body.get("order_class") or ""
        if order_class == "simple":
            order_class = ""
        if order_class not in ("", "oco"):
            raise refuse(422, 42210000, f"order_class {order_class} is not supported")
        if kind not in _TYPES:
            supported = ", ".join(_TYPES)
            raise refuse(422, 42210000, f"order type {kind} is not supported ({supported})")
        tif = body.get("time_in_force")
        if tif not in _TIME_IN_FORCE:
            raise refuse(422, 42210000, f"time_in_force {tif} is not supported (day, gtc)")
        if body.get("notional") is not None:
            raise refuse(422, 42210000, "notional orders are not supported")
        if body.get("qty") is None:
            raise refuse(422, 40010001, "qty is required")
        qty = parse_decimal(body["qty"], "qty")
        if qty <= 0:
            raise refuse(422, 40010001, "qty must be > 0")
        if qty != qty.to_integral_value() and (tif != "day" or order_class):
            raise refuse(422, 42210000, "fractional orders must be simple DAY orders")
        limit = self._price(body, "limit_price")
        stop = self._price(body, "stop_price")
        take_profit, stop_loss = body.get("take_profit"), body.get("stop_loss")
        if order_class == "oco":
            if kind != "limit":
                raise refuse(422, 42210000, "oco orders must be limit orders")
            take = self._price(take_profit if isinstance(take_profit, dict) else {}, "limit_price")
            loss_body = stop_loss if isinstance(stop_loss, dict) else {}
            loss = self._price(loss_body, "stop_price")
            if take is None or loss is None:
                raise refuse(422, 40010001, "oco orders require take_profit and stop_loss prices")
            if loss_body.get("limit_price") is not None:
                raise refuse(422, 42210000, "stop-limit legs are not supported")
            if limit is not None and limit != take:
                raise refuse(422, 40010001, "limit_price must equal take_profit")
            gap = (take - loss) if side == "sell" else (loss - take)
            if gap < Decimal("0.01"):
                word = "less" if side == "sell" else "greater"
                message = f"stop_loss.stop_price must be {word} than take_profit.limit_price"
                raise refuse(422, 42210000, message)
            limit, stop = take, loss
        else:
            if take_profit is not None or stop_loss is not None:
                raise refuse(422, 42210000, "take_profit and stop_loss need order_class")
            if kind == "limit" and limit is None:
                raise refuse(422, 40010001, "limit_price is required for limit orders")
            if kind == "stop" and stop is None:
                raise refuse(422, 40010001, "stop_price is required for stop orders")
            if kind != "limit" and limit is not None:
                raise refuse(422, 40010001, f"limit_price is not allowed for {kind}")
            if kind != "stop" and stop is not None:
                raise refuse(422, 40010001, f"stop_price is not allowed for {kind}")
        extended = body.get("extended_hours") or False
        if extended and (kind != "limit" or order_class or tif not in ("day", "gtc")):
            raise refuse(422, 42210000, "extended hours order must be DAY limit orders")
        client_id = body.get("client_order_id")
        if client_id is not None:
            if not isinstance(client_id, str) or not client_id:
                raise refuse(422, 40010001, "client_order_id must be a string")
            if len(client_id) > 128:
                raise refuse(422, 40010001, "client_order_id must be at most 128 characters")
        return {
            "symbol": symbol,
            "side": side,
            "type": kind,
            "qty": qty,
            "time_in_force": tif,
            "order_class": order_class,
            "limit_price": limit,
            "stop_price": stop,
            "client_order_id": client_id,
            "extended_hours": bool(body.get("extended_hours") or False),
        }

    @staticmethod
    def _price(body: Mapping[str, Any], name: str) -> Decimal | None:
        raw = body.get(name)
        if raw is None:
            return None
        price = parse_decimal(raw, name)
        if price <= 0:
            raise refuse(422, 40010001, f"{name} must be > 0")
        if sub_penny(price):
            message = (
                f"invalid {name} {raw}. sub-penny increment does not fulfill minimum "
                "pricing criteria"
            )
            raise refuse(422, 42210000, message)
        return price

    def _place(self, request: dict[str, Any], doomed: bool) -> Order:
        """Create the order (and its stop-loss leg for an OCO) and work it in the book."""
        parent = self._new_order(request, key="", doomed=doomed)
        parent.key = parent.id
        members = [parent.id]
        if request["order_class"] == "oco":
            parent.stop_price = None
            leg = self._new_order(
                {**request, "type": "stop", "limit_price": None, "client_order_id": None},
                key=parent.id,
            )
            leg.limit_price, leg.stop_price = None, request["stop_price"]
            leg.status, leg.parent = "held", parent.id
            parent.legs.append(leg.id)
            members.append(leg.id)
        self._members[parent.key] = members
        if not doomed:
            self._book.place(self._command(parent))
        return parent

    def _new_order(self, request: dict[str, Any], key: str, doomed: bool = False) -> Order:
        self._seq += 1
        oid = stable_id("order", self._seq)
        client_id = request["client_order_id"] or stable_id("client-order", self._seq)
        order = Order(
            id=oid,
            seq=self._seq,
            client_order_id=client_id,
            symbol=request["symbol"],
            side=request["side"],
            type=request["type"],
            qty=request["qty"],
            time_in_force=request["time_in_force"],
            created_at=self.clock,
            updated_at=self.clock,
            key=key,
            order_class=request["order_class"],
            limit_price=request["limit_price"],
            stop_price=request["stop_price"],
            extended_hours=request["extended_hours"],
            intent=_intent(request["side"], request["symbol"], self._book.positions),
            doomed=doomed,
        )
        self._orders[oid] = order
        self._by_client[client_id] = oid
        self._unrouted.append(order)
        return order

    def _command(self, order: Order) -> SubmitOrder:
        """The book's view of an order (of an OCO: both prices, one quantity)."""
        kind = _TYPES[order.type]
        stop = order.stop_price
        if order.legs:
            kind = OrderType.OCO
            stop = self._orders[order.legs[0]].stop_price
        return SubmitOrder(
            self.clock,
            order.key,
            order.symbol,
            _SIDES[order.side],
            kind,
            order.qty - order.filled_qty,
            stop,
            order.limit_price,
            extended_hours=order.extended_hours,
        )

    # --- positions and what sells may take -------------------------------------------------

    def _reducing(self, symbol: str, side: str) -> bool:
        """Does an order of `side` take shares out of the position (a long's sell)?"""
        held = self._book.positions.get(symbol, _ZERO)
        return (held > 0 and side == "sell") or (held < 0 and side == "buy")

    def _check_available(self, symbol: str, side: str, qty: Decimal) -> None:
        available = self._book.available(symbol, _SIDES[side])
        if qty > available:
            raise Refused(403, self._insufficient(symbol, qty, available))

    def _insufficient(self, symbol: str, requested: Decimal, available: Decimal) -> dict[str, Any]:
        """Alpaca's 403 for shares held by other orders (code 40310000)."""
        existing = abs(self._book.positions.get(symbol, _ZERO))
        return error(
            40310000,
            f"insufficient qty available for order (requested: {num(requested)}, "
            f"available: {num(available)})",
            available=num(available),
            existing_qty=num(existing),
            held_for_orders=num(existing - available),
            symbol=symbol,
        )

    def _symbols_held(self) -> list[str]:
        return sorted(s for s, q in self._book.positions.items() if q != 0)

    def _symbol_of(self, text: str) -> str:
        """A symbol, or the asset id of one, from a path."""
        for symbol in self.symbols:
            if stable_id("asset", symbol) == text:
                return symbol
        return text.upper()

    # --- cancel and replace ----------------------------------------------------------------

    def _order(self, oid: str) -> Order:
        order = self._orders.get(oid)
        if order is None:
            raise Refused(404, NOT_FOUND)
        return order

    def _cancel(self, oid: str) -> Reply:
        order = self._order(oid)
        if order.status == "pending_cancel":
            return Reply(204)  # already being canceled
        if not order.open:
            raise refuse(422, 42210000, f'order is already in "{order.status}" state')
        faults = self.faults
        command = CancelOrder(self.clock, order.key, order.symbol)
        late = faults is not None and self._rng.random() < faults.late
        if late and self._book.is_working(order.symbol, order.key):
            # Accepted as pending_cancel; carried out at the symbol's next print, after that
            # print has had its chance to fill the order.
            self._book.cancel_at_next_print(command)
            for member in self._group(order):
                self._set(member, "pending_cancel")
                self._tell("pending_cancel", member)
            return Reply(204)
        self._cancel_now(order)
        return Reply(204)

    def _cancel_now(self, order: Order) -> None:
        """Cancel `order` (and the rest of its OCO) at once: pending_cancel, then canceled."""
        members = [m for m in self._group(order) if m.open]
        if not order.doomed:
            self._book.cancel(CancelOrder(self.clock, order.key, order.symbol))
        for member in members:
            self._set(member, "pending_cancel")
            self._tell("pending_cancel", member)
        for member in members:
            self._set(member, "canceled", canceled_at=self.clock)
            self._tell("canceled", member)

    def _group(self, order: Order) -> list[Order]:
        return [self._orders[m] for m in self._members.get(order.key, [order.id])]

    def _cancel_all(self) -> Reply:
        answers = []
        for order in [o for o in self._orders.values() if o.open]:
            if order.open:  # not canceled meanwhile with its OCO group
                self._cancel_now(order)
            answers.append({"id": order.id, "status": 200, "body": None})
        return Reply(207, answers)

    def _replace(self, oid: str, body: dict[str, Any]) -> Reply:
        old = self._order(oid)
        if old.status in ("accepted", "pending_new"):
            raise refuse(422, 42210000, "unable to replace order, order isn't sent to exchange yet")
        if not old.open or old.status in ("pending_cancel", "pending_replace"):
            raise refuse(422, 42210000, f'order is already in "{old.status}" state')
        if old.status == "partially_filled":
            raise refuse(422, 42210000, "unable to replace a partially filled order")
        unknown = set(body) - {"qty", "time_in_force", "limit_price", "stop_price", "trail"}
        unknown -= {"client_order_id"}
        if unknown or body.get("trail") is not None:
            name = "trail" if body.get("trail") is not None else sorted(unknown)[0]
            raise refuse(422, 40010001, f"{name} cannot be replaced for this order")
        qty = old.qty if body.get("qty") is None else parse_decimal(body["qty"], "qty")
        if qty <= 0 or qty != qty.to_integral_value():
            raise refuse(422, 40010001, "qty must be a whole number > 0")
        tif = body.get("time_in_force") or old.time_in_force
        if tif not in _TIME_IN_FORCE:
            raise refuse(422, 42210000, f"time_in_force {tif} is not supported (day, gtc)")
        limit = self._price(body, "limit_price")
        stop = self._price(body, "stop_price")
        if limit is not None and old.type != "limit":
            raise refuse(422, 40010001, f"limit_price is not allowed for {old.type}")
        if stop is not None and old.type != "stop":
            raise refuse(422, 40010001, f"stop_price is not allowed for {old.type}")
        client_id = body.get("client_order_id")
        if client_id is not None and client_id in self._by_client:
            self._duplicates.append(str(client_id))
            raise refuse(422, 40010001, "client_order_id must be unique")
        group = self._group(old)
        others = [m for m in group if m.id != old.id]
        if old.order_class == "oco":
            new_limit = limit if limit is not None else old.limit_price
            new_stop = stop if stop is not None else old.stop_price
            take = new_limit if old.type == "limit" else others[0].limit_price
            loss = new_stop if old.type == "stop" else others[0].stop_price
            assert take is not None and loss is not None
            if ((take - loss) if old.side == "sell" else (loss - take)) < Decimal("0.01"):
                raise refuse(422, 42210000, "stop_loss must stay beyond take_profit")
        if self._reducing(old.symbol, old.side):
            free = self._book.available(old.symbol, _SIDES[old.side]) + old.qty
            if qty > free:
                raise Refused(403, self._insufficient(old.symbol, qty, free))
        request = {
            "symbol": old.symbol,
            "side": old.side,
            "type": old.type,
            "qty": qty,
            "time_in_force": tif,
            "order_class": old.order_class,
            "limit_price": limit if limit is not None else old.limit_price,
            "stop_price": stop if stop is not None else old.stop_price,
            "client_order_id": client_id,
            "extended_hours": old.extended_hours,
        }
        self._book.cancel(CancelOrder(self.clock, old.key, old.symbol))
        new = self._new_order(request, key=old.key if old.order_class else "")
        new.replaces = old.id
        if not old.order_class:
            new.key = new.id
            self._members[new.key] = [new.id]
        else:
            self._members[old.key] = [new.id if m == old.id else m for m in self._members[old.key]]
            new.parent, new.legs = old.parent, list(old.legs)
            for other in others:
                if other.parent == old.id:
                    other.parent = new.id
                other.legs = [new.id if leg == old.id else leg for leg in other.legs]
                other.qty = qty
            if old.status == "held":
                new.status = "held"
        self._set(old, "pending_replace")
        self._tell("pending_replace", old)
        self._set(old, "replaced", replaced_at=self.clock, replaced_by=new.id)
        self._tell("replaced", old)
        head = self._orders[self._members[new.key][0]]
        self._book.place(self._command(head))
        return Reply(200, self._json(new, nested=True))

    # --- positions -------------------------------------------------------------------------

    def _close(self, symbol: str, query: Mapping[str, list[str]]) -> Reply:
        held = self._book.positions.get(symbol, _ZERO)
        if held == 0:
            raise refuse(404, 40410000, "position does not exist")
        raw_qty, raw_pct = _one(query, "qty"), _one(query, "percentage")
        if raw_qty is not None and raw_pct is not None:
            raise refuse(422, 40010001, "only one of qty or percentage may be given")
        qty = abs(held)
        if raw_qty is not None:
            qty = parse_decimal(raw_qty, "qty")
        elif raw_pct is not None:
            pct = parse_decimal(raw_pct, "percentage")
            if not 0 < pct <= 100:
                raise refuse(422, 40010001, "percentage must be between 0 and 100")
            qty = (abs(held) * pct / 100).quantize(_NANO, rounding=ROUND_DOWN)
        if qty <= 0:
            raise refuse(422, 40010001, "qty must be > 0")
        side = "sell" if held > 0 else "buy"
        self._check_available(symbol, side, qty)
        request = {
            "symbol": symbol,
            "side": side,
            "type": "market",
            "qty": qty,
            "time_in_force": "day",
            "order_class": "",
            "limit_price": None,
            "stop_price": None,
            "client_order_id": None,
            "extended_hours": False,
        }
        return Reply(200, self._json(self._place(request, doomed=False), nested=True))

    def _close_all(self, cancel_orders: bool) -> Reply:
        if cancel_orders:
            for order in [o for o in self._orders.values() if o.open]:
                if order.open:
                    self._cancel_now(order)
        answers = []
        for symbol in self._symbols_held():
            try:
                reply = self._close(symbol, {})
                answers.append(
                    {
                        "symbol": symbol,
                        "status": 200,
                        "order_id": reply.body["id"],
                        "body": reply.body,
                    }
                )
            except Refused as refused:
                answers.append({"symbol": symbol, "status": refused.status, "body": refused.body})
        return Reply(207, answers)

    # --- fills -----------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        """A book event at a print: a fill, or a late cancel carried out (or too late)."""
        if type(event) is OrderFilled:
            self._fill(event)
        elif type(event) is OrderCanceled:
            for member in self._orders_of(event.order_id):
                if member.open:
                    self._set(member, "canceled", canceled_at=self.clock)
                    self._tell("canceled", member)
        elif type(event) is CancelRejected:
            pass  # the order filled at this print before its late cancel: the fill was told

    def _orders_of(self, key: str) -> list[Order]:
        return [self._orders[m] for m in self._members.get(key, [])]

    def _fill(self, fill: OrderFilled) -> None:
        members = [m for m in self._orders_of(fill.order_id) if m.open]
        order = members[0]
        if len(members) > 1:  # an OCO: the take-profit fills at its limit, else the stop
            limit = members[0].limit_price
            order = members[0] if fill.price == limit else members[1]
        holding = self._holdings.setdefault(order.symbol, _Holding())
        signed = fill.qty if order.side == "buy" else -fill.qty
        if holding.qty == 0 or (holding.qty > 0) == (signed > 0):
            size = abs(holding.qty) + fill.qty
            holding.average = (abs(holding.qty) * holding.average + fill.qty * fill.price) / size
        holding.qty += signed
        if holding.qty == 0:
            holding.average = _ZERO
        self.cash -= signed * fill.price
        order.filled_qty += fill.qty
        order.value += fill.qty * fill.price
        done = order.filled_qty >= order.qty
        self._set(order, "filled" if done else "partially_filled", filled_at=self.clock)
        self._executions += 1
        self._tell(
            "fill" if done else "partial_fill",
            order,
            execution_id=stable_id("execution", self._executions),
            price=num(fill.price),
            qty=num(fill.qty),
            position_qty=num(holding.qty),
        )
        for other in members:
            if other is not order:
                self._set(other, "canceled", canceled_at=self.clock)
                self._tell("canceled", other)

    def _split(self) -> bool:
        """The `partial` fault: does this market order fill in two parts?"""
        assert self.faults is not None
        return self._rng.random() < self.faults.partial

    # --- status changes and the stream -----------------------------------------------------

    def _set(self, order: Order, status: str, **stamps: Any) -> None:
        order.status = status
        order.updated_at = self.clock
        for name, value in stamps.items():
            setattr(order, name, value)

    def _tell(self, event: str, order: Order, **extra: str) -> None:
        """Queue a trade_updates message (the order as it is now)."""
        data: dict[str, Any] = {"event": event}
        if "execution_id" in extra:
            data["execution_id"] = extra.pop("execution_id")
        data["order"] = self._json(order, nested=True)
        data["timestamp"] = ts(self.clock)
        data.update(extra)
        self.outbox.append(data)

    def take_outbox(self) -> list[dict[str, Any]]:
        out, self.outbox = self.outbox, []
        return out

    # --- JSON ------------------------------------------------------------------------------

    def _json(self, order: Order, nested: bool) -> dict[str, Any]:
        """The Order object as Alpaca returns it (legs only when `nested`)."""
        average = order.average
        legs = [self._json(self._orders[leg], nested=False) for leg in order.legs]
        return {
            "id": order.id,
            "client_order_id": order.client_order_id,
            "created_at": ts(order.created_at),
            "updated_at": ts(order.updated_at or order.created_at),
            "submitted_at": ts(order.created_at),
            "filled_at": _maybe_ts(order.filled_at if order.status == "filled" else None),
            "expired_at": None,
            "canceled_at": _maybe_ts(order.canceled_at),
            "failed_at": _maybe_ts(order.failed_at),
            "replaced_at": _maybe_ts(order.replaced_at),
            "replaced_by": order.replaced_by,
            "replaces": order.replaces,
            "asset_id": self._asset_id(order.symbol),
            "symbol": order.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": num(order.qty),
            "filled_qty": num(order.filled_qty),
            "filled_avg_price": None if average is None else num(average),
            "order_class": order.order_class,
            "order_type": order.type,
            "type": order.type,
            "side": order.side,
            "position_intent": order.intent,
            "time_in_force": order.time_in_force,
            "limit_price": None if order.limit_price is None else num(order.limit_price),
            "stop_price": None if order.stop_price is None else num(order.stop_price),
            "status": order.status,
            "extended_hours": order.extended_hours,
            "legs": legs if nested and legs else None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": None,
        }

    def _asset_id(self, symbol: str) -> str:
        found = self._asset_ids.get(symbol)
        if found is None:
            found = self._asset_ids[symbol] = stable_id("asset", symbol)
        return found

    def _position_json(self, symbol: str) -> dict[str, Any]:
        qty = self._book.positions[symbol]
        holding = self._holdings.get(symbol, _Holding())
        price = self._book.last(symbol) or holding.average
        lastday = self._days[symbol][1] if symbol in self._days else price
        side = OrderAction.SELL if qty > 0 else OrderAction.BUY
        available = self._book.available(symbol, side)
        cost = abs(qty) * holding.average
        value = qty * price
        pnl = value - qty * holding.average
        intraday = qty * (price - lastday)
        return {
            "asset_id": stable_id("asset", symbol),
            "symbol": symbol,
            "exchange": "NYSE",
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": num(qty),
            "qty_available": num(available if qty > 0 else -available),
            "avg_entry_price": num(holding.average.quantize(_NANO)),
            "side": "long" if qty > 0 else "short",
            "market_value": num(value),
            "cost_basis": num(cost.quantize(_NANO)),
            "unrealized_pl": num(pnl.quantize(_NANO)),
            "unrealized_plpc": num((pnl / cost).quantize(_NANO)) if cost else "0",
            "unrealized_intraday_pl": num(intraday.quantize(_NANO)),
            "unrealized_intraday_plpc": num((intraday / abs(qty * lastday)).quantize(_NANO))
            if lastday
            else "0",
            "current_price": num(price),
            "lastday_price": num(lastday),
            "change_today": num(((price - lastday) / lastday).quantize(_NANO)) if lastday else "0",
        }

    def _account_json(self) -> dict[str, Any]:
        long_value = short_value = _ZERO
        for symbol, qty in self._book.positions.items():
            price = self._book.last(symbol) or _ZERO
            if qty > 0:
                long_value += qty * price
            elif qty < 0:
                short_value += qty * price
        equity = self.cash + long_value + short_value
        buying_power = self.cash + short_value  # short-sale proceeds are not spendable
        return {
            "id": stable_id("account", "paper"),
            "account_number": "PA0RATCHET01",
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "buying_power": num(buying_power),
            "regt_buying_power": num(buying_power),
            "daytrading_buying_power": num(buying_power),
            "non_marginable_buying_power": num(buying_power),
            "cash": num(self.cash),
            "portfolio_value": num(equity),
            "equity": num(equity),
            "last_equity": num(equity),
            "long_market_value": num(long_value),
            "short_market_value": num(short_value),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "multiplier": "1",
            "shorting_enabled": True,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "created_at": ts(self.start),
        }

    @staticmethod
    def _asset_json(symbol: str) -> dict[str, Any]:
        return {
            "id": stable_id("asset", symbol),
            "class": "us_equity",
            "exchange": "NYSE",
            "symbol": symbol,
            "name": symbol,
            "status": "active",
            "tradable": True,
            "marginable": True,
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": True,
        }

    def _list(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """GET /v2/orders with alpaca-py's filters."""
        status = _one(query, "status") or "open"
        if status not in ("open", "closed", "all"):
            raise refuse(422, 40010001, f"invalid status {status}")
        raw_limit = _one(query, "limit") or "50"
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise refuse(422, 40010001, f"invalid limit {raw_limit}")
        limit = min(int(raw_limit), 500)
        after = _one(query, "after")
        until = _one(query, "until")
        after_ts = parse_time(after, "after") if after else None
        until_ts = parse_time(until, "until") if until else None
        direction = _one(query, "direction") or "desc"
        if direction not in ("asc", "desc"):
            raise refuse(422, 40010001, f"invalid direction {direction}")
        nested = _flag(query, "nested")
        side = _one(query, "side")
        raw_symbols = _one(query, "symbols")
        symbols = {s.strip().upper() for s in raw_symbols.split(",")} if raw_symbols else None
        chosen: list[Order] = []
        # Orders are kept in the order they were made, which is their submitted_at order
        # (the clock never goes back): walk from the wanted end and stop at `limit`.
        orders = self._orders.values()
        for order in reversed(orders) if direction == "desc" else orders:
            if len(chosen) == limit:
                break
            if nested and order.parent is not None:
                continue  # rolled up into its parent's legs
            if (status == "open" and not order.open) or (status == "closed" and order.open):
                continue
            if after_ts is not None and not order.created_at > after_ts:
                continue
            if until_ts is not None and not order.created_at < until_ts:
                continue
            if side is not None and order.side != side:
                continue
            if symbols is not None and order.symbol not in symbols:
                continue
            chosen.append(order)
        return [self._json(o, nested=nested) for o in chosen]

    # --- books: the protection laws, checked from outside ---------------------------------

    def books(self, positions: Mapping[str, Decimal] | None = None) -> dict[str, Any]:
        """What the exchange knows about the laws ratchet must keep, as one JSON-able object:
        oversells (a fill that flipped a position), client order ids placed twice (and the
        duplicates refused), and for each position (the account's, or `positions`) whether
        working stops cover all its shares."""
        wanted = (
            dict(positions)
            if positions is not None
            else {s: self._book.positions[s] for s in self._symbols_held()}
        )
        coverage = {}
        for symbol in sorted(wanted):
            qty = wanted[symbol]
            exit_side = OrderAction.SELL if qty > 0 else OrderAction.BUY
            stops = [
                w
                for w in self._book.working(symbol)
                if w.command.stop_price is not None and w.command.action is exit_side
            ]
            stop_qty = sum((w.open_qty for w in stops), _ZERO)
            coverage[symbol] = {
                "qty": num(qty),
                "stop_qty": num(stop_qty),
                "covered": qty == 0 or stop_qty >= abs(qty),
                "stops": [
                    {"order_id": self._stop_id(w.command.order_id), "stop_price": num(p)}
                    for w in stops
                    if (p := w.command.stop_price) is not None
                ],
            }
        counts: dict[str, int] = {}
        for order in self._orders.values():
            counts[order.client_order_id] = counts.get(order.client_order_id, 0) + 1
        return {
            "clock": ts(self.clock),
            "prints": self.prints,
            "positions": {s: num(self._book.positions[s]) for s in self._symbols_held()},
            "cash": num(self.cash),
            "fills": self._book.fills,
            "oversells": self._book.oversells,
            "oversold": list(self._oversold),
            "orders": len(self._orders),
            "open_orders": [
                {
                    "id": o.id,
                    "client_order_id": o.client_order_id,
                    "symbol": o.symbol,
                    "side": o.side,
                    "type": o.type,
                    "qty": num(o.qty),
                    "status": o.status,
                }
                for o in self._orders.values()
                if o.open
            ],
            "client_order_ids_placed_twice": sorted(c for c, n in counts.items() if n > 1),
            "duplicates_refused": list(self._duplicates),
            "refusals": dict(sorted(self._refused.items())),
            "drops": self.drops,
            # The session rules' figures, as `simulate` reports them: stops a print outside
            # the regular session went through (they slept until the open), market orders
            # that waited for it, orders refused as potential wash trades.
            "stops_waited": len(self._book.stops_waited),
            "orders_waited": len(self._book.orders_waited),
            "wash_trades_refused": self.wash_trades,
            "coverage": coverage,
            "all_covered": all(c["covered"] for c in coverage.values()),
        }

    def _stop_id(self, key: str) -> str:
        """The Alpaca id of the stop working through book entry `key`."""
        for member in self._orders_of(key):
            if member.stop_price is not None:
                return member.id
        return key


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_float=Decimal) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise refuse(400, 40010000, "request body format is invalid")
    return data


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    """A boolean query parameter; alpaca-py sends Python's `True`."""
    return (_one(query, name) or "").lower() == "true"


def _maybe_ts(moment: datetime | None) -> str | None:
    return None if moment is None else ts(moment)


def _intent(side: str, symbol: str, positions: Mapping[str, Decimal]) -> str:
    held = positions.get(symbol, _ZERO)
    if side == "buy":
        return "buy_to_close" if held < 0 else "buy_to_open"
    return "sell_to_close" if held > 0 else "sell_to_open"
