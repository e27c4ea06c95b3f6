"""Alpaca's two streams through alpaca-py, on one asyncio loop: `trade_updates` (the
account's order events) and the stock data stream (trades of the subscribed symbols).

Both are read raw (`raw_data=True`): trade updates keep their decimal strings, and trades
reach the adapter as Alpaca sent them. alpaca-py reconnects by itself, with its jittered
backoff (`AlpacaSettings.reconnect`); these subclasses add only what the adapter must know
and alpaca-py does not tell: when each connection is up (authorized and listening, or
subscribed) and when it dropped. Messages go to plain callbacks, in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from alpaca.data.live import StockDataStream
from alpaca.trading.stream import TradingStream

from shell.broker.alpaca.settings import AlpacaSettings

__all__ = ["Streams"]

_Message = dict[str, Any]

_log = logging.getLogger(__name__)


async def _ignore(_: object) -> None:
    """alpaca-py wants a handler before it connects; the messages go to `_dispatch`."""


class _TradeUpdates(TradingStream):
    """trade_updates, raw, told to `on_update`; up once listening."""

    def __init__(
        self,
        settings: AlpacaSettings,
        on_update: Callable[[_Message], None],
        on_link: Callable[[bool], None],
    ) -> None:
        super().__init__(
            settings.key_id.reveal(),
            settings.secret_key.reveal(),
            paper=settings.paper,
            raw_data=True,
            url_override=settings.trade_stream_url,
        )
        self._reconnect_min_backoff, self._reconnect_max_backoff = settings.reconnect
        self._on_update, self._on_link = on_update, on_link
        self.subscribe_trade_updates(_ignore)

    async def _dispatch(self, msg: _Message) -> None:
        stream = msg.get("stream")
        if stream == "trade_updates" and isinstance(msg.get("data"), dict):
            self._on_update(msg["data"])
        elif stream == "listening":
            self._on_link(True)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._on_link(False)


class _Trades(StockDataStream):
    """The stock data stream, raw trades told to `on_trade`; up once subscribed."""

    def __init__(
        self,
        settings: AlpacaSettings,
        on_trade: Callable[[_Message], None],
        on_link: Callable[[bool], None],
    ) -> None:
        super().__init__(
            settings.key_id.reveal(),
            settings.secret_key.reveal(),
            raw_data=True,
            url_override=settings.data_stream_url,
        )
        self._reconnect_min_backoff, self._reconnect_max_backoff = settings.reconnect
        self._on_trade, self._on_link = on_trade, on_link

    def add(self, symbols: Iterable[str]) -> bool:
        """Want the trades of `symbols` too; True when some are new."""
        wanted: dict[str, Any] = self._handlers["trades"]
        new = [s for s in symbols if s not in wanted]
        for symbol in new:
            wanted[symbol] = _ignore
        return bool(new)

    @property
    def symbols(self) -> list[str]:
        return sorted(self._handlers["trades"])

    async def resubscribe(self) -> None:
        """Send the whole subscription again on the open connection (if there is one)."""
        if self._running and self._ws is not None:
            await self._send_subscribe_msg()

    async def _dispatch(self, msg: _Message) -> None:
        kind = msg.get("T")
        if kind == "t":
            self._on_trade(msg)
        elif kind == "subscription":
            self._on_link(True)
        elif kind == "error":
            _log.warning("stock data stream error %s: %s", msg.get("code"), msg.get("msg"))

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._on_link(False)


class Streams:
    """Both streams on the running loop. `on_update(data)` gets each trade update,
    `on_trade(msg)` each trade, `on_link(up)` each change of the pair's state: down when
    either drops, up when every started stream is back."""

    def __init__(
        self,
        settings: AlpacaSettings,
        on_update: Callable[[_Message], None],
        on_trade: Callable[[_Message], None],
        on_link: Callable[[bool], None],
        *,
        trades: bool = True,
    ) -> None:
        self._on_link = on_link
        self._state: dict[str, bool | None] = {}
        self._up = False
        self.stopping = False
        self.updates = _TradeUpdates(settings, on_update, lambda up: self._changed("updates", up))
        self.trades = (
            _Trades(settings, on_trade, lambda up: self._changed("trades", up)) if trades else None
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.connected = asyncio.Event()  # every started stream is up (now)

    def start(self, symbols: Iterable[str] = ()) -> None:
        """Connect on the running loop (trade updates now; trades once there is a symbol)."""
        self._launch("updates", self.updates)
        self.subscribe(symbols)

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Want the trades of `symbols` too (called on the loop's thread)."""
        if self.trades is None or not self.trades.add(sorted({s.upper() for s in symbols})):
            return
        if "trades" not in self._tasks:
            self._launch("trades", self.trades)
        else:
            self._tasks["resubscribe"] = asyncio.get_running_loop().create_task(
                self.trades.resubscribe()
            )

    @property
    def up(self) -> bool:
        return self._up

    async def stop(self) -> None:
        """Close both connections and end their tasks."""
        self.stopping = True
        for stream in (self.updates, self.trades):
            if stream is not None and stream._stop_stream_event is not None:
                await stream.stop_ws()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stream in (self.updates, self.trades):
            if stream is not None and stream._ws is not None:
                with contextlib.suppress(Exception):
                    await stream.close()

    def _launch(self, name: str, stream: TradingStream | StockDataStream) -> None:
        self._state[name] = None  # not counted until it is up the first time
        self.connected.clear()
        self._tasks[name] = asyncio.get_running_loop().create_task(stream._run_forever())

    def _changed(self, name: str, up: bool) -> None:
        before = self._state.get(name)
        if before is up or (before is None and not up):
            return  # no change; a connection that never came up did not drop
        self._state[name] = up
        states = list(self._state.values())
        if all(v is True for v in states):
            self.connected.set()
        else:
            self.connected.clear()
        counted = [v for v in states if v is not None]
        now = bool(counted) and all(counted)
        if now != self._up:
            self._up = now
            if not self.stopping:
                self._on_link(now)
