"""The Alpaca adapter driven in lock-step: a synchronous `Broker` for `run_simulation`
against a `ratchet exchange` started with `speed=0`.

The exchange plays the same feed as the events the engine is folded over, one print at a
time, and waits for the adapter before the next (outside Alpaca's API: `POST /_ratchet/ack`).
Everything else goes through alpaca-py exactly as live: orders by REST, fills and cancels on
`trade_updates`, prints on the stock data stream, refusals classified by `classify`, news
translated by `orders.Ledger`. So a run through exchange + adapter + engine can be compared
with `ratchet simulate` on the same files, answer for answer:

- `on_tick(k-th tick)`: ack the print before, then read the streams up to the k-th print
  (which must be that tick); the trade updates before it (the fills it caused) are its
  events, stamped with its time.
- `execute`: each command's REST call and its answer, stamped with the command's time; a
  cancel's 204 is followed by its `canceled` (or `pending_cancel`, carried out at a later
  print) on the stream, read before the next command.
- A request with no answer (the exchange's `drop` fault cuts it or holds it past the timeout)
  is looked up by client order id first; when that cannot be answered either the link is
  down: `Connectivity(False)`, nothing is sent until a second of feed time has passed and the
  streams are back, then `Connectivity(True)` and the broker's snapshot, as `simulate`'s
  broker does.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from engine import (
    BrokerSnapshot,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Command,
    Connectivity,
    Event,
    OrderAccepted,
    OrderRefusal,
    OrderRejected,
    RequestSnapshot,
    SubmitOrder,
    Tick,
)
from shell.broker.alpaca.classify import classify_cancel, classify_submit
from shell.broker.alpaca.orders import Ledger, order_request, snapshot_of
from shell.broker.alpaca.rest import BrokerError, Rest
from shell.broker.alpaca.settings import AlpacaSettings
from shell.broker.alpaca.streams import Streams

__all__ = ["LockstepBroker", "LockstepError"]

_RECONNECT = timedelta(seconds=1)  # as the simulated broker: the link is back a second later
_AFTER_A_DROP = 0.3  # seconds without a print before asking the exchange how far it is
_POLL = 0.02  # seconds between looks at the exchange's count of prints while the link is down
_Item = tuple[str, Any]


async def _turns(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


class LockstepError(RuntimeError):
    """The exchange and the events disagree, or the exchange stopped answering."""


class LockstepBroker:
    """See the module docstring. `symbols`: the feed's symbols (every print must reach the
    adapter); `wait`: the longest wait for a print or a stream message, in seconds."""

    def __init__(
        self,
        settings: AlpacaSettings,
        symbols: Iterable[str],
        *,
        wait: float = 30.0,
    ) -> None:
        self.settings = settings
        self.wait = wait
        self.rest = Rest(settings)
        self.ledger = Ledger()
        self.early_prints = 0  # prints the exchange sent before the adapter acked the last
        self.acks = 0
        self._symbols = sorted({s.upper() for s in symbols})
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._ahead: deque[_Item] = deque()
        self._ticks = 0  # ticks seen: the number of the print expected next is this + 1
        self._updates_seen = 0  # trade updates read (the exchange's prints count them too)
        self._behind = 0  # prints the exchange played while the adapter was not subscribed
        self._down_at: datetime | None = None
        self._dropped = False  # the link has dropped at least once
        self._retry_at = datetime.min
        self._ack_session = requests.Session()
        self._ack_url = f"{settings.base_url}/_ratchet/ack"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._streams: Streams = self._on_loop(self._start())
        self._ack()  # the first print may go out

    # --- the Broker protocol ----------------------------------------------------------------

    @property
    def oversells(self) -> int:
        """Fills that flipped a position, as the exchange's own books count them."""
        return int(self.books()["oversells"])

    @property
    def stops_waited(self) -> int:
        """Stops a print outside the regular session went through, by the exchange's count."""
        return int(self.books()["stops_waited"])

    @property
    def orders_waited(self) -> int:
        """Market orders that waited for the regular session, by the exchange's count."""
        return int(self.books()["orders_waited"])

    @property
    def wash_trades(self) -> int:
        """Orders the exchange refused as potential wash trades."""
        return int(self.books()["wash_trades_refused"])

    def execute(self, commands: Iterable[Command]) -> list[Event]:
        out: list[Event] = []
        for command in commands:
            if type(command) is RequestSnapshot:
                if self._down_at is None:
                    out.extend(self._snapshot_or_down(command.ts))
            elif type(command) is SubmitOrder:
                if self._down_at is None:
                    out.extend(self._submit(command))
            elif type(command) is CancelOrder and self._down_at is None:
                out.extend(self._cancel(command))
        return out

    def on_tick(self, tick: Tick) -> Sequence[Event]:
        """The k-th tick of the events is the exchange's k-th print: what the streams told
        before it, as events at its time."""
        self._ticks += 1
        number = self._ticks
        out: list[Event] = []
        if self._down_at is not None and tick.ts - self._down_at >= _RECONNECT:
            out.extend(self._reconnect(tick.ts))  # before the ack: the exchange holds still
        if number > 1:
            self._ack()
        if self._down_at is not None:
            self._skip_to(number)
            return out
        out.extend(self._read_to(number, tick))
        return out

    def disconnect(self, ts: datetime) -> None:
        """A recorded outage: the adapter stops sending and telling until it reconnects."""
        if self._down_at is None:
            self._down_at = ts
            self._retry_at = ts + _RECONNECT

    def reconnect_at(self) -> datetime | None:
        """When to try the link again: a second after it fell, then a second after each try
        that found the exchange still down (each print tries too)."""
        return self._retry_at if self._down_at is not None else None

    def reconnect(self, ts: datetime) -> list[Event]:
        back = self.reconnect_at()
        if back is None or ts < back:
            return []
        return self._reconnect(ts)

    def working_qty(self, symbol: str, order_id: str) -> Decimal:
        return self.ledger.working(order_id)

    def uncovered(self) -> dict[str, Decimal]:
        """Per symbol held, the shares no working exit-side order covers (the adapter's
        view, from the streams and snapshots)."""
        out: dict[str, Decimal] = {}
        for symbol, qty in self.ledger.positions.items():
            if qty == 0:
                continue
            held = self.ledger.held(symbol, "sell" if qty > 0 else "buy")
            out[symbol] = max(abs(qty) - held, Decimal(0))
        return out

    # --- outside the protocol ---------------------------------------------------------------

    def books(self) -> dict[str, Any]:
        """The exchange's books (GET /_ratchet/books, outside Alpaca's API)."""
        answer = self._ack_session.get(
            f"{self.settings.base_url}/_ratchet/books", timeout=self.settings.timeout
        )
        answer.raise_for_status()
        books: dict[str, Any] = answer.json()
        return books

    def close(self) -> None:
        """Close the streams, the loop and the sessions."""
        if self._loop.is_running():
            self._on_loop(self._streams.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self.rest.close()
        self._ack_session.close()

    def __enter__(self) -> LockstepBroker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- orders ------------------------------------------------------------------------------

    def _submit(self, command: SubmitOrder) -> list[Event]:
        ts, cid = command.ts, command.order_id
        self.ledger.sending(command)
        try:
            order = self.rest.submit(order_request(command))
        except BrokerError as error:
            answer = error.answer
            if answer.status is None:
                return self._look_up(command, answer.reason)
            verdict = classify_submit(answer)
            if verdict.kind is OrderRefusal.DUPLICATE:
                self._learn(cid)
            else:
                self.ledger.refused(cid)
            rejected = OrderRejected(
                ts, cid, verdict.reason, verdict.kind, verdict.available, verdict.existing
            )
            return [rejected]
        self.ledger.placed(order)
        return [OrderAccepted(ts, cid)]

    def _look_up(self, command: SubmitOrder, reason: str) -> list[Event]:
        """A submit without an answer: did it land? Asked by client order id before anything
        is sent again; when that cannot be answered either, the link is down."""
        ts, cid = command.ts, command.order_id
        try:
            found = self.rest.by_client_id(cid)
        except BrokerError as error:
            if error.answer.status is None:
                return self._down(ts)
            verdict = classify_submit(error.answer)
            return [
                OrderRejected(ts, cid, f"{reason}; lookup: {verdict.reason}", OrderRefusal.UNKNOWN)
            ]
        if found is None:
            self.ledger.refused(cid)
            why = f"{reason}; the broker has no order {cid}"
            return [OrderRejected(ts, cid, why, OrderRefusal.TRANSIENT)]
        self.ledger.placed(found)
        return [OrderAccepted(ts, cid)]

    def _learn(self, client_id: str) -> None:
        """Read the order a duplicate refers to, so that it can be canceled by its id."""
        try:
            found = self.rest.by_client_id(client_id)
        except BrokerError:
            return
        if found is not None:
            self.ledger.placed(found)

    def _cancel(self, command: CancelOrder) -> list[Event]:
        ts, cid = command.ts, command.order_id
        oid = self.ledger.alpaca_id(cid)
        if oid is None:
            self._learn(cid)
            oid = self.ledger.alpaca_id(cid)
        if oid is None:
            reason = "HTTP 404 code 40410000 order not found"
            return [CancelRejected(ts, cid, reason, CancelRefusal.NOT_FOUND)]
        try:
            self.rest.cancel(oid)
        except BrokerError as error:
            if error.answer.status is None:
                return self._down(ts)
            verdict = classify_cancel(error.answer)
            return [CancelRejected(ts, cid, verdict.reason, verdict.kind)]
        return self._after_cancel(cid, ts)

    def _after_cancel(self, client_id: str, ts: datetime) -> list[Event]:
        """A 204: the stream tells the cancel (`canceled`), or that it is pending until a later
        print (`pending_cancel`). The order's status says which; its members' messages are
        read to the end, so none is left for the next print."""
        try:
            order = self.rest.by_client_id(client_id)
        except BrokerError as error:
            if error.answer.status is None:
                return self._down(ts)
            order = None
        if order is None:
            return []
        members = [order, *(order.get("legs") or ())]
        wanted = {str(m["id"]): str(m.get("status")) for m in members}
        out: list[Event] = []
        deadline = time.monotonic() + self.wait
        while any(self.ledger.member_status(i) != s for i, s in wanted.items()):
            item = self._next(deadline, "the trade update of a cancel")
            if item is None:
                raise LockstepError(f"no trade update for the cancel of {client_id}")
            if item[0] == "trade":
                self._ahead.appendleft(item)
                self.early_prints += 1
                break
            out.extend(self._take(item, ts))
        return out

    def _snapshot_or_down(self, ts: datetime) -> list[Event]:
        try:
            return [self._snapshot(ts)]
        except BrokerError as error:
            if error.answer.status is None:
                return self._down(ts)
            raise LockstepError(f"snapshot refused: {error.answer.reason}") from None

    def _snapshot(self, ts: datetime) -> BrokerSnapshot:
        """GET /v2/positions, the open orders, and each order the engine may still count on
        looked up by client order id."""
        positions = self.rest.positions()
        orders = self.rest.open_orders()
        seen = {str(o["client_order_id"]) for o in orders}
        for client_id, _ in self.ledger.to_look_up():
            if client_id in seen:
                continue
            seen.add(client_id)
            found = self.rest.by_client_id(client_id)
            if found is not None:
                orders.append(found)
        snap = snapshot_of(ts, positions, orders)
        self.ledger.sync(orders, dict(snap.positions))
        return snap

    # --- the link -----------------------------------------------------------------------------

    def _down(self, ts: datetime) -> list[Event]:
        self._dropped = True
        if self._down_at is not None:
            return []
        self._down_at = ts
        self._retry_at = ts + _RECONNECT
        return [Connectivity(ts, False)]

    def _reconnect(self, ts: datetime) -> list[Event]:
        """Back once the streams are (alpaca-py reconnects them) and the REST API answers:
        the link's return, then the broker's snapshot."""
        self._retry_at = max(self._retry_at, ts + _RECONNECT)
        if not self._streams.up:
            return []
        try:
            snap = self._snapshot(ts)
        except BrokerError as error:
            if error.answer.status is None:
                return []
            raise LockstepError(f"snapshot refused: {error.answer.reason}") from None
        self._down_at = None  # what the streams told meanwhile is in the snapshot (the
        # ledger tells nothing twice)
        return [Connectivity(ts, True), snap]

    # --- the streams ---------------------------------------------------------------------------

    async def _start(self) -> Streams:
        streams = Streams(
            self.settings,
            lambda data: self._inbox.put(("update", data)),
            lambda msg: self._inbox.put(("trade", msg)),
            lambda up: self._inbox.put(("link", up)),
        )
        streams.subscribe(self._symbols)  # prints first, so that none passes unseen
        await asyncio.wait_for(streams.connected.wait(), self.wait)
        streams.start()
        await asyncio.wait_for(streams.connected.wait(), self.wait)
        return streams

    def _on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self.wait + 5)

    def _ack(self) -> None:
        """Done with every print sent (and the trade updates before the next)."""
        self.acks += 1
        self._ack_session.post(self._ack_url, timeout=self.settings.timeout)

    def _next(self, deadline: float, what: str) -> _Item | None:
        if self._ahead:
            return self._ahead.popleft()
        try:
            return self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def _take(self, item: _Item, ts: datetime) -> list[Event]:
        """One stream message that is not a print, as events."""
        kind, data = item
        if kind == "update":
            self._updates_seen += 1
            return self.ledger.update(data, ts)
        if kind == "link" and not data:
            return self._down(ts)
        return []

    def _read_to(self, number: int, tick: Tick) -> list[Event]:
        """Read the streams up to print `number` (its trade updates are its events)."""
        out: list[Event] = []
        if number <= self._behind:
            return out
        acked = False
        started = time.monotonic()
        while True:
            # After a dropped link a print may have been played while the data stream was
            # reconnecting: the exchange's count of prints says so soon.
            patience = _AFTER_A_DROP if self._dropped else self.wait
            item = self._next(time.monotonic() + patience, "a print")
            if item is None:
                played = int(self.books()["prints"])
                if played >= number:  # played while the adapter was not listening
                    self._behind = played
                    return out
                if time.monotonic() - started > self.wait:
                    raise LockstepError(
                        f"print {number} ({tick.symbol} at {tick.price}) did not come within "
                        f"{self.wait:g} s (the exchange has played {played})"
                    )
                continue
            kind, data = item
            if kind == "trade":
                seen = int(data.get("i", 0))
                if seen < number:  # a print the events have passed (after a drop): done
                    self._ack()
                    acked = False
                    continue
                if seen > number:
                    self._ahead.appendleft(item)
                    return out
                self._check(data, tick, number)
                told = data.get("updates")
                if isinstance(told, int) and not self._dropped:
                    # The exchange says how many trade updates it sent before this print:
                    # exactly those are this print's (or earlier) news, whatever the timing.
                    out.extend(self._updates_up_to(told, tick))
                elif acked:
                    # The print's updates were written before its trade, but the two streams
                    # are two sockets: one read may hand the loop both, in either order. A
                    # turn of the streams' loop delivers what it has read.
                    self._on_loop(_turns())
                    out.extend(self._updates_before(number, tick))
                if self._ahead or not self._inbox.empty():
                    self.early_prints += self._early(number)
                return out
            out.extend(self._take(item, tick.ts))
            if self._down_at is not None:
                return out
            if kind == "update" and not acked:
                acked = True
                self._ack()  # the print's trade updates are read: its trade may come

    def _updates_up_to(self, told: int, tick: Tick) -> list[Event]:
        """Read trade updates until `told` of them have been read in all (the two streams
        are two sockets: the print may arrive before the updates sent ahead of it)."""
        out: list[Event] = []
        later: list[_Item] = []  # prints after this one, read on the way: kept in order
        deadline = time.monotonic() + self.wait
        while self._updates_seen < told:
            item = self._next(deadline, "a trade update")
            if item is None:
                raise LockstepError(
                    f"print {self._ticks}: {told} trade updates were sent before it, "
                    f"{self._updates_seen} came within {self.wait:g} s"
                )
            if item[0] == "trade":
                later.append(item)
                continue
            out.extend(self._take(item, tick.ts))
        self._ahead = deque([*later, *self._ahead])
        return out

    def _updates_before(self, number: int, tick: Tick) -> list[Event]:
        """The trade updates already here, up to the next print (they are print `number`'s)."""
        out: list[Event] = []
        while True:
            item = self._next(time.monotonic(), "")
            if item is None:
                return out
            if item[0] == "trade":
                self._ahead.appendleft(item)
                return out
            out.extend(self._take(item, tick.ts))

    def _early(self, number: int) -> int:
        """1 when a print after `number` is already here: the exchange did not wait."""
        while True:
            try:
                self._ahead.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return int(any(k == "trade" and int(d.get("i", 0)) > number for k, d in self._ahead))

    def _skip_to(self, number: int) -> None:
        """The link is down: wait until the exchange has played print `number` too (its
        count of prints says so while the data stream is cut), passing over what the
        streams bring meanwhile (the snapshot at the reconnect tells it)."""
        deadline = time.monotonic() + self.wait
        while True:
            item = self._next(time.monotonic() + _POLL, "")
            if item is not None:
                kind, data = item
                if kind != "trade":
                    continue
                seen = int(data.get("i", 0))
                if seen > number:
                    self._ahead.appendleft(item)
                    return
                if seen < number:
                    self._ack()
                    continue
                return
            if int(self.books()["prints"]) >= number:
                return
            if time.monotonic() > deadline:
                raise LockstepError(
                    f"the exchange did not play print {number} within {self.wait:g} s"
                )

    @staticmethod
    def _check(trade: dict[str, Any], tick: Tick, number: int) -> None:
        price = Decimal(str(trade.get("p")))
        if trade.get("S") != tick.symbol or price != tick.price:
            raise LockstepError(
                f"print {number} of the exchange is {trade.get('S')} at {price}, but tick "
                f"{number} of the events is {tick.symbol} at {tick.price}: the exchange must "
                "play the same feed"
            )
