"""The engine's order commands as alpaca-py requests, and Alpaca's orders and trade updates
as the engine's events.

The engine names every order by its client order id; Alpaca answers with its own order ids
and, for an OCO, two orders (the take-profit limit, which carries the client order id, and
the stop-loss leg, which gets one of the server's). `Ledger` keeps the mapping, so a fill of
a leg reaches the engine under the OCO's id, and an OCO whose stop filled does not also
report its canceled take-profit. Numbers stay exact: trade updates and orders are read raw
(strings), never through alpaca-py's floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from attrs import define, field

from engine import (
    BrokerOrder,
    BrokerSnapshot,
    Event,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    SubmitOrder,
)

__all__ = [
    "OPEN_STATUSES",
    "Ledger",
    "broker_orders",
    "decimal_or_none",
    "order_request",
    "parse_time",
    "snapshot_of",
]

OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "partially_filled",
        "pending_new",
        "pending_cancel",
        "pending_replace",
        "accepted_for_bidding",
        "stopped",
        "suspended",
        "calculated",
        "held",
        "done_for_day",
    }
)
_CANCELED = frozenset({"canceled", "expired", "replaced"})
_SIDES = {OrderAction.BUY: OrderSide.BUY, OrderAction.SELL: OrderSide.SELL}
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.STOP}
_ZERO = Decimal(0)


def order_request(command: SubmitOrder) -> OrderRequest:
    """alpaca-py's request for `command`, under its client order id. Resting orders are
    good-till-canceled (a stop protects overnight); a fractional quantity must be a simple
    DAY order on Alpaca, so it is one; so is an extended-hours limit (flagged
    `extended_hours`: without the flag Alpaca queues it for the next regular session;
    ALPACA.md §1.11, DAY being the time in force every version of the docs accepts)."""
    whole = command.qty == command.qty.to_integral_value()
    gtc = whole and command.type is not OrderType.MARKET and not command.extended_hours
    tif = TimeInForce.GTC if gtc else TimeInForce.DAY
    common: dict[str, Any] = {
        "symbol": command.symbol,
        "qty": command.qty,
        "side": _SIDES[command.action],
        "time_in_force": tif,
        "client_order_id": command.order_id,
    }
    match command.type:
        case OrderType.MARKET:
            return MarketOrderRequest(**common)
        case OrderType.LIMIT:
            return LimitOrderRequest(
                **common,
                limit_price=_price(command.limit_price, command),
                extended_hours=command.extended_hours,
            )
        case OrderType.STOP:
            return StopOrderRequest(**common, stop_price=_price(command.stop_price, command))
        case OrderType.OCO:
            take = _price(command.limit_price, command)
            return LimitOrderRequest(
                **common,
                order_class=OrderClass.OCO,
                # alpaca-py sends prices as JSON numbers (ALPACA.md §1.2): cents survive it.
                take_profit=TakeProfitRequest(limit_price=float(take)),
                stop_loss=StopLossRequest(stop_price=float(_price(command.stop_price, command))),
            )


def _price(value: Decimal | None, command: SubmitOrder) -> Decimal:
    if value is None:
        raise ValueError(f"order {command.order_id}: a {command.type.value} order needs a price")
    return value


@define
class _Tracked:
    """One engine order at Alpaca: its members' Alpaca ids (an OCO's take-profit first,
    then its stop leg), the quantity, and how much of it the engine has been told."""

    client_id: str
    symbol: str
    qty: Decimal
    side: str = ""
    ids: list[str] = field(factory=list)
    told_filled: Decimal = _ZERO
    done: bool = False  # filled, canceled or rejected, and told so
    account: int = 0  # 0: the main account; 1: the paper account of Experience orders


@define
class Ledger:
    """What the adapter knows of the orders at Alpaca, and the translation of its news."""

    _by_client: dict[str, _Tracked] = field(factory=dict)
    _by_alpaca: dict[str, _Tracked] = field(factory=dict)
    _status: dict[str, str] = field(factory=dict)  # Alpaca id -> the last status seen
    _member_filled: dict[str, Decimal] = field(factory=dict)  # Alpaca id -> shares told
    _executions: set[str] = field(factory=set)
    positions: dict[str, Decimal] = field(factory=dict)  # signed, from fills and snapshots
    _unknown: dict[str, SubmitOrder] = field(factory=dict)  # sent, outcome not known

    # --- what the adapter did --------------------------------------------------------------

    def sending(self, command: SubmitOrder) -> None:
        """`command` is about to be sent: until an answer says otherwise, it may land."""
        self._unknown[command.order_id] = command

    def refused(self, client_id: str) -> None:
        """The broker refused it for sure: it never existed there."""
        self._unknown.pop(client_id, None)

    def placed(self, order: Mapping[str, Any], account: int = 0) -> str:
        """An order the broker holds (its JSON, legs nested): track it; return its client
        order id."""
        client_id = str(order["client_order_id"])
        self._unknown.pop(client_id, None)
        tracked = self._by_client.get(client_id)
        if tracked is None:
            tracked = _Tracked(
                client_id, str(order["symbol"]), _dec(order.get("qty")), str(order.get("side"))
            )
            tracked.account = account
            self._by_client[client_id] = tracked
        for member in (order, *(order.get("legs") or ())):
            oid = str(member["id"])
            if oid not in tracked.ids:
                tracked.ids.append(oid)
            self._by_alpaca[oid] = tracked
            self._status[oid] = str(member.get("status", ""))
        return client_id

    def sync(self, orders: Iterable[Mapping[str, Any]], positions: Mapping[str, Decimal]) -> None:
        """A snapshot was read (and given to the engine): what it says of each order and
        position is now what the engine knows; news from before it is not told again."""
        for order in orders:
            client_id = self.placed(order)
            tracked = self._by_client[client_id]
            members = [order, *(order.get("legs") or ())]
            for member in members:
                self._member_filled[str(member["id"])] = _dec(member.get("filled_qty"))
            tracked.told_filled = sum((_dec(m.get("filled_qty")) for m in members), _ZERO)
            tracked.done = not any(str(m.get("status")) in OPEN_STATUSES for m in members)
        for cid in list(self._unknown):
            if cid not in self._by_client:
                del self._unknown[cid]  # looked up and not found: it never landed
        self.positions = {s: q for s, q in positions.items() if q != 0}

    def members(self, client_id: str) -> list[str]:
        """The Alpaca ids of the order's members (an OCO: take-profit, then stop)."""
        tracked = self._by_client.get(client_id)
        return list(tracked.ids) if tracked is not None else []

    def member_status(self, alpaca_id: str) -> str | None:
        return self._status.get(alpaca_id)

    def working(self, client_id: str) -> Decimal:
        """Shares the order still works, as far as the broker has told (0: not working)."""
        tracked = self._by_client.get(client_id)
        if tracked is None or tracked.done:
            return _ZERO
        return max(tracked.qty - tracked.told_filled, _ZERO)

    def held(self, symbol: str, side: str) -> Decimal:
        """Shares of `symbol` that working orders of `side` hold."""
        return sum(
            (
                max(t.qty - t.told_filled, _ZERO)
                for t in self._by_client.values()
                if t.symbol == symbol and t.side == side and not t.done
            ),
            _ZERO,
        )

    def alpaca_id(self, client_id: str) -> str | None:
        """The Alpaca id a cancel of `client_id` goes to (an OCO: its take-profit, which
        cancels the pair)."""
        tracked = self._by_client.get(client_id)
        return tracked.ids[0] if tracked is not None and tracked.ids else None

    def account_of(self, client_id: str) -> int:
        tracked = self._by_client.get(client_id)
        return tracked.account if tracked is not None else 0

    def status(self, client_id: str) -> str | None:
        """The last status seen of the order (an OCO: of its take-profit)."""
        oid = self.alpaca_id(client_id)
        return self._status.get(oid) if oid is not None else None

    def finished(self, client_id: str) -> bool:
        """The engine has been told the order's end (filled, canceled or rejected)."""
        tracked = self._by_client.get(client_id)
        return tracked is not None and tracked.done

    def to_look_up(self) -> list[tuple[str, int]]:
        """Orders whose fate a snapshot must read one by one (client id, account): those
        sent without an answer, and those tracked as working."""
        wanted = [(cid, 0) for cid in self._unknown]
        wanted += [(t.client_id, t.account) for t in self._by_client.values() if not t.done]
        return wanted

    # --- what the broker says --------------------------------------------------------------

    def update(self, data: Mapping[str, Any], ts: datetime) -> list[Event]:
        """One trade_updates message (`data`: event, order, price, qty, ...) as the engine's
        events: fills, the end of a cancel, a rejection after acceptance; nothing for the
        steps between (`new`, `pending_*`, `replaced`)."""
        event = str(data.get("event", ""))
        order = data.get("order")
        if not isinstance(order, Mapping) or "id" not in order:
            return []
        oid = str(order["id"])
        if order.get("status"):
            self._status[oid] = str(order["status"])
        tracked = self._by_alpaca.get(oid)
        if tracked is None:
            # Not placed through this adapter (the user's bot's order, or an order of a
            # run before this one): told under its own client order id.
            tracked = self._by_client.get(str(order.get("client_order_id")))
            if tracked is None or event == "new":
                self.placed(order)
                tracked = self._by_alpaca[oid]
            else:
                tracked.ids.append(oid)
                self._by_alpaca[oid] = tracked
        if event in ("fill", "partial_fill"):
            return self._filled(tracked, order, data, ts)
        if tracked.done:
            return []
        if event in ("canceled", "expired"):
            if any(self._status.get(i) in OPEN_STATUSES for i in tracked.ids if i != oid):
                return []  # an OCO ends when both of its orders have
            tracked.done = True
            return [OrderCanceled(ts, tracked.client_id)]
        if event == "rejected":
            tracked.done = True
            reason = "rejected by the broker after it was accepted"
            return [OrderRejected(ts, tracked.client_id, reason, OrderRefusal.PERMANENT)]
        return []

    def _filled(
        self, tracked: _Tracked, order: Mapping[str, Any], data: Mapping[str, Any], ts: datetime
    ) -> list[Event]:
        execution = data.get("execution_id")
        if execution is not None:
            if execution in self._executions:
                return []  # told already (a message sent again)
            self._executions.add(str(execution))
        oid = str(order["id"])
        before = self._member_filled.get(oid, _ZERO)
        after = decimal_or_none(order.get("filled_qty"))
        qty = decimal_or_none(data.get("qty"))
        if after is not None:
            if after <= before:
                return []  # a snapshot told these shares already
            qty = after - before if qty is None else min(qty, after - before)
        if qty is None or qty <= 0:
            return []
        self._member_filled[oid] = before + qty
        price = decimal_or_none(data.get("price"))
        if price is None:
            price = _dec(order.get("filled_avg_price"))
        tracked.told_filled += qty
        if tracked.told_filled >= tracked.qty:
            tracked.done = True
        symbol = tracked.symbol
        position = decimal_or_none(data.get("position_qty"))
        if position is None:
            signed = qty if tracked.side == "buy" else -qty
            position = self.positions.get(symbol, _ZERO) + signed
        if position:
            self.positions[symbol] = position
        else:
            self.positions.pop(symbol, None)
        return [OrderFilled(ts, tracked.client_id, qty, price)]


