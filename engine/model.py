"""The engine's state: positions, the orders protecting them, the last price of each symbol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple

from attrs import frozen
from immutables import Map

from engine.commands import OrderAction, OrderType
from engine.config import Config
from engine.events import Side, Tick
from engine.goal import Daily
from engine.phase import PhaseState, size_for

__all__ = [
    "NEXT_PROTECTION",
    "Book",
    "EngineState",
    "Level",
    "Link",
    "Order",
    "OrderRole",
    "OrderStatus",
    "PendingEntry",
    "Position",
    "PositionView",
    "Protection",
]

_ZERO = Decimal(0)


class Protection(Enum):
    """How much profit a position has locked; it only ever moves forward (SPEC §3)."""

    INITIAL_RISK = "INITIAL_RISK"
    BREAKEVEN_PROTECTED = "BREAKEVEN_PROTECTED"
    PARTIAL_PROFIT_TAKEN = "PARTIAL_PROFIT_TAKEN"
    ADVANCED_PROFIT_TAKEN = "ADVANCED_PROFIT_TAKEN"
    FINAL_PROFIT_TAKEN = "FINAL_PROFIT_TAKEN"


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


@frozen
class Position:
    """One open position and the protection it has earned.

    `stop` is the protective stop ratchet wants; `exit_order` is the one the broker holds.
    `trigger` is the next price at which anything happens to the position, so that a tick
    short of it costs one comparison.
    """

    key: str
    symbol: str
    side: Side
    entry: Decimal
    initial_stop: Decimal
    original_qty: Decimal
    remaining_qty: Decimal
    stop: Decimal
    opened: datetime
    schedule: tuple[Level, ...]
    trigger: Decimal | None
    long: bool
    take_profit: Decimal | None = None
    protection: Protection = Protection.INITIAL_RISK
    next_level: int = 0
    lock_r: Decimal | None = None
    gap_r: Decimal | None = None
    realized: Decimal = _ZERO
    exit_value: Decimal = _ZERO
    exited_qty: Decimal = _ZERO
    last_fill_qty: Decimal = _ZERO
    last_fill_price: Decimal = _ZERO
    to_sell: Decimal = _ZERO
    milestones: tuple[tuple[Decimal, Decimal], ...] = ()
    entry_order: Order | None = None
    exit_order: Order | None = None
    sell_order: Order | None = None
    seq: int = 0
    halted: bool = False
    close_reason: str = ""
    paper: bool = False
    attempts: int = 0  # retries used by the order step in progress
    retry_due: datetime | None = None
    failures: tuple[str, ...] = ()  # the reasons given, for the operator's alert
    # The operation in flight (SPEC §4): from its first order command until every order it
    # touched is confirmed where it should be. `restore` is the last protection the broker
    # accepted, re-armed when an operation is refused; `refused` the (stop, take-profit) it
    # refused, kept until a new trigger asks for something else.
    op_started: datetime | None = None
    op_kind: str = ""
    op_orders: tuple[str, ...] = ()
    restore: Order | None = None
    refused: tuple[Decimal, Decimal | None] | None = None
    # Shares without an accepted protective order: since when, and for how long in this
    # operation (from a cancel confirmation or the entry fill to the next acceptance).
    exposed_since: datetime | None = None
    exposed: timedelta = timedelta(0)
    # The answer the position waits for (`cancel:ID` or `fill:ID`), since when, when its
    # timeout fires (SPEC §4: 2 s for a cancel confirmation, 5 s for a tranche's fill) and
    # how many times it already has.
    ack_for: str = ""
    ack_since: datetime | None = None
    ack_due: datetime | None = None
    timeouts: int = 0

    @property
    def risk(self) -> Decimal:
        """Initial risk per share, always > 0."""
        return (self.entry - self.initial_stop) * self.side.sign

    def r_at(self, price: Decimal) -> Decimal:
        """R multiple at `price` (SPEC §3); 0 for a position whose fill left no risk to measure."""
        risk = self.risk
        return (price - self.entry) * self.side.sign / risk if risk > 0 else _ZERO

    def pnl_at(self, price: Decimal) -> Decimal:
        """Unrealized P/L of the remaining quantity at `price`."""
        return (price - self.entry) * self.remaining_qty * self.side.sign

    def held_by_sells(self) -> Decimal:
        """Shares held by open exit orders (P11: never sell more than the rest)."""
        held = _ZERO
        for order in (self.exit_order, self.sell_order):
            if order is not None:
                held += order.open_qty
        return held


_NEG_INF = Decimal("-Infinity")
_POS_INF = Decimal("Infinity")


@frozen
class Book:
    """The open positions (lots) of one symbol and the band of prices where none is triggered.

    A tick strictly inside (lo, hi) changes nothing but the mark: one comparison, whatever the
    number of lots. `lo` is the highest trigger of a short, `hi` the lowest of a long.
    """

    keys: tuple[str, ...] = ()
    side: Side | None = None
    lo: Decimal = _NEG_INF
    hi: Decimal = _POS_INF
    # Signed remaining quantity and cost, and the unrealized P/L at the last mark: with the
    # daily goal on (`tracked`), every tick of the symbol updates the day's P&L in O(1).
    q: Decimal = _ZERO
    c: Decimal = _ZERO
    u: Decimal = _ZERO
    tracked: bool = False

    @classmethod
    def of(cls, positions: tuple[Position, ...], mark: Decimal | None, tracked: bool) -> Book:
        """The book of these positions (all in one symbol), valued at `mark`."""
        lo, hi = _NEG_INF, _POS_INF
        q = c = _ZERO
        for pos in positions:
            signed = pos.remaining_qty * pos.side.sign
            q += signed
            c += pos.entry * signed
        u = mark * q - c if mark is not None else _ZERO
        for pos in positions:
            trigger = pos.trigger
            if trigger is None:
                continue
            if pos.long:
                hi = min(hi, trigger)
            else:
                lo = max(lo, trigger)
        side = positions[0].side if positions else None
        return cls(tuple(p.key for p in positions), side, lo, hi, q, c, u, tracked)


@frozen
class PositionView:
    """A position as of its last price: the derived values users ask about."""

    position: Position
    price: Decimal
    as_of: datetime

    @property
    def r(self) -> Decimal:
        return self.position.r_at(self.price)

    @property
    def unrealized(self) -> Decimal:
        return self.position.pnl_at(self.price)


_EMPTY_POSITIONS: Map[str, Position] = Map()
_EMPTY_BOOKS: Map[str, Book] = Map()
_EMPTY_MARKS: Map[str, Tick] = Map()
_EMPTY_ENTRIES: Map[str, PendingEntry] = Map()
_EMPTY_COUNTS: Map[str, int] = Map()
_EMPTY_ROUTES: Map[str, str] = Map()
_EMPTY_STALE: Map[str, datetime] = Map()
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_DEFAULT_CONFIG = Config()
# Sessions never roll when no daily counter is on: the tick fast path compares against this.
_NO_SESSIONS = Daily(reset_at=datetime(9999, 12, 31, tzinfo=UTC))
_NO_PHASE = PhaseState()


def tracks_days(config: Config) -> bool:
    """True when some daily counter (the profit goal, phases) needs the session calendar."""
    return config.goal.enabled or config.phase.enabled


@frozen
class Link:
    """The engine's view of its broker link (SPEC §4): connected or not, recovering after a
    reconnect until a snapshot is reconciled, and the circuit breaker over failed requests.

    `waiting` holds, in the order their need arose, the positions whose next order step was
    held back while nothing could be sent: the offline queue, coalesced per position (each
    position's step is worked out from its latest wishes once the link is back and the
    broker's snapshot has told what happened meanwhile).
    """

    up: bool = True
    recovering: bool = False
    synced: bool = True  # False from a drop until the broker's snapshot has been applied
    waiting: tuple[str, ...] = ()
    failures: int = 0
    breaker: str = "closed"  # closed | open | half_open
    reopen_at: datetime | None = None

    @property
    def sending(self) -> bool:
        """Order commands may go out now: connected, resynchronised with the broker after
        any drop (steps worked out before the snapshot could act on what the outage hid),
        and the breaker not open."""
        return self.up and self.synced and self.breaker != "open"

    @property
    def mode(self) -> str:
        """normal, offline or recovery (the `mode.changed` names)."""
        return "offline" if not self.up else "recovery" if self.recovering else "normal"


_LINK = Link()


class EngineState(NamedTuple):
    """All the engine knows; immutable. Maps are persistent (HAMT), so recording a tick is
    O(1) in the number of symbols. A NamedTuple rather than an attrs class because one is
    built for every tick: it costs a third as much to construct.

    `positions` and `entries` are keyed by position key (`SYMBOL-n`); `books` index the open
    positions of each symbol; `routes` map client order ids to position keys.
    """

    config: Config = _DEFAULT_CONFIG
    positions: Map[str, Position] = _EMPTY_POSITIONS
    books: Map[str, Book] = _EMPTY_BOOKS
    marks: Map[str, Tick] = _EMPTY_MARKS
    entries: Map[str, PendingEntry] = _EMPTY_ENTRIES
    counts: Map[str, int] = _EMPTY_COUNTS
    routes: Map[str, str] = _EMPTY_ROUTES
    daily: Daily = _NO_SESSIONS
    phase: PhaseState = _NO_PHASE
    stale: Map[str, datetime] = _EMPTY_STALE  # symbol -> the last price already alerted stale
    due: datetime = _FAR  # the earliest retry due (may be early: then nothing is due yet)
    link: Link = _LINK

    @classmethod
    def empty(cls, config: Config | None = None) -> EngineState:
        """A fresh engine with no positions; sessions are kept when a daily counter is on."""
        config = config or _DEFAULT_CONFIG
        start = config.phase.start
        return cls(
            config=config,
            daily=Daily() if tracks_days(config) else _NO_SESSIONS,
            phase=PhaseState(phase=start, size=size_for(start, config.phase)),
        )

    def in_symbol(self, symbol: str) -> tuple[Position, ...]:
        """The open positions in `symbol`, oldest first."""
        book = self.books.get(symbol)
        if book is None:
            return ()
        return tuple(self.positions[key] for key in book.keys)

    def view(self, key: str) -> PositionView | None:
        """R, unrealized P/L and as-of time of position `key`, derived from its symbol's mark."""
        pos = self.positions.get(key)
        if pos is None:
            return None
        mark = self.marks.get(pos.symbol)
        if mark is None or mark.ts < pos.opened:
            return PositionView(pos, pos.entry, pos.opened)
        return PositionView(pos, mark.price, mark.ts)

    def with_marks(self, marks: Map[str, Tick]) -> EngineState:
        """This state with new marks (the tick fast path)."""
        return EngineState(
            self.config,
            self.positions,
            self.books,
            marks,
            self.entries,
            self.counts,
            self.routes,
            self.daily,
            self.phase,
            self.stale,
            self.due,
            self.link,
        )

    def replace(self, **changes: Any) -> EngineState:
        """This state with some fields replaced."""
        return self._replace(**changes)
