"""Replay: fold the engine over recorded events against the simulated broker, and sum it up."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from attrs import define, field

from engine import (
    Alert,
    Clock,
    Command,
    Connectivity,
    EngineState,
    Event,
    Record,
    Tick,
    Transition,
    step,
)
from engine.analytics import TradeResult
from shell.broker import Broker
from shell.broker.simulated import SimulatedBroker

_ZERO = Decimal(0)

__all__ = [
    "BROKER_REFUSALS",
    "Exposure",
    "Sink",
    "StepObserver",
    "Summary",
    "close_summary",
    "run_simulation",
]

Sink = Callable[[Command], None]
StepObserver = Callable[[Event, EngineState, Transition], None]


# Entry refusals that come from the broker, after the gate accepted the intent (the intent was
# counted once as accepted; these take it back out).
BROKER_REFUSALS = frozenset({"order_rejected", "entry_canceled"})


@define
class Exposure:
    """Windows in which the broker held shares that no working exit-side order covered (no
    stop, take-profit or sale), timed per symbol from the broker's own books at the end of
    each instant something happened: what a gap would have cost, whatever the engine says."""

    limit: timedelta = timedelta(seconds=60)
    windows: int = 0
    over_limit: int = 0  # windows longer than `limit`
    longest: timedelta = timedelta(0)
    worst: str = ""  # the symbol and start of the longest window
    _since: dict[str, datetime] = field(factory=dict)

    def observe(self, uncovered: dict[str, Decimal], ts: datetime) -> None:
        """The broker's uncovered shares as of `ts`."""
        for symbol in list(self._since):
            if uncovered.get(symbol, _ZERO) <= 0:
                self._close(symbol, ts)
        for symbol, qty in uncovered.items():
            if qty > 0 and symbol not in self._since:
                self._since[symbol] = ts
                self.windows += 1

    def finish(self, ts: datetime) -> None:
        """Windows still open when the events end are counted up to `ts`."""
        for symbol in list(self._since):
            self._close(symbol, ts)

    def _close(self, symbol: str, ts: datetime) -> None:
        since = self._since.pop(symbol)
        span = ts - since
        if span > self.limit:
            self.over_limit += 1
        if span > self.longest:
            self.longest = span
            self.worst = f"{symbol} from {since:%Y-%m-%d %H:%M:%S}Z"