def broker_orders(orders: Iterable[Mapping[str, Any]]) -> list[BrokerOrder]:
    """Alpaca orders (legs nested) as the engine's `BrokerOrder`s, one per client order id:
    an OCO is one order whose stop is its leg's."""
    out: dict[str, BrokerOrder] = {}
    for order in orders:
        client_id = str(order["client_order_id"])
        if client_id not in out:
            out[client_id] = _broker_order(order)
    return list(out.values())


def _broker_order(order: Mapping[str, Any]) -> BrokerOrder:
    legs: Sequence[Mapping[str, Any]] = order.get("legs") or ()
    members = [order, *legs]
    statuses = [str(m.get("status", "")) for m in members]
    filled = sum((_dec(m.get("filled_qty")) for m in members), _ZERO)
    value = sum(
        (_dec(m.get("filled_qty")) * _dec(m.get("filled_avg_price")) for m in members), _ZERO
    )
    if any(s in OPEN_STATUSES for s in statuses):
        status = "open"
    elif "filled" in statuses:
        status = "filled"
    elif "rejected" in statuses and filled == 0:
        status = "rejected"
    else:
        status = "canceled"
    oco = bool(legs) or order.get("order_class") == "oco"
    kind = OrderType.OCO if oco else _TYPES.get(str(order.get("type") or order.get("order_type")))
    stop = decimal_or_none(order.get("stop_price"))
    for leg in legs:
        stop = decimal_or_none(leg.get("stop_price")) or stop
    times = [t for m in members if (t := parse_time(m.get("updated_at"))) is not None]
    side = str(order.get("side", ""))
    return BrokerOrder(
        order_id=str(order["client_order_id"]),
        symbol=str(order["symbol"]),
        status=status,
        qty=_dec(order.get("qty")),
        filled_qty=filled,
        filled_avg_price=(value / filled) if filled else None,
        updated_at=max(times) if times else None,
        side=OrderAction(side) if side in ("buy", "sell") else None,
        type=kind,
        stop_price=stop,
        limit_price=decimal_or_none(order.get("limit_price")),
    )


