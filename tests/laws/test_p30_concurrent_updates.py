"""P30 Concurrent updates."""

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from engine import Record, SubmitOrder
from tests.harness import trace
from tests.strategies import T0, configs, histories, interleave, market_fills


def _per_symbol(steps):
    out = defaultdict(list)
    for step in steps:
        for command in step.commands:
            if isinstance(command, Record | SubmitOrder):
                out[command.symbol].append(command)
    return out


@given(
    histories(symbol="AAA", start=T0),
    histories(symbol="BBB", start=T0),
    st.lists(st.booleans(), max_size=100),
    configs(),
    market_fills(),
)
def test_p30_ticks_of_different_symbols_commute(one, two, choices, config, fill):
    """Any interleaving of two symbols' events yields the same per-symbol states and commands.
    (Only the recorded events: a heartbeat's clock events concern every symbol at once.)"""
    first = trace(list(one.events) + list(two.events), config, fill, heartbeat=False)
    mixed = trace(
        interleave(list(one.events), list(two.events), choices), config, fill, heartbeat=False
    )
    assert _per_symbol(first) == _per_symbol(mixed)
    a, b = first[-1].after, mixed[-1].after
    for symbol in ("AAA", "BBB"):
        assert a.in_symbol(symbol) == b.in_symbol(symbol)
        assert a.marks.get(symbol) == b.marks.get(symbol)
