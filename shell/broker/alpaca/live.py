"""The Alpaca adapter for the live loop: alpaca-py on an asyncio loop, the engine's commands
in, the engine's events out (`events`).

`submit` never blocks: each command's REST calls run in worker threads, in order per symbol
(a stop's cancel before its replacement) and side by side across symbols (a slow answer for
one position does not hold another's protection back). What comes back, from REST or the
streams, is put on `events` as the engine's events, stamped with `clock()`:

- ticks from the stock data stream (raw, so prices keep the digits Alpaca sent);
- OrderAccepted / OrderRejected (classified) for each submit; a submit without an answer is
  looked up by client order id before anything is sent again, and a 422 duplicate id is the
  earlier send that landed (the engine adopts it);
- fills, cancels and late rejections from trade_updates; CancelRejected for a refused cancel;
- Connectivity(False) when a stream drops; Connectivity(True) and a BrokerSnapshot when both
  are back (alpaca-py reconnects with backoff); a BrokerSnapshot for each RequestSnapshot.

Orders with `paper=True` (the Experience phase) go to `paper_settings`' account when given,
and that account's trade updates are read too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import msgpack

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

__all__ = ["AlpacaBroker"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SNAPSHOT_LANE = "*"
_SNAPSHOT_TRIES = (1.0, 2.0, 4.0)  # seconds between tries of a snapshot that failed


def _trade_time(value: object) -> datetime | None:
    """A trade's own time (`t`: a MsgPack Timestamp, or RFC 3339 text in JSON), in UTC."""
    try:
        if isinstance(value, msgpack.Timestamp):
            stamped: datetime = value.to_datetime()
            return stamped.astimezone(UTC)
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlpacaBroker:
    """One Alpaca account (and optionally its paper twin) for the live loop; see the module
    docstring."""

    def __init__(
        self,
        settings: AlpacaSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        paper_settings: AlpacaSettings | None = None,
        workers: int = 4,
    ) -> None:
        self.settings = settings
        self.paper_settings = paper_settings
        self.clock = clock or _utc_now
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.ledger = Ledger()
        self._rests = [Rest(settings)]
        if paper_settings is not None:
            self._rests.append(Rest(paper_settings))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alpaca-rest")
        self._streams: list[Streams] = []
        self._lanes: dict[str, asyncio.Queue[Command | None]] = {}
        self._lane_tasks: dict[str, asyncio.Task[None]] = {}
        self._down = False
        self._closed = False

    def __repr__(self) -> str:
        return f"AlpacaBroker({self.settings.base_url})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, symbols: Iterable[str], timeout: float = 30.0) -> None:
        """Connect trade_updates and the stock data stream (trades of `symbols`) and wait
        until both are up."""
        main = Streams(
            self.settings,
            lambda data: self._on_update(data, 0),
            self._on_trade,
            self._on_link,
        )
        self._streams.append(main)
        if self.paper_settings is not None:
            paper = Streams(
                self.paper_settings,
                lambda data: self._on_update(data, 1),
                self._on_trade,
                self._on_link,
                trades=False,
            )
            self._streams.append(paper)
        for streams in self._streams:
            streams.start()
        main.subscribe(symbols)
        try:
            async with asyncio.timeout(timeout):
                for streams in self._streams:
                    await streams.connected.wait()
        except TimeoutError:
            raise ConnectionError(
                f"the Alpaca streams at {self.settings.trade_stream_url} and "
                f"{self.settings.data_stream_url} did not connect within {timeout:g} s"
            ) from None

    def subscribe(self, symbols: Iterable[str]) -> None:
        """The trades of `symbols` too (a new position's symbol)."""
        if self._streams:
            self._streams[0].subscribe(symbols)

    async def close(self) -> None:
        """Stop the streams and the workers; requests in flight are abandoned."""
        self._closed = True
        for task in self._lane_tasks.values():
            task.cancel()
        for task in list(self._lane_tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for streams in self._streams:
            await streams.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for rest in self._rests:
            rest.close()

    # --- commands ----------------------------------------------------------------------------

    def submit(self, commands: Sequence[Command]) -> None:
        """Carry out the order commands among `commands` (in order per symbol); the answers
        come as events."""
        for command in commands:
            if type(command) is RequestSnapshot:
                self._lane(_SNAPSHOT_LANE).put_nowait(command)
            elif type(command) in (SubmitOrder, CancelOrder):
                self._lane(command.symbol).put_nowait(command)  # type: ignore[union-attr]

    async def snapshot(self, ts: datetime) -> BrokerSnapshot:
        """The broker's positions and open orders (and each order the engine may still count
        on, looked up by client order id), from every account."""
        positions: list[dict[str, Any]] = []
        orders: list[dict[str, Any]] = []
        for rest in self._rests:
            positions.extend(await self._run(rest.positions))
            orders.extend(await self._run(rest.open_orders))
        seen = {str(o["client_order_id"]) for o in orders}
        for client_id, account in self.ledger.to_look_up():
            if client_id in seen:
                continue
            seen.add(client_id)
            found = await self._run(
                self._rests[min(account, len(self._rests) - 1)].by_client_id, client_id
            )
            if found is not None:
                orders.append(found)
        snap = snapshot_of(ts, positions, orders)
        self.ledger.sync(orders, dict(snap.positions))
        return snap

    def _lane(self, name: str) -> asyncio.Queue[Command | None]:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = asyncio.Queue()
            self._lane_tasks[name] = asyncio.get_running_loop().create_task(self._work(lane))
        return lane

    async def _work(self, lane: asyncio.Queue[Command | None]) -> None:
        while True:
            command = await lane.get()
            if command is None:
                return
            try:
                if type(command) is SubmitOrder:
                    events = await self._submit(command)
                elif type(command) is CancelOrder:
                    events = await self._cancel(command)
                elif type(command) is RequestSnapshot:
                    events = await self._asked_snapshot()
                else:
                    events = []
            except Exception:  # a bug: said, and the lane goes on with the next command
                _log.exception("the Alpaca adapter failed on %s", type(command).__name__)
                events = []
            for event in events:
                self.events.put_nowait(event)

    async def _submit(self, command: SubmitOrder) -> list[Event]:
        cid = command.order_id
        account = 1 if command.paper and len(self._rests) > 1 else 0
        rest = self._rests[account]
        self.ledger.sending(command)
        try:
            order = await self._run(rest.submit, order_request(command))
        except BrokerError as error:
            answer = error.answer
            if answer.status is None:
                return await self._look_up(rest, command, account, answer.reason)
            verdict = classify_submit(answer)
            if verdict.kind is OrderRefusal.DUPLICATE:
                await self._learn(rest, cid, account)
            else:
                self.ledger.refused(cid)
            return [
                OrderRejected(
                    self.clock(), cid, verdict.reason, verdict.kind, verdict.available,
                    verdict.existing,
                )
            ]  # fmt: skip
        self.ledger.placed(order, account)
        return [OrderAccepted(self.clock(), cid)]

    async def _look_up(
        self, rest: Rest, command: SubmitOrder, account: int, reason: str
    ) -> list[Event]:
        """No answer to a submit: ask for the order by client order id before anything is
        sent again."""
        cid = command.order_id
        try:
            found = await self._run(rest.by_client_id, cid)
        except BrokerError as error:
            why = f"{reason}; lookup: {error.answer.reason}"
            return [OrderRejected(self.clock(), cid, why, OrderRefusal.UNKNOWN)]
        if found is None:
            self.ledger.refused(cid)
            why = f"{reason}; the broker has no order {cid}"
            return [OrderRejected(self.clock(), cid, why, OrderRefusal.TRANSIENT)]
        self.ledger.placed(found, account)
        return [OrderAccepted(self.clock(), cid)]

    async def _learn(self, rest: Rest, client_id: str, account: int) -> None:
        with contextlib.suppress(BrokerError):
            found = await self._run(rest.by_client_id, client_id)
            if found is not None:
                self.ledger.placed(found, account)

    async def _cancel(self, command: CancelOrder) -> list[Event]:
        cid = command.order_id
        account = self.ledger.account_of(cid)
        rest = self._rests[min(account, len(self._rests) - 1)]
        oid = self.ledger.alpaca_id(cid)
        if oid is None:
            await self._learn(rest, cid, account)
            oid = self.ledger.alpaca_id(cid)
        if oid is None:
            reason = "HTTP 404 code 40410000 order not found"
            return [CancelRejected(self.clock(), cid, reason, CancelRefusal.NOT_FOUND)]
        try:
            await self._run(rest.cancel, oid)
        except BrokerError as error:
            verdict = classify_cancel(error.answer)
            return [CancelRejected(self.clock(), cid, verdict.reason, verdict.kind)]
        return []  # 204: trade_updates says when it is canceled

    async def _asked_snapshot(self) -> list[Event]:
        for wait in (*_SNAPSHOT_TRIES, None):
            try:
                return [await self.snapshot(self.clock())]
            except BrokerError as error:
                _log.warning("reading the broker's snapshot failed: %s", error.answer.reason)
                if wait is None or self._closed:
                    return []
                await asyncio.sleep(wait)
        return []

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    # --- the streams -------------------------------------------------------------------------

    def _on_update(self, data: dict[str, Any], account: int) -> None:
        for event in self.ledger.update(data, self.clock()):
            self.events.put_nowait(event)

    def _on_trade(self, msg: dict[str, Any]) -> None:
        try:
            price = Decimal(str(msg["p"]))
            size = Decimal(str(msg.get("s", 0)))
            symbol = str(msg["S"])
        except (KeyError, ArithmeticError, ValueError):
            _log.warning("a trade without symbol or price was skipped")
            return
        when = _trade_time(msg.get("t")) or self.clock()
        self.events.put_nowait(Tick(when, symbol, price, size))

    def _on_link(self, up: bool) -> None:
        if self._closed:
            return
        everything_up = all(s.up for s in self._streams)
        if not up and not self._down:
            self._down = True
            self.events.put_nowait(Connectivity(self.clock(), False))
        elif up and self._down and everything_up:
            self._down = False
            self.events.put_nowait(Connectivity(self.clock(), True))
            self._lane(_SNAPSHOT_LANE).put_nowait(RequestSnapshot(self.clock(), "reconnected"))