@define
class Summary:
    """What a simulation did: counts, P&L and R per trade. Its size grows with trades, not ticks.

    Entries add up to the intents: each is accepted, blocked by the gate or (after acceptance)
    refused by the broker. Partials count tranches, however many fills each took.
    """

    events: int = 0
    ticks: int = 0
    entries_accepted: int = 0  # entry.accepted records (an entry refused later is in both)
    entries_blocked: int = 0  # entry.blocked records, the gate's and the broker's
    positions_opened: int = 0
    stop_moves: int = 0
    partials_ordered: int = 0
    partials_filled: int = 0  # partial.filled records (a tranche may take several)
    closes: int = 0
    conflicts: int = 0
    alerts: int = 0
    orders_submitted: int = 0
    retries: int = 0
    realized_pnl: Decimal = Decimal(0)  # closed trades (trade.closed)
    banked_open_pnl: Decimal = Decimal(0)  # shares already sold of positions still open
    trades: list[TradeResult] = field(factory=list)
    blocked_reasons: dict[str, int] = field(factory=dict)
    tranches_ordered: set[tuple[str, str]] = field(factory=set)
    tranches_filled: set[tuple[str, str]] = field(factory=set)
    open_positions: list[dict[str, Any]] = field(factory=list)
    oversells: int = 0
    goal_triggers: list[dict[str, Any]] = field(factory=list)
    session_resets: int = 0
    exposure: Exposure = field(factory=Exposure)
    # The market calendar the run used ("always": none), the broker's orders that
    # waited for the regular session (stops an extended-hours print went through; market and
    # plain limit orders), what the engine watched itself, and the wash trades refused.
    hours: str = "always"
    stops_waited: int = 0
    orders_waited: int = 0
    watched_triggers: int = 0
    mode_changes: int = 0
    wash_trades_refused: int = 0

    @property
    def entries_refused(self) -> int:
        """Entries the gate accepted and the broker then refused (or canceled)."""
        return sum(n for reason, n in self.blocked_reasons.items() if reason in BROKER_REFUSALS)

    @property
    def entries_gate_blocked(self) -> int:
        """Entries the gate refused."""
        return self.entries_blocked - self.entries_refused

    @property
    def entry_intents(self) -> int:
        """Entry intents seen: each is accepted or blocked by the gate, once."""
        return self.entries_accepted + self.entries_gate_blocked

    @property
    def entries_kept(self) -> int:
        """Accepted entries the broker did not refuse."""
        return self.entries_accepted - self.entries_refused

    @property
    def tranches_by_take_profit(self) -> int:
        """Tranches filled by the take-profit order without a market order of their own."""
        return len(self.tranches_filled - self.tranches_ordered)

    @property
    def exits_by_mode(self) -> dict[str, int]:
        """Closed trades by the protection that ended them: the broker's stop (or take-profit),
        the engine's watched stop outside the regular session, or anything else."""
        counts = {"broker_stop": 0, "watched": 0, "other": 0}
        for trade in self.trades:
            if trade.reason in ("stop", "take_profit"):
                counts["broker_stop"] += 1
            elif trade.reason == "watched_stop":
                counts["watched"] += 1
            else:
                counts["other"] += 1
        return counts

    @property
    def realized_total(self) -> Decimal:
        """Every share sold: closed trades plus the banked partials of open positions."""
        return self.realized_pnl + self.banked_open_pnl

    def observe(self, command: Command) -> None:
        """Count one record or alert."""
        if type(command) is Alert:
            self.alerts += 1
            return
        if type(command) is not Record:
            return
        kind = command.kind
        if kind == "stop.moved":
            self.stop_moves += 1
        elif kind == "order.submitted":
            self.orders_submitted += 1
        elif kind == "order.retry":
            self.retries += 1
        elif kind == "partial.ordered":
            self.partials_ordered += 1
            self.tranches_ordered.add(_tranche(command))
        elif kind == "partial.filled":
            self.partials_filled += 1
            self.tranches_filled.add(_tranche(command))
        elif kind == "position.opened" and "added" not in command.data:
            self.positions_opened += 1
        elif kind == "position.closed":
            self.closes += 1
        elif kind == "entry.accepted":
            self.entries_accepted += 1
        elif kind == "entry.blocked":
            self.entries_blocked += 1
            reason = str(command["reason"])
            self.blocked_reasons[reason] = self.blocked_reasons.get(reason, 0) + 1
        elif kind == "conflict.detected":
            self.conflicts += 1
        elif kind == "goal.triggered":
            self.goal_triggers.append({"ts": command.ts, **command.data})
        elif kind == "goal.reset":
            self.session_resets += 1
        elif kind == "protection.triggered":
            self.watched_triggers += 1
        elif kind == "protection.mode":
            self.mode_changes += 1
        elif kind == "trade.closed":
            d = command.data
            pnl = _dec(d["pnl"])
            self.realized_pnl += pnl
            self.trades.append(
                TradeResult(
                    symbol=str(d["symbol"]),
                    side=str(d["side"]),
                    qty=_dec(d["qty"]),
                    entry=_dec(d["entry"]),
                    exit=_dec(d["exit"]),
                    opened=_ts(d["opened"]),
                    closed=_ts(d["closed"]),
                    pnl=pnl,
                    r=_dec(d["r"]),
                    risk=_dec(d["risk"]),
                    key=str(d["key"]),
                    reason=str(d["reason"]),
                )
            )


def _tranche(record: Record) -> tuple[str, str]:
    """A tranche: its position's key and its milestone (as text: 2 and 2.0 are one)."""
    milestone = record.data.get("milestone")
    shown = format(milestone.normalize(), "f") if isinstance(milestone, Decimal) else milestone
    return str(record.data.get("key", "")), str(shown)


def _dec(value: object) -> Decimal:
    assert isinstance(value, Decimal), value
    return value


def _ts(value: object) -> datetime:
    assert isinstance(value, datetime), value
    return value


