"""P4 Stop update latency."""

from hypothesis import given

from tests.harness import open_position_ticks, trace
from tests.oracle import better, ladder_stop, r_of
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p04_a_tick_that_earns_a_rung_moves_the_stop_in_the_same_step(history, config, fill):
    """After each tick the stop is the SPEC ladder's lock for the best R reached (exactly,
    without trailing; at least, with it), and any change is emitted by that very step."""
    best: dict[str, object] = {}
    for step, pos in open_position_ticks(trace(history.events, config, fill)):
        if pos.risk <= 0:
            continue
        r = r_of(step.tick.price, pos.entry, pos.initial_stop, pos.side)
        best_r = max(r, best.get(pos.key, r))
        best[pos.key] = best_r
        after = step.after.positions[pos.key]
        expected = ladder_stop(best_r, pos.entry, pos.initial_stop, pos.side)
        if expected is not None:
            assert better(after.stop, expected, pos.side), (after.stop, expected, best_r)
            if not config.protection.trail:
                assert after.stop == expected, (after.stop, expected, best_r)
        else:
            assert after.stop == pos.stop
        moves = [m for m in step.records("stop.moved") if m["key"] == pos.key]
        if after.stop != pos.stop:
            assert moves and moves[-1]["new"] == after.stop
        else:
            assert not moves
