"""The market calendars `[broker] hours` names, as the engine's plain data: the open and close
of every regular session, in UTC. exchange_calendars knows NYSE's holidays, early
closes and DST; the engine never imports it, and never reads a clock."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from typing import Any

from engine import Config, Event, MarketHours, TradingDay
from shell.errors import UserError

__all__ = ["HOURS", "around", "market_hours", "with_hours"]

# `[broker] hours`: "us_equity" (NYSE sessions; the default: ratchet protects stocks) or
# "always" (every instant is regular: crypto, and tests about the ladder).
HOURS = ("us_equity", "always")
_CALENDARS = {"us_equity": "XNYS"}
_BEFORE = timedelta(days=7)
_AFTER = timedelta(days=2 * 366)  # past this the engine alerts `market_hours_unknown`
_cache: dict[tuple[str, date, date], MarketHours] = {}


def market_hours(name: str, start: date, end: date) -> MarketHours | None:
    """The regular sessions of calendar `name` from `start` to `end` (None for "always")."""
    if name == "always":
        return None
    code = _CALENDARS.get(name)
    if code is None:
        raise UserError(f"hours = {name!r}: allowed {' or '.join(repr(h) for h in HOURS)}")
    key = (name, start, end)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    import exchange_calendars  # noqa: PLC0415 (pandas is heavy: only when a calendar is asked for)

    try:
        with warnings.catch_warnings():
            # pandas 3.1 deprecates an idiom the library uses inside; nothing of ours.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            calendar: Any = exchange_calendars.get_calendar(
                code, start=start.isoformat(), end=end.isoformat()
            )
            schedule = calendar.schedule
    except ValueError as exc:  # the library's own bounds (its DateOutOfBounds is one)
        raise UserError(f"hours = {name!r}: no calendar from {start} to {end}: {exc}") from None
    days = tuple(
        TradingDay(_utc(opened), _utc(closed))
        for opened, closed in zip(schedule["open"], schedule["close"], strict=True)
    )
    hours = MarketHours(name, days)
    _cache[key] = hours
    return hours


def around(name: str, ts: datetime) -> MarketHours | None:
    """The sessions of `name` from a week before `ts` to two years after it."""
    day = ts.astimezone(UTC).date()
    return market_hours(name, day - _BEFORE, day + _AFTER)


def with_hours(
    config: Config, name: str, events: Iterable[Event]
) -> tuple[Config, Iterator[Event]]:
    """`config` with the sessions of `name` around the first of `events` (read ahead by one,
    and put back), and the events."""
    stream = iter(events)
    first = next(stream, None)
    if first is None or name == "always":
        return config, stream if first is None else chain([first], stream)
    from attrs import evolve  # noqa: PLC0415

    return evolve(config, hours=around(name, first.ts)), chain([first], stream)


def _utc(stamp: Any) -> datetime:
    """A pandas timestamp as an aware UTC datetime (whole seconds: sessions open on minutes)."""
    return datetime.fromtimestamp(int(stamp.timestamp()), UTC)
