"""Histories the order-protocol machine once shrank to, kept as plain tests: each replays
the rules in order and checks every invariant after each, as the machine does."""

from __future__ import annotations

from engine import Record
from shell.broker.simulated import Faults
from tests.machines.test_order_protocol import OrderProtocol

INVARIANTS = [
    name for name in dir(OrderProtocol)
    if name.startswith(("p11_", "p22_", "every_", "shares_", "the_engine_"))
]  # fmt: skip


def replay(faults: Faults, take_profit: bool, fill: str, rules: list[tuple[str, dict]]):
    machine = OrderProtocol()
    machine.start(faults=faults, take_profit=take_profit, fill=fill)
    for name, args in rules:
        getattr(machine, name)(**args)
        for invariant in INVARIANTS:
            getattr(machine, invariant)()
    return machine


def test_a_cancel_sent_again_after_a_timeout_meets_the_late_confirmation_of_the_first():
    """Two lots; at 1R both stops' cancels are late. AAA-2's times out (2 s) and is sent
    again while the broker's first confirmation is still on its way: the broker answers
    422 already canceled, the engine treats it as canceled (P10 holds: the broker no longer
    works the old stop), and the late confirmation is journaled as a stale answer."""
    machine = replay(Faults(late=0.5, seed=1), False, "same", [
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 20, "symbol": "AAA"}),
        ("clock", {"seconds": 1}),
        ("tick", {"cents": 0, "symbol": "BBB"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
    ])  # fmt: skip
    assert len(INVARIANTS) == 5
    kinds = [r.kind if isinstance(r, Record) else r.reason for r in machine.journal]
    assert "order.timeout" in kinds and "unknown_order" not in kinds
    conflicts = [
        r["type"] for r in machine.journal if getattr(r, "kind", "") == "conflict.detected"
    ]
    assert conflicts == ["already_canceled", "stale_answer"]
    for pos in machine.state.positions.values():  # both stops moved to break-even, accepted
        assert (pos.orders.exit.stop_price, pos.orders.exit.status.value) == (
            pos.ladder.entry,
            "live",
        )


def test_steps_held_through_a_drop_wait_for_the_snapshot_before_going_out():
    """The link drops with AAA-2's new stop in flight (the broker got it; the answer is
    lost) while AAA-3's entry fills. Steps sent on reconnect but before the snapshot would
    be judged by a snapshot taken before they arrived (AAA-3's new stop then looked unknown
    and was sent a second time, beside the first). Now the held steps go out only once the
    snapshot is applied."""
    machine = replay(Faults(partial=0.5, drop=0.2, seed=0), False, "same", [
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("entry", {"qty": 1, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 3, "risk": 20, "symbol": "AAA"}),
        ("entry", {"qty": 3, "risk": 20, "symbol": "AAA"}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
        ("clock", {"seconds": 1}),
        ("tick", {"cents": 0, "symbol": "AAA"}),
    ])  # fmt: skip
    modes = [r["to"] for r in machine.journal if getattr(r, "kind", "") == "mode.changed"]
    assert modes[:3] == ["offline", "recovery", "normal"]
    assert machine.broker.reconnects >= 1
    conflicts = [r for r in machine.journal if getattr(r, "kind", "") == "conflict.detected"]
    assert not conflicts  # nothing the broker had was taken for unknown
