"""Protection settings as plain data: the ladder, the partial schedule and the price grid."""

from __future__ import annotations

from datetime import UTC, time, timedelta, tzinfo
from decimal import Decimal

from attrs import field, frozen

from engine.calendar import MarketHours
from engine.goal import GoalConfig
from engine.phase import PhaseConfig

__all__ = [
    "DEFAULT_LADDER",
    "DEFAULT_LEVELS",
    "DEFAULT_PARTIALS",
    "Config",
    "PriceGrid",
    "ProtectionConfig",
    "Rung",
    "SessionConfig",
    "Tranche",
]


@frozen
class Rung:
    """One step of the stop ladder: at `at_r` the stop locks `lock_r` (SPEC §3)."""

    at_r: Decimal
    lock_r: Decimal


@frozen
class Tranche:
    """One partial exit: at `at_r`, sell `fraction` of the ORIGINAL quantity."""

    at_r: Decimal
    fraction: Decimal


@frozen
class PriceGrid:
    """Order price increments: `fine` below `threshold`, `coarse` at or above it."""

    coarse: Decimal = Decimal("0.01")
    fine: Decimal = Decimal("0.0001")
    threshold: Decimal = Decimal("1")

    def increment(self, price: Decimal) -> Decimal:
        """The increment an order at `price` must sit on."""
        return self.fine if price < self.threshold else self.coarse


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung(Decimal("1.0"), Decimal("0")),
    Rung(Decimal("1.5"), Decimal("0.5")),
    Rung(Decimal("2.0"), Decimal("1.0")),
    Rung(Decimal("3.0"), Decimal("1.5")),
    Rung(Decimal("4.0"), Decimal("2.0")),
)
DEFAULT_PARTIALS: tuple[Tranche, ...] = (
    Tranche(Decimal("2"), Decimal("0.50")),
    Tranche(Decimal("3"), Decimal("0.25")),
    Tranche(Decimal("4"), Decimal("0.25")),
)
# R at which BREAKEVEN_PROTECTED, PARTIAL_, ADVANCED_ and FINAL_PROFIT_TAKEN begin.
DEFAULT_LEVELS: tuple[Decimal, ...] = (Decimal("1"), Decimal("2"), Decimal("3"), Decimal("4"))


@frozen
class ProtectionConfig:
    """How positions are protected; every default is SPEC §3's."""

    ladder: tuple[Rung, ...] = DEFAULT_LADDER
    partials: tuple[Tranche, ...] = DEFAULT_PARTIALS
    levels: tuple[Decimal, ...] = DEFAULT_LEVELS
    trail: bool = False
    lot_step: Decimal = Decimal("1")
    take_profit: bool = True
    grid: PriceGrid = field(factory=PriceGrid)

    @property
    def sells_everything(self) -> bool:
        """True when the partial schedule sums to the whole position."""
        return sum((t.fraction for t in self.partials), Decimal(0)) == 1


@frozen
class SessionConfig:
    """One session boundary for every daily counter (the shell's default: 04:00 New York)."""

    tz: tzinfo = UTC
    boundary: time = time(4, 0)


@frozen
class Config:
    """Everything the engine needs to decide; the shell builds it from TOML and env."""

    protection: ProtectionConfig = field(factory=ProtectionConfig)
    goal: GoalConfig = field(factory=GoalConfig)
    session: SessionConfig = field(factory=SessionConfig)
    phase: PhaseConfig = field(factory=PhaseConfig)
    # Most positions open at once, all symbols together (0: no limit).
    max_open: int = 0
    # Pre-trade checks on every entry (0: off): its quantity, and quantity x reference price.
    max_qty: Decimal = Decimal(0)
    max_notional: Decimal = Decimal(1_000_000)
    # A position whose symbol has printed nothing for this long is stale (SPEC §5).
    stale_after: timedelta = timedelta(seconds=60)
    # SPEC §4: a transient failure is retried up to 3 times, after 0.5 s, 1 s and 2 s.
    retry_delays: tuple[timedelta, ...] = (
        timedelta(milliseconds=500),
        timedelta(seconds=1),
        timedelta(seconds=2),
    )
    # SPEC §4: a cancel not confirmed within this is sent again (up to once per retry delay,
    # then an `ack_timeout` alert); a market sell not filled within this raises that alert.
    cancel_timeout: timedelta = timedelta(seconds=2)
    fill_timeout: timedelta = timedelta(seconds=5)
    # SPEC §4: this many failed order requests in a row open the circuit breaker; after the
    # cooldown it lets requests through again and the first answer closes or reopens it.
    breaker_failures: int = 5
    breaker_cooldown: timedelta = timedelta(seconds=300)
    # SPEC §4: shares that have had no working stop for this long are sold at market (the
    # breaker and the retry policies never hold that protection).
    protect_deadline: timedelta = timedelta(seconds=10)
    # Issue #19 of the protocol: however refusals arrive, one position never sends more than
    # this many order requests a minute (Alpaca allows 200 for the whole account).
    max_requests_per_minute: int = 20
    # SPEC §6: a position ratchet did not open is adopted with its own loss-side stop, else a
    # stop this share of the entry away; other orders holding its shares are canceled
    # ("cancel") or left, and the position reported unprotectable ("leave"). So are the user's
    # orders that stand in the way of a sale refused as a potential wash trade.
    default_risk: Decimal = Decimal("0.02")
    foreign_orders: str = "cancel"
    # The market's regular sessions (None: always regular, as crypto and the tests).
    # Outside them a broker stop waits for the open, so the engine watches each position's stop
    # itself ("watch") and exits through it with an extended-hours limit `extended_offset` (a
    # share of the print) through the print, re-priced on later prints until filled; or lets
    # the broker stop wait ("wait"). Tranches reached outside go as extended-hours limits
    # ("limit") or wait for the open ("open").
    hours: MarketHours | None = None
    extended_exit: str = "watch"
    extended_offset: Decimal = Decimal("0.002")
    extended_partials: str = "limit"
    # Alpaca refuses an order that could trade against an open opposite-side order of the
    # account in its symbol (a wash trade): an entry while exits rest goes as a limit priced
    # below (above, for a short) every resting exit limit ("limit"), waits, unsent, until no
    # exit of the symbol rests ("wait"; dropped if the regular session closes first), or is
    # refused `wash_trade_risk` ("refuse").
    wash_trade: str = "limit"
