"""Events: the facts the engine is told, each stamped with an aware UTC `ts`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TypeAlias

from attrs import frozen

from engine.commands import OrderAction, OrderType

__all__ = [
    "BreakerAck",
    "BrokerOrder",
    "BrokerSnapshot",
    "CancelRefusal",
    "CancelRejected",
    "Clock",
    "Connectivity",
    "EntryIntent",
    "Event",
    "OrderAccepted",
    "OrderCanceled",
    "OrderFilled",
    "OrderRefusal",
    "OrderRejected",
    "PhaseAdvance",
    "PhaseOverride",
    "Side",
    "Tick",
]

_ZERO = Decimal(0)


class Side(Enum):
    """Direction of a position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        """+1 for a long, -1 for a short: P/L = (price - entry) * qty * sign."""
        return 1 if self is Side.LONG else -1


class OrderRefusal(Enum):
    """How the broker adapter classified a refused order (by HTTP status and message)."""

    TRANSIENT = "transient"  # 5xx, 429: not carried out; the same request may be sent again
    UNKNOWN = "unknown"  # a timeout or lost answer: it may have been carried out; sent again
    # with the same client id, the broker tells (a duplicate means it was)
    PERMANENT = "permanent"  # the order as asked will never be taken (422 parameters ...)
    SHARES_LOCKED = "shares_locked"  # 403 insufficient qty: other orders hold the shares
    DUPLICATE = "duplicate"  # 422 client_order_id must be unique: an earlier send landed
    # 403 "potential wash trade detected": an open opposite-side order of the account in the
    # symbol could trade against it (the code is insufficient qty's: told by the message)
    WASH_TRADE = "wash_trade"


class CancelRefusal(Enum):
    """How the broker adapter classified a refused cancel."""

    FILLED = "filled"  # 422, the order filled first: its fill is on the way
    CANCELED = "canceled"  # 422, already canceled (a cancel sent again after a timeout)
    NOT_FOUND = "not_found"  # 404
    TRANSIENT = "transient"  # 5xx, 429, timeout: send the cancel again
    PERMANENT = "permanent"  # anything else


@frozen
class Tick:
    """A trade printed at `price` for `symbol`."""

    ts: datetime
    symbol: str
    price: Decimal
    size: Decimal = _ZERO


@frozen
class EntryIntent:
    """The bot wants a position; ratchet opens it and protects it from the first share."""

    ts: datetime
    symbol: str
    side: Side
    stop: Decimal
    qty: Decimal | None = None
    entry: Decimal | None = None
    id: str | None = None  # the client's own id: a second intent with it is refused


@frozen
class OrderAccepted:
    """The broker acknowledged an order."""

    ts: datetime
    order_id: str


@frozen
class OrderRejected:
    """The broker refused an order; `reason` is its words, `kind` how the adapter classified
    it."""

    ts: datetime
    order_id: str
    reason: str
    kind: OrderRefusal = OrderRefusal.PERMANENT
    # SHARES_LOCKED (Alpaca's 403 body): the shares the broker says are free, and the
    # whole position it holds (`existing_qty`).
    available: Decimal | None = None
    existing: Decimal | None = None


@frozen
class OrderFilled:
    """`qty` shares of an order were executed at `price` (one fill, maybe partial). `at` is
    when the broker executed them, when ratchet learns of it later (a fill the outage hid,
    read from a snapshot): exposure and opening times follow the broker's facts."""

    ts: datetime
    order_id: str
    qty: Decimal
    price: Decimal
    at: datetime | None = None

    @property
    def executed(self) -> datetime:
        """When the shares changed hands."""
        return self.at if self.at is not None else self.ts


@frozen
class OrderCanceled:
    """The broker confirmed a cancel (`at`: when it took effect, if ratchet learns of it
    later, from a snapshot)."""

    ts: datetime
    order_id: str
    at: datetime | None = None

    @property
    def effective(self) -> datetime:
        """When the order stopped working."""
        return self.at if self.at is not None else self.ts


@frozen
class CancelRejected:
    """The broker refused a cancel; `kind` is how the broker adapter classified it."""

    ts: datetime
    order_id: str
    reason: str
    kind: CancelRefusal = CancelRefusal.PERMANENT


@frozen
class PhaseAdvance:
    """An operator asks to advance one phase; the gates decide."""

    ts: datetime


@frozen
class PhaseOverride:
    """An operator sets the phase; the shell has already checked the override password."""

    ts: datetime
    to: str
    reason: str = ""


@frozen
class BreakerAck:
    """An operator acknowledges a downgrade and closes the phase breaker."""

    ts: datetime


@frozen
class Clock:
    """A heartbeat: time passed with no other news."""

    ts: datetime


@frozen
class Connectivity:
    """The link to the broker went down (`up=False`) or came back (SPEC §4)."""

    ts: datetime
    up: bool


@frozen
class BrokerOrder:
    """One order as the broker reports it in a snapshot: `status` is "open" (working, any
    of new / accepted / partially_filled / pending_*), "filled", "canceled" or "rejected".
    `order_id` is its client order id (ratchet's own start with `rt-`; others are the user's
    bot's). `side`, `type` and the prices say what it would do (for orders ratchet did not
    place: a user's stop that protects a position ratchet adopts)."""

    order_id: str
    symbol: str
    status: str
    qty: Decimal
    filled_qty: Decimal = _ZERO
    filled_avg_price: Decimal | None = None
    updated_at: datetime | None = None  # the broker's time of its last fill or cancel
    side: OrderAction | None = None
    type: OrderType | None = None
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None


@frozen
class BrokerSnapshot:
    """The broker's positions (symbol, signed qty), their average entry prices (symbol,
    price), and the orders it knows (ratchet's, and the user's in the symbols it holds), read
    at startup, after a reconnect, or when ratchet asks because the broker disagreed. Its
    truth is adopted (SPEC §6) before entries are allowed again."""

    ts: datetime
    positions: tuple[tuple[str, Decimal], ...] = ()
    orders: tuple[BrokerOrder, ...] = ()
    prices: tuple[tuple[str, Decimal], ...] = ()
    marks: tuple[tuple[str, Decimal], ...] = ()  # the broker's current price per symbol


Event: TypeAlias = (
    Tick
    | EntryIntent
    | OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | CancelRejected
    | Clock
    | PhaseAdvance
    | PhaseOverride
    | BreakerAck
    | Connectivity
    | BrokerSnapshot
)
