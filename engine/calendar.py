"""The trading calendars: one boundary (default 04:00 America/New_York) for every daily counter,
and the market's regular sessions, both decided from event timestamps only. Pure: the
zone comes in as a tzinfo object, the sessions as data the shell built from an exchange
calendar."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from attrs import frozen

__all__ = ["MarketHours", "TradingDay", "session_of"]


def session_of(ts: datetime, tz: tzinfo, boundary: time) -> tuple[date, datetime]:
    """The session date holding `ts`, and the UTC instant the next session begins.

    A session is named by the local date on which it starts at `boundary`; DST is handled by
    the zone (the boundary is wall-clock time, so sessions are 23 or 25 hours long on the
    change days).
    """
    local = ts.astimezone(tz)
    day = (
        local.date()
        if local.time().replace(tzinfo=None) >= boundary
        else (local.date() - timedelta(days=1))
    )
    start_next = datetime.combine(day + timedelta(days=1), boundary, tzinfo=tz)
    return day, start_next.astimezone(UTC)


@frozen
class TradingDay:
    """One trading date's regular session: its open and close, aware UTC instants."""

    open: datetime
    close: datetime


def _open_of(day: TradingDay) -> datetime:
    return day.open


@frozen
class MarketHours:
    """The regular sessions of a market, in order, as the shell's calendar gave them (holidays
    are missing days, early closes short ones, DST already in the UTC instants). Outside them
    Alpaca trades only extended-hours limit orders: stops and market orders wait for the open
    (ALPACA.md §1.11, §7)."""

    name: str
    days: tuple[TradingDay, ...]

    def at(self, ts: datetime) -> tuple[bool, datetime | None]:
        """Whether `ts` is inside a regular session, and the instant that next changes (None:
        `ts` is past the last session the calendar holds, so nothing is known)."""
        days = self.days
        i = bisect_right(days, ts, key=_open_of) - 1
        if i >= 0 and ts < days[i].close:
            return True, days[i].close
        if i + 1 < len(days):
            return False, days[i + 1].open
        return False, None

    def regular(self, ts: datetime) -> bool:
        """True inside a regular session, and past the calendar's end, where the session rules
        are off (the engine alerts `market_hours_unknown` there)."""
        regular, until = self.at(ts)
        return regular or until is None