def snapshot_of(
    ts: datetime,
    positions: Iterable[Mapping[str, Any]],
    orders: Iterable[Mapping[str, Any]],
) -> BrokerSnapshot:
    """GET /v2/positions and the orders read (open, and those looked up) as the engine's
    snapshot: signed quantities, average entry prices and the broker's current prices, by
    symbol in order (several accounts' positions in one symbol add up)."""
    held: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    marks: dict[str, Decimal] = {}
    for position in positions:
        symbol = str(position["symbol"])
        qty = _dec(position.get("qty"))
        if position.get("side") == "short" and qty > 0:
            qty = -qty
        if qty == 0:
            continue
        held[symbol] = held.get(symbol, _ZERO) + qty
        cost[symbol] = cost.get(symbol, _ZERO) + abs(qty) * _dec(position.get("avg_entry_price"))
        mark = decimal_or_none(position.get("current_price"))
        if mark is not None:
            marks[symbol] = mark
    symbols = sorted(s for s, q in held.items() if q != 0)
    return BrokerSnapshot(
        ts,
        tuple((s, held[s]) for s in symbols),
        tuple(broker_orders(orders)),
        tuple((s, cost[s] / abs(held[s])) for s in symbols),
        tuple((s, marks[s]) for s in symbols if s in marks),
    )


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from Alpaca (nanoseconds are cut to microseconds), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest[:9] if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def decimal_or_none(value: object) -> Decimal | None:
    """A number Alpaca sent (a string, or a JSON number), exactly; None when it is none."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _dec(value: object) -> Decimal:
    number = decimal_or_none(value)
    return number if number is not None else _ZERO
