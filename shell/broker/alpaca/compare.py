"""One run two ways, for comparison: `ratchet simulate`'s fold over the simulated broker, and
the same fold through `ratchet exchange` (lock-step, speed 0) and the Alpaca adapter, on the
same tick and entry files, under the same market hours. Used by the lock-step tests and by
`tools/compare_lockstep.py` (runs too long for the test suite, such as the SPY week)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine import Config, EngineState, Event
from shell.broker.alpaca.lockstep import LockstepBroker
from shell.broker.alpaca.settings import AlpacaSettings
from shell.broker.faults import Faults
from shell.broker.simulated import SimulatedBroker
from shell.codec import merge_by_ts, read_events
from shell.config import load_settings
from shell.exchange import Exchange
from shell.hours import with_hours
from shell.report import summary_to_json
from shell.secret import Secret
from shell.simulate import run_simulation

__all__ = ["HOURS", "lockstep_settings", "numbers_as_numbers", "simulated", "through_exchange"]

# The market's sessions of a comparison by default: the default of `[broker] hours` (NYSE's
# regular session for stops and market orders; extended-hours limits outside it).
HOURS = "us_equity"


def lockstep_settings(exchange: Exchange, **options: Any) -> AlpacaSettings:
    """The adapter's settings for an in-process exchange: its keys, no token bucket (the
    exchange is started without the 200-a-minute limit), quick reconnects."""
    endpoints = exchange.endpoints
    assert endpoints is not None
    options.setdefault("requests_per_minute", None)
    options.setdefault("timeout", 5.0)
    options.setdefault("reconnect", (0.02, 0.2))
    return AlpacaSettings(
        Secret(endpoints.key_id), Secret(endpoints.secret_key), endpoints.base_url, **options
    )


def _events(ticks: Path, entries: Path | None) -> Iterator[Event]:
    stream = read_events(ticks)
    return merge_by_ts(stream, read_events(entries)) if entries is not None else stream


def _config(ticks: Path, hours: str) -> Config:
    """The default configuration with the market's sessions (`[broker] hours`) around the
    first print, as `simulate` and `run` build it."""
    config, _ = with_hours(load_settings(None).config, hours, read_events(ticks))
    return config


def simulated(ticks: Path, entries: Path | None = None, hours: str = HOURS) -> dict[str, Any]:
    """`ratchet simulate TICKS [--entries ENTRIES]`'s summary (its broker: the session rules
    of `hours` and Alpaca's wash-trade check)."""
    config = _config(ticks, hours)
    broker = SimulatedBroker(hours=config.hours, wash_check=True)
    _, summary = run_simulation(_events(ticks, entries), EngineState.empty(config), broker)
    return summary_to_json(summary)


def through_exchange(
    ticks: Path,
    entries: Path | None = None,
    faults: Faults | None = None,
    adapter: dict[str, Any] | None = None,
    **exchange: Any,
) -> tuple[dict[str, Any], dict[str, Any], LockstepBroker]:
    """The same run through the exchange and the adapter: its summary, the exchange's books,
    and the (closed) adapter. `exchange` options go to `Exchange` (`hours` among them)."""
    exchange.setdefault("quiet", 5.0)
    exchange.setdefault("rate_limit", 1_000_000)
    hours = exchange.setdefault("hours", HOURS)
    market = Exchange(ticks, speed=0, faults=faults, **exchange)
    market.start()
    try:
        broker = LockstepBroker(
            lockstep_settings(market, **(adapter or {})), sorted(market.venue.symbols)
        )
        try:
            config = _config(ticks, hours)
            _, summary = run_simulation(_events(ticks, entries), EngineState.empty(config), broker)
            books = broker.books()
        finally:
            broker.close()
    finally:
        market.stop()
    return summary_to_json(summary), books, broker


def numbers_as_numbers(value: Any) -> Any:
    """`value` with every decimal string normalized ("50.00" and "50" are one price: the
    exchange writes numbers as Alpaca does, without trailing zeros)."""
    if isinstance(value, dict):
        return {k: numbers_as_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_as_numbers(v) for v in value]
    if isinstance(value, str) and value[:1] in "-0123456789":
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value
        return format(number.normalize(), "f") if number.is_finite() else value
    return value
