"""What the journal says when the broker contradicts the engine (SPEC §4, §6): the
`divergence.detected` record of each kind of evidence, with what ratchet believed and what
the broker said, and the one snapshot asked for (asked again after 5 s without an answer)."""

from __future__ import annotations

from decimal import Decimal as D

from engine import (
    Alert,
    CancelRejected,
    Clock,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    Record,
    Tick,
    step,
)
from engine.commands import RequestSnapshot
from engine.events import CancelRefusal
from tests.unit.test_timeouts import STOP_ID, _opened, _sec, _tranche_sent

TRANCHE_ID = "rt-AAA-1-2-partial"


def _divergences(commands) -> list[Record]:
    return [c for c in commands if isinstance(c, Record) and c.kind == "divergence.detected"]


def _asked(commands) -> list[RequestSnapshot]:
    return [c for c in commands if isinstance(c, RequestSnapshot)]


def test_a_fill_of_an_unknown_order_is_journaled_and_one_snapshot_is_asked_for():
    t = step(_opened(), OrderFilled(_sec(1), "bot-77", D(3), D("100.50")))
    assert list(t.commands) == [
        Record(
            "divergence.detected",
            _sec(1),
            {
                "symbol": "",
                "key": "",
                "evidence": "fill of an unknown order",
                "believed": {"order_id": "bot-77", "known": False},
                "broker": {"order_id": "bot-77", "qty": D(3), "price": D("100.50")},
            },
        ),
        RequestSnapshot(_sec(1), "fill of an unknown order", ()),
    ]
    assert t.state.link.snapshot_asked == _sec(1)
    assert t.state.due <= _sec(6)
    # a second one while the snapshot is awaited is journaled, not asked for again
    t = step(t.state, OrderFilled(_sec(2), "bot-78", D(1), D("100.40")))
    assert [r["broker"]["order_id"] for r in _divergences(t.commands)] == ["bot-78"]
    assert _asked(t.commands) == []
    assert t.state.link.snapshot_asked == _sec(1)
    # no answer in 5 s: asked again, once
    assert _asked(step(t.state, Clock(_sec(5.9))).commands) == []
    t = step(t.state, Clock(_sec(6)))
    assert _asked(t.commands) == [RequestSnapshot(_sec(6), "snapshot not received", ())]
    assert t.state.link.snapshot_asked == _sec(6)
    assert _asked(step(t.state, Clock(_sec(7))).commands) == []


def test_a_fill_beyond_the_shares_a_lot_counts_is_evidence_about_its_symbol():
    t = step(_opened(), OrderFilled(_sec(1), STOP_ID, D(12), D("99")))
    [record] = _divergences(t.commands)
    assert record == Record(
        "divergence.detected",
        _sec(1),
        {"symbol": "AAA", "key": "AAA-1", "evidence": "fill beyond the shares held",
         "believed": {"qty": D(10)},
         "broker": {"order_id": STOP_ID, "qty": D(12), "price": D("99")}},
    )  # fmt: skip
    assert _asked(t.commands) == [RequestSnapshot(_sec(1), "fill beyond the shares held", ("AAA",))]
    # the whole lot's count is what it held, not less
    assert not _divergences(step(_opened(), OrderFilled(_sec(1), STOP_ID, D(10), D("99"))).commands)


def test_a_cancel_of_an_order_the_broker_never_heard_of_holds_the_position_for_the_snapshot():
    t = step(_opened(), Tick(_sec(1), "AAA", D("101")))  # 1R: the stop's cancel goes out
    t = step(t.state, CancelRejected(_sec(2), STOP_ID, "order not found", CancelRefusal.NOT_FOUND))
    [record] = _divergences(t.commands)
    assert record == Record(
        "divergence.detected",
        _sec(2),
        {"symbol": "AAA", "key": "AAA-1", "evidence": "order not found at the broker",
         "believed": {"order_id": STOP_ID, "working": True},
         "broker": {"order_id": STOP_ID, "reason": "order not found"}},
    )  # fmt: skip
    assert _asked(t.commands) == [
        RequestSnapshot(_sec(2), "order not found at the broker", ("AAA",))
    ]
    assert t.state.positions["AAA-1"].reconciling == _sec(2)


def _locked(available: D, existing: D | None) -> list[Record]:
    refusal = OrderRejected(
        _sec(2), TRANCHE_ID, "insufficient qty", OrderRefusal.SHARES_LOCKED, available, existing
    )
    t = step(_tranche_sent(), refusal)
    found = _divergences(t.commands)
    if found:
        assert _asked(t.commands) == [
            RequestSnapshot(_sec(2), "broker holds fewer shares", ("AAA",))
        ]
        assert t.state.positions["AAA-1"].reconciling == _sec(2)
    else:
        assert t.state.positions["AAA-1"].reconciling is None
    return found


def test_a_403_saying_the_broker_holds_fewer_shares_than_ratchet_counts_is_divergence():
    assert _locked(D(0), D(10)) == []  # all ten are there, held by something for now
    [record] = _locked(D(0), D(9))
    assert record == Record(
        "divergence.detected",
        _sec(2),
        {"symbol": "AAA", "key": "AAA-1", "evidence": "broker holds fewer shares",
         "believed": {"qty": D(10)},
         "broker": {"available": D(0), "existing": D(9), "reason": "insufficient qty"}},
    )  # fmt: skip


def test_without_the_holding_fewer_shares_free_than_nothing_else_holds_is_divergence():
    assert _locked(D(10), None) == []  # as free as ratchet believes: a lock that passes
    [record] = _locked(D(9), None)
    assert record["broker"] == {"available": D(9), "existing": None, "reason": "insufficient qty"}


def test_an_accepted_order_answer_of_an_unknown_id_is_not_divergence():
    t = step(_opened(), OrderAccepted(_sec(1), "bot-1"))
    assert _divergences(t.commands) == [] and _asked(t.commands) == []


def test_answers_about_orders_ratchet_never_sent_are_alerted_with_what_came():
    state = _opened()
    for event, what in [
        (OrderAccepted(_sec(1), "bot-1"), "accepted"),
        (OrderCanceled(_sec(1), "bot-1"), "canceled"),
        (CancelRejected(_sec(1), "bot-1", "no"), "cancel rejected"),
        (OrderRejected(_sec(1), "bot-1", "no"), "rejected"),
    ]:
        t = step(state, event)
        assert list(t.commands) == [
            Alert(_sec(1), "unknown_order", {"order_id": "bot-1", "event": what})
        ]
        assert t.state.positions == state.positions
