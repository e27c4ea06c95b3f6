"""The protection state table (SPEC §3) walked whole through the engine: from every state, a
print at every milestone leads to the documented state by every state in between, and no
move ever goes backward."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import attrs
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
from engine.protection import climb
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0
from tests.unit.test_timeouts import _opened, _sec

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


def _climbed(price: str, **kw):
    state = _opened()
    cfg = state.config.protection
    if kw.pop("trail", False):
        cfg = attrs.evolve(cfg, trail=True)
    return climb(state.positions["AAA-1"], D(price), _sec(1), cfg, **kw)


def test_a_climb_journals_each_level_it_passes_in_order_with_its_reason():
    """AAA long 10 @ 100, stop 99, printed at 102.50 (2.5R): 1R, 1.5R and 2R are passed, each
    with its state, its stop and (at 2R) its tranche of 5; the next trigger is 3R."""
    pos, records = _climbed("102.5")
    assert [(r.kind, r.data.get("reason"), r.data.get("new")) for r in records] == [
        ("position.state", "reached 1.0R", "BREAKEVEN_PROTECTED"),
        ("stop.moved", "reached 1.0R: lock 0R", D("100.00")),
        ("stop.moved", "reached 1.5R: lock 0.5R", D("100.50")),
        ("position.state", "reached 2.0R", "PARTIAL_PROFIT_TAKEN"),
        ("stop.moved", "reached 2.0R: lock 1.0R", D("101.00")),
        ("partial.ordered", None, None),
    ]
    assert {r["r"] for r in records} == {D("2.5")}
    partial = records[-1].data
    assert (partial["milestone"], partial["tranche"], partial["qty"]) == (D("2.0"), 1, D(5))
    ladder = pos.ladder
    assert (ladder.stop, ladder.trigger, ladder.next_level, ladder.lock_r, ladder.gap_r) == (
        D("101.00"), D("103.0"), 3, D("1.0"), D("1.0")
    )  # fmt: skip
    assert (pos.orders.to_sell, pos.orders.milestones) == (D(5), ((D("2.0"), D(5)),))
    # adopted mid-way: the same levels journaled as passed before adoption, nothing sold
    pos, records = _climbed("102.5", sell=False)
    assert records[0]["reason"] == "reached 1.0R before adoption"
    assert records[1]["reason"] == "reached 1.0R before adoption: lock 0R"
    assert [r.kind for r in records].count("partial.ordered") == 0
    assert (pos.orders.to_sell, pos.orders.milestones, pos.ladder.next_level) == (0, (), 3)
    # trailing: the stop follows 1R below the best print, and the next trigger is where it
    # would rise again
    pos, records = _climbed("102.5", trail=True)
    assert (records[-1].kind, records[-1]["reason"], records[-1]["new"]) == (
        "stop.moved", "trail 1.0R below best", D("101.50")
    )  # fmt: skip
    assert (pos.ladder.stop, pos.ladder.trigger) == (D("101.50"), D("102.50"))
    # a print short of the first level passes nothing
    pos, records = _climbed("100.99")
    assert records == [] and pos.ladder.next_level == 0 and pos.ladder.trigger == D("101.0")


def test_a_tranche_never_sells_shares_queued_or_in_flight():
    state = _opened()
    pos = state.positions["AAA-1"]
    cfg = state.config.protection
    busy = attrs.evolve(pos, orders=attrs.evolve(pos.orders, to_sell=D(4)))
    after, records = climb(busy, D("102"), _sec(1), cfg)
    assert after.orders.to_sell == D(4) + D(5)
    tight = attrs.evolve(pos, orders=attrs.evolve(pos.orders, to_sell=D(7)))
    after, records = climb(tight, D("102"), _sec(1), cfg)
    assert after.orders.to_sell == D(10)  # 3 were left: the tranche is 3
    assert records[-1]["qty"] == D(3)
    full = attrs.evolve(pos, orders=attrs.evolve(pos.orders, to_sell=D(10)))
    after, records = climb(full, D("102"), _sec(1), cfg)
    assert "partial.ordered" not in [r.kind for r in records] and after.orders.milestones == ()


def test_a_tranche_never_sells_shares_a_sale_in_flight_holds():
    state = _opened()
    pos = state.positions["AAA-1"]
    sale = attrs.evolve(pos.orders.exit, id="s", qty=D(8), filled=D(1))  # 7 still to sell
    selling = attrs.evolve(pos, orders=attrs.evolve(pos.orders, sell=sale))
    after, records = climb(selling, D("102"), _sec(1), state.config.protection)
    assert records[-1].kind == "partial.ordered" and records[-1]["qty"] == D(3)
    assert after.orders.to_sell == D(3)
