"""P34 Transition event."""

import itertools

from hypothesis import given

from engine import Protection
from tests.harness import trace
from tests.oracle import ORDER, r_of, state_for
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p34_every_transition_is_recorded_in_order_with_a_reason(history, config, fill):
    """Protection changes only forward, one position.state record per level passed (old, new,
    reason), and lands on the state SPEC assigns to the best R reached."""
    best = {}
    for step in trace(history.events, config, fill):
        tick = step.tick
        for key, pos in step.before.positions.items():
            after = step.after.positions.get(key)
            records = [r for r in step.records("position.state") if r["key"] == pos.key]
            chain = [pos.ladder.protection] + [Protection(r["new"]) for r in records]
            for record, old in zip(records, chain, strict=False):
                assert Protection(record["old"]) is old and record["reason"]
            for a, b in itertools.pairwise(chain):
                assert ORDER.index(b) == ORDER.index(a) + 1, chain
            if after is None:
                continue  # closed in this step (a take-profit passes the levels it skipped)
            assert chain[-1] is after.ladder.protection
            if tick is not None and tick.symbol == pos.symbol and pos.risk > 0:
                r = r_of(tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side)
                best[pos.key] = max(r, best.get(pos.key, r))
                assert after.ladder.protection is state_for(best[pos.key])
