"""P2 Stop monotonicity."""

import itertools
from collections import defaultdict

from hypothesis import given

from engine import Side
from tests.harness import all_records, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p02_stops_never_move_against_the_position(history, config, fill):
    """Successive stop prices of a position, in records and in orders sent, only tighten."""
    steps = trace(history.events, config, fill)
    sides = {r["key"]: Side(r["side"]) for r in all_records(steps, "position.opened")}
    moves = defaultdict(list)
    for record in all_records(steps, "stop.moved"):
        moves[record["key"]].append(record)
    for key, records in moves.items():
        sign = sides[key].sign
        for prev, cur in itertools.pairwise(records):
            assert cur["old"] == prev["new"], (prev, cur)
        for record in records:
            assert (record["new"] - record["old"]) * sign > 0, record
    sent = defaultdict(list)
    for record in all_records(steps, "order.submitted"):
        if record["purpose"] == "protect":
            sent[record["key"]].append(record["stop_price"])
    for key, stops in sent.items():
        sign = sides[key].sign
        for a, b in itertools.pairwise(stops):
            assert (b - a) * sign >= 0, (key, stops)
