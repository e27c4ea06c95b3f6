"""P15 Initialization complete, P19 Initial state."""

from hypothesis import given

from engine import Protection
from tests.harness import trace
from tests.strategies import configs, histories, market_fills


@given(histories(), configs(), market_fills())
def test_p15_an_opened_position_records_entry_qty_stop_and_ts(history, config, fill):
    """position.opened carries the accepted entry's qty and stop, the fill's price and ts, and
    the state holds the same."""
    steps = trace(history.events, config, fill)
    accepted = {r["key"]: r for s in steps for r in s.records("entry.accepted")}
    for step in steps:
        for record in step.records("position.opened"):
            intent = accepted[record["key"]]
            assert (record["stop"], record["qty"]) == (intent["stop"], intent["qty"])
            assert record["entry"] == step.event.price
            assert record.ts == step.event.ts == record["opened"]
            pos = step.after.positions[record["key"]]
            assert (pos.ladder.entry, pos.fills.original, pos.ladder.initial_stop, pos.opened) == (
                record["entry"],
                record["qty"],
                record["stop"],
                record.ts,
            )


@given(histories(), configs(), market_fills())
def test_p19_a_new_position_starts_in_initial_risk(history, config, fill):
    """Every position opens in INITIAL_RISK, and every accepted entry that fills opens one."""
    steps = trace(history.events, config, fill)
    opened = [(s, r) for s in steps for r in s.records("position.opened")]
    for step, record in opened:
        assert record["protection"] == Protection.INITIAL_RISK.value
        assert step.after.positions[record["key"]].ladder.protection is Protection.INITIAL_RISK
    filled_entries = {
        s.event.order_id
        for s in steps
        if getattr(s.event, "order_id", "").endswith("-entry")
        and type(s.event).__name__ == "OrderFilled"
    }
    assert len(opened) == len(filled_entries) >= 1
