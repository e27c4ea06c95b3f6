"""P33 Metrics exposure."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given

from engine import OrderFilled, Record, Tick, metrics_view
from engine.ids import key_of, symbol_of
from tests.harness import trace
from tests.oracle import r_of
from tests.strategies import T0, configs, histories, market_fills


def _opening(record: Record) -> tuple[object, str, int]:
    """SPEC §3's opening order, read off a `position.opened` record."""
    key = str(record["key"])
    symbol, _, n = key.rpartition("-")
    return record["opened"], symbol, int(n)


@given(
    histories(symbol="AAA", start=T0),
    histories(symbol="BBB", start=T0 + timedelta(milliseconds=500)),
    configs(),
    market_fills(),
)
def test_p33_every_open_position_appears_with_its_r_and_state_and_nothing_else(
    one, two, config, fill
):
    """After every step, the metrics view lists exactly the positions opened and not yet
    closed (by their records), in opening order; each with SPEC's R at its symbol's last price
    (a print or a fill), that price's time, and the protection state its last
    `position.state` record named."""
    events = sorted([*one.events, *two.events], key=lambda e: e.ts)
    opened: dict[str, Record] = {}
    state_of: dict[str, str] = {}
    last: dict[str, tuple[object, object]] = {}  # symbol -> (ts, price)
    seen = 0
    for step in trace(events, config, fill):
        event = step.event
        if isinstance(event, Tick):
            last[event.symbol] = (event.ts, event.price)
        elif isinstance(event, OrderFilled):
            last[symbol_of(key_of(event.order_id))] = (event.ts, event.price)
        for record in step.commands:
            if not isinstance(record, Record):
                continue
            key = str(record.data.get("key", ""))
            if record.kind == "position.opened" and "added" not in record.data:
                opened[key] = record
                state_of[key] = str(record["protection"])
            elif record.kind == "position.state":
                state_of[key] = str(record["new"])
            elif record.kind == "position.closed":
                del opened[key]
        view = metrics_view(step.after)
        expected = sorted(opened, key=lambda k: _opening(opened[k]))
        assert [row.key for row in view.positions] == expected
        for row in view.positions:
            pos = step.after.positions[row.key]
            ts, price = last[row.symbol]
            assert (row.as_of, row.price) == (ts, price), row.key
            if pos.risk > 0:
                assert row.r == r_of(price, pos.ladder.entry, pos.ladder.initial_stop, pos.side)
            else:  # filled at or through its stop: no risk to measure, R is 0, never negative
                assert row.r == 0
            assert row.protection.value == state_of[row.key]
            assert row.symbol == opened[row.key]["symbol"]
            assert row.side.value == opened[row.key]["side"]
        counts = dict(view.by_protection)
        assert sum(counts.values()) == len(expected)
        for name in {state_of[k] for k in expected}:
            assert sum(1 for k in expected if state_of[k] == name) == next(
                n for p, n in counts.items() if p.value == name
            )
        seen += len(view.positions)
    assert seen > 0  # some step had an open position to show
