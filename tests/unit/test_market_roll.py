"""The market's sessions rolling under held positions (SPEC §3, §10): at the close each
position's protection changes mode, journaled with its stop, and from then on the engine
watches the stop itself (a later print through it acts at once); at the open the broker's
stop takes over again; past the calendar's last day the hours rules are off, said once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from attrs import evolve

from engine import (
    Alert,
    CancelOrder,
    Config,
    Connectivity,
    EngineState,
    EntryIntent,
    Event,
    OrderAccepted,
    OrderRefusal,
    OrderRejected,
    OrderStatus,
    Record,
    Side,
    Tick,
    step,
)
from engine.calendar import MarketHours, TradingDay
from engine.state import BreakerState, Market
from tests.laws.test_market_hours import SHORT, T0, _fold

CLOSE = T0 + timedelta(seconds=4)
OPEN = T0 + timedelta(days=3)
LAST_CLOSE = OPEN + timedelta(hours=6)
CONFIG = Config(hours=SHORT)


def _held() -> list[Event]:
    """AAA long 10 @ 100, stop 99, opened in the short regular session."""
    return [
        Tick(T0, "AAA", D("100")),
        EntryIntent(T0 + timedelta(seconds=1), "AAA", Side.LONG, D("99"), D(10)),
        Tick(T0 + timedelta(seconds=2), "AAA", D("100")),
    ]


def _records(steps, kind: str) -> list[Record]:
    return [r for s in steps for r in s.records(kind)]


def test_at_the_close_the_mode_changes_and_a_later_print_through_the_stop_acts_at_once():
    steps = _fold([
        *_held(),
        Tick(CLOSE + timedelta(minutes=1), "AAA", D("99.50")),  # after the close, above the stop
        Tick(CLOSE + timedelta(minutes=2), "AAA", D("99.60")),
        Tick(CLOSE + timedelta(minutes=3), "AAA", D("98.90")),  # through it
    ], CONFIG)  # fmt: skip
    assert _records(steps, "protection.mode") == [
        Record("protection.mode", CLOSE, {
            "symbol": "AAA", "key": "AAA-1", "mode": "watched", "previous": "broker_stop",
            "session": "extended", "stop": D("99.00"),
        })
    ]  # fmt: skip
    [hit] = [s for s in steps if s.records("protection.triggered")]
    assert hit.event == Tick(CLOSE + timedelta(minutes=3), "AAA", D("98.90"))


def test_offline_at_the_close_the_engine_still_watches_the_stop():
    """The link is down when the session closes and stays down: nothing can be sent, but the
    stop is watched all the same, so a print through it queues the sale at once (to go when
    the link is back)."""
    state = _fold(_held(), CONFIG)[-1].after
    state = step(state, Connectivity(T0 + timedelta(seconds=3), False)).state
    t = step(state, Tick(CLOSE + timedelta(minutes=1), "AAA", D("99.50")))
    assert [r["mode"] for r in t.commands if isinstance(r, Record)
            and r.kind == "protection.mode"] == ["watched"]  # fmt: skip
    t = step(t.state, Tick(CLOSE + timedelta(minutes=3), "AAA", D("98.90")))
    assert [c.kind for c in t.commands if isinstance(c, Record)] == ["protection.triggered"]
    assert t.state.positions["AAA-1"].orders.to_sell == D(10)


def test_at_the_open_the_broker_stop_takes_over_again():
    steps = _fold([
        *_held(),
        Tick(CLOSE + timedelta(minutes=1), "AAA", D("99.50")),
        Tick(OPEN + timedelta(minutes=1), "AAA", D("99.40")),
    ], CONFIG)  # fmt: skip
    modes = _records(steps, "protection.mode")
    assert [(r.ts, r["mode"], r["previous"], r["session"]) for r in modes] == [
        (CLOSE, "watched", "broker_stop", "extended"),
        (OPEN, "broker_stop", "watched", "regular"),
    ]
    assert modes[1]["stop"] == D("99.00") and modes[1]["key"] == "AAA-1"
    book = steps[-1].after.books["AAA"]
    # the broker's stop works again: the engine no longer bounds the band by it
    assert book.lo < D("99.00")


def test_past_the_calendars_last_day_the_rules_are_off_and_that_is_said_once():
    steps = _fold([
        Tick(LAST_CLOSE + timedelta(hours=1), "AAA", D("100")),
        Tick(LAST_CLOSE + timedelta(hours=2), "AAA", D("100")),
    ], CONFIG)  # fmt: skip
    alerts = [c for s in steps for c in s.commands
              if isinstance(c, Alert) and c.reason == "market_hours_unknown"]  # fmt: skip
    assert alerts == [
        Alert(LAST_CLOSE + timedelta(hours=1), "market_hours_unknown",
              {"calendar": "test", "last_close": LAST_CLOSE})
    ]  # fmt: skip
    assert steps[-1].after.market == Market(True, datetime(9999, 12, 31, tzinfo=UTC), False)


def test_entries_working_at_the_close_are_canceled_and_those_waiting_dropped():
    """Three entries when the session closes: AAA's accepted, BBB's sent and not yet
    answered, CCC's refused and waiting for its retry. AAA's and BBB's are canceled (in key
    order, each journaled), CCC's is dropped with `market_closed` and its client id."""
    state = EngineState.empty(CONFIG)
    for symbol in ("AAA", "BBB", "CCC"):
        state = step(state, Tick(T0, symbol, D("100"))).state
        intent = EntryIntent(T0, symbol, Side.LONG, D("99"), D(10), id=f"bot-{symbol}")
        state = step(state, intent).state
    state = step(state, OrderAccepted(T0, "rt-AAA-1-entry")).state
    state = step(state, OrderRejected(T0, "rt-CCC-1-entry", "HTTP 503", OrderRefusal.TRANSIENT))
    state = state.state
    assert state.entries["CCC-1"].order.status is OrderStatus.RETRY_WAIT
    t = step(state, Tick(CLOSE + timedelta(seconds=1), "AAA", D("100")))
    why = "the regular session closed before the entry filled"
    conflicts = [c for c in t.commands if isinstance(c, Record) and c.kind == "conflict.detected"]
    assert conflicts == [
        Record("conflict.detected", CLOSE + timedelta(seconds=1), {
            "symbol": symbol, "key": f"{symbol}-1", "type": "market_closed",
            "order_ids": [f"rt-{symbol}-1-entry"], "resolution": "entry_canceled", "reason": why,
        })
        for symbol in ("AAA", "BBB")
    ]  # fmt: skip
    cancels = [c for c in t.commands if isinstance(c, CancelOrder)]
    assert [c.order_id for c in cancels] == ["rt-AAA-1-entry", "rt-BBB-1-entry"]
    at = CLOSE + timedelta(seconds=1)
    assert [(c.symbol, c.ts) for c in cancels] == [("AAA", at), ("BBB", at)]
    [blocked] = [c for c in t.commands if isinstance(c, Record) and c.kind == "entry.blocked"]
    assert blocked == Record("entry.blocked", CLOSE + timedelta(seconds=1), {
        "symbol": "CCC", "reason": "market_closed", "detail": why, "id": "bot-CCC",
    })  # fmt: skip
    entries = t.state.entries
    assert "CCC-1" not in entries and "rt-CCC-1-entry" not in t.state.routes
    assert [entries[k].order.status for k in ("AAA-1", "BBB-1")] == [OrderStatus.PENDING_CANCEL] * 2
    assert t.state.routes["rt-AAA-1-entry"] == "AAA-1"


