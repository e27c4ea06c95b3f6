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
        r = r_of(step.tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side)
        best_r = max(r, best.get(pos.key, r))
        best[pos.key] = best_r
        after = step.after.positions[pos.key]
        expected = ladder_stop(best_r, pos.ladder.entry, pos.ladder.initial_stop, pos.side)
        if expected is not None:
            assert better(after.ladder.stop, expected, pos.side), (
                after.ladder.stop,
                expected,
                best_r,
            )
            if not config.protection.trail:
                assert after.ladder.stop == expected, (after.ladder.stop, expected, best_r)
        else:
            assert after.ladder.stop == pos.ladder.stop
        moves = [m for m in step.records("stop.moved") if m["key"] == pos.key]
        if after.ladder.stop != pos.ladder.stop:
            assert moves and moves[-1]["new"] == after.ladder.stop
        else:
            assert not moves
