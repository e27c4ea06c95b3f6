"""The journal's contract (tests/journal.py) is in force and says what the README says."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

import engine
import shell.simulate
from engine import Alert, CancelOrder, OrderAction, OrderType, Record, SubmitOrder, Tick
from tests import journal
from tests.strategies import T0

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_step_the_tests_take_is_checked():
    assert engine.step.__name__ == "_checked_step"
    assert shell.simulate.step is engine.step


def test_a_renamed_field_a_missing_one_another_instant_or_an_unknown_kind_fails():
    tick = Tick(T0, "AAA", D(1))
    good = Record("breaker.half_open", T0, {"breaker": "orders"})
    journal.check(tick, [good, Alert(T0, "unknown_order", {"order_id": "x", "event": "fill",
                                                           "count": 2})])  # fmt: skip
    for bad in (
        Record("breaker.half_open", T0, {"BREAKER": "orders"}),
        Record("breaker.half_open", T0, {}),
        Record("breaker.half_open", T0 + timedelta(seconds=1), {"breaker": "orders"}),
        Record("breaker.ajar", T0, {"breaker": "orders"}),
        Alert(T0, "unknown_order", {"order_id": "x"}),
    ):
        with pytest.raises(AssertionError):
            journal.check(tick, [bad])


def test_the_readme_lists_every_record_kind_with_every_field():
    table = README.read_text().split("## Journal records", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            kinds, fields = line.split("|")[1:3]
            for kind in re.findall(r"`([a-z_]+\.[a-z_]+)`", kinds):
                rows[kind] = fields
    missing = {}
    for kind, forms in journal.RECORDS.items():
        assert kind in rows, f"{kind} is not in the README's journal table"
        named = set(re.findall(r"[a-z_]+", rows[kind]))
        unnamed = sorted({f for form in forms for f in form} - named - {"symbol", "key"})
        if unnamed:
            missing[kind] = unnamed
    assert not missing, f"the README's journal table does not name {missing}"


def test_an_order_sent_unjournaled_malformed_or_at_another_instant_fails():
    tick = Tick(T0, "AAA", D(1))
    stop = SubmitOrder(T0, "rt-AAA-1-1-stop", "AAA", OrderAction.SELL, OrderType.STOP, D(10),
                       stop_price=D("99"), purpose="protect")  # fmt: skip
    record = Record("order.submitted", T0, {
        "symbol": "AAA", "key": "AAA-1", "order_id": stop.order_id, "type": "stop",
        "side": "sell", "qty": D(10), "price": D("99"), "stop_price": D("99"),
        "limit_price": None, "purpose": "protect",
    })  # fmt: skip
    journal.check(tick, [stop, record, CancelOrder(T0, "rt-AAA-1-0-stop", "AAA")])
    for bad in (
        [stop],
        [stop, Record("order.submitted", T0, {**record.data, "qty": D(9)})],
        [SubmitOrder(T0 + timedelta(seconds=1), stop.order_id, "AAA", OrderAction.SELL,
                     OrderType.STOP, D(10), stop_price=D("99"), purpose="protect"), record],
        [SubmitOrder(T0, stop.order_id, "AAA", OrderAction.SELL, OrderType.STOP, D(10),
                     purpose="protect"), record],
        [CancelOrder(T0, "", "AAA")],
    ):  # fmt: skip
        with pytest.raises(AssertionError):
            journal.check(tick, bad)
