"""P20 Transitions trigger actions."""

from decimal import Decimal

from hypothesis import given

from engine import Protection
from tests.harness import open_position_ticks, trace
from tests.oracle import SPEC_LADDER, SPEC_PARTIALS, SPEC_STATES, better, favour
from tests.strategies import configs, histories, market_fills

_LEVEL = {state: r for r, state in SPEC_STATES}
_LOCK = dict(SPEC_LADDER)
_FRACTION = dict(SPEC_PARTIALS)


@given(histories(), configs(), market_fills())
def test_p20_every_transition_comes_with_its_stop_move_and_tranche(history, config, fill):
    """Each position.state record has, in the same step, the stop move its level's rung calls
    for (unless the stop already locks as much) and the tranche its level orders."""
    for step, pos in open_position_ticks(trace(history.events, config, fill)):
        moves = [m for m in step.records("stop.moved") if m["key"] == pos.key]
        ordered = {
            r["milestone"]: r["qty"] for r in step.records("partial.ordered") if r["key"] == pos.key
        }
        for record in step.records("position.state"):
            if record["key"] != pos.key:
                continue
            level = _LEVEL[Protection(record["new"])]
            lock_price = favour(
                pos.ladder.entry + _LOCK[level] * pos.risk * pos.side.sign, pos.side
            )
            locked_before = better(pos.ladder.stop, lock_price, pos.side)
            assert locked_before or any(m["new"] == lock_price for m in moves), (level, moves)
            if level in _FRACTION:
                expected = (pos.fills.original * _FRACTION[level]).to_integral_value(
                    rounding="ROUND_FLOOR"
                )
                if expected > 0:
                    assert ordered.get(level) == expected, (level, ordered)
            elif level == max(_LEVEL.values()):
                assert (
                    ordered.get(level, Decimal(0)) > 0
                    or pos.fills.remaining == sum(ordered.values(), Decimal(0)) + pos.orders.to_sell
                )