def test_with_the_breaker_open_at_the_close_the_engine_still_watches_the_stop():
    """The breaker holds a covered position's order steps, so the close cannot re-file it
    through an order step; the engine must still bound its prices by the stop it now
    watches: a print through the stop after the close queues the sale at once."""
    state = _fold(_held(), CONFIG)[-1].after
    reopen = CLOSE + timedelta(hours=1)
    state = state.evolve(link=evolve(state.link, breaker=BreakerState.OPEN, reopen_at=reopen))
    t = step(state, Tick(CLOSE + timedelta(minutes=1), "AAA", D("99.50")))
    assert t.state.books["AAA"].lo == D("99.00")
    t = step(t.state, Tick(CLOSE + timedelta(minutes=3), "AAA", D("98.99")))
    assert [c.kind for c in t.commands if isinstance(c, Record)] == ["protection.triggered"]
    assert t.state.positions["AAA-1"].orders.to_sell == D(10)


def test_a_calendar_run_past_after_sessions_it_knew_is_said_once_with_its_last_close():
    """Three sessions; the events roll through the first two and run past the third: the
    operator hears once, with the last session's close (not another's)."""
    days = (*SHORT.days, TradingDay(OPEN + timedelta(days=1), OPEN + timedelta(days=1, hours=6)))
    cfg = Config(hours=MarketHours("three", days))
    last = days[-1].close
    steps = _fold([
        Tick(T0 + timedelta(seconds=1), "AAA", D("100")),
        Tick(OPEN + timedelta(minutes=1), "AAA", D("100")),
        Tick(last - timedelta(minutes=1), "AAA", D("100")),
        Tick(last + timedelta(minutes=1), "AAA", D("100")),
        Tick(last + timedelta(hours=30), "AAA", D("100")),
    ], cfg)  # fmt: skip
    known = [s.after.market.known for s in steps if isinstance(s.event, Tick)]
    assert known == [True, True, True, False, False]
    alerts = [c for s in steps for c in s.commands
              if isinstance(c, Alert) and c.reason == "market_hours_unknown"]  # fmt: skip
    assert alerts == [
        Alert(last, "market_hours_unknown",
              {"calendar": "three", "last_close": last})
    ]  # fmt: skip


def test_a_print_exactly_at_the_close_rolls_the_market():
    state = _fold(_held(), CONFIG)[-1].after
    assert state.market.until == CLOSE
    t = step(state, Tick(CLOSE, "AAA", D("100")))
    [mode] = [c for c in t.commands if isinstance(c, Record) and c.kind == "protection.mode"]
    assert (mode.ts, mode["mode"]) == (CLOSE, "watched")
    assert not t.state.market.regular