def run_simulation(
    events: Iterable[Event],
    state: EngineState,
    broker: Broker | None = None,
    sink: Sink | None = None,
    on_step: StepObserver | None = None,
    heartbeat: bool = True,
) -> tuple[EngineState, Summary]:
    """Fold `step` over `events`, executing order commands on `broker` (by default a fresh
    simulated one).

    For each tick the broker matches its resting orders first (they rest at the exchange and
    fill as the market trades), then the engine sees the tick. Acknowledgements are fed back
    in the order they were produced, before the next recorded event. When something falls
    due between two recorded events (a retry, an answer deadline, protection), the engine
    gets a clock event at that instant, as the live loop's heartbeat would give it (unless
    `heartbeat` is off: then only recorded events move time).
    """
    if broker is None:
        broker = SimulatedBroker()
    summary = Summary()
    queue: deque[Event] = deque()

    def handle(commands: tuple[Command, ...]) -> None:
        orders = []
        for command in commands:
            if type(command) is Record or type(command) is Alert:
                summary.observe(command)
                if sink is not None:
                    sink(command)
            else:
                orders.append(command)
                if sink is not None:
                    sink(command)
        if orders:
            queue.extend(broker.execute(orders))

    def drain(current: EngineState) -> EngineState:
        while queue:
            event = queue.popleft()
            t = step(current, event)
            if on_step is not None:
                on_step(event, current, t)
            current = t.state
            if t.commands:
                handle(t.commands)
        return current

    def beat(current: EngineState, reached: datetime | None, until: datetime) -> EngineState:
        """Time passes from `reached` until `until`, in order and never backward: a dropped
        link comes back when due, and what falls due in the engine gets its clock event at
        its instant (at once, if it fell due while nothing could act)."""
        stalled: datetime | None = None  # an instant at which nothing could act
        while True:
            back = broker.reconnect_at()
            when = min(current.due, current.market.until) if heartbeat else until
            if reached is not None and when < reached:
                when = reached
            if back is not None and back < until and (back <= when or when == stalled):
                if reached is not None and back < reached:
                    back = reached
                queue.extend(broker.reconnect(back))
                current = drain(current)
                exposure.observe(broker.uncovered(), back)
                reached = back
                continue
            if when >= until or when == stalled:
                return current
            clock = Clock(when)
            t = step(current, clock)
            if on_step is not None:
                on_step(clock, current, t)
            current = t.state
            if t.commands:
                handle(t.commands)
                current = drain(current)
            exposure.observe(broker.uncovered(), when)
            reached = when
            if current.due <= when:
                stalled = when  # nothing could act (the link is down)

    ticks = 0
    others = 0
    on_tick = broker.on_tick
    exposure = summary.exposure
    last_ts: datetime | None = None
    for event in events:
        # A session boundary of the market gets its clock event too, at its instant
        # (once the first event has rolled the market to the session it starts in).
        boundary = last_ts is not None and state.market.until < event.ts
        if state.due < event.ts or boundary or broker.reconnect_at() is not None:
            state = beat(state, last_ts, event.ts)
        last_ts = event.ts
        if type(event) is Tick:
            ticks += 1
            fills = on_tick(event)
            if fills:
                queue.extend(fills)
                state = drain(state)
                exposure.observe(broker.uncovered(), event.ts)
            before = state
            state, commands = step(state, event)
        else:
            others += 1
            if type(event) is Connectivity and not event.up:
                # A recorded outage: the broker stops answering until it reconnects.
                broker.disconnect(event.ts)
            before = state
            state, commands = step(state, event)
        if on_step is not None:
            on_step(event, before, Transition(state, commands))
        if commands:
            handle(commands)
            state = drain(state)
            exposure.observe(broker.uncovered(), event.ts)
    if last_ts is not None:
        exposure.finish(last_ts)
    summary.events = ticks + others
    summary.ticks = ticks
    summary.oversells = broker.oversells
    close_summary(summary, state, broker.working_qty, broker)
    return state, summary


def close_summary(
    summary: Summary,
    state: EngineState,
    working_qty: Callable[[str, str], Decimal],
    broker: object = None,
) -> None:
    """The run's open positions, each with whether the broker works a stop for every share
    left (`working_qty(symbol, order_id)`: the shares that order still works there), and the
    session figures of a `broker` that models market hours."""
    hours = state.config.hours
    summary.hours = hours.name if hours is not None else "always"
    # Counted by brokers that model them (the simulated one; the exchange tells its own).
    summary.stops_waited = int(getattr(broker, "stops_waited", 0))
    summary.orders_waited = int(getattr(broker, "orders_waited", 0))
    summary.wash_trades_refused = int(getattr(broker, "wash_trades", 0))
    for key in sorted(state.positions):
        view = state.view(key)
        assert view is not None
        pos = view.position
        order = pos.orders.exit
        protected = (
            order is not None
            and order.stop_price is not None
            and working_qty(pos.symbol, order.id) >= pos.fills.remaining
        )
        summary.banked_open_pnl += pos.fills.realized
        summary.open_positions.append(
            {
                "symbol": pos.symbol,
                "key": key,
                "side": pos.side.value,
                "qty": pos.fills.remaining,
                "entry": pos.ladder.entry,
                "price": view.price,
                "r": view.r,
                "unrealized": view.unrealized,
                "realized": pos.fills.realized,
                "state": pos.ladder.protection.value,
                "stop": pos.ladder.stop,
                "working_stop": order.stop_price if protected and order else None,
                "protected": protected,
                "halted": pos.halted,
            }
        )
