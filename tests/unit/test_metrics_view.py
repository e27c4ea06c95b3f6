"""The totals of the metrics view: the link's mode and the order breaker as their records say,
the positions by state and bare, the goal's settings and the phase."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import engine
from engine import (
    BreakerState,
    Config,
    Connectivity,
    GoalConfig,
    LinkMode,
    OrderCanceled,
    Protection,
    Record,
    Side,
    Tick,
    metrics_view,
)
from engine.metrics import PositionMetrics
from shell.broker.simulated import Faults
from tests import portfolio
from tests.harness import trace
from tests.unit.test_timeouts import STOP_ID, _opened, _sec


def test_the_link_mode_and_the_breaker_follow_their_records():
    """Through a broker that refuses every request for a passing reason (the breaker opens,
    turns half-open, opens again) and a dropped link (offline, then recovery): after every
    step the view's mode is the last `mode.changed` record's and its breaker the last order
    breaker record's."""
    events = portfolio.events()
    drop = events[40].ts + timedelta(milliseconds=1)
    link = [Connectivity(drop, False), Connectivity(drop + timedelta(seconds=3), True)]
    events = sorted([*events, *link], key=lambda e: e.ts)
    mode, breaker = LinkMode.NORMAL, BreakerState.CLOSED
    modes, breakers = set(), set()
    for step in trace(events, Config(), faults=Faults(transient=1.0, seed=1)):
        for record in step.commands:
            if not isinstance(record, Record):
                continue
            if record.kind.startswith("breaker.") and record.data.get("breaker") != "orders":
                continue  # the phase breaker's
            match record.kind:
                case "mode.changed":
                    mode = LinkMode(record["to"])
                case "breaker.opened":
                    breaker = BreakerState.OPEN
                case "breaker.half_open":
                    breaker = BreakerState.HALF_OPEN
                case "breaker.closed":
                    breaker = BreakerState.CLOSED
        view = metrics_view(step.after)
        assert (view.mode, view.breaker) == (mode, breaker), step.event
        modes.add(mode)
        breakers.add(breaker)
    assert modes == set(LinkMode) and BreakerState.OPEN in breakers


def test_positions_by_state_bare_goal_and_phase():
    """Every protection state is counted (zeros too) and the counts add up to the positions;
    bare counts the positions with bare shares; the goal's target and giveback and the phase
    and its size are the state's."""
    config = Config(goal=GoalConfig(target=Decimal(250), giveback=Decimal("0.40")))
    seen = set()
    for step in trace(portfolio.events(), config):
        view = metrics_view(step.after)
        counts = dict(view.by_protection)
        assert list(counts) == list(Protection)
        assert sum(counts.values()) == len(view.positions) == len(step.after.positions)
        assert view.bare == sum(1 for p in step.after.positions.values() if p.bare)
        assert (view.goal_target, view.goal_giveback) == (Decimal(250), Decimal("0.40"))
        assert (view.daily_pnl, view.daily_peak) == (step.after.daily.pnl, step.after.daily.peak)
        assert view.phase is step.after.phase.phase and view.size == step.after.phase.size
        seen |= {p for p, n in counts.items() if n}
        if view.bare:
            seen.add("bare")
    assert len(seen) >= 4  # the session shows several states and some bare shares


def test_a_positions_row_shows_its_working_stop_only_while_the_broker_works_one():
    """AAA long 10 @ 100, last 100.50: every field of its row; then at 1R, with the old stop
    canceled and the new one not yet accepted, the row shows the ladder's stop (100.00) but no
    working stop, and the position as bare."""
    state = engine.step(_opened(), Tick(_sec(1), "AAA", Decimal("100.50"))).state
    row = metrics_view(state).positions[0]
    assert row == PositionMetrics(
        key="AAA-1", symbol="AAA", side=Side.LONG, qty=Decimal(10), entry=Decimal(100),
        price=Decimal("100.50"), r=Decimal("0.5"), unrealized=Decimal(5),
        protection=Protection.INITIAL_RISK, stop=Decimal(99), working_stop=Decimal(99),
        as_of=_sec(1), bare=False,
    )  # fmt: skip
    t = engine.step(state, Tick(_sec(2), "AAA", Decimal("101")))
    t = engine.step(t.state, OrderCanceled(_sec(2), STOP_ID))
    row = metrics_view(t.state).positions[0]
    assert (row.stop, row.working_stop, row.bare, row.protection) == (
        Decimal(100), None, True, Protection.BREAKEVEN_PROTECTED
    )  # fmt: skip
