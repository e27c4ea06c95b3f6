"""The Alpaca adapter: alpaca-py's TradingClient, TradingStream and StockDataStream behind the
engine's events and commands, live (`AlpacaBroker`, on an asyncio loop) or in lock-step with a
`ratchet exchange` (`LockstepBroker`, a synchronous `Broker` for `run_simulation`)."""

from __future__ import annotations

from shell.broker.alpaca.lockstep import LockstepBroker
from shell.broker.alpaca.settings import AlpacaSettings

__all__ = ["AlpacaSettings", "LockstepBroker"]
