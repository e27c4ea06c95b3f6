"""P5 Partial at 2R, P6 Partial at 3R, P7 Partial at 4R."""

from decimal import Decimal

from hypothesis import given

from tests.harness import fills, open_position_ticks, trace
from tests.oracle import SPEC_FINAL_R, SPEC_PARTIALS, r_of, tranche
from tests.strategies import configs, histories, market_fills


def _first_reaching(steps, level):
    """(step, position before) of the first tick at or beyond `level` R of each position."""
    seen = set()
    for step, pos in open_position_ticks(steps):
        if pos.key in seen or pos.risk <= 0:
            continue
        if r_of(step.tick.price, pos.ladder.entry, pos.ladder.initial_stop, pos.side) >= level:
            seen.add(pos.key)
            yield step, pos


def _ordered(step, key, milestone):
    return [
        r["qty"]
        for r in step.records("partial.ordered")
        if r["key"] == key and r["milestone"] == milestone
    ]


def _check_tranche(history, config, fill, index):
    level, fraction = SPEC_PARTIALS[index]
    for step, pos in _first_reaching(trace(history.events, config, fill), level):
        expected = tranche(pos.fills.original, fraction)
        ordered = _ordered(step, pos.key, level)
        assert ordered == ([expected] if expected > 0 else []), (ordered, expected)


@given(histories(), configs(), market_fills())
def test_p05_reaching_2r_orders_half_the_original(history, config, fill):
    """The first tick at 2R orders exactly 50% of the original quantity, lot-rounded down."""
    _check_tranche(history, config, fill, 0)


@given(histories(), configs(), market_fills())
def test_p06_reaching_3r_orders_a_quarter_of_the_original(history, config, fill):
    """The first tick at 3R orders exactly 25% of the original quantity, lot-rounded down."""
    _check_tranche(history, config, fill, 1)


@given(histories(), configs(), market_fills())
def test_p07_reaching_4r_sells_all_that_remains(history, config, fill):
    """At 4R everything left is sold: by a tranche ordered in that step, or by the OCO
    take-profit resting at the 4R price, which the broker fills first."""
    steps = trace(history.events, config, fill)
    for step, pos in _first_reaching(steps, SPEC_FINAL_R):
        in_flight = pos.orders.sell.open_qty if pos.orders.sell is not None else Decimal(0)
        available = pos.fills.remaining - pos.orders.to_sell - in_flight
        earlier = sum((q for r, _ in SPEC_PARTIALS for q in _ordered(step, pos.key, r)), Decimal(0))
        assert _ordered(step, pos.key, SPEC_FINAL_R) == [available - earlier]
    for step, fill_event in fills(steps):
        owners = [
            p
            for p in step.before.positions.values()
            if p.orders.exit is not None and p.orders.exit.id == fill_event.order_id
        ]
        if not owners:
            continue
        pos = owners[0]
        parts = [r for r in step.records("partial.filled") if r["key"] == pos.key]
        if parts:  # the take-profit leg: it sells everything left, split by milestone
            assert fill_event.qty == pos.fills.remaining, (fill_event, pos.fills.remaining)
            assert sum(r["qty"] for r in parts) == pos.fills.remaining
            assert parts[-1]["milestone"] == SPEC_FINAL_R
            assert pos.key not in step.after.positions
