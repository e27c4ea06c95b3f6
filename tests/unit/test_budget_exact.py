"""The request budget (SPEC §4, `engine.budget`) with exact values: how many requests a covered
and a bare position may send in a minute, when a held step may go, which shares a sale may
take beside the other lots of its symbol, which working entries hold a sale back, and how
alerts of one cause are coalesced."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import CancelOrder, EngineState, EntryIntent, Side, SubmitOrder, Tick, step
from engine.budget import (
    RESERVE,
    coalesce,
    extended_rules,
    gate,
    next_step,
    requests,
    spare,
)
from engine.commands import Alert, OrderAction, OrderType, Record
from engine.config import Config
from engine.model import Order, OrderRole, OrderStatus
from engine.orders import Extended
from engine.state import Market
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0
from tests.unit.test_timeouts import _opened, _sec

NOW = _sec(100)


def _cancel(n: int = 1) -> list[CancelOrder]:
    return [CancelOrder(NOW, f"rt-AAA-1-1-x{i}", "AAA") for i in range(n)]


def _sale(qty: str, *, limit: str | None = None, purpose: str = "partial", side=OrderAction.SELL):
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    return SubmitOrder(
        NOW, "rt-AAA-1-9-sell", "AAA", side, kind, D(qty),
        limit_price=None if limit is None else D(limit), purpose=purpose,
    )  # fmt: skip


def _aaa(state: EngineState | None = None):
    state = state or _opened()
    return state, state.positions["AAA-1"]


def _with(state: EngineState, pos) -> EngineState:
    return state.evolve(positions=state.positions.set(pos.key, pos))


def test_requests_counts_submits_and_cancels_only():
    sale = _sale("5")
    assert requests([]) == 0
    assert requests([sale, *_cancel(2), Alert(NOW, "x"), Record("r", NOW)]) == 3


def test_a_covered_position_sends_its_budget_less_the_reserve_in_a_minute():
    """Budget 20, covered: 16 requests in the last minute fill it; a 17th is held until the
    oldest of them is a minute old (then it goes, and the sent list keeps only the last
    minute's, with the new one at `now`)."""
    state, pos = _aaa()
    assert not pos.bare and RESERVE == 4
    window = tuple(NOW - timedelta(seconds=59 - i) for i in range(15))
    before = evolve(pos, sent=(NOW - timedelta(seconds=60), *window))  # one a minute old
    after, cmds = gate(state, before, before, _cancel(), NOW)
    assert cmds == _cancel() and after.held_until is None
    assert after.sent == (*window, NOW)  # the minute-old one dropped, `now` added once
    full = evolve(pos, sent=(*window, NOW - timedelta(seconds=1)))  # 16 recent
    held, cmds = gate(state, full, evolve(full, halted=True), _cancel(), NOW)
    assert cmds == [] and not held.halted  # `before` kept
    assert held.held_until == window[0] + timedelta(seconds=60)
    # two more than fit: held until the second oldest leaves the window
    held, _ = gate(state, full, full, _cancel(2), NOW)
    assert held.held_until == window[1] + timedelta(seconds=60)
    # more over than there are recent ones: the newest one's minute
    held, _ = gate(state, full, full, _cancel(40), NOW)
    assert held.held_until == NOW - timedelta(seconds=1) + timedelta(seconds=60)


def test_a_bare_position_spends_the_whole_budget():
    state, pos = _aaa()
    window = tuple(NOW - timedelta(seconds=50 - i) for i in range(19))
    bare = evolve(pos, exposed_since=NOW, sent=window)
    after, cmds = gate(state, bare, bare, _cancel(), NOW)
    assert cmds == _cancel() and len(after.sent) == 20
    full = evolve(bare, sent=(*window, NOW))
    held, cmds = gate(state, full, full, _cancel(), NOW)
    assert cmds == [] and held.held_until == window[0] + timedelta(seconds=60)
    # a forced step (a sale of bare shares past their deadline) goes whatever the budget
    after, cmds = gate(state, full, full, _cancel(3), NOW, force=True)
    assert len(cmds) == 3 and after.held_until is None and len(after.sent) == 23


def test_a_small_budget_still_lets_one_request_a_minute_through():
    """`max(1, budget − RESERVE)`: a budget of 4 or 5 leaves a covered position one request."""
    for budget in (4, 5):
        state = _opened()
        state = state._replace(config=evolve(state.config, max_requests_per_minute=budget))
        pos = state.positions["AAA-1"]
        after, cmds = gate(state, pos, pos, _cancel(), NOW)
        assert cmds and after.sent == (NOW,)
        held, cmds = gate(state, after, after, _cancel(), NOW + timedelta(seconds=1))
        assert cmds == [] and held.held_until == NOW + timedelta(seconds=60)
    state = state._replace(config=evolve(state.config, max_requests_per_minute=6))
    pos = evolve(state.positions["AAA-1"], sent=(NOW,))
    after, cmds = gate(state, pos, pos, _cancel(), NOW)
    assert cmds and after.sent == (NOW, NOW)  # 6 − 4 = 2


def test_no_request_goes_while_the_position_awaits_its_snapshot():
    state, pos = _aaa()
    waiting = evolve(pos, reconciling=T0)
    kept, cmds = gate(state, waiting, evolve(waiting, halted=True), _cancel(), NOW, force=True)
    assert cmds == [] and kept is waiting
    assert next_step(state, waiting, D("100"), NOW) == (waiting, [])
    # a step without requests is let through as it is, records and all
    rec = [Record("x", NOW)]
    moved = evolve(waiting, halted=True)
    assert gate(state, waiting, moved, rec, NOW) == (moved, rec)


def test_a_sale_is_held_while_it_wants_more_than_the_spare_shares():
    """AAA long 10, its stop for 10 live: a sale of 1 wants 11 (the stop's 10 count) and is
    held a first retry delay; once the stop's order is the one being sent, or waits to be sent
    again, it is not counted; a forced exit is sized to the spare shares already."""
    state, pos = _aaa()
    assert pos.orders.exit.open_qty == D(10) and spare(state, pos) == D(10)
    held, cmds = gate(state, pos, pos, [_sale("1")], NOW)
    assert cmds == [] and held.held_until == NOW + timedelta(milliseconds=500)
    bare = evolve(pos, orders=evolve(pos.orders, exit=None))
    after, cmds = gate(state, pos, bare, [_sale("10")], NOW)
    assert len(cmds) == 1 and after.held_until is None  # exactly the spare 10
    held, cmds = gate(state, pos, bare, [_sale("11")], NOW)
    assert cmds == [] and held.held_until == NOW + timedelta(milliseconds=500)
    waiting = evolve(
        pos, orders=evolve(pos.orders, exit=evolve(pos.orders.exit, status=OrderStatus.RETRY_WAIT))
    )
    assert gate(state, pos, waiting, [_sale("10")], NOW)[1]
    resent = evolve(
        pos, orders=evolve(pos.orders, exit=evolve(pos.orders.exit, id="rt-AAA-1-9-sell"))
    )
    assert gate(state, pos, resent, [_sale("10")], NOW)[1]  # the order sent is not counted twice
    assert gate(state, pos, pos, [_sale("10", purpose="exit")], NOW, force=True)[1]
    assert not gate(state, pos, pos, [_sale("10", purpose="exit")], NOW)[1]
    assert not gate(state, pos, pos, [_sale("10", purpose="partial")], NOW, force=True)[1]
    # a buy is not a sale of a long: it takes no shares
    assert gate(state, pos, pos, [_sale("50", side=OrderAction.BUY)], NOW)[1]


def two_lots() -> EngineState:
    """Two lots of AAA, long 10 and 6 @ 100 (stops 99), both stops accepted."""
    state, _ = run_simulation(
        [
            Tick(T0, "AAA", D("100")),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(10)),
            EntryIntent(T0, "AAA", Side.LONG, D("99"), D(6)),
        ],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    return state


def test_the_shares_of_a_symbol_are_shared_between_its_lots():
    """Two lots of AAA (10 and 6): each may take its own shares and the other's, less what the
    other's orders hold at the broker (its stop), unless that order waits to be sent again."""
    state = two_lots()
    one, two = state.positions["AAA-1"], state.positions["AAA-2"]
    assert spare(state, one) == D(10) + D(6) - D(6)
    assert spare(state, two) == D(6) + D(10) - D(10)
    two_sale = evolve(two, orders=evolve(two.orders, sell=Order(
        "s", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET, D(3), filled=D(1)
    )))  # fmt: skip
    state = _with(state, two_sale)
    assert spare(state, one) == D(10) + D(6) - D(6) - D(2)
    retrying = evolve(two_sale, orders=evolve(two_sale.orders, exit=evolve(
        two_sale.orders.exit, status=OrderStatus.RETRY_WAIT
    )))  # fmt: skip
    assert spare(_with(state, retrying), one) == D(10) + D(6) - D(2)


def _entry_beside(state: EngineState, *, limit: str | None, status=OrderStatus.LIVE, symbol="AAA"):
    """`state` with an entry of another lot of `symbol` working at the broker."""
    s = step(EngineState.empty(), Tick(T0, symbol, D("100"))).state
    [entry] = step(s, EntryIntent(T0, symbol, Side.LONG, D("99"), D(4))).state.entries.values()
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    price = None if limit is None else D(limit)
    order = evolve(entry.order, status=status, type=kind, limit_price=price)
    entry = evolve(entry, key="ZZZ-9", order=order)
    return state.evolve(entries=state.entries.set(entry.key, entry))


def test_a_sale_waits_for_an_entry_of_its_symbol_it_could_trade_against():
    state, pos = _aaa()
    bare = evolve(pos, orders=evolve(pos.orders, exit=None))
    for limit, sale, held in (
        (None, None, True),  # market against anything
        ("101", None, True),
        (None, "100", True),
        ("100", "100", True),  # a buy at 100 meets a sale at 100
        ("99.99", "100", False),  # a buy below the sale's limit does not
        ("100.01", "100", True),
    ):
        s = _entry_beside(state, limit=limit)
        after, cmds = gate(s, pos, bare, [_sale("5", limit=sale)], NOW)
        assert (cmds == []) is held, (limit, sale)
        if held:
            assert after.held_until == NOW + timedelta(milliseconds=500)
    s = _entry_beside(state, limit=None)
    # stops are not held; nor forced sales, nor sales of shares bare past their deadline
    stop = SubmitOrder(NOW, "x", "AAA", OrderAction.SELL, OrderType.STOP, D(5), stop_price=D(99))
    assert gate(s, pos, bare, [stop], NOW)[1]
    assert gate(s, pos, bare, [_sale("5")], NOW, force=True)[1]
    overdue = evolve(bare, exposed_since=NOW - timedelta(seconds=10))
    assert gate(s, pos, overdue, [_sale("5")], NOW)[1]
    nearly = evolve(bare, exposed_since=NOW - timedelta(seconds=9.999))
    assert not gate(s, pos, nearly, [_sale("5")], NOW)[1]
    # an entry not working at the broker, or of another symbol, is not in the way
    for status in (OrderStatus.RETRY_WAIT, OrderStatus.PENDING_CANCEL, OrderStatus.CANCEL_WAIT):
        assert gate(_entry_beside(state, limit=None, status=status), pos, bare, [_sale("5")], NOW)[
            1
        ]
    assert gate(_entry_beside(state, limit=None, symbol="BBB"), pos, bare, [_sale("5")], NOW)[1]
    pending = _entry_beside(state, limit=None, status=OrderStatus.PENDING_NEW)
    assert not gate(pending, pos, bare, [_sale("5")], NOW)[1]


def test_a_short_buy_back_waits_for_an_entry_priced_at_or_below_it():
    state, _ = run_simulation(
        [Tick(T0, "AAA", D("100")), EntryIntent(T0, "AAA", Side.SHORT, D("101"), D(10))],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )
    pos = state.positions["AAA-1"]
    bare = evolve(pos, orders=evolve(pos.orders, exit=None))
    buy = _sale("5", limit="100", side=OrderAction.BUY)
    for limit, held in (("100", True), ("99.99", True), ("100.01", False)):
        s = _entry_beside(state, limit=limit)
        assert (gate(s, pos, bare, [buy], NOW)[1] == []) is held, limit
    # a sell is not the short's exit: no shares wanted, nothing in the way
    assert gate(_entry_beside(state, limit=None), pos, bare, [_sale("5")], NOW)[1]


def test_alerts_of_one_cause_reach_the_operator_at_powers_of_two():
    _, pos = _aaa()
    heard = []
    for _ in range(1, 10):
        pos, cmds = coalesce(pos, Alert(NOW, "rate_limited", {"symbol": "AAA"}))
        heard += [(a.context["count"], a.context["symbol"], a.ts) for a in cmds]
    assert heard == [(n, "AAA", NOW) for n in (1, 2, 4, 8)]
    pos, cmds = coalesce(pos, Alert(NOW, "another", {}))
    assert [a.context for a in cmds] == [{"count": 1}]
    assert pos.alerted == (("another", 1), ("rate_limited", 9))


def test_sales_go_at_market_in_the_regular_session_else_as_extended_limits():
    state = EngineState.empty()
    assert extended_rules(state) is None
    closed = state._replace(market=Market(regular=False))
    rules = extended_rules(closed)
    assert rules == Extended(D("0.002"), state.config.protection.grid, False)
    opening = closed._replace(config=Config(extended_partials="open", extended_offset=D("0.01")))
    assert extended_rules(opening) == Extended(D("0.01"), state.config.protection.grid, True)
