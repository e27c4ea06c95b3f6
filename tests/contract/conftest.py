"""The real alpaca-py against `ratchet exchange` over real sockets: fixtures and helpers.

Nothing of alpaca-py is patched beyond what ALPACA.md §4 allows: `url_override`,
`client._retry = 0` and a timeout on its requests.Session.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.live import StockDataStream
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream

from engine import Tick
from shell.exchange import Exchange

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


def ticks(*prices: str | Decimal, symbol: str = "SPY", start: datetime = T0) -> list[Tick]:
    """One print a second of `symbol` at each price."""
    return [
        Tick(start + timedelta(seconds=i), symbol, Decimal(p), Decimal(100))
        for i, p in enumerate(prices)
    ]


# 100.00 up to 101.00 by cents, then down to 99.00: stops and limits both get their chance.
DEFAULT_FEED = ticks(
    *[Decimal(100) + Decimal(i) / 100 for i in range(101)],
    *[Decimal(101) - Decimal(i) / 100 for i in range(1, 201)],
)


@pytest.fixture
def start_exchange() -> Iterator[Callable[..., Exchange]]:
    """Start an exchange moved by hand (speed=None) with a generous rate limit; stopped after
    the test."""
    started: list[Exchange] = []

    def start(feed: list[Tick] | None = None, **options: Any) -> Exchange:
        options.setdefault("speed", None)
        options.setdefault("rate_limit", 1_000_000)
        exchange = Exchange(feed if feed is not None else DEFAULT_FEED, **options)
        exchange.start()
        started.append(exchange)
        return exchange

    yield start
    for exchange in started:
        exchange.stop()


@pytest.fixture
def market(start_exchange: Callable[..., Exchange]) -> Exchange:
    return start_exchange()


def client(exchange: Exchange, *, raw: bool = False, timeout: float = 5.0) -> TradingClient:
    """alpaca-py's TradingClient on the exchange: no retries, every request with a timeout."""
    endpoints = exchange.endpoints
    assert endpoints is not None
    trading = TradingClient(
        endpoints.key_id, endpoints.secret_key, raw_data=raw, url_override=endpoints.base_url
    )
    trading._retry = 0
    request = trading._session.request

    def timed(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    trading._session.request = timed  # type: ignore[method-assign]
    return trading


def refusal(call: Callable[[], object]) -> tuple[int, Any, APIError]:
    """(HTTP status, the raw body parsed as JSON, the error) of a call alpaca-py refuses."""
    with pytest.raises(APIError) as caught:
        call()
    error = caught.value
    return error.status_code, json.loads(str(error)), error


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.01)


class Updates:
    """alpaca-py's TradingStream on its own thread, collecting every trade update."""

    def __init__(self, exchange: Exchange, raw: bool = False) -> None:
        endpoints = exchange.endpoints
        assert endpoints is not None
        self.received: list[Any] = []
        self._lock = threading.Lock()
        self.stream = TradingStream(
            endpoints.key_id,
            endpoints.secret_key,
            raw_data=raw,
            url_override=endpoints.trade_stream_url,
        )

        async def on_update(update: Any) -> None:
            with self._lock:
                self.received.append(update)

        self.stream.subscribe_trade_updates(on_update)
        before = exchange.subscribers()["trade_updates"]
        self.thread = threading.Thread(target=self.stream.run, daemon=True)
        self.thread.start()
        wait_until(
            lambda: exchange.subscribers()["trade_updates"] > before, what="trade_updates listen"
        )

    def events(self) -> list[tuple[str, str]]:
        """(event, order id) of every update so far."""
        with self._lock:
            return [_event(u) for u in self.received]

    def wait(self, count: int, timeout: float = 10.0) -> list[Any]:
        wait_until(lambda: len(self.received) >= count, timeout, f"{count} trade updates")
        with self._lock:
            return list(self.received)

    def stop(self) -> None:
        self.stream._should_run = False
        if self.stream._loop is not None and self.stream._loop.is_running():
            self.stream.stop()


def _event(update: Any) -> tuple[str, str]:
    if isinstance(update, dict):
        data = update["data"]
        return data["event"], data["order"]["id"]
    return str(getattr(update.event, "value", update.event)), str(update.order.id)


class Trades:
    """alpaca-py's StockDataStream on its own thread, collecting the trades of `symbols`."""

    def __init__(self, exchange: Exchange, *symbols: str, raw: bool = False) -> None:
        endpoints = exchange.endpoints
        assert endpoints is not None
        self.received: list[Any] = []
        self.stream = StockDataStream(
            endpoints.key_id,
            endpoints.secret_key,
            raw_data=raw,
            url_override=endpoints.data_stream_url,
        )

        async def on_trade(trade: Any) -> None:
            self.received.append(trade)

        self.stream.subscribe_trades(on_trade, *symbols)
        before = exchange.subscribers()["trades"]
        self.thread = threading.Thread(target=self.stream.run, daemon=True)
        self.thread.start()
        wait_until(
            lambda: all(
                exchange.subscribers()["trades"].get(s, 0) > before.get(s, 0) for s in symbols
            ),
            what="a trades subscription",
        )

    def stop(self) -> None:
        self.stream._should_run = False
        if self.stream._loop is not None and self.stream._loop.is_running():
            self.stream.stop()


@pytest.fixture
def updates_of(start_exchange: object) -> Iterator[Callable[..., Updates]]:
    """Open trade_updates streams; closed before the exchanges stop."""
    opened: list[Updates] = []

    def open_stream(exchange: Exchange, raw: bool = False) -> Updates:
        updates = Updates(exchange, raw)
        opened.append(updates)
        return updates

    yield open_stream
    for updates in opened:
        updates.stop()


@pytest.fixture
def trades_of(start_exchange: object) -> Iterator[Callable[..., Trades]]:
    """Open stock data streams; closed before the exchanges stop."""
    opened: list[Trades] = []

    def open_stream(exchange: Exchange, *symbols: str, raw: bool = False) -> Trades:
        trades = Trades(exchange, *symbols, raw=raw)
        opened.append(trades)
        return trades

    yield open_stream
    for trades in opened:
        trades.stop()
