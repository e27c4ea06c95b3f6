"""A simulated broker: deterministic, no I/O; it fills resting orders against the ticks it sees.

Market orders fill at the next tick of the symbol (or the last one, with `market_fill="same"`),
and so does a limit that is already marketable when it arrives (at the market, if still within
its limit; otherwise it rests);
a stop triggers on the first tick at or through it and fills at that tick's price (a gap is
not forgiven); a limit fills when price reaches it, at the limit. Acknowledgements come back
in the same instant as the command.
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
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    SubmitOrder,
    Tick,
)

__all__ = ["PROFILES", "Faults", "SimulatedBroker"]

_NOTHING: tuple[Event, ...] = ()
_INF = Decimal("Infinity")


_RECONNECT = timedelta(seconds=1)


@define
class _Status:
    """What the broker would report about one order."""

    command: SubmitOrder
    status: str = "open"
    filled: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    updated: datetime | None = None  # its last fill or cancel

    @property
    def average(self) -> Decimal | None:
        return self.value / self.filled if self.filled else None


@define
class _Resting:
    command: SubmitOrder
    open_qty: Decimal


_RATES = ("transient", "permanent", "locked", "partial", "late", "drop", "lost", "stuck")

# Named fault profiles for `ratchet simulate --faults NAME[,key=value...]` (a NAME=RATE after
# the profile overrides one of its rates).
PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    "flaky": {"transient": 0.2},
    "alpaca": {
        "transient": 0.05,
        "locked": 0.05,
        "partial": 0.2,
        "late": 0.2,
        "drop": 0.01,
        "lost": 0.01,
    },
    "high": {
        "transient": 0.3,
        "permanent": 0.05,
        "locked": 0.1,
        "partial": 0.3,
        "late": 0.3,
        "drop": 0.05,
        "lost": 0.05,
        "stuck": 0.02,
    },
}


@define
class Faults:
    """Misbehaviour to inject, deterministic for a given seed and input. Each is a rate:

    - `transient`: an order or cancel refused for a passing reason (HTTP 503, or 429 when
      the 200 requests a minute are spent); the same client order id may be sent again.
    - `permanent`: an exit-side order refused for good (HTTP 422, order parameters invalid).
    - `locked`: a sell refused with HTTP 403 code 40310000 "insufficient qty available for
      order", as when shares are still held for an order whose cancel the broker has not
      released yet.
    - `partial`: a market order fills in two parts, half at one print and the rest at the next.
    - `late`: a cancel takes effect only at the symbol's next print; the order may fill first,
      and the cancel is then answered 422 "order is already filled".
    - `drop`: the connection drops while a command is sent (the command is lost); it comes
      back at the next print, followed by a snapshot of positions and orders.
    - `lost`: an order is created but the answer to its submission is lost (an HTTP timeout:
      reported as a transient refusal); sent again, it is refused as a duplicate id.
    - `stuck`: a cancel is refused for good (HTTP 422 order is not cancelable).
    """

    transient: float = 0.0
    seed: int = 0
    permanent: float = 0.0
    locked: float = 0.0
    partial: float = 0.0
    late: float = 0.0
    drop: float = 0.0
    lost: float = 0.0
    stuck: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """From `high`, `high,seed=7` or `transient=0.3,locked=0.1,seed=7`; ValueError names
        what is wrong."""
        values: dict[str, str] = {}
        expected = f"a profile ({', '.join(PROFILES)}) or NAME=VALUE with NAME one of seed, " + (
            ", ".join(_RATES)
        )
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep and name in PROFILES:
                values.update({k: str(v) for k, v in PROFILES[name].items()})
                continue
            if not sep or (name not in _RATES and name != "seed"):
                raise ValueError(f"--faults: {part!r}: expected {expected}")
            values[name] = value
        rates: dict[str, float] = {}
        for name in _RATES:
            raw = values.get(name, "0")
            try:
                rate = float(raw)
            except ValueError:
                raise ValueError(f"--faults: {name}={raw!r}: a rate from 0 to 1") from None
            if not 0 <= rate <= 1:
                raise ValueError(f"--faults: {name}={raw}: allowed 0 to 1")
            rates[name] = rate
        raw_seed = values.get("seed", "0")
        try:
            seed = int(raw_seed)
        except ValueError:
            raise ValueError(f"--faults: seed={raw_seed!r}: a whole number") from None
        return cls(seed=seed, **rates)


@define
class SimulatedBroker:
    """The broker of `ratchet simulate` and of the tests; the only mutable thing in a fold."""

    market_fill: Literal["next", "same"] = "next"
    _resting: dict[str, dict[str, _Resting]] = field(factory=dict)
    _markets: dict[str, list[_Resting]] = field(factory=dict)
    _bands: dict[str, tuple[Decimal, Decimal]] = field(factory=dict)
    _last: dict[str, Decimal] = field(factory=dict)
    _ids: set[str] = field(factory=set)
    _cancels: dict[str, list[CancelOrder]] = field(factory=dict)  # late: at the next print
    _filled: set[str] = field(factory=set)
    _orders: dict[str, _Status] = field(factory=dict)
    _changed: set[str] = field(factory=set)  # orders that changed while the link was down
    _down_at: datetime | None = None
    reconnects: int = 0
    faults: Faults | None = None
    _same: bool = field(init=False, default=False)
    _rng: random.Random = field(init=False, factory=random.Random)
    positions: dict[str, Decimal] = field(factory=dict)
    oversells: int = 0
    fills: int = 0

    def __attrs_post_init__(self) -> None:
        self._same = self.market_fill == "same"
        self._rng = random.Random(self.faults.seed if self.faults else 0)

    # --- the engine's commands -------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> list[Event]:
        """Carry out order commands; return the acknowledgements (and same-instant fills)."""
        acks: list[Event] = []
        for command in commands:
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
        return acks

    def disconnect(self, ts: datetime) -> None:
        """The link drops now (a recorded outage): nothing is answered until it comes back,
        at the first print a second or more later, with a snapshot."""
        if self._down_at is None:
            self._down_at = ts
            self._changed.clear()

    def _silently(self, command: Command) -> None:
        """Carry out a command whose answer is lost."""
        if type(command) is SubmitOrder:
            self._submit(command)
        elif type(command) is CancelOrder:
            self._apply_cancel(command)

    def _reconnect(self, ts: datetime) -> list[Event]:
        """The link is back: say so, then report positions and the orders that are open or
        changed while it was down (as GET /v2/positions and /v2/orders would)."""
        self._down_at = None
        orders = [
            BrokerOrder(
                oid, t.command.symbol, t.status, t.command.qty, t.filled, t.average, t.updated
            )
            for oid, t in self._orders.items()
            if t.status == "open" or oid in self._changed
        ]
        self._changed.clear()
        positions = tuple(sorted(self.positions.items()))
        self.reconnects += 1
        return [Connectivity(ts, True), BrokerSnapshot(ts, positions, tuple(orders))]

    def _submit(self, order: SubmitOrder) -> list[Event]:
        ts = order.ts
        if order.order_id in self._ids:
            return [
                OrderRejected(
                    ts,
                    order.order_id,
                    "HTTP 422 client_order_id must be unique",
                    OrderRefusal.DUPLICATE,
                )
            ]
        if order.qty <= 0:
            return [OrderRejected(ts, order.order_id, "qty must be > 0")]
        exiting = order.purpose != "entry"
        faults = self.faults
        if faults is not None:
            refused = self._fault(order, exiting, faults)
            if refused is not None:
                return [refused]
        if exiting:
            available = abs(self.positions.get(order.symbol, Decimal(0))) - self._held(order)
            if order.qty > available:
                return [_insufficient(order, available)]
        self._ids.add(order.order_id)
        self._orders[order.order_id] = _Status(order)
        resting = _Resting(order, order.qty)
        events: list[Event] = [OrderAccepted(ts, order.order_id)]
        last = self._last.get(order.symbol)
        # A limit already through the market executes like a market order, at the market
        # (capped by its limit), as an exchange fills a marketable limit.
        marketable = (
            order.type is OrderType.LIMIT
            and last is not None
            and order.limit_price is not None
            and _trigger_price(order, last) is not None
        )
        if order.type is OrderType.MARKET or marketable:
            if self._same and last is not None:
                events.append(self._market_fill(resting, last, ts))
            else:
                self._markets.setdefault(order.symbol, []).append(resting)
        else:
            self._resting.setdefault(order.symbol, {})[order.order_id] = resting
            self._rebuild_band(order.symbol)
        if faults is not None and faults.lost and self._rng.random() < faults.lost:
            # The order exists, but the answer never arrives: the client times out.
            reason = "HTTP timeout: the answer to the submission was lost"
            events[0] = OrderRejected(ts, order.order_id, reason, OrderRefusal.UNKNOWN)
        return events

    def _fault(self, order: SubmitOrder, exiting: bool, faults: Faults) -> Event | None:
        """The refusal a fault calls for, if the dice say so. A refused request creates no
        order, so the same client order id may be sent again."""
        rng, ts, oid = self._rng, order.ts, order.order_id
        if rng.random() < faults.transient:
            if rng.random() < 0.5:
                return OrderRejected(ts, oid, "HTTP 429 too many requests", OrderRefusal.TRANSIENT)
            return OrderRejected(ts, oid, "HTTP 503 service unavailable", OrderRefusal.TRANSIENT)
        if exiting and rng.random() < faults.permanent:
            return OrderRejected(
                ts, oid, "HTTP 422 order parameters are invalid", OrderRefusal.PERMANENT
            )
        if exiting and order.action is OrderAction.SELL and rng.random() < faults.locked:
            return _insufficient(order, Decimal(0))
        return None

    def _held(self, order: SubmitOrder) -> Decimal:
        """Shares of `order`'s symbol already held by open orders on its side."""
        return self.held(order.symbol, order.action)

    def _cancel(self, command: CancelOrder) -> Event | None:
        faults = self.faults
        if faults is not None:
            if self._rng.random() < faults.transient:
                reason = "HTTP 503 service unavailable"
                return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.TRANSIENT)
            if self._rng.random() < faults.late and self._is_working(command):
                # Accepted as pending_cancel; it takes effect at the symbol's next print,
                # after that print has had its chance to fill the order.
                self._cancels.setdefault(command.symbol, []).append(command)
                return None
            if faults.stuck and self._is_working(command) and self._rng.random() < faults.stuck:
                reason = "HTTP 422 order is not cancelable"
                return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.PERMANENT)
        return self._apply_cancel(command)

    def _is_working(self, command: CancelOrder) -> bool:
        return any(r.command.order_id == command.order_id for r in self._working(command.symbol))

    def _apply_cancel(self, command: CancelOrder) -> Event:
        book = self._resting.get(command.symbol, {})
        if command.order_id in book:
            del book[command.order_id]
            self._rebuild_band(command.symbol)
            self._status(command.order_id, "canceled", command.ts)
            return OrderCanceled(command.ts, command.order_id)
        markets = self._markets.get(command.symbol, [])
        for resting in markets:
            if resting.command.order_id == command.order_id:
                markets.remove(resting)
                if not markets:
                    del self._markets[command.symbol]
                self._status(command.order_id, "canceled", command.ts)
                return OrderCanceled(command.ts, command.order_id)
        if command.order_id in self._filled:
            reason = "HTTP 422 order is already filled"
            return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.FILLED)
        known = self._orders.get(command.order_id)
        if known is not None and known.status == "canceled":
            reason = "HTTP 422 order is already canceled"
            return CancelRejected(command.ts, command.order_id, reason, CancelRefusal.CANCELED)
        return CancelRejected(
            command.ts, command.order_id, "HTTP 404 order not found", CancelRefusal.NOT_FOUND
        )

    # --- the market ------------------------------------------------------------------------

    def _status(self, oid: str, status: str, ts: datetime) -> None:
        track = self._orders.get(oid)
        if track is not None:
            track.status = status
            track.updated = ts
            self._changed.add(oid)

    def on_tick(self, tick: Tick) -> tuple[Event, ...] | list[Event]:
        """Match resting orders against one tick; return the fills it causes (while the link
        is down they happen but are not told; the link comes back a second after it fell)."""
        if self._down_at is not None:
            if tick.ts - self._down_at < _RECONNECT:
                self._match(tick)
                return _NOTHING
            return [*self._reconnect(tick.ts), *self._match(tick)]
        return self._match(tick)

    def _match(self, tick: Tick) -> tuple[Event, ...] | list[Event]:
        symbol, price = tick.symbol, tick.price
        self._last[symbol] = price
        band = self._bands.get(symbol)
        # Hot path: nothing waits for the next print and the price is inside the band.
        if not self._markets and not self._cancels and (band is None or band[0] < price < band[1]):
            return _NOTHING
        fills: list[Event] = []
        markets = self._markets.pop(symbol, None)
        for resting in markets or ():
            limit = resting.command.limit_price
            if limit is None or _trigger_price(resting.command, price) is not None:
                fills.append(self._market_fill(resting, price, tick.ts))
            else:  # a limit the market moved away from: it rests at its price
                self._resting.setdefault(symbol, {})[resting.command.order_id] = resting
                self._rebuild_band(symbol)
        book = self._resting.get(symbol)
        if book and band is not None and not band[0] < price < band[1]:
            for oid, resting in list(book.items()):
                fill_price = _trigger_price(resting.command, price)
                if fill_price is not None:
                    del book[oid]
                    fills.append(self._fill(resting, fill_price, tick.ts))
            self._rebuild_band(symbol)
        for command in self._cancels.pop(symbol, ()):
            fills.append(self._apply_cancel(evolve(command, ts=tick.ts)))
        return fills

    def _market_fill(self, resting: _Resting, price: Decimal, ts: datetime) -> OrderFilled:
        """A market order (or marketable limit) at this print: whole, or with the `partial`
        fault half of it now and the rest waiting for the next print."""
        faults = self.faults
        if faults is not None and resting.open_qty >= 2 and self._rng.random() < faults.partial:
            part = (resting.open_qty / 2).to_integral_value(rounding="ROUND_FLOOR")
            self._markets.setdefault(resting.command.symbol, []).append(resting)
            return self._fill(resting, price, ts, part)
        return self._fill(resting, price, ts)

    def _fill(
        self, resting: _Resting, price: Decimal, ts: datetime, part: Decimal | None = None
    ) -> OrderFilled:
        order = resting.command
        qty = resting.open_qty if part is None else part
        resting.open_qty -= qty
        if resting.open_qty <= 0:
            self._filled.add(order.order_id)
        status = self._orders.get(order.order_id)
        if status is not None:
            status.value += qty * price
            status.filled += qty
            status.updated = ts
            if resting.open_qty <= 0:
                status.status = "filled"
            self._changed.add(order.order_id)
        signed = qty if order.action is OrderAction.BUY else -qty
        before = self.positions.get(order.symbol, Decimal(0))
        after = before + signed
        if before != 0 and (after * before < 0):
            self.oversells += 1  # an exit that flipped the position: never allowed
        self.positions[order.symbol] = after
        self.fills += 1
        return OrderFilled(ts, order.order_id, qty, price)

    def _rebuild_band(self, symbol: str) -> None:
        lo, hi = -_INF, _INF
        for resting in self._resting.get(symbol, {}).values():
            order = resting.command
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

    # --- views for tests and summaries -----------------------------------------------------

    def _working(self, symbol: str) -> list[_Resting]:
        return [*self._resting.get(symbol, {}).values(), *self._markets.get(symbol, [])]

    def open_orders(self, symbol: str) -> list[SubmitOrder]:
        """Orders resting or waiting for the next tick in `symbol`."""
        return [r.command for r in self._working(symbol)]

    def created(self, order_id: str) -> bool:
        """True once an order with this client id exists (a resend is then a duplicate)."""
        return order_id in self._ids

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        """Shares the order `order_id` still works (0 when it is not working)."""
        return sum(
            (r.open_qty for r in self._working(symbol) if r.command.order_id == order_id),
            Decimal(0),
        )

    def held(self, symbol: str, action: OrderAction) -> Decimal:
        """Shares held by open orders of `action` in `symbol` (what is left of each)."""
        return sum(
            (r.open_qty for r in self._working(symbol) if r.command.action is action),
            Decimal(0),
        )


def _insufficient(order: SubmitOrder, available: Decimal) -> OrderRejected:
    """Alpaca's 403: code 40310000, the shares are held by other orders."""
    reason = (
        f"HTTP 403 code 40310000 insufficient qty available for order "
        f"(requested: {order.qty}, available: {available})"
    )
    return OrderRejected(order.ts, order.order_id, reason, OrderRefusal.SHARES_LOCKED)


def _trigger_price(order: SubmitOrder, price: Decimal) -> Decimal | None:
    """The fill price if `price` triggers `order`, else None."""
    sell = order.action is OrderAction.SELL
    stop, limit = order.stop_price, order.limit_price
    if stop is not None and (price <= stop if sell else price >= stop):
        return price  # a stop becomes a market order: the tick's price, gap and all
    if limit is not None and (price >= limit if sell else price <= limit):
        return limit
    return None
