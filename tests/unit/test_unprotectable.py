"""When the broker refuses every protection it is offered, the shares are sold at market,
with the reason, rather than held bare; a refused market exit halts for an operator."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from engine import (
    Alert,
    CloseReason,
    EngineState,
    EntryIntent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    Record,
    Side,
    SubmitOrder,
    Tick,
    fold,
    step,
)
from tests.strategies import T0

REFUSED = "HTTP 422 order parameters are invalid"


def _filled() -> EngineState:
    """AAA long 10 @ 100, stop 99: the entry filled, its first stop just sent."""
    state, _ = fold(
        EngineState.empty(),
        [
            Tick(T0, "AAA", D("100")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
            OrderAccepted(T0, "rt-AAA-1-entry"),
            OrderFilled(T0, "rt-AAA-1-entry", D(10), D("100")),
        ],
    )
    return state


def test_a_refused_first_stop_sells_the_shares_at_market_and_says_why():
    t = step(_filled(), OrderRejected(T0, "rt-AAA-1-1-stop", REFUSED, OrderRefusal.PERMANENT))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sell.type.value, sell.action.value, sell.qty) == ("market", "sell", D(10))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "order_rejected" and alert.context["resolution"] == "exit_at_market"
    assert not t.state.positions["AAA-1"].halted
    t = step(t.state, OrderAccepted(T0, sell.order_id))
    t = step(t.state, OrderFilled(T0, sell.order_id, D(10), D("99.90")))
    [closed] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.closed"]
    assert closed["reason"] == "protection_refused"
    assert "AAA-1" not in t.state.positions


def test_a_refused_restore_sells_at_market_too():
    """At 1R the stop move is refused, the old stop's restore is refused as well."""
    state = step(_filled(), OrderAccepted(T0, "rt-AAA-1-1-stop")).state
    state = step(state, Tick(T0, "AAA", D("101"))).state  # cancel 1-1, then new stop 1-2
    t = step(state, OrderCanceled(T0, "rt-AAA-1-1-stop"))
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderRejected(T0, new.order_id, REFUSED, OrderRefusal.PERMANENT))
    [restore] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    # the old protection whole: its stop and its take-profit (an OCO)
    assert (restore.purpose, restore.stop_price, restore.limit_price) == (
        "restore", D("99.00"), D("104.00")
    )  # fmt: skip
    t = step(t.state, OrderRejected(T0, restore.order_id, REFUSED, OrderRefusal.PERMANENT))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sell.type.value, sell.qty) == ("market", D(10))
    assert t.state.positions["AAA-1"].close_reason is CloseReason.PROTECTION_REFUSED


def test_a_refused_market_exit_is_sent_again_and_never_held_bare():
    """The exit itself refused for good (a halted stock, a closed market): it is sent again
    after 0.5, 1 and 2 s, then `retries_exhausted` and a new exit order; the position is
    never halted with its shares unprotected, and each refusal counts for the breaker."""
    t = step(_filled(), OrderRejected(T0, "rt-AAA-1-1-stop", REFUSED, OrderRefusal.PERMANENT))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    state, ts, sent = t.state, T0, []
    for delay in ("0.5", "1", "2"):
        t = step(state, OrderRejected(ts, sell.order_id, REFUSED, OrderRefusal.PERMANENT))
        [retry] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.retry"]
        assert retry["delay"] == D(delay)
        ts = retry["due"]
        t = step(t.state, Tick(ts, "AAA", D("99.95")))
        sent += [c for c in t.commands if isinstance(c, SubmitOrder)]
        state = t.state
    assert [c.order_id for c in sent] == [sell.order_id] * 3
    assert state.link.failures == 3
    t = step(state, OrderRejected(ts, sell.order_id, REFUSED, OrderRefusal.PERMANENT))
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert alert.reason == "retries_exhausted"
    assert alert.context["resolution"] == "retry_as_new_operation"
    [again] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (again.type.value, again.qty) == ("market", D(10)) and again.order_id != sell.order_id
    assert not t.state.positions["AAA-1"].halted


def test_a_position_sold_because_protection_was_refused_climbs_no_further():
    """Once the restore is refused too, the shares go at market: the refused target is
    forgotten (nothing is held back for a new trigger), the ladder stops (a print at 3R moves
    no stop and orders no tranche while the sale works), and only the one sale is out."""
    state = step(_filled(), OrderAccepted(T0, "rt-AAA-1-1-stop")).state
    state = step(state, Tick(T0, "AAA", D("101"))).state
    t = step(state, OrderCanceled(T0, "rt-AAA-1-1-stop"))
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderRejected(T0, new.order_id, REFUSED, OrderRefusal.PERMANENT))
    [restore] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderRejected(T0, restore.order_id, REFUSED, OrderRefusal.PERMANENT))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    pos = t.state.positions["AAA-1"]
    assert pos.orders.refused is None and pos.ladder.trigger is None
    assert (pos.orders.to_sell, pos.orders.sell.qty) == (0, D(10))
    t = step(t.state, OrderAccepted(T0, sell.order_id))
    t = step(t.state, Tick(T0, "AAA", D("103")))
    kinds = [c.kind for c in t.commands if isinstance(c, Record)]
    assert "stop.moved" not in kinds and "partial.ordered" not in kinds
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]


def test_a_refused_stop_move_with_the_market_through_the_old_stop_exits_at_market():
    """At 1R the stop's move is refused for good after the price fell through the old stop
    (99.00) meanwhile: putting that stop back would be refused or fill at once, so the
    shares go at market with `invalid_price` saying why, and no restore is sent."""
    state = step(_filled(), OrderAccepted(T0, "rt-AAA-1-1-stop")).state
    state = step(state, Tick(T0, "AAA", D("101"))).state
    t = step(state, OrderCanceled(T0, "rt-AAA-1-1-stop"))
    [new] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    later = T0 + timedelta(seconds=1)
    state = step(t.state, Tick(later, "AAA", D("98.90"))).state
    t = step(state, OrderRejected(later, new.order_id, REFUSED, OrderRefusal.PERMANENT))
    [sell] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sell.type.value, sell.qty, sell.purpose, sell.ts) == ("market", D(10), "exit", later)
    [conflict] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert (conflict["type"], conflict["stop"], conflict["price"]) == (
        "invalid_price", D("99.00"), D("98.90")
    )  # fmt: skip
    assert conflict.ts == later
    pos = t.state.positions["AAA-1"]
    assert pos.close_reason is CloseReason.STOP_THROUGH_MARKET
