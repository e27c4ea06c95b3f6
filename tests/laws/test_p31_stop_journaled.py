"""P31 Stop move journaled."""

from collections import defaultdict

from hypothesis import given

from tests.harness import all_records, trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p31_every_stop_sent_is_explained_by_a_stop_moved_record(history, config, fill):
    """Each protective stop price sent after the first was announced by a stop.moved record
    (old, new, reason) of that position before it was sent."""
    steps = trace(history.events, config, fill)
    announced = defaultdict(set)
    first_stop = {}
    for step in steps:
        for record in step.records("stop.moved"):
            assert record["reason"] and record["old"] is not None and record["new"] is not None
            announced[record["key"]].add(record["new"])
        for record in step.records("order.submitted"):
            if record["purpose"] != "protect":
                continue
            key, stop = record["key"], record["stop_price"]
            first_stop.setdefault(key, stop)
            assert stop == first_stop[key] or stop in announced[key], (key, stop)
    opened = {r["key"]: r["order_stop"] for r in all_records(steps, "position.opened")}
    for key, stop in first_stop.items():
        assert stop == opened[key] or stop in announced[key]
