"""The totals of the metrics view: the link's mode and the order breaker as their records say,
the positions by state and bare, the goal's settings and the phase."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from engine import (
    BreakerState,
    Config,
    Connectivity,
    GoalConfig,
    LinkMode,
    Protection,
    Record,
    metrics_view,
)
from shell.broker.simulated import Faults
from tests import portfolio
from tests.harness import trace


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
