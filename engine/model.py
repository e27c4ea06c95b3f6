"""A position and the orders protecting it.

A position's fields live in rooms: its `Ladder` (where it stands on its schedule), its `Fills`
(what was bought and sold), its `Orders` (what the broker works for it and what is still to
sell), and, with `None` when nothing is pending, the `Retry` in progress, the `Operation` in
flight and the broker answer it is `Awaited`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum

from attrs import frozen

from engine.commands import OrderAction, OrderType
from engine.events import Side

__all__ = [
    "NEXT_PROTECTION",
    "Awaited",
    "AwaitedKind",
    "CloseReason",
    "Fills",
    "Ladder",
    "Level",
    "Operation",
    "OperationKind",
    "Order",
    "OrderRole",
    "OrderStatus",
    "Orders",
    "PendingEntry",
    "Position",
    "Protection",
    "Retry",
    "Slot",
]

_ZERO = Decimal(0)


class Protection(Enum):
    """How much profit a position has locked; it only ever moves forward (SPEC §3)."""

    INITIAL_RISK = "INITIAL_RISK"
    BREAKEVEN_PROTECTED = "BREAKEVEN_PROTECTED"
    PARTIAL_PROFIT_TAKEN = "PARTIAL_PROFIT_TAKEN"
    ADVANCED_PROFIT_TAKEN = "ADVANCED_PROFIT_TAKEN"
    FINAL_PROFIT_TAKEN = "FINAL_PROFIT_TAKEN"


# The protection state table (SPEC §3): each state's one successor; the last has none. A tick
# that jumps several levels walks this table one row at a time (tests walk it whole).
NEXT_PROTECTION: dict[Protection, Protection] = {
    Protection.INITIAL_RISK: Protection.BREAKEVEN_PROTECTED,
    Protection.BREAKEVEN_PROTECTED: Protection.PARTIAL_PROFIT_TAKEN,
    Protection.PARTIAL_PROFIT_TAKEN: Protection.ADVANCED_PROFIT_TAKEN,
    Protection.ADVANCED_PROFIT_TAKEN: Protection.FINAL_PROFIT_TAKEN,
}


class OrderStatus(Enum):
    """Where an order stands as far as the engine knows."""

    PENDING_NEW = "pending_new"
    LIVE = "live"
    PENDING_CANCEL = "pending_cancel"
    RETRY_WAIT = "retry_wait"  # refused for a transient reason; sent again when due
    CANCEL_WAIT = "cancel_wait"  # its cancel refused for a transient reason; sent again when due


class OrderRole(Enum):
    """Why an order exists."""

    ENTRY = "entry"
    PROTECT = "protect"
    PARTIAL = "partial"
    EXIT = "exit"
    RESTORE = "restore"  # the last accepted protection, re-armed after a refused operation


class Slot(Enum):
    """The three places a position keeps an order: its entry, its protective exit order (the
    stop, OCO with the take-profit) and a market sell in flight."""

    ENTRY = "entry"
    EXIT = "exit"
    SELL = "sell"


class CloseReason(Enum):
    """Why a position is being (or was) closed; journaled in `position.closed`."""

    STOP = "stop"
    TAKE_PROFIT = "take_profit"
    FINAL_TARGET = "final_target"
    EXIT = "exit"
    STOP_THROUGH_MARKET = "stop_through_market"
    PROTECTION_REFUSED = "protection_refused"
    INITIAL_RISK_NOT_POSITIVE = "initial_risk_not_positive"
    FLATTEN = "flatten"
    # Outside the regular session a print went through the stop the engine watches (the broker
    # stop waits for the open): sold with an extended-hours limit.
    WATCHED_STOP = "watched_stop"
    PROTECT_DEADLINE = "protect_deadline"  # no stop could be placed in time: sold at market
    CLOSED_OUTSIDE = "closed_outside"  # the broker holds no shares of it any more

    @property
    def sells_all(self) -> bool:
        """The position is being sold whole (shares added meanwhile join the sale)."""
        return self.market_exit or self in (
            CloseReason.FLATTEN,
            CloseReason.INITIAL_RISK_NOT_POSITIVE,
            CloseReason.WATCHED_STOP,
        )

    @property
    def market_exit(self) -> bool:
        """A sale at market that protection itself called for (nothing safer can be sent)."""
        return self in (
            CloseReason.STOP_THROUGH_MARKET,
            CloseReason.PROTECTION_REFUSED,
            CloseReason.PROTECT_DEADLINE,
        )


class OperationKind(Enum):
    """What an operation does (SPEC §4), as `operation.done` names it."""

    ARM = "arm"
    STOP_MOVE = "stop_move"
    PARTIAL_EXIT = "partial_exit"
    EXIT = "exit"


class AwaitedKind(Enum):
    """The broker answer a position waits for and times (SPEC §4)."""

    CANCEL = "cancel"  # a cancel's confirmation: 2 s, then the cancel is sent again
    FILL = "fill"  # a market sell's fill: 5 s, then the operator is alerted


@frozen
class Order:
    """One order ratchet sent, as the engine last heard of it."""

    id: str
    role: OrderRole
    action: OrderAction
    type: OrderType
    qty: Decimal
    stop_price: Decimal | None = None
    limit_price: Decimal | None = None
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled: Decimal = _ZERO
    extended: bool = False  # a limit that trades outside the regular session too

    @property
    def open_qty(self) -> Decimal:
        """Shares this order still holds."""
        return self.qty - self.filled


@frozen
class Level:
    """One row of a position's schedule: what happens when price reaches `price` (= `r` R)."""

    r: Decimal
    price: Decimal
    protection: Protection | None = None
    stop: Decimal | None = None
    lock_r: Decimal | None = None
    tranche: int | None = None


