"""`ratchet exchange`: the venue on 127.0.0.1, speaking Alpaca's Trading API and its streams.

One port serves the REST API (`/v2/...`), the trade_updates WebSocket (`/stream`, JSON) and
the stock data WebSocket (`/v2/iex`, `/v2/sip`: MsgPack, as alpaca-py speaks it), so the
stream URLs follow from the base URL. The feed's prints drive the matching and go out on the
data stream; the exchange's clock is the feed's time.

Speeds: `speed > 0` plays the feed against the wall clock (1 = real time), and an order is
routed (`new`) as soon as it is answered. `speed = 0` is lock-step (outside Alpaca's API): the
next print goes out only once every request has been answered, every stream message written,
and the clients have been quiet for `quiet` seconds (or a data-stream client has sent
`{"action": "ack"}` for the last print it was sent, or `POST /_ratchet/ack`). An ack also
ends the wait after a print's trade updates (below), and lets the first print out. `speed =
None` (tests) moves only when
told, by `advance()` or `POST /_ratchet/advance`. In these two an order stays `accepted` until
the next print, so nothing hangs on timing; and a print that fills orders is played in two
halves: the trade updates first, then (once the client is quiet again) the trade on the data
stream, as `ratchet simulate` shows the engine its fills before the tick that caused them.

Outside Alpaca's API, without keys: `GET /_ratchet/books` (the protection laws, see
`Venue.books`), `POST /_ratchet/ack` (lock-step: done with every print sent, the HTTP twin of
the data stream's ack) and `POST /_ratchet/advance` (`{"prints": N}`, when moved by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
from attrs import define, frozen

from engine import Tick
from shell.broker.faults import Faults
from shell.codec import BadLine, read_events
from shell.exchange.http import Request, Response, WebSocket, serve
from shell.exchange.venue import Reply, Venue
from shell.exchange.wire import ts
from shell.hours import around

__all__ = ["KEY_ID", "SECRET_KEY", "Endpoints", "Exchange", "feed_symbols"]

# The exchange's keys. They are test keys for a local exchange, printed at start; they open
# nothing anywhere else.
KEY_ID = "ratchet-test-key"
SECRET_KEY = "ratchet-test-secret"

_ROUTE_EVERY = 0.05  # seconds: how often orders are routed once the feed is over
_RETURN_WAIT = 10.0  # seconds lock-step waits for clients a dropped link cut off
_YIELD_EVERY = 1024  # prints played in a row before requests get a turn


@frozen
class Endpoints:
    """Where the exchange listens, and the keys it accepts."""

    port: int
    base_url: str
    trade_stream_url: str
    data_stream_url: str
    key_id: str
    secret_key: str

    def exports(self) -> list[str]:
        """The environment a client needs, as shell `export` lines."""
        return [
            f"export APCA_API_BASE_URL={self.base_url}",
            f"export APCA_API_KEY_ID={self.key_id}",
            f"export APCA_API_SECRET_KEY={self.secret_key}",
            f"export RATCHET_TRADE_STREAM_URL={self.trade_stream_url}",
            f"export RATCHET_DATA_STREAM_URL={self.data_stream_url}",
        ]


@define
class _Window:
    """Alpaca's rate limit: `limit` requests a minute, counted in fixed wall-clock minutes."""

    limit: int
    start: float = 0.0
    count: int = 0

    def take(self, now: float) -> tuple[bool, list[tuple[str, str]]]:
        if now - self.start >= 60:
            self.start, self.count = now, 0
        self.count += 1
        allowed = self.count <= self.limit
        headers = [
            ("X-Ratelimit-Limit", str(self.limit)),
            ("X-Ratelimit-Remaining", str(max(0, self.limit - self.count))),
            ("X-Ratelimit-Reset", str(int(self.start + 60))),
        ]
        return allowed, headers


