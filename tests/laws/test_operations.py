"""P10 Cancel before create, P13 All or nothing, P21 Bracket rollback, P22 One operation per
position, P23 Post-operation verification: the ledger (tests/protocol.py) checks each at the
moment it can first be broken, over histories against a broker that refuses orders."""

from __future__ import annotations

from hypothesis import given

from engine import OrderType
from tests.harness import trace
from tests.protocol import Ledger
from tests.strategies import configs, fault_models, histories, market_fills


def _ledger(history, config, fill, faults) -> Ledger:
    ledger = Ledger()
    for step in trace(history.events, config, fill, faults):
        ledger.event(step.event)
        ledger.step(step.after, step.commands)
    return ledger


@given(histories(), configs(), market_fills(), fault_models())
def test_p10_no_new_stop_before_the_old_ones_cancel_is_confirmed(history, config, fill, faults):
    """Every protective order goes out while no other protective order of its position is
    working at the broker (its cancel confirmed, or it filled)."""
    _ledger(history, config, fill, faults)  # Ledger._sent asserts it at each send


@given(histories(), configs(), market_fills(), fault_models())
def test_p22_one_operation_and_one_step_of_it_at_a_time(history, config, fill, faults):
    """No order command for a position while another of its commands is unanswered."""
    _ledger(history, config, fill, faults)  # Ledger._sent asserts it at each send


@given(histories(), configs(), market_fills(), fault_models())
def test_p23_an_operation_is_done_only_when_its_orders_are_confirmed(history, config, fill, faults):
    """`operation.done` comes only when every order the operation touched is answered and the
    protection works at the broker for every remaining share, at the stop it should."""
    ledger = _ledger(history, config, fill, faults)
    for record in ledger.operations:
        assert record["order_ids"] and record["started"] <= record.ts
        # The window may have opened before the operation (an entry filled in parts).
        assert record["unprotected_ms"] >= 0 and record["duration_ms"] >= 0, record


@given(histories(), configs(), market_fills(), fault_models())
def test_p13_every_operation_ends_applied_or_with_the_previous_protection_restored(
    history, config, fill, faults
):
    """Outcomes are applied, rolled back (to exactly the protection accepted before) or
    closed; a permanent refusal is never answered with nothing or a blind market order."""
    ledger = _ledger(history, config, fill, faults)
    refused = [o for o in ledger.orders.values() if o.purpose == "restore"]
    assert len(ledger.rollbacks) <= len(refused)


@given(histories(), configs(), market_fills(), fault_models())
def test_p21_a_refused_bracket_change_rolls_its_take_profit_back_too(history, config, fill, faults):
    """When the stop of an OCO bracket cannot be moved, the restored bracket carries the old
    take-profit leg with the old stop: the pair changes together or not at all."""
    ledger = _ledger(history, config, fill, faults)
    for before, restored in ledger.rollbacks:
        assert restored.type is before.type
        if before.type is OrderType.OCO:
            assert restored.limit_price == before.limit_price is not None
