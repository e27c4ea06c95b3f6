"""The entry gate's order (SPEC §4, §7, §8): when several reasons to refuse an entry hold at
once, the refusal names the first of them in the documented order. Written from the list,
not from engine/entries.py, so a swapped pair of checks (each of which alone refuses the
same entries) shows in the reason."""

from __future__ import annotations

from decimal import Decimal as D

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from engine import Config, EngineState, EntryIntent, Side, Tick, step, validate_entry
from engine.phase import Phase, PhaseConfig, PhaseState
from engine.state import BreakerState
from tests.strategies import T0

# The documented order of the gate (engine/entries.py's docstring and SPEC): the link first
# (offline, recovery, the order breaker), then the phase breaker, the daily goal, the cap on
# open positions, the inputs, the phase's trade limit.
ORDER = (
    "broker_offline",
    "recovery_mode",
    "order_breaker_open",
    "phase_breaker",
    "daily_profit_protection",
    "max_open_positions",
    "invalid_qty",
    "phase_trade_limit",
)


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, bool]:
    """Which reasons hold: the first one drawn uniformly (or none), any after it at random, so
    every reason is often the one that must be named."""
    first = draw(st.integers(0, len(ORDER)))
    rest = draw(st.lists(st.booleans(), min_size=len(ORDER), max_size=len(ORDER)))
    return {name: i == first or (i > first and rest[i]) for i, name in enumerate(ORDER)}


def _state(holds: dict[str, bool]) -> tuple[EngineState, EntryIntent]:
    """An account where exactly the conditions in `holds` are true (Proof of Concept, one
    trade a session, one position allowed)."""
    cfg = Config(phase=PhaseConfig(enabled=True, start=Phase.PROOF_OF_CONCEPT), max_open=1)
    clean = step(EngineState.empty(cfg), Tick(T0, "AAA", D(100))).state  # the session opens
    state = clean
    link = evolve(
        state.link,
        up=not holds["broker_offline"],
        recovering=holds["recovery_mode"],
        breaker=BreakerState.OPEN if holds["order_breaker_open"] else BreakerState.CLOSED,
    )
    phase = PhaseState(Phase.PROOF_OF_CONCEPT, D(100), breaker_open=holds["phase_breaker"])
    daily = evolve(
        state.daily,
        triggered=holds["daily_profit_protection"],
        trades=1 if holds["phase_trade_limit"] else 0,
    )
    state = state.evolve(link=link, phase=phase, daily=daily)
    if holds["max_open_positions"]:  # another entry, taken before, waits for its fill
        taken = step(clean, EntryIntent(T0, "BBB", Side.LONG, D(90), D(1), entry=D(100)))
        state = state.evolve(entries=taken.state.entries)
    qty = D(0) if holds["invalid_qty"] else D(1)
    return state, EntryIntent(T0, "AAA", Side.LONG, D(99), qty)


@given(conditions())
def test_gate_an_entry_refused_for_several_reasons_names_the_first(holds):
    """Every combination of the gate's reasons: the refusal is the first that holds, and an
    entry for which none holds is taken. Kills entries.validate_entry with any two checks
    swapped (e.g. the daily goal before the phase breaker: the same entries are refused)."""
    state, intent = _state(holds)
    expected = next((name for name in ORDER if holds[name]), None)
    match validate_entry(state, intent):
        case Failure(refusal):
            assert refusal.reason == expected, (holds, refusal)
        case Success(qty):
            assert expected is None and qty == D(1), holds


def test_gate_the_phase_breaker_is_named_before_the_daily_goal():
    """entries.validate_entry: the phase breaker's check moved after the daily goal's. Input:
    a downgraded account (breaker open) whose day also gave back its profit: the reason is
    `phase_breaker`, the one an operator can clear."""
    holds = dict.fromkeys(ORDER, False) | {"phase_breaker": True, "daily_profit_protection": True}
    state, intent = _state(holds)
    [blocked] = step(state, intent).commands
    assert blocked["reason"] == "phase_breaker"  # type: ignore[index]


def test_gate_each_reason_is_named_alone_and_before_every_later_one():
    """Each reason alone, and each with every later reason holding too (deterministic, so a
    changed comparison in any single check is caught on every run, e.g. the trade limit's
    `trades >= per_session` -> `>`)."""
    for i, name in enumerate(ORDER):
        for later in (False, True):
            holds = {other: j == i or (later and j > i) for j, other in enumerate(ORDER)}
            state, intent = _state(holds)
            refusal = validate_entry(state, intent).failure()
            assert refusal.reason == name, (holds, refusal)
    state, intent = _state(dict.fromkeys(ORDER, False))
    assert validate_entry(state, intent).unwrap() == D(1)
