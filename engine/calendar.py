"""The trading session calendar: one boundary (default 04:00 America/New_York) for every daily
counter, decided from event timestamps only. Pure: the zone comes in as a tzinfo object."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

__all__ = ["session_of"]


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
