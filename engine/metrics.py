"""The metrics view (SPEC §5, P33): what a monitor shows of the engine's state, derived from the
state alone. Per open position, in the order they were opened: its R and unrealized P/L at its
last price, the protection it has earned, the stop it wants and the stop the broker works, the
time of its last price and whether some of its shares are bare. In total: the positions by
protection state, the broker link, the day's P&L against its goal, and the phase.

Pure and cheap to call: the shell's exporter derives it from the latest state when it is
scraped, so a closed position simply is not in it any more.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from attrs import frozen

from engine.events import Side
from engine.model import Protection
from engine.phase import Phase
from engine.state import BreakerState, EngineState, LinkMode

__all__ = ["MetricsView", "PositionMetrics", "metrics_view"]

# Protection states in ladder order (SPEC §3): the rank of each is its place in this tuple.
_LADDER_ORDER = tuple(Protection)


@frozen
class PositionMetrics:
    """One open position as a monitor sees it.

    `stop` is the stop the ladder wants; `working_stop` the stop price of the protective order
    the broker has accepted and still works (None when there is none: the shares are bare, or
    the order is not yet accepted). `price` and `as_of` are its symbol's last price (a print
    or a fill) and its time; before any, the entry and the opening time.
    """

    key: str
    symbol: str
    side: Side
    qty: Decimal
    entry: Decimal
    price: Decimal
    r: Decimal
    unrealized: Decimal
    protection: Protection
    stop: Decimal
    working_stop: Decimal | None
    as_of: datetime
    bare: bool

    @property
    def rank(self) -> int:
        """The protection state's place on the ladder: 0 (INITIAL_RISK) to 4 (FINAL)."""
        return _LADDER_ORDER.index(self.protection)


@frozen
class MetricsView:
    """The metrics of one engine state: every open position, and the totals.

    `by_protection` counts the open positions in each protection state, every state listed in
    ladder order (zeros included). The daily figures are the goal's (SPEC §7): the engine
    keeps them while a daily counter (the goal or the phases) is on. `goal_target` 0 means
    the goal is off; the day has given back too much once its P&L falls to peak × (1 −
    goal_giveback) (with the peak above goal_giveback × goal_target).
    """

    positions: tuple[PositionMetrics, ...]
    by_protection: tuple[tuple[Protection, int], ...]
    bare: int
    mode: LinkMode
    breaker: BreakerState
    daily_pnl: Decimal
    daily_peak: Decimal
    goal_triggered: bool
    goal_target: Decimal
    goal_giveback: Decimal
    phase: Phase
    size: Decimal


def _position(state: EngineState, key: str) -> PositionMetrics:
    """The metrics of open position `key`."""
    view = state.view(key)
    assert view is not None, key  # the caller walks the open positions
    pos = view.position
    exit_order = pos.orders.exit
    working = (
        exit_order.stop_price
        if exit_order is not None and pos.orders.working_stop_qty() > 0
        else None
    )
    return PositionMetrics(
        key=pos.key,
        symbol=pos.symbol,
        side=pos.side,
        qty=pos.fills.remaining,
        entry=pos.ladder.entry,
        price=view.price,
        r=view.r,
        unrealized=view.unrealized,
        protection=pos.ladder.protection,
        stop=pos.ladder.stop,
        working_stop=working,
        as_of=view.as_of,
        bare=pos.bare,
    )


def metrics_view(state: EngineState) -> MetricsView:
    """The metrics view of `state` (P33: every open position with its R and state, and
    nothing else). O(n log n) in the open positions; nothing is cached in the state."""
    positions = tuple(_position(state, pos.key) for pos in state.opened_order())
    counts = dict.fromkeys(_LADDER_ORDER, 0)
    bare = 0
    for row in positions:
        counts[row.protection] += 1
        bare += row.bare
    daily = state.daily
    goal = state.config.goal
    return MetricsView(
        positions=positions,
        by_protection=tuple((p, counts[p]) for p in _LADDER_ORDER),
        bare=bare,
        mode=state.link.mode,
        breaker=state.link.breaker,
        daily_pnl=daily.pnl,
        daily_peak=daily.peak,
        goal_triggered=daily.triggered,
        goal_target=goal.target,
        goal_giveback=goal.giveback,
        phase=state.phase.phase,
        size=state.phase.size,
    )
