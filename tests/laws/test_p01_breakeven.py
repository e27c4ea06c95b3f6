"""P1 Breakeven protection."""

from hypothesis import given

from tests.harness import open_position_ticks, trace
from tests.oracle import better, r_of
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p01_first_tick_at_1r_moves_the_stop_to_entry(history, config, fill):
    """The step whose tick first reaches 1R emits a stop move to the entry price or better."""
    seen: set[str] = set()
    for step, pos in open_position_ticks(trace(history.events, config, fill)):
        if pos.key in seen or pos.risk <= 0:
            continue
        if r_of(step.tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side) >= 1:
            seen.add(pos.key)
            moves = [m for m in step.records("stop.moved") if m["key"] == pos.key]
            assert moves, f"no stop.moved at the first 1R tick {step.tick}"
            assert better(moves[-1]["new"], pos.ladder.entry, pos.side), moves[-1]
            assert better(step.after.positions[pos.key].ladder.stop, pos.ladder.entry, pos.side)