@frozen
class PendingEntry:
    """An accepted entry whose order has not filled yet."""

    key: str
    symbol: str
    side: Side
    stop: Decimal
    qty: Decimal
    order: Order
    ts: datetime
    paper: bool = False
    retry: Retry | None = None  # its order refused for a passing reason, sent again when due
    client_id: str | None = None  # the intent's own id, when it gave one


@frozen
class Ladder:
    """Where a position stands on its schedule (SPEC §3): the stop it wants, the state it has
    earned, and `trigger`, the next price at which anything happens to it (so that a tick
    short of it costs one comparison)."""

    entry: Decimal
    initial_stop: Decimal
    stop: Decimal
    schedule: tuple[Level, ...]
    trigger: Decimal | None
    take_profit: Decimal | None = None
    protection: Protection = Protection.INITIAL_RISK
    next_level: int = 0
    lock_r: Decimal | None = None
    gap_r: Decimal | None = None  # R between the best price and the stop, once the ladder locks


@frozen
class Fills:
    """What the position bought and sold: sizes, realized P&L and the last fill."""

    original: Decimal
    remaining: Decimal
    cost: Decimal = _ZERO  # what the entry fills cost, exactly (price x qty, summed)
    realized: Decimal = _ZERO
    exit_value: Decimal = _ZERO
    exited: Decimal = _ZERO
    last_qty: Decimal = _ZERO
    last_price: Decimal = _ZERO


# An order the broker works: accepted, and any cancel of it not yet confirmed.
_WORKING = frozenset({OrderStatus.LIVE, OrderStatus.PENDING_CANCEL, OrderStatus.CANCEL_WAIT})


@frozen
class Orders:
    """The orders the broker works for the position, and the sales still to make.

    `exit` is the protective order (a stop, OCO with the take-profit), `sell` a market sell in
    flight, `entry` the rest of an entry order filled in parts. `to_sell` is queued for sale,
    allotted to `milestones` (R, qty) in order. `restore` is the last protection the broker
    accepted, re-armed when an operation is refused; `refused` the (stop, take-profit) it
    refused, kept until a new trigger asks for something else. `seq` numbers the client
    order ids.
    """

    entry: Order | None = None
    exit: Order | None = None
    sell: Order | None = None
    to_sell: Decimal = _ZERO
    milestones: tuple[tuple[Decimal, Decimal], ...] = ()
    restore: Order | None = None
    refused: tuple[Decimal, Decimal | None] | None = None
    seq: int = 0

    def slot_of(self, order_id: str) -> Slot | None:
        """Which slot holds the order `order_id` (None: none of them)."""
        if self.exit is not None and self.exit.id == order_id:
            return Slot.EXIT
        if self.sell is not None and self.sell.id == order_id:
            return Slot.SELL
        if self.entry is not None and self.entry.id == order_id:
            return Slot.ENTRY
        return None

    def get(self, slot: Slot) -> Order | None:
        """The order in `slot`."""
        match slot:
            case Slot.EXIT:
                return self.exit
            case Slot.SELL:
                return self.sell
            case Slot.ENTRY:
                return self.entry

    def working_stop_qty(self) -> Decimal:
        """Shares the protective order covers at the broker now: it is accepted, and any
        cancel of it is not yet confirmed (0 when there is none)."""
        eo = self.exit
        if eo is None or eo.status not in _WORKING:
            return _ZERO
        return eo.open_qty

    def held_by_sells(self) -> Decimal:
        """Shares held by open exit-side orders (P11: never sell more than the rest)."""
        held = _ZERO
        if self.exit is not None:
            held += self.exit.open_qty
        if self.sell is not None:
            held += self.sell.open_qty
        return held


