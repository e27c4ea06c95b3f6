"""A sale the broker took that has not filled within its timeout (SPEC §4, a quiet market):
the shares it does not sell get their stop now rather than after its fill, or, when the
market is already through that stop, follow the sale out at market."""

from __future__ import annotations

from decimal import Decimal as D

from engine import (
    Alert,
    Clock,
    CloseReason,
    EngineState,
    EntryIntent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0
from tests.unit.test_timeouts import STOP_ID, _opened, _sec

TRANCHE_ID = "rt-AAA-1-2-partial"


def _tranche_accepted() -> EngineState:
    """AAA long 10 @ 100 (stop 99): at 2R (102) the stop (101.00 now) is canceled and 5 are
    sold at market; the broker takes the sale; no print fills it."""
    t = step(_opened(), Tick(_sec(1), "AAA", D("102")))
    t = step(t.state, OrderCanceled(_sec(1), STOP_ID))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sale.order_id, sale.qty, sale.type) == (TRANCHE_ID, D(5), OrderType.MARKET)
    return step(t.state, OrderAccepted(_sec(1), TRANCHE_ID)).state


def test_the_shares_an_overdue_sale_does_not_sell_get_their_stop_at_its_timeout():
    """Five seconds on, the sale is overdue: the five other shares get the ladder's stop
    (101.00, OCO with the 4R take-profit) now; the sale's fill, when it comes, sends nothing
    more and leaves the position settled with that stop."""
    state = _tranche_accepted()
    assert not [c for c in step(state, Clock(_sec(5.9))).commands if isinstance(c, SubmitOrder)]
    t = step(state, Clock(_sec(6)))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (stop.type, stop.qty, stop.stop_price, stop.limit_price) == (
        OrderType.OCO, D(5), D("101.00"), D("104.00")
    )  # fmt: skip
    assert stop.ts == _sec(6)
    t = step(t.state, OrderAccepted(_sec(6), stop.order_id))
    t = step(t.state, OrderFilled(_sec(7), TRANCHE_ID, D(5), D("102")))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    pos = t.state.positions["AAA-1"]
    assert (pos.fills.remaining, pos.orders.exit.open_qty, pos.orders.sell) == (5, 5, None)
    assert pos.exposed_since is None and pos.orders.to_sell == 0


def test_an_overdue_sale_beside_a_market_through_the_stop_takes_the_other_shares_out():
    """The market falls through the stop (101.00) while the sale waits: at its timeout a stop
    there would be refused or fill at once, so the five other shares are queued to follow the
    sale out at market, with `invalid_price` saying why and the ladder stopped."""
    state = step(_tranche_accepted(), Tick(_sec(3), "AAA", D("100.90"))).state
    t = step(state, Clock(_sec(6)))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    [conflict] = [
        c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"
    ]  # fmt: skip
    assert (conflict["type"], conflict["resolution"]) == ("invalid_price", "exit_at_market")
    assert (conflict["stop"], conflict["price"]) == (D("101.00"), D("100.90"))
    assert conflict.ts == _sec(6) and "100.90" in conflict["reason"]
    pos = t.state.positions["AAA-1"]
    assert (pos.orders.to_sell, pos.close_reason) == (5, CloseReason.STOP_THROUGH_MARKET)
    assert pos.ladder.trigger is None and pos.orders.exit is None
    # The sale fills: the five queued go at market next, nothing else.
    t = step(t.state, OrderFilled(_sec(7), TRANCHE_ID, D(5), D("100.90")))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sale.type, sale.qty) == (OrderType.MARKET, D(5))


def test_once_the_stop_beside_an_overdue_sale_is_on_its_way_nothing_more_is_sent():
    """The stop for the five other shares went out at the sale's timeout and has no answer
    yet: later events send no second stop (its answer comes first)."""
    state = step(_tranche_accepted(), Clock(_sec(6))).state
    t = step(state, Clock(_sec(12)))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]


def test_a_stop_refused_for_good_beside_an_overdue_sale_sends_the_other_shares_after_it():
    """The stop for the five other shares (101.00, TP 104.00) is refused for good while the
    tranche sale still waits: the operation rolls back beside the sale — the refused target is
    recorded so it is not asked again, no other stop is tried, the ladder stops, and the five
    shares are queued to follow the sale out; its fill sends them at market."""
    t = step(_tranche_accepted(), Clock(_sec(6)))
    [stop] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    refusal = OrderRejected(
        _sec(6), stop.order_id, "HTTP 422 order parameters are invalid", OrderRefusal.PERMANENT
    )
    t = step(t.state, refusal)
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    [alert] = [c for c in t.commands if isinstance(c, Alert)]
    assert (alert.reason, alert.context["resolution"]) == ("order_rejected", "exit_at_market")
    pos = t.state.positions["AAA-1"]
    assert pos.orders.refused == (D("101.00"), D("104.00"))
    assert (pos.orders.to_sell, pos.orders.exit, pos.ladder.trigger) == (5, None, None)
    assert pos.orders.sell is not None and pos.orders.sell.id == TRANCHE_ID
    # Later events ask nothing more of the broker while the sale waits.
    assert not [c for c in step(t.state, Clock(_sec(20))).commands if isinstance(c, SubmitOrder)]
    t = step(t.state, OrderFilled(_sec(7), TRANCHE_ID, D(5), D("102")))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (sale.type, sale.qty, sale.purpose) == (OrderType.MARKET, D(5), "exit")


def test_a_single_share_beside_an_overdue_sale_gets_its_stop_too():
    """Two shares: at 2R one is sold; its sale is overdue and the other share, the only one
    beside it, gets its stop (one share is enough to protect)."""
    state, _ = run_simulation(
        [Tick(T0, "AAA", D("100")), EntryIntent(T0, "AAA", Side.LONG, D("99"), D(2))],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    t = step(state, Tick(_sec(1), "AAA", D("102")))
    t = step(t.state, OrderCanceled(_sec(1), STOP_ID))
    [sale] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert sale.qty == D(1)
    state = step(t.state, OrderAccepted(_sec(1), sale.order_id)).state
    [stop] = [c for c in step(state, Clock(_sec(6))).commands if isinstance(c, SubmitOrder)]
    assert (stop.qty, stop.stop_price) == (D(1), D("101.00"))
