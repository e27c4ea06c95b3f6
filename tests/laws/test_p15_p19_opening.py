"""P15 Initialization complete, P19 Initial state."""

from hypothesis import given

from engine import Protection
from tests.harness import trace
from tests.strategies import configs, histories, market_fills


def _openings(history, config, fill):
    for step in trace(history.events, config, fill):
        for record in step.records("position.opened"):
            yield step, record


@given(histories(), configs(), market_fills())
def test_p15_an_opened_position_records_entry_qty_stop_and_ts(history, config, fill):
    """position.opened carries entry, qty, initial stop and ts, and the state holds the same."""
    for step, record in _openings(history, config, fill):
        assert record["stop"] == history.stop
        assert record["qty"] == history.qty
        assert record["entry"] == step.event.price
        assert record.ts == step.event.ts == record["opened"]
        pos = step.after.positions[history.symbol]
        assert (pos.entry, pos.original_qty, pos.initial_stop, pos.opened) == (
            record["entry"],
            record["qty"],
            record["stop"],
            record.ts,
        )


@given(histories(), configs(), market_fills())
def test_p19_a_new_position_starts_in_initial_risk(history, config, fill):
    """Every position opens in INITIAL_RISK."""
    opened = 0
    for step, record in _openings(history, config, fill):
        opened += 1
        assert record["protection"] == Protection.INITIAL_RISK.value
        assert step.after.positions[history.symbol].protection is Protection.INITIAL_RISK
    assert opened == 1