class _Stream:
    """One subscriber on the trade or the data stream, with its own ordered send queue."""

    def __init__(self, exchange: Exchange, socket: WebSocket, packed: bool) -> None:
        self.socket, self.packed = socket, packed
        self.listening = False  # trade stream: listening to trade_updates
        self.trades: set[str] = set()  # data stream: the subscriptions
        self.quotes: set[str] = set()
        self.bars: set[str] = set()
        self.sent_print = 0  # the last print sent on the data stream, and the last acked
        self.acked_print = 0
        self._exchange = exchange
        self._queue: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._send_all())

    def put(self, message: bytes | str) -> None:
        self._exchange._pending += 1
        self._queue.put_nowait(message)

    async def _send_all(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self.socket.send(message)
            finally:
                self._exchange._sent(1)

    def stop(self) -> None:
        """Stop sending; what is still queued is dropped."""
        self._task.cancel()
        dropped = self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._exchange._sent(dropped)


class Exchange:
    """A local Alpaca-compatible exchange: in-process (`start`, `advance`, `books`, `stop`)
    or as the `ratchet exchange` command (`run`)."""

    def __init__(
        self,
        feed: Path | Iterable[Tick] | None = None,
        *,
        speed: float | None = 1.0,
        quiet: float = 0.05,
        faults: Faults | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        cash: Decimal = Decimal(100_000),
        rate_limit: int = 200,
        slow_answer: float = 30.0,
        key_id: str = KEY_ID,
        secret_key: str = SECRET_KEY,
        on_bad_line: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        hours: str = "always",
    ) -> None:
        if speed is not None and speed < 0:
            raise ValueError(f"speed {speed}: allowed 0 (lock-step) or more")
        self.speed, self.quiet, self.port, self.host = speed, quiet, port, host
        self.slow_answer = slow_answer
        self._keys = (key_id, secret_key)
        self._on_bad_line = on_bad_line
        self._on_error = on_error
        self._bad: list[BadLine] = []
        if feed is None:
            feed = Path(__file__).resolve().parents[2] / "samples" / "synthetic.jsonl"
        if isinstance(feed, Path):
            symbols = feed_symbols(feed)
            ticks: Iterator[Tick] = _ticks(read_events(feed, skip_bad=True, bad=self._bad))
        else:
            listed = list(feed)
            symbols = frozenset(t.symbol for t in listed)
            ticks = iter(listed)
        first = next(ticks, None)
        self._first = first
        self._ticks: Iterator[Tick] = ticks
        self._report_bad()
        if first is None:
            raise ValueError(f"{feed}: no ticks to trade" if isinstance(feed, Path) else "no ticks")
        # `hours` ("us_equity" or "always"): the regular sessions around the feed's first
        # print, for the shared fill rules.
        self.venue = Venue(
            start=first.ts, symbols=symbols, cash=cash, faults=faults,
            hours=around(hours, first.ts),
        )  # fmt: skip
        self._window = _Window(rate_limit)
        self._trade_streams: list[_Stream] = []
        self._data_streams: list[_Stream] = []
        self._pending = 0  # stream messages queued and not yet written
        # Trade updates sent to listeners so far: each print says how many came before it
        # (`updates`, outside Alpaca's format), so a lock-step client reads exactly those.
        self._updates_told = 0
        self._in_flight = 0  # requests being answered
        self._activity = 0  # requests, client messages and stream messages so far
        self._last_activity = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._poke: asyncio.Event | None = None
        self._contact: asyncio.Event | None = None
        self._advance: asyncio.Queue[tuple[int, asyncio.Future[list[Tick]]]] | None = None
        self._acks: list[tuple[_Stream, int]] = []  # lock-step: who was sent the last print
        self._acks_told = 0  # lock-step: acks received so far, on either path
        self._lost: tuple[int, int] | None = None  # clients cut by a drop (trade, data)
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.endpoints: Endpoints | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Endpoints:
        """Run the exchange on a background thread; return where it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self.run(lambda _: ready.set()))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=main, name="ratchet-exchange", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        assert self.endpoints is not None
        return self.endpoints

    def stop(self) -> None:
        """Stop serving and wait for the exchange's thread to end."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Exchange:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def run(self, on_ready: Callable[[Endpoints], None]) -> None:
        """Serve until stopped (`stop()`, or the task cancelled)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._poke = asyncio.Event()
        self._contact = asyncio.Event()
        self._advance = asyncio.Queue()
        server = await serve(self.host, self.port, self._on_request, self._on_websocket)
        port = server.sockets[0].getsockname()[1]
        origin = f"{self.host}:{port}"
        self.endpoints = Endpoints(
            port=port,
            base_url=f"http://{origin}",
            trade_stream_url=f"ws://{origin}/stream",
            data_stream_url=f"ws://{origin}/v2/iex",
            key_id=self._keys[0],
            secret_key=self._keys[1],
        )
        feed = asyncio.create_task(self._play())
        on_ready(self.endpoints)
        try:
            await self._stopping.wait()
        finally:
            feed.cancel()
            server.close()
            for stream in [*self._trade_streams, *self._data_streams]:
                stream.stop()
                await stream.socket.close()
            with contextlib.suppress(asyncio.CancelledError):
                await feed

    def finished(self, timeout: float | None = None) -> bool:
        """Wait until the feed has no more prints; True if it got there in time."""
        return self._done.wait(timeout)

    # --- in-process driving ----------------------------------------------------------------

    def advance(self, prints: int = 1, timeout: float = 30.0) -> list[Tick]:
        """Play the next `prints` prints now (exchange started with `speed=None`); return them
        once their trade updates and trades have been written to every subscriber."""
        played: list[Tick] = self._call(self._advance_by(prints), timeout)
        return played

    def books(self, positions: dict[str, Decimal] | None = None) -> dict[str, Any]:
        """The exchange's books (see `Venue.books`), read on the exchange's own thread."""

        async def read() -> dict[str, Any]:
            return self.venue.books(positions)

        books: dict[str, Any] = self._call(read(), 10.0)
        return books

    def subscribers(self) -> dict[str, Any]:
        """Who listens: trade_updates connections, and data-stream subscribers per symbol."""

        async def read() -> dict[str, Any]:
            trades: dict[str, int] = {}
            for stream in self._data_streams:
                for symbol in stream.trades:
                    trades[symbol] = trades.get(symbol, 0) + 1
            listening = sum(1 for s in self._trade_streams if s.listening)
            return {"trade_updates": listening, "trades": dict(sorted(trades.items()))}

        found: dict[str, Any] = self._call(read(), 10.0)
        return found

    def _call(self, coroutine: Any, timeout: float) -> Any:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the exchange is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    async def _advance_by(self, prints: int) -> list[Tick]:
        if self.speed is not None:
            raise RuntimeError("advance() needs an exchange started with speed=None")
        assert self._advance is not None
        future: asyncio.Future[list[Tick]] = asyncio.get_running_loop().create_future()
        self._advance.put_nowait((prints, future))
        return await future

    # --- the feed --------------------------------------------------------------------------

    def _next_tick(self) -> Tick | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        tick = next(self._ticks, None)
        if self._bad:
            self._report_bad()
        return tick

    def _report_bad(self) -> None:
        while self._bad:
            problem = self._bad.pop(0)
            if self._on_bad_line is not None:
                self._on_bad_line(f"skipped {problem}")

    async def _play(self) -> None:
        try:
            if self.speed is None:
                await self._play_by_hand()
            elif self.speed == 0:
                await self._play_lock_step()
            else:
                await self._play_timed(self.speed)
        finally:
            self._done.set()
        while True:  # the feed is over: keep routing what is submitted
            await asyncio.sleep(_ROUTE_EVERY)
            self.venue.route()
            self._flush_updates()

    async def _play_timed(self, speed: float) -> None:
        loop = asyncio.get_running_loop()
        started, origin, played = loop.time(), None, 0
        while (tick := self._next_tick()) is not None:
            origin = origin or tick.ts
            due = started + (tick.ts - origin).total_seconds() / speed
            wait = due - loop.time()
            played += 1
            if wait > 0:
                await asyncio.sleep(wait)
            elif not played % _YIELD_EVERY:
                await asyncio.sleep(0)  # behind the clock: still answer requests meanwhile
            self._print_trades(tick)
            self._publish(tick)

    async def _play_lock_step(self) -> None:
        assert self._contact is not None
        await self._contact.wait()  # nothing moves before a client is there
        mark, told, played = -1, self._acks_told, 0
        while (tick := self._next_tick()) is not None:
            played += 1
            if not played % _YIELD_EVERY:
                await asyncio.sleep(0)  # prints nobody is sent pass at once, but not all at once
            await self._settle(mark, told, acks=True)
            if self._lost is not None and self.venue.reopens(tick):
                await self._await_return()  # the link is back: wait for who it cut off
            mark, told = self._activity, self._acks_told
            if self._print_trades(tick):
                await self._settle(mark, told, acks=False)
                mark, told = self._activity, self._acks_told
            self._publish(tick)

    async def _await_return(self) -> None:
        """Lock-step after a dropped link: the print that ends the outage waits (up to
        `_RETURN_WAIT` s) until the clients it cut off are listening and subscribed again,
        so that the feed does not run on without them."""
        assert self._poke is not None and self._lost is not None
        listeners, subscribers = self._lost
        self._lost = None
        self.venue.down_since = None  # reconnecting is allowed from now on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RETURN_WAIT
        while loop.time() < deadline:
            listening = sum(1 for s in self._trade_streams if s.listening)
            subscribed = sum(1 for s in self._data_streams if s.trades)
            if listening >= listeners and subscribed >= subscribers:
                return
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):  # never swallows a cancel
                    await self._poke.wait()

    async def _play_by_hand(self) -> None:
        assert self._advance is not None
        while True:
            prints, future = await self._advance.get()
            played: list[Tick] = []
            while len(played) < prints and (tick := self._next_tick()) is not None:
                self._print_trades(tick)
                self._publish(tick)
                played.append(tick)
            if len(played) < prints:
                self._done.set()
                self.venue.route()  # no print left: what was submitted still reaches the market
                self._flush_updates()
            await self._drained()
            if not future.done():
                future.set_result(played)

    async def _settle(self, mark: int, told: int, acks: bool) -> None:
        """Wait until the client is done with what it was sent (see the module docstring):
        an ack received since `told` says so too, for the trade updates of a print that
        filled orders (`acks=False`) as for the print before."""
        assert self._poke is not None
        loop = asyncio.get_running_loop()
        while True:
            self._poke.clear()
            if self._in_flight == 0 and self._pending == 0:
                if self._activity == mark:
                    return  # nothing was sent and nothing asked since the last print
                if acks and self._acks and all(s.acked_print >= n for s, n in self._acks):
                    return  # every client sent the print has said it is done with it
                if self._acks_told > told:
                    return  # a client said it is done with everything it was sent
                idle = loop.time() - self._last_activity
                if idle >= self.quiet:
                    return
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the
                    # task's own cancel, and a stopping exchange then never stops.
                    async with asyncio.timeout(self.quiet - idle):
                        await self._poke.wait()
            else:
                await self._poke.wait()

    async def _drained(self) -> None:
        assert self._poke is not None
        while self._pending:
            self._poke.clear()
            await self._poke.wait()

    def _print_trades(self, tick: Tick) -> bool:
        """Route, match and tell the trade stream; True when something was told."""
        self.venue.on_print(tick)
        return self._flush_updates()

    def _publish(self, tick: Tick) -> None:
        """The print on the data stream, to every subscriber of its symbol's trades."""
        packed = text = None
        self._acks = []
        for stream in self._data_streams:
            if tick.symbol in stream.trades or "*" in stream.trades:
                stream.sent_print = self.venue.prints
                self._acks.append((stream, self.venue.prints))
                if stream.packed:
                    packed = packed or msgpack.packb([self._trade(tick, True)])
                    stream.put(packed)
                else:
                    text = text or json.dumps([self._trade(tick, False)])
                    stream.put(text)

    def _trade(self, tick: Tick, packed: bool) -> dict[str, Any]:
        return {**_trade(tick, self.venue.prints, packed), "updates": self._updates_told}

    def _flush_updates(self) -> bool:
        """Send the venue's queued trade updates to every listener; True if any went out."""
        updates = self.venue.take_outbox()
        listeners = [s for s in self._trade_streams if s.listening]
        if listeners:
            self._updates_told += len(updates)
        for data in updates:
            message = json.dumps({"stream": "trade_updates", "data": data}).encode()
            for stream in listeners:
                stream.put(message)
        return bool(updates and listeners)

    # --- activity --------------------------------------------------------------------------

    def _sent(self, messages: int) -> None:
        """`messages` stream messages are written (or dropped with their connection)."""
        self._pending -= messages
        if messages:
            self._touch()

    def _touch(self) -> None:
        self._activity += 1
        self._last_activity = asyncio.get_running_loop().time()
        if self._poke is not None:
            self._poke.set()

    # --- REST ------------------------------------------------------------------------------

    async def _on_request(self, request: Request) -> Response:
        if request.path.startswith("/_ratchet/"):
            return await self._control(request)
        self._in_flight += 1
        self._touch()
        try:
            return self._answer(request)
        except Exception as exc:  # a bug: answered 500, said in one line, the exchange goes on
            if self._on_error is not None:
                self._on_error(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return _json_response(500, {"code": 50010000, "message": "internal server error"})
        finally:
            self._in_flight -= 1
            self._touch()

    def _answer(self, request: Request) -> Response:
        venue = self.venue
        if venue.down_since is not None:
            return Response(503, action="reset")
        headers = request.headers
        if (headers.get("apca-api-key-id"), headers.get("apca-api-secret-key")) != self._keys:
            return _json_response(401, {"message": "unauthorized"})
        assert self._contact is not None
        self._contact.set()
        allowed, limits = self._window.take(time.time())
        if not allowed:
            return _json_response(429, {"code": 42910000, "message": "rate limit exceeded"}, limits)
        reply = venue.handle(request.method, request.path, request.query, request.body)
        if venue.down_since is not None:
            self._drop_streams()
        else:
            if self.speed:  # played against the clock: routed at once, as on Alpaca
                venue.route()
            self._flush_updates()
        return self._response(reply, limits)

    def _response(self, reply: Reply, limits: list[tuple[str, str]]) -> Response:
        if reply.wire == "reset":
            return Response(503, action="reset")
        if reply.limited:
            limits = [(k, "0" if k == "X-Ratelimit-Remaining" else v) for k, v in limits]
        if reply.text is not None:
            body, kind = reply.text.encode(), "text/plain; charset=utf-8"
        elif reply.body is None:
            body, kind = b"", None
        else:
            body, kind = json.dumps(reply.body).encode(), "application/json"
        if reply.wire == "slow":
            return Response(reply.status, body, kind, limits, "slow", self.slow_answer)
        return Response(reply.status, body, kind, limits)

    def _drop_streams(self) -> None:
        """The `drop` fault: every stream connection goes down with the link."""
        self.venue.take_outbox()
        listeners = sum(1 for s in self._trade_streams if s.listening)
        subscribers = sum(1 for s in self._data_streams if s.trades)
        if self._lost is None:
            self._lost = (listeners, subscribers)
        for stream in [*self._trade_streams, *self._data_streams]:
            stream.stop()
            stream.socket.abort()
        self._trade_streams.clear()
        self._data_streams.clear()

    async def _control(self, request: Request) -> Response:
        """The endpoints outside Alpaca's API."""
        if request.path == "/_ratchet/books" and request.method == "GET":
            raw = request.query.get("positions", [""])[-1]
            positions = None
            if raw:
                try:
                    positions = {
                        s.strip().upper(): Decimal(q)
                        for s, _, q in (p.partition(":") for p in raw.split(","))
                    }
                except ArithmeticError:
                    return _json_response(400, {"message": "positions: SYMBOL:QTY,..."})
            return _json_response(200, self.venue.books(positions))
        if request.path == "/_ratchet/ack" and request.method == "POST":
            self._ack_all()  # lock-step: the client is done with every print it was sent
            return Response(204)
        if request.path == "/_ratchet/advance" and request.method == "POST":
            if self.speed is not None:
                return _json_response(409, {"message": "the feed is not moved by hand"})
            try:
                prints = int(json.loads(request.body or b"{}").get("prints", 1))
            except (ValueError, TypeError, AttributeError):
                return _json_response(400, {"message": 'body: {"prints": N}'})
            played = await self._advance_by(prints)
            return _json_response(200, {"prints": len(played), "clock": ts(self.venue.clock)})
        return _json_response(404, {"message": "not found"})

    def _ack_all(self) -> None:
        self._acks_told += 1
        for stream in self._data_streams:
            stream.acked_print = stream.sent_print
        if self._poke is not None:
            self._poke.set()

    # --- streams ---------------------------------------------------------------------------

    async def _on_websocket(self, request: Request, socket: WebSocket) -> None:
        if self.venue.down_since is not None:
            socket.abort()
            return
        if request.path == "/stream":
            await self._trade_stream(socket)
        elif request.path.startswith("/v2/"):
            packed = "msgpack" in request.headers.get("content-type", "")
            await self._data_stream(socket, packed)
        else:
            await socket.close()

    async def _trade_stream(self, socket: WebSocket) -> None:
        """trade_updates: authenticate, listen, then the account's order events."""
        stream = _Stream(self, socket, packed=False)
        authorized = False
        try:
            while (raw := await socket.recv()) is not None:
                self._touch()
                message = _load(raw, packed=False)
                action = message.get("action") if isinstance(message, dict) else None
                data = message.get("data") if isinstance(message, dict) else None
                data = data if isinstance(data, dict) else {}
                if action == "authenticate":
                    keys = (data.get("key_id"), data.get("secret_key"))
                    authorized = keys == self._keys
                    status = "authorized" if authorized else "unauthorized"
                    answer = {"status": status, "action": "authenticate"}
                    reply = {"stream": "authorization", "data": answer}
                    stream.put(json.dumps(reply).encode())
                    if not authorized:
                        await self._drained()
                        await socket.close()
                        return
                    assert self._contact is not None
                    self._contact.set()
                elif action == "listen" and authorized:
                    wanted = data.get("streams")
                    streams = ["trade_updates"] if "trade_updates" in (wanted or []) else []
                    stream.listening = bool(streams)
                    if stream not in self._trade_streams:
                        self._trade_streams.append(stream)
                    reply = {"stream": "listening", "data": {"streams": streams}}
                    stream.put(json.dumps(reply).encode())
                else:
                    error = {"action": action, "error": "access key verification failed"}
                    if authorized:
                        error["error"] = "invalid action"
                    stream.put(json.dumps({"stream": "error", "data": error}).encode())
        finally:
            if stream in self._trade_streams:
                self._trade_streams.remove(stream)
            stream.stop()

    async def _data_stream(self, socket: WebSocket, packed: bool) -> None:
        """Stock data: connected, auth, subscribe; then trades of the subscribed symbols."""
        stream = _Stream(self, socket, packed)

        def send(messages: list[dict[str, Any]]) -> None:
            stream.put(msgpack.packb(messages) if packed else json.dumps(messages))

        send([{"T": "success", "msg": "connected"}])
        authorized = False
        try:
            while (raw := await socket.recv()) is not None:
                message = _load(raw, packed)
                action = message.get("action") if isinstance(message, dict) else None
                if action == "ack":  # lock-step, outside Alpaca's API: done with the last print
                    stream.acked_print = stream.sent_print
                    self._acks_told += 1
                    if self._poke is not None:
                        self._poke.set()
                    continue
                self._touch()
                if action == "auth":
                    assert isinstance(message, dict)
                    if (message.get("key"), message.get("secret")) != self._keys:
                        send([{"T": "error", "code": 402, "msg": "auth failed"}])
                        await self._drained()
                        await socket.close()
                        return
                    authorized = True
                    assert self._contact is not None
                    self._contact.set()
                    send([{"T": "success", "msg": "authenticated"}])
                elif action in ("subscribe", "unsubscribe") and authorized:
                    assert isinstance(message, dict)
                    for channel in ("trades", "quotes", "bars"):
                        names = message.get(channel) or []
                        chosen: set[str] = getattr(stream, channel)
                        if action == "subscribe":
                            chosen.update(str(n).upper() if n != "*" else "*" for n in names)
                        else:
                            chosen.difference_update(str(n).upper() for n in names)
                    if stream not in self._data_streams:
                        self._data_streams.append(stream)
                    send([_subscription(stream)])
                elif not authorized:
                    send([{"T": "error", "code": 401, "msg": "not authenticated"}])
                else:
                    send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        finally:
            if stream in self._data_streams:
                self._data_streams.remove(stream)
            stream.stop()


def _trade(tick: Tick, number: int, packed: bool) -> dict[str, Any]:
    """A trade as the data stream sends it: `p` and `s` are numbers, `t` a MsgPack Timestamp
    (an RFC 3339 string on a JSON connection)."""
    size: int | float = int(tick.size) if tick.size == tick.size.to_integral() else float(tick.size)
    moment: Any = msgpack.Timestamp.from_datetime(tick.ts) if packed else ts(tick.ts)
    return {
        "T": "t",
        "S": tick.symbol,
        "i": number,
        "x": "V",
        "p": float(tick.price),
        "s": size,
        "t": moment,
        "c": ["@"],
        "z": "C",
    }


def _subscription(stream: _Stream) -> dict[str, Any]:
    return {
        "T": "subscription",
        "trades": sorted(stream.trades),
        "quotes": sorted(stream.quotes),
        "bars": sorted(stream.bars),
        "updatedBars": [],
        "dailyBars": [],
        "statuses": [],
        "lulds": [],
        "corrections": sorted(stream.trades),
        "cancelErrors": sorted(stream.trades),
    }


def _load(raw: str | bytes, packed: bool) -> Any:
    try:
        if isinstance(raw, bytes) and packed:
            return msgpack.unpackb(raw)
        return json.loads(raw)
    except (ValueError, msgpack.UnpackException):
        return None


def _json_response(
    status: int, body: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, json.dumps(body).encode(), "application/json", headers or [])


def _ticks(events: Iterable[Any]) -> Iterator[Tick]:
    return (e for e in events if type(e) is Tick)


def feed_symbols(path: Path) -> frozenset[str]:
    """The symbols a feed file trades (a quick pass: CSV by its second column)."""
    name = path.name.removesuffix(".gz")
    if not name.endswith(".csv"):
        return frozenset(t.symbol for t in _ticks(read_events(path, skip_bad=True)))
    lines = _lines(path)
    next(lines, None)
    symbols = {row[1].strip() for line in lines if len(row := line.split(",", 2)) > 2}
    return frozenset(s for s in symbols if s)


def _lines(path: Path) -> Iterator[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", newline="") as compressed:
            yield from compressed
    else:
        with path.open(encoding="utf-8", newline="") as plain:
            yield from plain
