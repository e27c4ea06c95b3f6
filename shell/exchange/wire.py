"""Alpaca's wire forms: numbers as strings, RFC 3339 times, error bodies, ids and the clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from engine import MarketHours

__all__ = [
    "NOT_FOUND",
    "Refused",
    "error",
    "market_clock",
    "num",
    "parse_decimal",
    "parse_time",
    "refuse",
    "stable_id",
    "sub_penny",
    "ts",
]

_NAMESPACE = uuid.UUID("5b0e6c1e-3f4a-4f8e-9a51-7a7c1e2d9b40")  # ratchet exchange ids
_NEW_YORK = ZoneInfo("America/New_York")
_OPEN, _CLOSE = time(9, 30), time(16, 0)
_CENT = Decimal("0.01")
_HUNDREDTH_CENT = Decimal("0.0001")


class Refused(Exception):
    """A request the exchange answers with an error: HTTP status and Alpaca's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """Alpaca's error body: `code` and `message`, then any extra fields in name order."""
    return {"code": code, "message": message, **dict(sorted(extra.items()))}


NOT_FOUND = error(40410000, "order not found")


def refuse(status: int, code: int, message: str, **extra: Any) -> Refused:
    """The refusal to raise: HTTP `status` with Alpaca's body `code` and `message`."""
    return Refused(status, error(code, message, **extra))


def num(value: Decimal) -> str:
    """A decimal as Alpaca writes it: a string, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@lru_cache(maxsize=4096)  # orders share the few times of the prints around them
def ts(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, microseconds when there are any."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_decimal(value: object, name: str) -> Decimal:
    """A JSON number or numeric string as a Decimal; `Refused` 422 naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise refuse(422, 40010001, f"invalid {name}: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise refuse(422, 40010001, f"invalid {name}: {value!r}") from None
    if not number.is_finite():
        raise refuse(422, 40010001, f"invalid {name}: {value!r}")
    return number


def parse_time(value: str, name: str) -> datetime:
    """An RFC 3339 query parameter (`after`, `until`); 422 "failed to parse NAME" otherwise."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise refuse(422, 40010001, f"failed to parse {name}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sub_penny(price: Decimal) -> bool:
    """Prices of $1 or more take at most 2 decimals, below $1 at most 4 (Alpaca's rule)."""
    step = _CENT if abs(price) >= 1 else _HUNDREDTH_CENT
    return price % step != 0


def stable_id(kind: str, key: object) -> str:
    """A UUID that depends only on `kind` and `key`, so a run's ids repeat exactly."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}/{key}"))


def market_clock(now: datetime, hours: MarketHours | None = None) -> dict[str, Any]:
    """GET /v2/clock at `now`: from the market's calendar when the exchange has one (holidays
    and early closes included), else the regular session 9:30-16:00 New York, Monday to
    Friday."""
    local = now.astimezone(_NEW_YORK)
    if hours is not None:
        sessions = _sessions_around(now, hours)
        if sessions is not None:
            is_open, next_open, next_close = sessions
            return {
                "timestamp": local.isoformat(),
                "is_open": is_open,
                "next_open": next_open.astimezone(_NEW_YORK).isoformat(),
                "next_close": next_close.astimezone(_NEW_YORK).isoformat(),
            }
    day = local.date()
    is_open = day.weekday() < 5 and _OPEN <= local.time() < _CLOSE
    next_open = _session(day, _OPEN)
    if next_open <= local:
        next_open = _session(_next_weekday(day), _OPEN)
    while next_open.weekday() >= 5:
        next_open = _session(_next_weekday(next_open.date()), _OPEN)
    next_close = _session(day, _CLOSE)
    if not is_open:
        next_close = _session(next_open.date(), _CLOSE)
    return {
        "timestamp": local.isoformat(),
        "is_open": is_open,
        "next_open": next_open.isoformat(),
        "next_close": next_close.isoformat(),
    }


def _sessions_around(now: datetime, hours: MarketHours) -> tuple[bool, datetime, datetime] | None:
    """Whether the market is open at `now`, its next open and its next close, from the
    calendar (None past the calendar's last session)."""
    days = hours.days
    for i, day in enumerate(days):
        if now >= day.close:
            continue
        if now < day.open:
            return False, day.open, day.close
        if i + 1 < len(days):
            return True, days[i + 1].open, day.close
        return None
    return None


def _session(day: Any, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=_NEW_YORK)


def _next_weekday(day: Any) -> Any:
    day = day + timedelta(days=1)
    while day.weekday() >= 5:
        day = day + timedelta(days=1)
    return day
