"""Laws of the daily profit goal and the session calendar (specs: G1-G4)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from engine import Config, EntryIntent, ProtectionConfig
from engine.calendar import session_of
from engine.config import SessionConfig
from engine.goal import GoalConfig, OnTrigger
from tests.harness import all_records, trace
from tests.strategies import multi_session_histories

NY = ZoneInfo("America/New_York")


def goals(on_trigger: OnTrigger = OnTrigger.BLOCK_ENTRIES) -> st.SearchStrategy[Config]:
    return st.builds(
        lambda target, giveback, tp: Config(
            ProtectionConfig(take_profit=tp),
            goal=GoalConfig(Decimal(target), Decimal(giveback) / 100, on_trigger),
            session=SessionConfig(NY, time(4)),
        ),
        st.integers(10, 2_000),
        st.integers(10, 90),
        st.booleans(),
    )


def _holds(daily, goal) -> bool:
    peak, current, g = daily.peak, daily.pnl, goal.giveback
    return peak > g * goal.target and (peak - current) / peak >= g


@given(multi_session_histories(), goals())
def test_g1_the_peak_is_never_below_the_days_pnl(events, config):
    """After every step, peak >= daily P&L."""
    for step in trace(events, config, "same"):
        assert step.after.daily.peak >= step.after.daily.pnl


@given(multi_session_histories(), goals())
def test_g2_protection_triggers_exactly_when_the_condition_first_holds(events, config):
    """Untriggered after a step means the condition does not hold; a trigger comes with a
    goal.triggered record whose peak and current satisfy it."""
    for step in trace(events, config, "same"):
        daily = step.after.daily
        records = step.records("goal.triggered")
        if not daily.triggered:
            assert not _holds(daily, config.goal) and not records
        elif not step.before.daily.triggered or daily.session != step.before.daily.session:
            [record] = records
            peak, current = record["peak"], record["current"]
            assert peak > config.goal.giveback * config.goal.target
            assert (peak - current) / peak >= config.goal.giveback
        else:
            assert not records


@given(multi_session_histories(), goals())
def test_g3_entries_are_blocked_while_active_and_exits_never(events, config):
    """While protection holds, every entry is blocked with daily_profit_protection; and every
    position's stops, tranches and exits are exactly those of the same history without a goal."""
    steps = trace(events, config, "same")
    for step in steps:
        if isinstance(step.event, EntryIntent) and step.after.daily.triggered:
            [blocked] = step.records("entry.blocked")
            assert blocked["reason"] == "daily_profit_protection"
            assert not step.records("entry.accepted")
    plain = trace(events, Config(config.protection, session=config.session), "same")
    exits = ("stop.moved", "partial.ordered", "partial.filled", "position.closed")

    def by_key(run):
        out: dict[str, list] = {}
        for record in all_records(run):
            if record.kind in exits:
                out.setdefault(record["key"], []).append((record.kind, dict(record.data)))
        return out

    # Keys count accepted entries, so they name the same positions in both runs only up to
    # the first blocked entry: compare the positions opened before the first trigger.
    triggers = [r.ts for r in all_records(steps, "goal.triggered")]
    first = min(triggers) if triggers else None
    same = {
        r["key"] for r in all_records(steps, "position.opened") if first is None or r.ts <= first
    }
    with_goal, without = by_key(steps), by_key(plain)
    for key in same:
        assert with_goal.get(key, []) == without.get(key, []), key


@given(multi_session_histories(), goals())
def test_g4_sessions_roll_at_the_first_event_at_or_after_0400_new_york(events, config):
    """A new session starts exactly at the first event at or after the boundary (DST-aware),
    with a goal.reset record; its next boundary is 04:00 New York the following day."""
    for step in trace(events, config, "same"):
        before, after = step.before.daily, step.after.daily
        local = step.event.ts.astimezone(NY)
        # Written out independently: before 04:00 local, the session is the previous day's.
        expected = local.date() - timedelta(days=1 if local.time() < time(4) else 0)
        assert after.session == expected, (step.event.ts, after.session)
        due = before.reset_at is None or step.event.ts >= before.reset_at
        if due:
            session, reset_at = session_of(step.event.ts, NY, time(4))
            assert (after.session, after.reset_at) == (session, reset_at)
            local = reset_at.astimezone(NY)
            assert local.time() == time(4) and local.date() == session + timedelta(days=1)
            assert len(step.records("goal.reset")) == (before.session is not None)
        else:
            assert after.session == before.session and not step.records("goal.reset")
