"""The protection state table (SPEC §3) walked whole through the engine: from every state, a
print at every milestone leads to the documented state by every state in between, and no
move ever goes backward."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from engine import (
    NEXT_PROTECTION,
    Config,
    EngineState,
    EntryIntent,
    Protection,
    ProtectionConfig,
    Record,
    Side,
    Tick,
    ladder,
)
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0

ORDER = [Protection.INITIAL_RISK]
while ORDER[-1] in NEXT_PROTECTION:
    ORDER.append(NEXT_PROTECTION[ORDER[-1]])
# SPEC §3: the R at which each state begins.
BEGINS = {state: D(i) for i, state in enumerate(ORDER)}


def test_the_table_is_one_forward_chain_through_every_state():
    """Each state has one successor, the chain starts at INITIAL_RISK, ends at
    FINAL_PROFIT_TAKEN and visits every state once: there is no way back."""
    assert list(Protection) == ORDER
    assert Protection.FINAL_PROFIT_TAKEN not in NEXT_PROTECTION
    assert len(set(NEXT_PROTECTION.values())) == len(NEXT_PROTECTION)
    # the states a schedule's levels lead to (built at import, out of mutation testing's reach)
    assert list(ladder._PROTECTIONS) == ORDER[1:]
    assert ladder._successors(Protection.ADVANCED_PROFIT_TAKEN) == (Protection.FINAL_PROFIT_TAKEN,)
    assert ladder._successors(Protection.FINAL_PROFIT_TAKEN) == ()


def _transitions(start: Protection, r: D, side: Side) -> list[tuple[str, str]]:
    """Open a position (entry 100, 1 R = $1), bring it to `start`, then print at `r` R."""
    sign = side.sign
    events = [
        Tick(T0, "AAA", D(100)),
        EntryIntent(T0, "AAA", side, D(100) - sign, D(100)),
        Tick(T0 + timedelta(seconds=1), "AAA", D(100)),
    ]
    if start is not Protection.INITIAL_RISK:
        events.append(Tick(T0 + timedelta(seconds=2), "AAA", D(100) + BEGINS[start] * sign))
    events.append(Tick(T0 + timedelta(seconds=3), "AAA", D(100) + r * sign))
    records: list[Record] = []
    config = Config(ProtectionConfig(take_profit=False))
    run_simulation(
        events,
        EngineState.empty(config),
        SimulatedBroker(market_fill="same"),
        sink=lambda c: records.append(c) if isinstance(c, Record) else None,
    )
    return [(r["old"], r["new"]) for r in records if r.kind == "position.state"]


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
@pytest.mark.parametrize("start", ORDER)
@pytest.mark.parametrize("r", [D("0.5"), D(1), D("1.5"), D(2), D(3), D(4), D(6)])
def test_every_state_and_milestone_gives_the_documented_next_state(start, r, side):
    """From `start`, a print at `r` R passes every state up to the one `r` has earned, in
    order, one `position.state` each; a milestone at or below the current state moves
    nothing."""
    earned = [s for s in ORDER if BEGINS[s] <= r][-1]
    index = ORDER.index
    target = ORDER[max(index(start), index(earned))]
    expected = [
        (ORDER[i].value, ORDER[i + 1].value) for i in range(index(Protection.INITIAL_RISK),
                                                              index(target))
    ]  # fmt: skip
    assert _transitions(start, r, side) == expected
    for old, new in expected:
        assert NEXT_PROTECTION[Protection(old)] is Protection(new)  # never backward
