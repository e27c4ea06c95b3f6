"""The entry gate's refusals and acceptances with exact values (`engine.entries`): each
refusal's reason and the words the operator reads (`detail`), each boundary of the checks,
the quantity a phase sizes, the wash-safe limit beside ratchet's resting exits and what an
accepted entry leaves in the state."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from attrs import evolve
from returns.result import Failure, Success

from engine import EngineState, EntryIntent, Side, Tick, step
from engine.commands import OrderAction, OrderType, Record, SubmitOrder
from engine.config import Config, ProtectionConfig
from engine.entries import Refusal, _wash_price, resting_exits, validate_entry
from engine.goal import GoalConfig
from engine.model import Order, OrderRole, OrderStatus
from engine.phase import Phase, PhaseConfig
from engine.state import BreakerState, Market
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation
from tests.strategies import T0
from tests.unit.test_timeouts import _opened

AT = T0 + timedelta(seconds=5)


def _ticked(config: Config | None = None) -> EngineState:
    return step(EngineState.empty(config), Tick(T0, "AAA", D("100"))).state


def _intent(side=Side.LONG, stop="99", qty: str | None = "10", entry=None, symbol="AAA", id=None):
    return EntryIntent(
        AT, symbol, side, D(stop), None if qty is None else D(qty),
        None if entry is None else D(entry), id,
    )  # fmt: skip


def _refused(state: EngineState, intent: EntryIntent) -> tuple[str, str]:
    result = validate_entry(state, intent)
    assert isinstance(result, Failure), result
    refusal = result.failure()
    assert result == Failure(Refusal(refusal.reason, refusal.detail))
    return refusal.reason, refusal.detail


def _phased(phase: Phase, **kw) -> EngineState:
    return _ticked(Config(phase=PhaseConfig(enabled=True, start=phase, **kw)))


def test_duplicate_ids_are_refused_with_what_became_of_the_first():
    state = _ticked()
    state = state.evolve(intents=state.intents.set("c1", "AAA-1").set("c2", ""))
    assert _refused(state, _intent(id="c1")) == (
        "duplicate_entry", "entry id 'c1' opened AAA-1 before"
    )  # fmt: skip
    assert _refused(state, _intent(id="c2")) == (
        "duplicate_entry",
        "entry id 'c2' was refused before",
    )
    assert isinstance(validate_entry(state, _intent(id="c3")), Success)


def test_the_link_refusals_say_what_is_wrong_with_it():
    state = _ticked()
    link = state.link
    assert _refused(state.evolve(link=evolve(link, up=False)), _intent()) == (
        "broker_offline", "the broker connection is down"
    )  # fmt: skip
    assert _refused(state.evolve(link=evolve(link, recovering=True)), _intent()) == (
        "recovery_mode", "reconnected; waiting for a reconciled broker snapshot"
    )  # fmt: skip
    opened = evolve(link, breaker=BreakerState.OPEN, reopen_at=AT)
    assert _refused(state.evolve(link=opened), _intent()) == (
        "order_breaker_open", f"order requests keep failing; retry after {AT}"
    )  # fmt: skip
    half = evolve(link, breaker=BreakerState.HALF_OPEN, reopen_at=AT)
    assert isinstance(validate_entry(state.evolve(link=half), _intent()), Success)


def test_symbol_side_and_session_refusals():
    state = _ticked()
    assert _refused(state, _intent(symbol="")) == ("invalid_symbol", "symbol is empty")
    opened = _opened()
    assert _refused(opened, _intent(side=Side.SHORT, stop="101")) == (
        "opposite_side_open", "AAA has open long positions"
    )  # fmt: skip
    assert isinstance(validate_entry(opened, _intent()), Success)  # the same side is fine
    pending = step(state, _intent(side=Side.SHORT, stop="101")).state
    assert list(pending.entries) == ["AAA-1"]
    assert _refused(pending, _intent()) == ("opposite_side_open", "AAA has open short positions")
    assert isinstance(validate_entry(pending, _intent(symbol="BBB")), Failure)  # no price yet
    closed = state.evolve(market=Market(regular=False))
    assert _refused(closed, _intent()) == (
        "market_closed",
        "outside the regular session an entry would wait for the open, unprotected by any stop "
        "until it fills",
    )


def test_the_goal_phase_and_cap_refusals():
    state = _ticked()
    daily = evolve(state.daily, triggered=True, peak=D("120"))
    assert _refused(state.evolve(daily=daily), _intent()) == (
        "daily_profit_protection",
        "the day gave back 50% of its peak 120; entries resume next session",
    )
    goal = state._replace(config=Config(goal=GoalConfig(target=D(100), giveback=D("0.3"))))
    assert _refused(goal.evolve(daily=daily), _intent())[1].startswith("the day gave back 30% of")
    phased = _phased(Phase.TRIAL)
    broken = phased.evolve(phase=evolve(phased.phase, breaker_open=True))
    assert _refused(broken, _intent()) == (
        "phase_breaker", "downgraded; an operator must acknowledge the breaker"
    )  # fmt: skip
    # the breaker counts only with phases on
    assert isinstance(validate_entry(state.evolve(phase=broken.phase), _intent()), Success)
    capped = _opened()._replace(config=Config(max_open=2))
    assert len(capped.positions) == 2
    assert _refused(capped, _intent()) == ("max_open_positions", "2 positions are open or pending")
    one = capped._replace(config=Config(max_open=3))
    assert isinstance(validate_entry(one, _intent()), Success)
    pending = step(one, _intent()).state
    assert len(pending.entries) == 1
    assert _refused(pending, _intent())[0] == "max_open_positions"


@pytest.mark.parametrize(
    ("kw", "reason", "detail"),
    [
        ({"qty": None}, "no_quantity", "the entry has no qty and no phase sizes it"),
        ({"qty": "0"}, "invalid_qty", "qty must be > 0, got 0"),
        ({"qty": "-3"}, "invalid_qty", "qty must be > 0, got -3"),
        ({"qty": "Infinity"}, "invalid_qty", "qty must be > 0, got Infinity"),
        ({"qty": "NaN"}, "invalid_qty", "qty must be > 0, got NaN"),
        ({"qty": "2.5"}, "invalid_qty", "qty 2.5 is not a multiple of 1"),
        ({"stop": "0"}, "invalid_stop", "stop must be > 0, got 0"),
        ({"stop": "-1"}, "invalid_stop", "stop must be > 0, got -1"),
        ({"stop": "Infinity"}, "invalid_stop", "stop must be > 0, got Infinity"),
        ({"symbol": "BBB"}, "no_price", "no price seen for BBB and no entry price"),
        ({"entry": "0"}, "invalid_entry", "entry must be > 0, got 0"),
        ({"entry": "Infinity"}, "invalid_entry", "entry must be > 0, got Infinity"),
        ({"stop": "100"}, "initial_risk_not_positive", "stop 100 is not on the loss side of 100"),
        (
            {"stop": "102", "entry": "101"},
            "initial_risk_not_positive",
            "stop 102 is not on the loss side of 101",
        ),
        (
            {"side": Side.SHORT, "stop": "100"},
            "initial_risk_not_positive",
            "stop 100 is not on the loss side of 100",
        ),
    ],
)
def test_each_bad_input_is_refused_with_its_value(kw, reason, detail):
    assert _refused(_ticked(), _intent(**kw)) == (reason, detail)


def test_the_inputs_accepted_at_their_boundaries():
    state = _ticked()
    for kw in (
        {"stop": "99.99"},
        {"side": Side.SHORT, "stop": "100.01"},
        {"symbol": "BBB", "entry": "5", "stop": "4"},  # no price seen, the entry's own
        {"qty": "1"},
        {"stop": "0.0001", "qty": "1"},
    ):
        assert validate_entry(state, _intent(**kw)) == Success(D(_intent(**kw).qty)), kw
    lots = state._replace(config=Config(protection=ProtectionConfig(lot_step=D("0.5"))))
    assert validate_entry(lots, _intent(qty="2.5")) == Success(D("2.5"))
    assert _refused(lots, _intent(qty="2.25")) == (
        "invalid_qty",
        "qty 2.25 is not a multiple of 0.5",
    )


def test_the_pre_trade_limits_refuse_only_what_is_over_them():
    state = _ticked(Config(max_qty=D(10), max_notional=D(1000)))
    assert validate_entry(state, _intent(qty="10")) == Success(D(10))  # 10 x 100 = 1000
    assert _refused(state, _intent(qty="11")) == ("max_qty", "qty 11 is over the limit of 10")
    assert _refused(state, _intent(qty="10", entry="100.01")) == (
        "max_notional", "10 x 100.01 = 1000.10 is over the limit of 1000"
    )  # fmt: skip
    off = _ticked(Config(max_qty=D(0), max_notional=D(0)))
    assert validate_entry(off, _intent(qty="100000")) == Success(D(100000))


def test_a_phase_sizes_the_entry_and_caps_a_larger_one():
    """Trial sizes $200: 2 shares at 100, 1 at 150.01, none at 200.01."""
    state = _phased(Phase.TRIAL)
    assert state.phase.size == D(200)
    assert validate_entry(state, _intent(qty=None)) == Success(D(2))
    assert validate_entry(state, _intent(qty="5")) == Success(D(2))
    assert validate_entry(state, _intent(qty="1")) == Success(D(1))
    assert validate_entry(state, _intent(qty=None, entry="150.01", stop="140")) == Success(D(1))
    assert validate_entry(state, _intent(qty=None, entry="100", stop="99")) == Success(D(2))
    assert _refused(state, _intent(qty=None, entry="200.01", stop="190")) == (
        "phase_size", "$200 buys no 1 lot at 200.01"
    )  # fmt: skip


def test_a_phase_trade_limit_names_the_next_session():
    state = _phased(Phase.PROOF_OF_CONCEPT)
    assert isinstance(validate_entry(state, _intent(qty=None)), Success)
    done = state.evolve(daily=evolve(state.daily, trades=1, reset_at=None))
    assert _refused(done, _intent(qty=None)) == (
        "phase_trade_limit",
        "proof_of_concept allows 1 trade(s) per session; next trade allowed at the next session",
    )
    reset = T0 + timedelta(hours=20)
    done = done.evolve(daily=evolve(done.daily, reset_at=reset))
    assert _refused(done, _intent(qty=None))[1].endswith(f"allowed at {reset.isoformat()}")
    # no limit in Trial
    trial = _phased(Phase.TRIAL)
    many = trial.evolve(daily=evolve(trial.daily, trades=50))
    assert isinstance(validate_entry(many, _intent(qty=None)), Success)


def _resting(state: EngineState, *orders: Order, to_sell: str = "0") -> EngineState:
    pos = state.positions["AAA-1"]
    exit_, sell = (*orders, None, None)[:2]
    pos = evolve(pos, orders=evolve(pos.orders, exit=exit_, sell=sell, to_sell=D(to_sell)))
    return state.evolve(positions=state.positions.set(pos.key, pos))


def _limit(oid: str, price: str, qty="5") -> Order:
    return Order(
        oid, OrderRole.EXIT, OrderAction.SELL, OrderType.LIMIT, D(qty), limit_price=D(price)
    )


def _stop(oid: str, price: str) -> Order:
    return Order(
        oid, OrderRole.PROTECT, OrderAction.SELL, OrderType.STOP, D(10), stop_price=D(price)
    )


def test_resting_exits_are_limits_and_market_sales_not_stops():
    state = _opened()
    assert resting_exits(state, "AAA") == ([D("104.00")], ["rt-AAA-1-1-stop"])  # its take-profit
    assert resting_exits(_resting(state, _stop("st", "99")), "AAA") == (
        [],
        [],
    )  # a stop: off the book
    both = _resting(state, _limit("tp", "104"), _limit("s", "101.5"))
    assert resting_exits(both, "AAA") == ([D("104"), D("101.5")], ["tp", "s"])
    market = Order("m", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET, D(5))
    assert resting_exits(_resting(state, _stop("st", "99"), market), "AAA") == ([], ["m"])
    queued = _resting(state, _stop("st", "99"), to_sell="3")
    assert resting_exits(queued, "AAA") == ([], ["AAA-1"])
    assert resting_exits(queued, "BBB") == ([D("54.00")], ["rt-BBB-1-1-stop"])


def test_an_entry_beside_resting_exits_goes_as_a_limit_below_the_lowest():
    state = _resting(_opened(), _limit("tp", "104"), _limit("s", "101.5"))
    grid = state.config.protection.grid
    assert _wash_price(state, "AAA", Side.LONG, None) == (D("101.49"), ["tp", "s"], False)
    assert _wash_price(state, "AAA", Side.LONG, D("101.5")) == (D("101.49"), ["tp", "s"], False)
    assert _wash_price(state, "AAA", Side.LONG, D("101.49")) == (D("101.49"), [], False)
    assert _wash_price(state, "AAA", Side.LONG, D("100")) == (D("100"), [], False)
    assert _wash_price(state, "BBB", Side.LONG, D("50")) == (D("50"), [], False)
    assert grid.increment(D("0.5")) == D("0.0001")
    cheap = _resting(_opened(), _limit("tp", "0.0001"))
    assert _wash_price(cheap, "AAA", Side.LONG, None) == (D("0"), ["tp"], True)
    penny = _resting(_opened(), _limit("tp", "0.0002"))
    assert _wash_price(penny, "AAA", Side.LONG, None) == (D("0.0001"), ["tp"], False)
    market = Order("m", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET, D(5))
    sold = _resting(_opened(), _limit("tp", "104"), market)
    assert _wash_price(sold, "AAA", Side.LONG, D("90")) == (D("90"), ["tp", "m"], True)


def test_a_short_entry_beside_resting_buy_backs_goes_above_the_highest():
    state, _ = _short_opened()
    pos = state.positions["AAA-1"]
    tp = Order("tp", OrderRole.EXIT, OrderAction.BUY, OrderType.LIMIT, D(5), limit_price=D("96"))
    s = Order("s", OrderRole.PARTIAL, OrderAction.BUY, OrderType.LIMIT, D(5), limit_price=D("98.5"))
    pos = evolve(pos, orders=evolve(pos.orders, exit=tp, sell=s))
    state = state.evolve(positions=state.positions.set(pos.key, pos))
    assert _wash_price(state, "AAA", Side.SHORT, None) == (D("98.51"), ["tp", "s"], False)
    assert _wash_price(state, "AAA", Side.SHORT, D("98.5")) == (D("98.51"), ["tp", "s"], False)
    assert _wash_price(state, "AAA", Side.SHORT, D("98.51")) == (D("98.51"), [], False)
    assert _wash_price(state, "AAA", Side.SHORT, D("99")) == (D("99"), [], False)
    t = step(state, _intent(side=Side.SHORT, stop="101"))
    conflict = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert [c["reason"] for c in conflict] == [
        "exit orders rest in AAA: the entry sells no lower than 98.51"
    ]
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert (order.type, order.limit_price) == (OrderType.LIMIT, D("98.51"))


def _short_opened():
    return run_simulation(
        [Tick(T0, "AAA", D("100")), EntryIntent(T0, "AAA", Side.SHORT, D("101"), D(10))],
        EngineState.empty(),
        SimulatedBroker(market_fill="same"),
    )


def test_an_accepted_entry_counts_its_trade_names_its_lot_and_goes_out():
    state = _opened()
    assert state.counts["AAA"] == 1 and state.daily.trades == 2
    t = step(state, _intent(qty="3", id="mine"))
    new = t.state
    assert new.counts["AAA"] == 2 and new.intents["mine"] == "AAA-2" and new.daily.trades == 3
    entry = new.entries["AAA-2"]
    assert (entry.qty, entry.stop, entry.ts, entry.client_id, entry.paper) == (
        D(3), D(99), AT, "mine", False
    )  # fmt: skip
    assert entry.order.id in new.routes and new.routes[entry.order.id] == "AAA-2"
    [accepted] = [c for c in t.commands if isinstance(c, Record) and c.kind == "entry.accepted"]
    assert accepted.data == {
        "symbol": "AAA", "reason": "accepted", "key": "AAA-2", "side": "long", "qty": D(3),
        "stop": D(99), "entry": None, "paper": False, "id": "mine",
    }  # fmt: skip
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    # beside its take-profit at 104, as a limit a cent below
    assert (order.type, order.qty, order.limit_price) == (OrderType.LIMIT, D(3), D("103.99"))
    refused = step(new, _intent(qty="3", id="other", stop="101"))
    assert refused.state.intents["other"] == "" and refused.state.counts["AAA"] == 2
    again = step(new, _intent(qty="3", id="mine"))
    assert again.state.intents["mine"] == "AAA-2"  # a duplicate keeps what the first became


def test_experience_entries_are_paper_and_waiting_entries_are_due_a_retry_delay_later():
    state = _phased(Phase.EXPERIENCE)
    t = step(state, _intent(qty=None))
    assert t.state.entries["AAA-1"].paper
    real = step(_phased(Phase.PROOF_OF_CONCEPT), _intent(qty=None))
    assert not real.state.entries["AAA-1"].paper
    assert not [c for c in real.commands if isinstance(c, SubmitOrder) and c.paper]
    [order] = [c for c in t.commands if isinstance(c, SubmitOrder)]
    assert order.paper and order.qty == D(1)
    waits = _resting(_opened(), _limit("tp", "104"))._replace(config=Config(wash_trade="wait"))
    t = step(waits, _intent(qty="2"))
    entry = t.state.entries["AAA-2"]
    assert entry.order.status is OrderStatus.RETRY_WAIT
    assert entry.retry.due == AT + timedelta(milliseconds=500) and t.state.due <= entry.retry.due
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]
    [conflict] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert (conflict["resolution"], conflict["reason"], conflict["order_ids"]) == (
        "entry_waits", "exit orders rest in AAA: the entry waits until none does", ["tp"]
    )  # fmt: skip
    unpriced = _resting(
        _opened(), Order("m", OrderRole.PARTIAL, OrderAction.SELL, OrderType.MARKET, D(5))
    )
    t = step(unpriced, _intent(qty="2", id="x"))
    [blocked] = t.commands
    assert (blocked["reason"], blocked["detail"], blocked["id"]) == (
        "wash_trade_risk", "an exit of AAA is selling; an entry could trade against it", "x"
    )  # fmt: skip
    assert t.state.intents["x"] == "" and "AAA-2" not in t.state.entries
    refuse = _resting(_opened(), _limit("tp", "104"))._replace(config=Config(wash_trade="refuse"))
    assert _refused(refuse, _intent()) == (
        "wash_trade_risk",
        "exit orders of AAA rest at the broker; an entry could trade against them",
    )
    t = step(_resting(_opened(), _limit("tp", "104")), _intent(qty="2"))
    [conflict] = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert (conflict["resolution"], conflict["reason"]) == (
        "entry_as_limit", "exit orders rest in AAA: the entry buys no higher than 103.99"
    )  # fmt: skip
