"""The broker's snapshot with exact values (`engine.snapshots`): the orders it lists that
ratchet does not account for (its own from an old state, the user's), the numbering of lots
after every id the broker has seen, the stop an adopted position takes over, what each of
ratchet's orders is found to be after an outage, and the mismatch that keeps the engine in
recovery."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Alert,
    CancelOrder,
    Connectivity,
    EngineState,
    EntryIntent,
    OrderAccepted,
    Record,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from engine.commands import OrderAction, OrderType
from engine.config import Config
from engine.events import BrokerOrder, BrokerSnapshot
from engine.goal import GoalConfig
from engine.model import CloseReason, Order, OrderRole, Orders, OrderStatus, Retry, Slot
from engine.snapshots import _count_past, _their_stop
from engine.state import Book, BreakerState, Link, LinkMode, Market, tracks_days
from tests.unit.test_entries_exact import _short_opened
from tests.unit.test_timeouts import STOP_ID, _opened, _sec, _tranche_sent

SELL, BUY = OrderAction.SELL, OrderAction.BUY


def _snap(at: float, orders=(), positions=(("AAA", D(10)), ("BBB", D(10))), **kw):
    return BrokerSnapshot(_sec(at), positions=positions, orders=tuple(orders), **kw)


def _stop_of(state: EngineState, key: str = "AAA-1") -> BrokerOrder:
    o = state.positions[key].orders.exit
    return BrokerOrder(o.id, key.partition("-")[0], "open", o.qty, side=SELL, type=o.type,
                       stop_price=o.stop_price, limit_price=o.limit_price)  # fmt: skip


def _conflicts(commands) -> list[dict]:
    return [c.data for c in commands if isinstance(c, Record) and c.kind == "conflict.detected"]


def _cancels(commands) -> list[str]:
    return [c.order_id for c in commands if isinstance(c, CancelOrder)]


def test_orders_the_engine_does_not_account_for_are_canceled_or_left_by_whose_they_are():
    state = _opened()
    mine = [_stop_of(state), _stop_of(state, "BBB-1")]
    orders = [
        *mine,
        BrokerOrder("rt-AAA-0-3-stop", "AAA", "open", D(10), side=SELL, stop_price=D(90)),
        BrokerOrder("rt-CCC-2-1-stop", "CCC", "open", D(5), side=SELL, stop_price=D(9)),
        BrokerOrder("rt-AAA-0-4-stop", "AAA", "canceled", D(10), side=SELL, stop_price=D(90)),
        BrokerOrder("user-sell", "AAA", "open", D(3), side=SELL, type=OrderType.LIMIT,
                    limit_price=D(110)),
        BrokerOrder("user-buy", "AAA", "open", D(3), side=BUY, type=OrderType.LIMIT,
                    limit_price=D(90)),
        BrokerOrder("user-other", "ZZZ", "open", D(3), side=SELL, type=OrderType.LIMIT,
                    limit_price=D(90)),
    ]  # fmt: skip
    t = step(state, _snap(2, orders))
    assert _conflicts(t.commands) == [
        {"symbol": "AAA", "key": "AAA-0", "type": "stray_order", "order_ids": ["rt-AAA-0-3-stop"],
         "resolution": "canceled", "reason": "ratchet's order the engine does not account for"},
        {"symbol": "CCC", "key": "CCC-2", "type": "stray_order", "order_ids": ["rt-CCC-2-1-stop"],
         "resolution": "canceled", "reason": "ratchet's order the engine does not account for"},
        {"symbol": "AAA", "key": "AAA-1", "type": "foreign_order", "order_ids": ["user-sell"],
         "resolution": "canceled", "reason": "the user's order holds shares ratchet protects"},
    ]  # fmt: skip
    assert _cancels(t.commands) == ["rt-AAA-0-3-stop", "rt-CCC-2-1-stop", "user-sell"]
    left = step(state._replace(config=Config(foreign_orders="leave")), _snap(2, orders))
    assert _cancels(left.commands) == ["rt-AAA-0-3-stop", "rt-CCC-2-1-stop"]
    assert [c["type"] for c in _conflicts(left.commands)] == ["stray_order", "stray_order"]


def test_the_users_order_in_the_way_of_a_refused_sale_is_named_and_canceled():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    state = state.evolve(positions=state.positions.set(pos.key, evolve(pos, wash_blocked=_sec(1))))
    buy = BrokerOrder("user-buy", "AAA", "open", D(3), side=BUY, type=OrderType.LIMIT,
                      limit_price=D(90))  # fmt: skip
    sell = BrokerOrder("user-sell", "AAA", "open", D(3), side=SELL, type=OrderType.LIMIT,
                       limit_price=D(120))  # fmt: skip
    t = step(state, _snap(2, [buy, sell], positions=(("AAA", D(10)), ("BBB", D(10)))))
    found = {c["order_ids"][0]: c for c in _conflicts(t.commands) if c["type"] == "foreign_order"}
    assert found["user-buy"] == {
        "symbol": "AAA", "key": "AAA-1", "type": "foreign_order", "order_ids": ["user-buy"],
        "resolution": "canceled",
        "reason": "the user's order stands in the way of ratchet's sale (potential wash trade)",
    }  # fmt: skip
    assert found["user-sell"]["reason"] == "the user's order holds shares ratchet protects"
    assert "user-buy" in _cancels(t.commands)
    assert t.state.positions["AAA-1"].wash_blocked is None


def test_lots_adopted_later_are_numbered_after_every_id_the_broker_has_seen():
    state = EngineState.empty()
    snap = _snap(
        0,
        [
            BrokerOrder("rt-AAA-7-2-stop", "AAA", "filled", D(1)),
            BrokerOrder("rt-AAA-3-entry", "AAA", "filled", D(1)),
            BrokerOrder("rt-BBB-2-1-stop", "BBB", "canceled", D(1)),
            BrokerOrder("rt-BBB-x-1-stop", "BBB", "canceled", D(1)),
            BrokerOrder("user-9", "CCC", "filled", D(1)),
        ],
    )
    counts = _count_past(state, snap).counts
    assert dict(counts) == {"AAA": 7, "BBB": 2}
    higher = state.evolve(counts=state.counts.set("AAA", 9))
    assert dict(_count_past(higher, snap).counts) == {"AAA": 9, "BBB": 2}
    same = state.evolve(counts=state.counts.set("AAA", 7).set("BBB", 2))
    assert _count_past(same, snap) is same


def test_the_tightest_loss_side_stop_covering_the_shares_is_the_one_taken_over():
    def stop(oid, price, qty="10", side=SELL, status="open", symbol="AAA", filled="0"):
        return BrokerOrder(oid, symbol, status, D(qty), D(filled), side=side,
                           type=OrderType.STOP, stop_price=D(price))  # fmt: skip

    orders = (
        stop("a", "95"),
        stop("b", "97"),  # the tightest that qualifies
        stop("c", "99", qty="9"),  # covers too few
        stop("d", "98.5", qty="12", filled="3"),  # 9 left: too few
        stop("e", "100"),  # at the entry: not a loss-side stop
        stop("f", "98", side=BUY),
        stop("g", "98", status="canceled"),
        stop("h", "98", symbol="BBB"),
        BrokerOrder("i", "AAA", "open", D(10), side=SELL, type=OrderType.LIMIT, limit_price=D(98)),
    )
    snap = BrokerSnapshot(_sec(0), orders=orders)
    assert _their_stop(snap, "AAA", Side.LONG, D(100), D(10)).order_id == "b"
    assert _their_stop(snap, "AAA", Side.LONG, D(100), D(9)).order_id == "c"
    assert _their_stop(snap, "AAA", Side.LONG, D(100), D(11)) is None
    assert _their_stop(snap, "AAA", Side.LONG, D("96"), D(10)).order_id == "a"
    shorts = (stop("s1", "105", side=BUY), stop("s2", "103", side=BUY), stop("s3", "99", side=BUY))
    snap = BrokerSnapshot(_sec(0), orders=shorts)
    assert _their_stop(snap, "AAA", Side.SHORT, D(100), D(10)).order_id == "s2"


def _outage(state: EngineState) -> EngineState:
    state = step(state, Connectivity(_sec(1.5), False)).state
    return step(state, Connectivity(_sec(1.6), True)).state


def test_after_an_outage_each_order_is_what_the_snapshot_says():
    state = _opened()
    t = step(state, Tick(_sec(1), "AAA", D("101")))  # the stop's cancel goes out
    state = _outage(t.state)
    assert state.positions["AAA-1"].orders.exit.status is OrderStatus.PENDING_CANCEL
    # AAA's stop is still open (the cancel was lost); BBB's is not listed at all
    t = step(state, _snap(2, [_stop_of(state)]))
    kinds = [(c.kind, c.data.get("type")) for c in t.commands if isinstance(c, Record)]
    assert ("conflict.detected", "order_unknown_to_broker") in kinds
    [unknown] = [c for c in _conflicts(t.commands) if c["type"] == "order_unknown_to_broker"]
    assert unknown == {
        "symbol": "BBB", "key": "BBB-1", "type": "order_unknown_to_broker",
        "order_ids": ["rt-BBB-1-1-stop"], "resolution": "dropped_and_resent",
        "reason": "not in the broker's snapshot of open and changed orders",
    }  # fmt: skip
    retries = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.retry"]
    assert [(r["order_id"], r["reason"], r["command"]) for r in retries] == [
        (STOP_ID, "cancel lost with the connection", "cancel")
    ]
    # BBB gets a new stop at once (its shares are bare)
    stops = [c for c in t.commands if isinstance(c, SubmitOrder) and c.symbol == "BBB"]
    assert [(c.qty, c.stop_price) for c in stops] == [(D(10), D("49.00"))]


def test_a_snapshot_asked_on_a_working_link_leaves_requests_in_flight_to_their_answers():
    state = step(_opened(), Tick(_sec(1), "AAA", D("101"))).state  # the cancel is in flight
    t = step(state, _snap(2, [_stop_of(state, "BBB-1")]))
    assert not _conflicts(t.commands)
    assert not [c for c in t.commands if isinstance(c, Record) and c.kind == "order.retry"]
    assert t.state.positions["AAA-1"].orders.exit.status is OrderStatus.PENDING_CANCEL


def test_orders_found_filled_canceled_or_rejected_during_the_outage():
    state = _outage(_opened())
    a, b = _stop_of(state), _stop_of(state, "BBB-1")
    filled = evolve(a, status="filled", filled_qty=D(4), filled_avg_price=D("98.9"),
                    updated_at=_sec(1.55))  # fmt: skip
    rejected = evolve(b, status="rejected")
    t = step(state, _snap(2, [filled, rejected], positions=(("AAA", D(6)), ("BBB", D(10)))))
    [fill] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (fill["order_id"], fill["qty"], fill["price"], fill["executed"]) == (
        STOP_ID, D(4), D("98.9"), _sec(1.55)
    )  # fmt: skip
    assert t.state.positions["AAA-1"].fills.remaining == D(6)
    refused = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.rejected"]
    assert [r["reason"] for r in refused] == ["rejected while offline"]


def test_shares_the_engine_cannot_match_keep_it_in_recovery_with_an_alert():
    state = _outage(_opened())
    snap = _snap(2, [_stop_of(state), _stop_of(state, "BBB-1")],
                 positions=(("AAA", D(10)), ("BBB", D(10)), ("CCC", D(5))))  # fmt: skip
    t = step(state, snap)
    [alert] = [c for c in t.commands if isinstance(c, Alert) and c.reason == "position_mismatch"]
    assert alert.context == {"positions": [{"symbol": "CCC", "engine": D(0), "broker": D(5)}]}
    assert t.state.link.recovering and t.state.link.synced
    [evidence] = [
        c for c in t.commands if isinstance(c, Record) and c.kind == "divergence.detected"
    ]
    assert evidence.data == {
        "symbol": "CCC", "key": "", "evidence": "held shares without a price",
        "believed": {"qty": D(0)}, "broker": {"qty": D(5)},
    }  # fmt: skip
    ok = step(t.state, evolve(snap, ts=_sec(3), marks=(("CCC", D(20)),)))
    assert not [c for c in ok.commands if isinstance(c, Alert) and c.reason == "position_mismatch"]
    [mode] = [c for c in ok.commands if isinstance(c, Record) and c.kind == "mode.changed"]
    assert (mode["from"], mode["to"], mode["positions"]) == ("recovery", "normal", 3)
    assert mode["reason"] == "snapshot reconciled; every position validated"
    adopted = ok.state.positions["CCC-1"]
    assert adopted.ladder.entry == D(20) and adopted.ladder.initial_stop == D("19.60")


# --- the state's derived values, by hand ------------------------------------------------


def test_a_book_bounds_its_prices_by_the_triggers_watched_stops_and_limit_sales():
    state = _opened()
    pos = state.positions["AAA-1"]
    assert pos.ladder.trigger == D("101.0")
    book = Book.of((pos,), D("100.5"), True)
    assert (book.lo, book.hi, book.q, book.c, book.u, book.tracked) == (
        D("-Infinity"), D("101.0"), D(10), D(1000), D("5.0"), True
    )  # fmt: skip
    assert Book.of((pos,), None, False).u == 0
    watched = Book.of((pos,), D("100.5"), False, watch=True)
    assert (watched.lo, watched.hi) == (D("99.00"), D("101.0"))
    closing = evolve(pos, close_reason=CloseReason.FLATTEN)
    assert Book.of((closing,), D("100.5"), False, watch=True).lo == D("-Infinity")
    sale = Order("s", OrderRole.EXIT, SELL, OrderType.LIMIT, D(10), limit_price=D("99.50"))
    selling = evolve(pos, orders=evolve(pos.orders, sell=sale))
    assert Book.of((selling,), D("100.5"), False).lo == D("99.50")
    assert Book.of((selling,), D("100.5"), False, watch=True).lo == D("99.50")  # the higher
    two = Book.of((pos, evolve(pos, key="AAA-2", ladder=evolve(pos.ladder, trigger=D("100.7")))),
                  D("100"), False)  # fmt: skip
    assert (two.hi, two.q, two.keys) == (D("100.7"), D(20), ("AAA-1", "AAA-2"))
    short, _ = _short_opened()
    spos = short.positions["AAA-1"]
    sbook = Book.of((spos,), D("99.5"), False, watch=True)
    assert (sbook.lo, sbook.hi, sbook.q, sbook.u) == (D("99.0"), D("101.00"), D(-10), D("5.0"))
    assert Book.of((), None, False) == Book()


def test_lots_of_one_instant_act_by_symbol_then_lot_number():
    state = _opened()
    a = state.positions["AAA-1"]
    lots = {
        "BBB-1": state.positions["BBB-1"],
        "AAA-10": evolve(a, key="AAA-10"),
        "AAA-9": evolve(a, key="AAA-9"),
        "AAA-1": a,
        "AA-3": evolve(a, key="AA-3", symbol="AA"),
        "ZZZ-1": evolve(a, key="ZZZ-1", symbol="ZZZ", opened=a.opened - timedelta(seconds=1)),
    }
    s = state.evolve(positions=state.positions.update(lots))
    assert [p.key for p in s.opened_order()] == [
        "ZZZ-1", "AA-3", "AAA-1", "AAA-9", "AAA-10", "BBB-1"
    ]  # fmt: skip


def test_the_link_sends_and_holds_as_its_state_says():
    pos = _opened().positions["AAA-1"]
    bare = evolve(pos, exposed_since=_sec(1))
    assert Link().sending and Link().open_for(pos) and Link().mode is LinkMode.NORMAL
    down = Link(up=False)
    assert not down.sending and not down.open_for(bare) and down.mode is LinkMode.OFFLINE
    unsynced = Link(synced=False)
    assert not unsynced.sending and not unsynced.open_for(bare)
    assert unsynced.mode is LinkMode.NORMAL
    assert Link(recovering=True).mode is LinkMode.RECOVERY
    assert Link(up=False, recovering=True).mode is LinkMode.OFFLINE
    tripped = Link(breaker=BreakerState.OPEN)
    assert not tripped.sending and not tripped.open_for(pos) and tripped.open_for(bare)
    half = Link(breaker=BreakerState.HALF_OPEN)
    assert half.sending and half.open_for(pos)


def test_the_state_reads_back_what_it_holds():
    state = _opened()
    assert state.last_price("AAA") == D("100") and state.last_price("ZZZ") is None
    assert [p.key for p in state.in_symbol("AAA")] == ["AAA-1"] and state.in_symbol("ZZZ") == ()
    view = state.view("AAA-1")
    assert (view.price, view.as_of, view.r, view.unrealized) == (D("100"), _sec(0), 0, 0)
    assert state.view("nope") is None
    moved = step(state, Tick(_sec(5), "AAA", D("100.5"))).state
    view = moved.view("AAA-1")
    assert (view.price, view.as_of, view.r, view.unrealized) == (
        D("100.5"), _sec(5), D("0.5"), D("5.0")
    )  # fmt: skip
    early = state.evolve(marks=state.marks.set("AAA", Tick(_sec(-5), "AAA", D("90"))))
    assert early.view("AAA-1").price == D(100)  # a mark older than the opening: its entry
    same = state.evolve(marks=state.marks.set("AAA", Tick(_sec(0), "AAA", D("100.25"))))
    assert same.view("AAA-1").price == D("100.25")  # a print at the opening instant counts
    assert not state.watching
    closed = state.evolve(market=Market(regular=False))
    assert closed.watching
    assert not closed._replace(config=Config(extended_exit="wait")).watching
    assert not tracks_days(Config())
    assert tracks_days(Config(goal=GoalConfig(target=D(1))))
    every = {
        "positions": state.positions.delete("AAA-1"),
        "books": state.books.delete("AAA"),
        "marks": state.marks.delete("AAA"),
        "entries": state.entries.set("E-1", None),
        "counts": state.counts.set("X", 1),
        "routes": state.routes.delete(STOP_ID),
        "daily": evolve(state.daily, trades=9),
        "phase": evolve(state.phase, win_streak=3),
        "stale": state.stale.set("X", _sec(1)),
        "due": _sec(7),
        "link": Link(up=False),
        "intents": state.intents.set("i", ""),
        "market": Market(regular=False),
    }
    changed = state.evolve(**every)
    for name, value in every.items():
        assert getattr(changed, name) == value, name
    assert changed.config is state.config and state.evolve() == state


def test_which_close_reasons_sell_everything_and_which_are_protections_own_exits():
    assert {r for r in CloseReason if r.market_exit} == {
        CloseReason.STOP_THROUGH_MARKET, CloseReason.PROTECTION_REFUSED,
        CloseReason.PROTECT_DEADLINE,
    }  # fmt: skip
    assert {r for r in CloseReason if r.sells_all} == {
        CloseReason.STOP_THROUGH_MARKET, CloseReason.PROTECTION_REFUSED,
        CloseReason.PROTECT_DEADLINE, CloseReason.FLATTEN, CloseReason.INITIAL_RISK_NOT_POSITIVE,
        CloseReason.WATCHED_STOP,
    }  # fmt: skip


def test_shares_held_at_a_price_of_zero_are_evidence_not_a_position():
    state = _outage(_opened())
    snap = _snap(2, [_stop_of(state), _stop_of(state, "BBB-1")],
                 positions=(("AAA", D(10)), ("BBB", D(10)), ("CCC", D(5))),
                 prices=(("CCC", D(0)),), marks=(("CCC", D(0)),))  # fmt: skip
    t = step(state, snap)
    [evidence] = [
        c for c in t.commands if isinstance(c, Record) and c.kind == "divergence.detected"
    ]
    assert evidence["evidence"] == "held shares without a price"
    assert not [k for k in t.state.positions if k.startswith("CCC")]


def test_an_adopted_position_takes_the_stop_rounded_in_its_favour_and_routes_the_users_stop():
    state = EngineState.empty()
    t = step(state, BrokerSnapshot(_sec(0), positions=(("CCC", D(7)),),
                                    prices=(("CCC", D("20.37")),)))  # fmt: skip
    pos = t.state.positions["CCC-1"]
    # 2 % below 20.37 is 19.9626: a long's stop rounds up, to 19.97 (never further away)
    assert (pos.ladder.initial_stop, pos.ladder.stop) == (D("19.97"), D("19.97"))
    [adopted] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.adopted"]
    assert (adopted["stop_source"], adopted["initial_stop"], adopted["order_adopted"]) == (
        "default_risk", D("19.97"), None
    )  # fmt: skip
    t = step(state, BrokerSnapshot(_sec(0), positions=(("CCC", D(-7)),),
                                    prices=(("CCC", D("20.37")),)))  # fmt: skip
    assert t.state.positions["CCC-1"].ladder.initial_stop == D("20.77")  # 20.7774, rounded down
    theirs = BrokerOrder("user-stop", "CCC", "open", D(7), side=SELL, type=OrderType.STOP,
                         stop_price=D("19.50"))  # fmt: skip
    t = step(state, BrokerSnapshot(_sec(0), positions=(("CCC", D(7)),), orders=(theirs,),
                                    prices=(("CCC", D("20.37")),)))  # fmt: skip
    pos = t.state.positions["CCC-1"]
    assert t.state.routes["user-stop"] == "CCC-1"
    assert pos.orders.exit.id == "user-stop" and pos.ladder.initial_stop == D("19.50")
    [adopted] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.adopted"]
    assert (adopted["stop_source"], adopted["order_adopted"]) == ("own_stop", "user-stop")


def test_a_lot_closed_outside_cancels_its_sale_too_and_a_shrink_caps_the_queue():
    state = _tranche_sent()
    pos = state.positions["AAA-1"]
    sale = pos.orders.sell
    accepted = step(state, OrderAccepted(_sec(1.1), sale.id)).state
    listed = BrokerOrder(sale.id, "AAA", "open", sale.qty, side=SELL, type=OrderType.MARKET)
    t = step(accepted, _snap(2, [listed, _stop_of(accepted, "BBB-1")],
                             positions=(("BBB", D(10)),)))  # fmt: skip
    assert sale.id in _cancels(t.commands)
    after = t.state.positions["AAA-1"]
    assert after.orders.sell.status is OrderStatus.PENDING_CANCEL
    assert after.orders.to_sell == 0 and after.orders.milestones == ()
    # a queue of 8 on a lot the broker holds 3 of: at most the 3 stay queued
    queued = evolve(pos, orders=evolve(pos.orders, sell=None, to_sell=D(8),
                                       milestones=((D(2), D(8)),)))  # fmt: skip
    s = state.evolve(positions=state.positions.set(pos.key, queued))
    t = step(s, _snap(2, [_stop_of(s, "BBB-1")], positions=(("AAA", D(3)), ("BBB", D(10)))))
    assert t.state.positions["AAA-1"].fills.remaining == D(3)
    sold = [c.qty for c in t.commands if isinstance(c, SubmitOrder) and c.symbol == "AAA"]
    assert sold == [D(3)] and t.state.positions["AAA-1"].orders.to_sell == 0


def test_a_users_stop_filled_in_part_is_taken_over_for_what_it_still_holds():
    theirs = BrokerOrder("user-stop", "CCC", "open", D(12), D(3), side=SELL,
                         type=OrderType.STOP, stop_price=D("19.50"))  # fmt: skip
    snap = BrokerSnapshot(
        _sec(0), positions=(("CCC", D(9)),), orders=(theirs,), prices=(("CCC", D(20)),)
    )
    t = step(EngineState.empty(), snap)
    pos = t.state.positions["CCC-1"]
    assert (pos.orders.exit.qty, pos.orders.exit.open_qty) == (D(9), D(9))
    assert pos.exposed_since is None and pos.orders.restore.open_qty == D(9)


def test_an_entry_the_broker_never_got_is_dropped_not_resent():
    state = step(EngineState.empty(), Tick(_sec(0), "AAA", D("100"))).state
    state = step(state, EntryIntent(_sec(0), "AAA", Side.LONG, D("99"), D(10))).state
    state = _outage(state)
    t = step(state, _snap(2, [], positions=()))
    [record] = _conflicts(t.commands)
    assert record == {
        "symbol": "AAA", "key": "AAA-1", "type": "order_unknown_to_broker",
        "order_ids": ["rt-AAA-1-entry"], "resolution": "entry_dropped",
        "reason": "not in the broker's snapshot of open and changed orders",
    }  # fmt: skip
    assert len(t.state.entries) == 0
    assert not [c for c in t.commands if isinstance(c, SubmitOrder)]


def test_one_missed_share_and_a_cancel_at_the_brokers_time_are_replayed():
    state = _outage(_opened())
    a, b = _stop_of(state), _stop_of(state, "BBB-1")
    one = evolve(a, filled_qty=D(1), filled_avg_price=D("98.95"))
    gone = evolve(b, status="canceled", updated_at=_sec(1.55))
    t = step(state, _snap(2, [one, gone], positions=(("AAA", D(9)), ("BBB", D(10)))))
    [fill] = [c for c in t.commands if isinstance(c, Record) and c.kind == "order.filled"]
    assert (fill["qty"], fill["price"]) == (D(1), D("98.95"))
    assert t.state.positions["AAA-1"].fills.remaining == D(9)
    # BBB's stop was canceled at 1.55 s by the broker's clock: bare since then
    assert t.state.positions["BBB-1"].exposed_since == _sec(1.55)


def test_an_order_waiting_for_its_retry_is_skipped_and_the_next_still_judged():
    state = _opened()
    aaa = state.positions["AAA-1"]
    waiting = evolve(aaa.orders.exit, status=OrderStatus.RETRY_WAIT)
    aaa = evolve(aaa, orders=evolve(aaa.orders, exit=waiting), retry=Retry(1, _sec(50)))
    state = state.evolve(positions=state.positions.set(aaa.key, aaa))
    state = _outage(state)
    t = step(state, _snap(2, [], positions=(("AAA", D(10)), ("BBB", D(10)))))
    unknown = [c["order_ids"] for c in _conflicts(t.commands)
               if c["type"] == "order_unknown_to_broker"]  # fmt: skip
    assert unknown == [["rt-BBB-1-1-stop"]]


def test_shares_beyond_the_lots_are_adopted_as_a_new_lot_and_one_share_short_shrinks():
    state = _outage(_opened())
    orders = [_stop_of(state), _stop_of(state, "BBB-1")]
    t = step(state, _snap(2, orders, positions=(("AAA", D(15)), ("BBB", D(9))),
                          prices=(("AAA", D(100)),)))  # fmt: skip
    assert t.state.positions["AAA-1"].fills.remaining == D(10)
    assert t.state.positions["AAA-2"].fills.remaining == D(5)
    [shrunk] = [c for c in t.commands if isinstance(c, Record) and c.kind == "position.reconciled"]
    assert (shrunk["key"], shrunk["from"], shrunk["to"]) == ("BBB-1", D(10), D(9))


def test_a_positions_orders_say_which_slot_holds_an_id_and_what_they_hold():
    stop = Order("x", OrderRole.PROTECT, SELL, OrderType.STOP, D(10), stop_price=D(99),
                 filled=D(2), status=OrderStatus.LIVE)  # fmt: skip
    sale = Order("s", OrderRole.PARTIAL, SELL, OrderType.MARKET, D(5), filled=D(1))
    entry = Order("e", OrderRole.ENTRY, OrderAction.BUY, OrderType.MARKET, D(20))
    orders = Orders(entry=entry, exit=stop, sell=sale)
    assert [orders.slot_of(i) for i in ("x", "s", "e", "z")] == [
        Slot.EXIT, Slot.SELL, Slot.ENTRY, None
    ]  # fmt: skip
    assert [orders.get(s) for s in (Slot.EXIT, Slot.SELL, Slot.ENTRY)] == [stop, sale, entry]
    assert orders.held_by_sells() == D(8) + D(4)
    assert Orders().held_by_sells() == 0 and Orders().slot_of("x") is None
    for status, working in (
        (OrderStatus.LIVE, True), (OrderStatus.PENDING_CANCEL, True),
        (OrderStatus.CANCEL_WAIT, True), (OrderStatus.PENDING_NEW, False),
        (OrderStatus.RETRY_WAIT, False),
    ):  # fmt: skip
        o = Orders(exit=evolve(stop, status=status))
        assert o.working_stop_qty() == (D(8) if working else 0), status
    assert Orders().working_stop_qty() == 0
