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
from datetime import datetime
from decimal import Decimal
from typing import Literal

from attrs import define, field

from engine import (
    CancelOrder,
    CancelRejected,
    Command,
    Event,
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderType,
    SubmitOrder,
    Tick,
)

__all__ = ["Faults", "SimulatedBroker"]

_NOTHING: tuple[Event, ...] = ()
_INF = Decimal("Infinity")


@define
class _Resting:
    command: SubmitOrder
    open_qty: Decimal


@define
class Faults:
    """Misbehaviour to inject, deterministic for a given seed and input.

    `transient`: share of order submissions refused as a transient failure (HTTP 503).
    """

    transient: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> Faults:
        """From `transient=0.3,seed=7`; ValueError names what is wrong."""
        values: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or name not in ("transient", "seed"):
                raise ValueError(f"--faults: {part!r}: expected transient=RATE or seed=N")
            values[name] = value
        try:
            transient = float(values.get("transient", "0"))
            seed = int(values.get("seed", "0"))
        except ValueError:
            raise ValueError(
                f"--faults: {text!r}: transient is a rate, seed a whole number"
            ) from None
        if not 0 <= transient <= 1:
            raise ValueError(f"--faults: transient={transient}: allowed 0 to 1")
        return cls(transient, seed)


@define
class SimulatedBroker:
    """The broker of `ratchet simulate` and of the tests; the only mutable thing in a fold."""

    market_fill: Literal["next", "same"] = "next"
    _resting: dict[str, dict[str, _Resting]] = field(factory=dict)
    _markets: dict[str, list[_Resting]] = field(factory=dict)
    _bands: dict[str, tuple[Decimal, Decimal]] = field(factory=dict)
    _last: dict[str, Decimal] = field(factory=dict)
    _ids: set[str] = field(factory=set)
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
            if type(command) is SubmitOrder:
                acks.extend(self._submit(command))
            elif type(command) is CancelOrder:
                acks.append(self._cancel(command))
        return acks

    def _submit(self, order: SubmitOrder) -> list[Event]:
        ts = order.ts
        if order.order_id in self._ids:
            return [OrderRejected(ts, order.order_id, "client_order_id must be unique")]
        if order.qty <= 0:
            return [OrderRejected(ts, order.order_id, "qty must be > 0")]
        if self.faults is not None and self._rng.random() < self.faults.transient:
            # Not recorded: the same client order id may be sent again.
            return [OrderRejected(ts, order.order_id, "HTTP 503 service unavailable", "transient")]
        self._ids.add(order.order_id)
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
                events.append(self._fill(resting, last, ts))
            else:
                self._markets.setdefault(order.symbol, []).append(resting)
        else:
            self._resting.setdefault(order.symbol, {})[order.order_id] = resting
            self._rebuild_band(order.symbol)
        return events

    def _cancel(self, command: CancelOrder) -> Event:
        book = self._resting.get(command.symbol, {})
        if command.order_id in book:
            del book[command.order_id]
            self._rebuild_band(command.symbol)
            return OrderCanceled(command.ts, command.order_id)
        markets = self._markets.get(command.symbol, [])
        for resting in markets:
            if resting.command.order_id == command.order_id:
                markets.remove(resting)
                if not markets:
                    del self._markets[command.symbol]
                return OrderCanceled(command.ts, command.order_id)
        return CancelRejected(command.ts, command.order_id, "order is not open")

    # --- the market ------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> tuple[Event, ...] | list[Event]:
        """Match resting orders against one tick; return the fills it causes."""
        symbol, price = tick.symbol, tick.price
        self._last[symbol] = price
        band = self._bands.get(symbol)
        # Hot path: nothing waits for the next print and the price is inside the band.
        if not self._markets and (band is None or band[0] < price < band[1]):
            return _NOTHING
        fills: list[Event] = []
        markets = self._markets.pop(symbol, None)
        for resting in markets or ():
            limit = resting.command.limit_price
            if limit is None or _trigger_price(resting.command, price) is not None:
                fills.append(self._fill(resting, price, tick.ts))
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
        return fills

    def _fill(self, resting: _Resting, price: Decimal, ts: datetime) -> OrderFilled:
        order = resting.command
        qty = resting.open_qty
        resting.open_qty = Decimal(0)
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

    def open_orders(self, symbol: str) -> list[SubmitOrder]:
        """Orders resting or waiting for the next tick in `symbol`."""
        resting = [r.command for r in self._resting.get(symbol, {}).values()]
        return resting + [r.command for r in self._markets.get(symbol, [])]

    def held(self, symbol: str, action: OrderAction) -> Decimal:
        """Shares held by open orders of `action` in `symbol`."""
        return sum((o.qty for o in self.open_orders(symbol) if o.action is action), Decimal(0))


def _trigger_price(order: SubmitOrder, price: Decimal) -> Decimal | None:
    """The fill price if `price` triggers `order`, else None."""
    sell = order.action is OrderAction.SELL
    stop, limit = order.stop_price, order.limit_price
    if stop is not None and (price <= stop if sell else price >= stop):
        return price  # a stop becomes a market order: the tick's price, gap and all
    if limit is not None and (price >= limit if sell else price <= limit):
        return limit
    return None
