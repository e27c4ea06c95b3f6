"""The engine's whole state: the open positions and their books per symbol, the last price of
each symbol, pending entries, routes from order ids, the day and the phase, and the link to the
broker."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import NamedTuple

from attrs import frozen
from immutables import Map

from engine.commands import Command
from engine.config import Config
from engine.events import Side, Tick
from engine.goal import Daily
from engine.model import PendingEntry, Position
from engine.phase import PhaseState, size_for

__all__ = [
    "Book",
    "BreakerState",
    "EngineState",
    "Link",
    "LinkMode",
    "Market",
    "PositionView",
    "Transition",
    "tracks_days",
]

_ZERO = Decimal(0)


class BreakerState(Enum):
    """The circuit breaker over failed order requests (SPEC §4)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class LinkMode(Enum):
    """The engine's mode as `mode.changed` names it."""

    NORMAL = "normal"
    OFFLINE = "offline"
    RECOVERY = "recovery"


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
    def of(
        cls,
        positions: tuple[Position, ...],
        mark: Decimal | None,
        tracked: bool,
        watch: bool = False,
    ) -> Book:
        """The book of these positions (all in one symbol), valued at `mark`. With `watch`
        (outside the regular session) each position's stop bounds the band too, and
        so does a limit sale's price at all times (it is re-priced when the market leaves it)."""
        lo, hi = _NEG_INF, _POS_INF
        q = c = _ZERO
        for pos in positions:
            signed = pos.fills.remaining * pos.side.sign
            q += signed
            c += pos.ladder.entry * signed
        u = mark * q - c if mark is not None else _ZERO
        for pos in positions:
            sell = pos.orders.sell
            limit = sell.limit_price if sell is not None else None
            stop = pos.ladder.stop if watch and pos.close_reason is None else None
            for level in (limit, stop):
                if level is None:
                    continue
                if pos.long:
                    lo = max(lo, level)
                else:
                    hi = min(hi, level)
            trigger = pos.ladder.trigger
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
_EMPTY_INTENTS: Map[str, str] = Map()
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_DEFAULT_CONFIG = Config()
# Sessions never roll when no daily counter is on: the tick fast path compares against this.
_NO_SESSIONS = Daily(reset_at=_FAR)
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
    breaker: BreakerState = BreakerState.CLOSED
    reopen_at: datetime | None = None
    snapshot_asked: datetime | None = None  # a snapshot was asked for and not yet applied

    @property
    def sending(self) -> bool:
        """Any order command may go out now: connected, resynchronised with the broker after
        any drop (steps worked out before the snapshot could act on what the outage hid),
        and the breaker not open."""
        return self.up and self.synced and self.breaker is not BreakerState.OPEN

    def open_for(self, pos: Position) -> bool:
        """Order commands for `pos` may go out now. SPEC §4: the breaker holds entries and
        optional work, never the protection of shares without a working stop; only a link
        that is down (or not yet resynchronised) holds those."""
        if not (self.up and self.synced):
            return False
        return self.breaker is not BreakerState.OPEN or pos.bare

    @property
    def mode(self) -> LinkMode:
        """normal, offline or recovery."""
        if not self.up:
            return LinkMode.OFFLINE
        return LinkMode.RECOVERY if self.recovering else LinkMode.NORMAL


_LINK = Link()


@frozen
class Market:
    """Where the market's sessions stand: inside a regular session or not, and the
    next boundary, at or after which the first event rolls it. `known` turns False once events
    run past the calendar the shell gave (the session rules are then off, and an operator is
    told)."""

    regular: bool = True
    until: datetime = _FAR
    known: bool = True


_MARKET = Market()
_UNROLLED = Market(until=datetime(1, 1, 1, tzinfo=UTC))  # the first event rolls it


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
    due: datetime = _FAR  # the earliest retry or deadline due (may be early: then none is)
    link: Link = _LINK
    intents: Map[str, str] = _EMPTY_INTENTS  # a client's entry id -> its key ("" if refused)
    market: Market = _MARKET  # the regular session, when `config.hours` gives one

    @property
    def watching(self) -> bool:
        """The engine watches every position's stop itself: the regular session is closed
        (a broker stop waits for the open) and `extended_exit` is "watch"."""
        return not self.market.regular and self.config.extended_exit == "watch"

    @classmethod
    def empty(cls, config: Config | None = None) -> EngineState:
        """A fresh engine with no positions; sessions are kept when a daily counter is on."""
        config = config or _DEFAULT_CONFIG
        start = config.phase.start
        return cls(
            config=config,
            daily=Daily() if tracks_days(config) else _NO_SESSIONS,
            phase=PhaseState(phase=start, size=size_for(start, config.phase)),
            market=_MARKET if config.hours is None else _UNROLLED,
        )

    def in_symbol(self, symbol: str) -> tuple[Position, ...]:
        """The open positions in `symbol`, oldest first."""
        book = self.books.get(symbol)
        if book is None:
            return ()
        return tuple(self.positions[key] for key in book.keys)

    def opened_order(self) -> list[Position]:
        """Every open position in the order they were opened (SPEC §3: positions acting in
        one step act in this order; never in a hash map's)."""
        return sorted(self.positions.values(), key=_opening_order)

    def last_price(self, symbol: str) -> Decimal | None:
        """The latest price the engine knows for `symbol` (a print or a fill)."""
        mark = self.marks.get(symbol)
        return mark.price if mark is not None else None

    def view(self, key: str) -> PositionView | None:
        """R, unrealized P/L and as-of time of position `key`, derived from its symbol's mark."""
        pos = self.positions.get(key)
        if pos is None:
            return None
        mark = self.marks.get(pos.symbol)
        if mark is None or mark.ts < pos.opened:
            return PositionView(pos, pos.ladder.entry, pos.opened)
        return PositionView(pos, mark.price, mark.ts)

    def evolve(
        self,
        *,
        positions: Map[str, Position] | None = None,
        books: Map[str, Book] | None = None,
        marks: Map[str, Tick] | None = None,
        entries: Map[str, PendingEntry] | None = None,
        counts: Map[str, int] | None = None,
        routes: Map[str, str] | None = None,
        daily: Daily | None = None,
        phase: PhaseState | None = None,
        stale: Map[str, datetime] | None = None,
        due: datetime | None = None,
        link: Link | None = None,
        intents: Map[str, str] | None = None,
        market: Market | None = None,
    ) -> EngineState:
        """This state with the given fields replaced (typed; every field is never None)."""
        return EngineState(
            self.config,
            self.positions if positions is None else positions,
            self.books if books is None else books,
            self.marks if marks is None else marks,
            self.entries if entries is None else entries,
            self.counts if counts is None else counts,
            self.routes if routes is None else routes,
            self.daily if daily is None else daily,
            self.phase if phase is None else phase,
            self.stale if stale is None else stale,
            self.due if due is None else due,
            self.link if link is None else link,
            self.intents if intents is None else intents,
            self.market if market is None else market,
        )


def _opening_order(pos: Position) -> tuple[datetime, str, int]:
    """Opened first acts first; lots opened in one instant by symbol, then lot number."""
    symbol, _, n = pos.key.rpartition("-")
    return pos.opened, symbol, int(n) if n.isdigit() else 0


class Transition(NamedTuple):
    """The next state and the commands, in order, that the event called for (a NamedTuple:
    one is built per event, and `state, commands = step(...)` reads well)."""

    state: EngineState
    commands: tuple[Command, ...] = ()
