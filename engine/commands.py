"""Commands: what the engine asks the shell to do, including the journal records it writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TypeAlias

from attrs import field, frozen

__all__ = [
    "RECORD_KINDS",
    "Alert",
    "CancelOrder",
    "Command",
    "OrderAction",
    "OrderType",
    "Record",
    "RequestSnapshot",
    "SubmitOrder",
]


class OrderAction(Enum):
    """Buy or sell, as the broker says it."""

    BUY = "buy"
    SELL = "sell"


class OrderType(Enum):
    """Order types ratchet sends; OCO is a stop and a take-profit limit sharing one quantity."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    OCO = "oco"


@frozen
class SubmitOrder:
    """Send a new order under a deterministic client order id."""

    ts: datetime
    order_id: str
    symbol: str
    action: OrderAction
    type: OrderType
    qty: Decimal
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    purpose: str = ""
    paper: bool = False  # Experience-phase orders: the shell routes them to the paper broker
    # A limit that may trade outside the regular session (Alpaca's `extended_hours`, limit only)
    extended_hours: bool = False


@frozen
class CancelOrder:
    """Ask the broker to cancel an order."""

    ts: datetime
    order_id: str
    symbol: str


@frozen
class RequestSnapshot:
    """Ask the broker for its positions and open orders (the answer is a `BrokerSnapshot`):
    it disagreed with what the engine believes about `symbols` (empty: all of them)."""

    ts: datetime
    reason: str
    symbols: tuple[str, ...] = ()


@frozen
class Alert:
    """Something an operator must look at."""

    ts: datetime
    reason: str
    context: Mapping[str, object] = field(factory=dict, hash=False)


RECORD_KINDS = frozenset(
    {
        "position.opened",
        "protection.mode",
        "protection.triggered",
        "position.state",
        "stop.moved",
        "partial.ordered",
        "partial.filled",
        "position.closed",
        "trade.closed",
        "entry.accepted",
        "entry.blocked",
        "order.submitted",
        "order.canceled",
        "order.filled",
        "order.timeout",
        "order.rejected",
        "order.retry",
        "conflict.detected",
        "divergence.detected",
        "position.adopted",
        "position.reconciled",
        "operation.done",
        "alert",
        "goal.triggered",
        "goal.reset",
        "phase.changed",
        "phase.denied",
        "breaker.opened",
        "breaker.closed",
        "breaker.half_open",
        "mode.changed",
    }
)


@frozen
class Record:
    """One journal record: a stable `kind` (SPEC §2) and its fields."""

    kind: str
    ts: datetime
    data: Mapping[str, object] = field(factory=dict, hash=False)

    def __getitem__(self, name: str) -> object:
        return self.data[name]

    @property
    def symbol(self) -> str:
        """The symbol the record is about ('' when none)."""
        return str(self.data.get("symbol", ""))


Command: TypeAlias = SubmitOrder | CancelOrder | RequestSnapshot | Alert | Record