@frozen
class Retry:
    """The order step being retried (SPEC §4): attempts used, when the next is due (None
    once sent again), the reasons given, for the operator's alert, and whether the last
    refusal may have left the order at the broker (its answer was lost)."""

    attempts: int
    due: datetime | None = None
    failures: tuple[str, ...] = ()
    uncertain: bool = False


@frozen
class Operation:
    """The operation in flight (SPEC §4, P22, P23): from its first order command until every
    order it touched is confirmed where it should be. `exposed` sums the time its shares had no
    accepted protective order."""

    kind: OperationKind
    started: datetime
    order_ids: tuple[str, ...] = ()
    exposed: timedelta = timedelta(0)


@frozen
class Awaited:
    """The broker answer the position waits for, since when, when its timeout fires (None once
    alerted) and how many times it already has."""

    kind: AwaitedKind
    order_id: str
    since: datetime
    due: datetime | None
    timeouts: int = 0


@frozen
class Position:
    """One open position and the protection it has earned, in rooms (see the module doc).

    `exposed_since` is set while shares have no accepted protective order; `halted` freezes the
    ladder after the broker refused every way forward.
    """

    key: str
    symbol: str
    side: Side
    long: bool  # side is LONG, kept as a field: the tick path reads it per trigger
    opened: datetime
    ladder: Ladder
    fills: Fills
    orders: Orders = Orders()
    retry: Retry | None = None
    operation: Operation | None = None
    awaited: Awaited | None = None
    exposed_since: datetime | None = None
    close_reason: CloseReason | None = None
    halted: bool = False
    paper: bool = False
    # The broker disagreed about this position: nothing is sent for it until its snapshot
    # is applied (since when).
    reconciling: datetime | None = None
    # When its recent order requests went out (the budget: at most so many a minute), and,
    # while over budget, when it may send again.
    sent: tuple[datetime, ...] = ()
    held_until: datetime | None = None
    # Alerts raised about it, by reason, and how many times (the same cause is not repeated
    # to the operator at every refusal: 1st, 2nd, 4th, 8th ...).
    alerted: tuple[tuple[str, int], ...] = ()
    # Since when one of its orders was refused as a potential wash trade, under
    # `[adopt] foreign_orders = "cancel"`: the broker's snapshot is asked for, and the user's
    # orders on the other side of the symbol that it lists are canceled.
    wash_blocked: datetime | None = None

    @property
    def bare(self) -> bool:
        """Some shares have no accepted protective order (an unprotected window is open)."""
        return self.exposed_since is not None

    @property
    def risk(self) -> Decimal:
        """Initial risk per share (> 0 for a position that can be protected)."""
        return (self.ladder.entry - self.ladder.initial_stop) * self.side.sign

    def r_at(self, price: Decimal) -> Decimal:
        """R multiple at `price` (SPEC §3); 0 for a position whose fill left no risk to measure."""
        risk = self.risk
        return (price - self.ladder.entry) * self.side.sign / risk if risk > 0 else _ZERO

    def pnl_at(self, price: Decimal) -> Decimal:
        """Unrealized P/L of the remaining quantity at `price`."""
        return (price - self.ladder.entry) * self.fills.remaining * self.side.sign
