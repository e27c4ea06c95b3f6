"""Answer timeouts by hand (SPEC §4): a cancel not confirmed in 2 s is sent again, a tranche
not filled in 5 s raises an alert; both fire on later events, never on a clock read."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import (
    Alert,
    CancelOrder,
    Clock,
    EngineState,
    EntryIntent,
    OrderCanceled,
    OrderFilled,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0

STOP_ID = "rt-AAA-1-1-stop"


def _sec(n: float):
    return T0 + timedelta(seconds=n)


def _opened() -> EngineState:
    """AAA and BBB long 10 @ 100, stops 99, both stops accepted."""
    state, _ = run_simulation(
        [
            Tick(T0, "AAA", D("100")),
            Tick(T0, "BBB", D("50")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
            EntryIntent(T0, "BBB", Side.LONG, D("49"), D(10)),
        ],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    return state


def _tranche_sent() -> EngineState:
    """AAA (long 10 @ 100, stop 99) at 2R: the stop is canceled, and once that is confirmed 5
    shares are sent to be sold at market (no answer yet)."""
    t = step(_opened(), Tick(_sec(1), "AAA", D("102")))
    return step(t.state, OrderCanceled(_sec(1), STOP_ID)).state


def _kinds(commands):
    return [c.kind if isinstance(c, Record) else type(c).__name__ for c in commands]


def test_an_unconfirmed_cancel_is_sent_again_every_two_seconds_three_times_then_alerted():
    """At 1R the stop's cancel goes out and no answer comes. Each event two seconds after the
    last try sends the same cancel again (`order.timeout`, action `cancel_resent`); after
    three the operator gets `ack_timeout` and nothing more is sent; the confirmation, when it
    comes, lets the new stop out."""
    t = step(_opened(), Tick(_sec(1), "AAA", D("101")))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]
    state = t.state
    assert step(state, Clock(_sec(2.9))).commands == ()  # not yet 2 s
    resent = []
    for n, at in enumerate((3, 5, 7), start=1):
        t = step(state, Clock(_sec(at)))
        [record] = [c for c in t.commands if isinstance(c, Record)]
        assert (record.kind, record["action"], record["attempt"]) == (
            "order.timeout",
            "cancel_resent",
            n,
        )
        assert record["awaited"] == "cancel_confirmation" and record["order_id"] == STOP_ID
        assert record["waited_ms"] == D((at - 1) * 1000)
        resent += [c.order_id for c in t.commands if isinstance(c, CancelOrder)]
        state = t.state
    assert resent == [STOP_ID] * 3
    t = step(state, Clock(_sec(9)))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "ack_timeout" and alert.context["attempt"] == 4
    assert alert.context["order_id"] == STOP_ID and alert.context["waited_ms"] == D(8000)
    assert not [c for c in t.commands if isinstance(c, CancelOrder | SubmitOrder)]
    state = t.state
    assert step(state, Clock(_sec(60))).commands == ()  # alerted once; it keeps waiting
    t = step(state, OrderCanceled(_sec(61), STOP_ID))
    [new_stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert new_stop.stop_price == D("100.00")
    assert t.state.positions["AAA-1"].awaited is None


def test_a_timeout_fires_on_its_own_symbol_or_the_clock_never_on_another_symbol():
    """P30 stays whole: BBB's ticks do not fire AAA's timeout; AAA's own next tick does."""
    state = step(_opened(), Tick(_sec(1), "AAA", D("101"))).state
    t = step(state, Tick(_sec(4), "BBB", D("50")))
    assert "order.timeout" not in _kinds(t.commands)
    t = step(t.state, Tick(_sec(4), "AAA", D("101")))
    assert "order.timeout" in _kinds(t.commands)
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]


def test_a_tranche_not_filled_in_five_seconds_is_alerted_and_never_sold_twice():
    """At 2R the exits are canceled and half is sold at market; no fill comes. Five seconds
    later `ack_timeout` (awaited `fill`) names the order; no second sell is ever sent, and
    the fill, when it comes, re-arms the stop for the other half."""
    state = step(_opened(), Tick(_sec(1), "AAA", D("102"))).state
    t = step(state, OrderCanceled(_sec(1), STOP_ID))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sell.type.value, sell.qty) == ("market", D(5))
    state = t.state
    assert "order.timeout" not in _kinds(step(state, Clock(_sec(5.9))).commands)
    t = step(state, Clock(_sec(6)))
    [record] = [c for c in t.commands if isinstance(c, Record)]
    assert (record["awaited"], record["action"], record["order_id"]) == (
        "fill",
        "alerted",
        sell.order_id,
    )
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "ack_timeout" and alert.context["awaited"] == "fill"
    later = step(t.state, Clock(_sec(30)))
    assert not [c for c in later.commands if isinstance(c, SubmitOrder | Alert)]
    t = step(later.state, OrderFilled(_sec(31), sell.order_id, D(5), D("102")))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert stop.qty == D(5)


def test_a_resent_cancel_waits_a_whole_timeout_again_before_the_next():
    """After the first resend at 3 s the next is due at 5 s, not at once: events at 3.5 and
    4.9 s send nothing."""
    state = step(_opened(), Tick(_sec(1), "AAA", D("101"))).state
    t = step(state, Clock(_sec(3)))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [STOP_ID]
    assert t.state.positions["AAA-1"].awaited.due == _sec(5)
    for at in (3.5, 4.9):
        assert step(t.state, Clock(_sec(at))).commands == ()
    assert [c.order_id for c in step(t.state, Clock(_sec(5))).commands
            if isinstance(c, CancelOrder)] == [STOP_ID]  # fmt: skip


def test_a_stale_price_is_alerted_once_with_its_age_and_the_positions_it_leaves_blind():
    """AAA and BBB last printed at 0 s. At 60 s nothing is stale (not over 60 s); at 60.5 s
    both are, each alerted once with its last price, time, age and lots; a new BBB print
    starts its clock again."""
    state = _opened()
    assert step(state, Clock(_sec(60))).commands == ()
    t = step(state, Clock(_sec(60.5)))
    assert t.commands == tuple(
        Alert(_sec(60.5), "stale_price", {"symbol": sym, "last_price": D(price), "last_ts": _sec(0),
                                          "age_s": 60.5, "positions": [f"{sym}-1"]})
        for sym, price in (("AAA", "100"), ("BBB", "50"))
    )  # fmt: skip
    assert step(t.state, Clock(_sec(90))).commands == ()
    t = step(t.state, Tick(_sec(91), "BBB", D("50.5")))
    [again] = step(t.state, Clock(_sec(151.5))).commands
    assert (again.context["symbol"], again.context["age_s"]) == ("BBB", 60.5)


def test_a_position_with_no_print_at_all_is_stale_from_its_opening():
    state = _opened()
    state = state.evolve(marks=state.marks.delete("AAA"))
    t = step(state, Clock(_sec(60.5)))
    [aaa] = [a for a in t.commands if a.context["symbol"] == "AAA"]
    assert (aaa.context["last_price"], aaa.context["last_ts"]) == (None, _sec(0))
    assert t.state.stale["AAA"] == _sec(0)
