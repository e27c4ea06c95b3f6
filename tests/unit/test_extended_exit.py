"""Outside the regular session (SPEC §3, ALPACA.md §1.11): the watched stop's exit goes as an
extended-hours limit `extended_offset` through the print, on the price grid, rounded toward
the market; it is sent again only when the market leaves it by a whole offset more, and at
the open it is withdrawn and the shares go at market."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Alert,
    CancelOrder,
    CloseReason,
    Config,
    EngineState,
    EntryIntent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    PriceGrid,
    ProtectionConfig,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.hours import watched_exit
from engine.orders import Extended, extended_limit
from tests.laws.test_market_hours import SHORT, T0
from tests.unit.test_timeouts import _sec, _tranche_sent

GRID = PriceGrid()
OFFSET = D("0.002")  # the default `extended_offset`


def test_the_limit_is_an_offset_through_the_print_rounded_toward_the_market():
    ext = Extended(OFFSET, GRID)
    assert extended_limit(D("98.50"), True, ext) == D("98.30")  # 98.303 down
    assert extended_limit(D("101.50"), False, ext) == D("101.71")  # 101.703 up
    assert extended_limit(D("100"), True, ext) == D("99.80")  # exact: stays
    assert extended_limit(D("100"), False, ext) == D("100.20")
    # Below $1 the grid is 0.0001: 0.80 x 0.998 = 0.7984, 0.80 x 1.002 = 0.8016.
    assert extended_limit(D("0.80"), True, ext) == D("0.7984")
    assert extended_limit(D("0.80"), False, ext) == D("0.8016")
    # A limit that would round to nothing is one increment.
    assert extended_limit(D("0.0001"), True, ext) == D("0.0001")
    # With a wider offset: 50 x 0.95 = 47.50.
    assert extended_limit(D("50"), True, Extended(D("0.05"), GRID)) == D("47.50")


def _s(seconds: float):
    return T0 + timedelta(seconds=seconds)


def _sent(commands) -> list[SubmitOrder]:
    return [c for c in commands if isinstance(c, SubmitOrder)]


def _watched_exit() -> tuple[EngineState, SubmitOrder]:
    """AAA long 10 @ 100, stop 99, opened in the short session (closes at +4 s); at +6 s a
    print at 98.50 goes through the watched stop: the broker stop is canceled and the exit
    goes as a limit at 98.30; the broker takes it."""
    state = EngineState.empty(Config(protection=ProtectionConfig(take_profit=False), hours=SHORT))
    for event in (
        Tick(_s(0), "AAA", D("100")),
        EntryIntent(_s(0), "AAA", Side.LONG, D("99"), D(10)),
        OrderAccepted(_s(0), "rt-AAA-1-entry"),
        OrderFilled(_s(1), "rt-AAA-1-entry", D(10), D("100")),
        OrderAccepted(_s(1), "rt-AAA-1-1-stop"),
        Tick(_s(6), "AAA", D("98.50")),
    ):
        state = step(state, event).state
    t = step(state, OrderCanceled(_s(6), "rt-AAA-1-1-stop"))
    [sale] = _sent(t.commands)
    assert (sale.type, sale.qty, sale.limit_price, sale.extended_hours) == (
        OrderType.LIMIT, D(10), D("98.30"), True
    )  # fmt: skip
    t = step(t.state, OrderAccepted(_s(6), sale.order_id))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    return t.state, sale


def test_the_limit_is_sent_again_only_when_the_market_leaves_it_by_a_whole_offset():
    """98.30 x 0.002 = 0.1966: a print at 98.11 leaves it where it is (no request spent);
    one at 98.10 withdraws it, and once withdrawn it goes again at 97.90 (98.10 x 0.998,
    down), under a new client order id."""
    state, sale = _watched_exit()
    t = step(state, Tick(_s(7), "AAA", D("98.11")))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    t = step(t.state, Tick(_s(8), "AAA", D("98.10")))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [sale.order_id]
    assert not _sent(t.commands)
    t = step(t.state, OrderCanceled(_s(8), sale.order_id))
    [again] = _sent(t.commands)
    assert (again.type, again.qty, again.limit_price, again.extended_hours) == (
        OrderType.LIMIT, D(10), D("97.90"), True
    )  # fmt: skip
    assert again.order_id != sale.order_id


def test_at_the_open_the_limit_is_withdrawn_and_the_shares_go_at_market():
    """The next session opens (three days on): the first regular print withdraws the
    extended-hours limit, and its confirmation sends the ten shares at market."""
    state, sale = _watched_exit()
    t = step(state, Tick(T0 + timedelta(days=3, seconds=1), "AAA", D("98.40")))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [sale.order_id]
    t = step(t.state, OrderCanceled(T0 + timedelta(days=3, seconds=1), sale.order_id))
    [market] = _sent(t.commands)
    assert (market.type, market.qty, market.extended_hours) == (OrderType.MARKET, D(10), False)


def test_protection_refused_outside_the_session_sells_by_an_extended_hours_limit():
    """After the close the price reaches 1R: the stop's move to 100.00 is refused for good,
    and so is the restore of the old stop. The shares are sold rather than left bare — as an
    extended-hours limit 0.2% through the last print (101.10 → 100.89), since a market order
    would wait for the open."""
    refused = "HTTP 422 order parameters are invalid"
    state = EngineState.empty(Config(protection=ProtectionConfig(take_profit=False), hours=SHORT))
    for event in (
        Tick(_s(0), "AAA", D("100")),
        EntryIntent(_s(0), "AAA", Side.LONG, D("99"), D(10)),
        OrderAccepted(_s(0), "rt-AAA-1-entry"),
        OrderFilled(_s(1), "rt-AAA-1-entry", D(10), D("100")),
        OrderAccepted(_s(1), "rt-AAA-1-1-stop"),
        Tick(_s(6), "AAA", D("101.10")),
    ):
        state = step(state, event).state
    t = step(state, OrderCanceled(_s(6), "rt-AAA-1-1-stop"))
    [moved] = _sent(t.commands)
    assert (moved.type, moved.stop_price) == (OrderType.STOP, D("100.00"))
    t = step(t.state, OrderRejected(_s(6), moved.order_id, refused, OrderRefusal.PERMANENT))
    [restore] = _sent(t.commands)
    assert (restore.purpose, restore.stop_price) == ("restore", D("99.00"))
    t = step(t.state, OrderRejected(_s(7), restore.order_id, refused, OrderRefusal.PERMANENT))
    [sale] = _sent(t.commands)
    assert (sale.type, sale.qty, sale.limit_price, sale.extended_hours) == (
        OrderType.LIMIT, D(10), D("100.89"), True
    )  # fmt: skip
    assert sale.ts == _s(7)


def test_a_shorts_buy_back_limit_is_re_priced_the_same_way_upward():
    """AAA short 10 @ 100, stop 101: after the close a print at 101.50 goes through; the buy
    back goes as a limit at 101.71 (101.703 up). 101.71 x 0.002 = 0.20342: a print at 101.91
    leaves it, one at 101.92 withdraws it, and it goes again at 102.13 (101.92 x 1.002, up)."""
    state = EngineState.empty(Config(protection=ProtectionConfig(take_profit=False), hours=SHORT))
    for event in (
        Tick(_s(0), "AAA", D("100")),
        EntryIntent(_s(0), "AAA", Side.SHORT, D("101"), D(10)),
        OrderAccepted(_s(0), "rt-AAA-1-entry"),
        OrderFilled(_s(1), "rt-AAA-1-entry", D(10), D("100")),
        OrderAccepted(_s(1), "rt-AAA-1-1-stop"),
        Tick(_s(6), "AAA", D("101.50")),
    ):
        state = step(state, event).state
    t = step(state, OrderCanceled(_s(6), "rt-AAA-1-1-stop"))
    [buy] = _sent(t.commands)
    assert (buy.action.value, buy.limit_price, buy.extended_hours) == ("buy", D("101.71"), True)
    t = step(t.state, OrderAccepted(_s(6), buy.order_id))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    t = step(t.state, Tick(_s(7), "AAA", D("101.91")))
    assert not [c for c in t.commands if isinstance(c, SubmitOrder | CancelOrder)]
    t = step(t.state, Tick(_s(8), "AAA", D("101.92")))
    assert [c.order_id for c in t.commands if isinstance(c, CancelOrder)] == [buy.order_id]
    t = step(t.state, OrderCanceled(_s(8), buy.order_id))
    [again] = _sent(t.commands)
    assert (again.limit_price, again.qty, again.ts) == (D("102.13"), D(10), _s(8))


def test_a_watched_stop_hit_beside_a_sale_in_flight_queues_the_other_shares_and_says_so():
    """AAA long 10 at 2R with 5 being sold at market when, after the close, a print goes
    through the watched stop: the other 5 are queued for the extended-hours sale, the ladder
    stops and drops its milestones, and the record and the alert say the same thing."""
    pos = _tranche_sent().positions["AAA-1"]
    assert pos.orders.sell is not None and pos.orders.milestones != ()
    pos = evolve(pos, ladder=evolve(pos.ladder, trigger=pos.ladder.trigger or D(3)))
    after, out = watched_exit(pos, D("100.40"), _sec(9))
    data = {"symbol": "AAA", "key": "AAA-1", "mode": "watched", "stop": pos.ladder.stop,
            "price": D("100.40"), "qty": D(5), "action": "exit_extended_limit"}  # fmt: skip
    assert out == [
        Record("protection.triggered", _sec(9), data),
        Alert(_sec(9), "watched_stop", data),
    ]
    assert (after.orders.to_sell, after.orders.milestones) == (D(5), ())
    assert (after.ladder.trigger, after.close_reason) == (None, CloseReason.WATCHED_STOP)
    assert after.orders.sell == pos.orders.sell
