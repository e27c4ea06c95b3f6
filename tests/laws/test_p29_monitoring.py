"""P29 Monitoring frequency."""

from __future__ import annotations

from datetime import timedelta

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st

from engine import Alert, Clock, OrderFilled, Tick
from engine.ids import key_of, symbol_of
from tests.harness import trace
from tests.strategies import T0, configs, histories


@st.composite
def with_clocks(draw: st.DrawFn) -> list:
    """Two symbols' histories, re-timed with gaps of 1 s to 3 min, and clock events between."""
    events = [*draw(histories(symbol="AAA")).events, *draw(histories(symbol="BBB")).events]
    out, ts = [], T0
    for event in events:
        ts += timedelta(seconds=draw(st.sampled_from([1, 20, 59, 61, 180])))
        out.append(evolve(event, ts=ts))
        if draw(st.booleans()):
            ts += timedelta(seconds=draw(st.sampled_from([1, 30, 60, 61, 240])))
            out.append(Clock(ts))
    return out


@given(with_clocks(), configs())
def test_p29_every_clock_event_rechecks_every_position(events, config):
    """At each clock event, each symbol with open positions whose last price (a print or a
    fill) is over 60 s old
    gets one stale_price alert for that price (not again for the same price), and no other
    symbol gets one."""
    alerted: dict[str, object] = {}
    last_tick: dict[str, object] = {}
    for step in trace(events, config, "same"):
        if isinstance(step.event, Tick):
            last_tick[step.event.symbol] = step.event.ts
        if isinstance(step.event, OrderFilled):  # a fill is a price too (SPEC §3)
            last_tick[symbol_of(key_of(step.event.order_id))] = step.event.ts
        if not isinstance(step.event, Clock):
            continue
        now = step.event.ts
        expected = set()
        for symbol, book in step.before.books.items():
            since = last_tick.get(symbol)
            if since is None:
                since = min(step.before.positions[k].opened for k in book.keys)
            if now - since > timedelta(seconds=60) and alerted.get(symbol) != since:
                expected.add(symbol)
                alerted[symbol] = since
        got = {
            c.context["symbol"]
            for c in step.commands
            if isinstance(c, Alert) and c.reason == "stale_price"
        }
        assert got == expected, (now, got, expected)
