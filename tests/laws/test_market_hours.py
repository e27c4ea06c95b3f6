"""Market hours and wash trades, as laws over generated histories: outside the
regular session the engine watches every stop, and acts on a print through it in that step;
the protection mode changes exactly at session boundaries; and no order goes out that the
session or the wash-trade rule would refuse. (No numbered property of PROPERTIES.md covers
them: the names say what they pin down.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine import (
    CancelOrder,
    Config,
    EngineState,
    EntryIntent,
    Event,
    MarketHours,
    OrderRefusal,
    OrderRejected,
    OrderType,
    ProtectionConfig,
    Record,
    Side,
    SubmitOrder,
    Tick,
    TradingDay,
)
from shell.broker.simulated import SimulatedBroker
from shell.hours import market_hours
from shell.simulate import run_simulation
from tests.harness import Step
from tests.strategies import histories, market_fills

CENT = Decimal("0.01")


def _fold(events: list[Event], config: Config, fill: str = "next") -> list[Step]:
    steps: list[Step] = []
    broker = SimulatedBroker(market_fill=fill, hours=config.hours, wash_check=True)  # type: ignore[arg-type]
    run_simulation(
        events,
        EngineState.empty(config),
        broker,
        on_step=lambda e, before, t: steps.append(Step(e, before, t.state, t.commands)),
    )
    return steps


# A short regular session at the start of the generated histories (they begin 2024-03-01
# 14:30 UTC, a tick a second): everything after 14:30:04 is outside it (the next session is
# days away).
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
SHORT = MarketHours(
    "test",
    (
        TradingDay(T0, T0 + timedelta(seconds=4)),
        TradingDay(T0 + timedelta(days=3), T0 + timedelta(days=3, hours=6)),
    ),
)


@given(
    st.sampled_from(Side),
    st.integers(1, 500),
    st.integers(2, 300),
    st.integers(1, 50),
    market_fills(),
    st.booleans(),
)
def test_outside_the_regular_session_a_print_through_the_stop_acts_in_the_same_step(
    side, qty, risk_cents, through_cents, fill, take_profit
):
    """A position opened in the regular session; after the close a print at or through its
    stop: that very step journals `protection.triggered`, alerts `watched_stop` and sends the
    first order command of the exit (the cancel of the broker stop that holds the shares);
    the exit that follows is an extended-hours limit through the print, never a market order
    or a stop, and it sells every share."""
    entry = Decimal(100)
    risk = risk_cents * CENT
    stop = entry - risk * side.sign
    through = stop - through_cents * CENT * side.sign
    close = T0 + timedelta(seconds=4)
    events: list[Event] = [
        Tick(T0, "AAA", entry),
        EntryIntent(T0 + timedelta(seconds=1), "AAA", side, stop, Decimal(qty)),
        Tick(T0 + timedelta(seconds=2), "AAA", entry),
        Tick(close + timedelta(minutes=5), "AAA", through),
        Tick(close + timedelta(minutes=6), "AAA", through),
        Tick(close + timedelta(minutes=7), "AAA", through),
    ]
    config = Config(protection=ProtectionConfig(take_profit=take_profit), hours=SHORT)
    steps = _fold(events, config, fill)
    [hit] = [s for s in steps if s.records("protection.triggered")]
    assert hit.event == events[3]
    assert any(isinstance(c, CancelOrder) and c.order_id.endswith("-stop") for c in hit.commands)
    assert any(getattr(c, "reason", "") == "watched_stop" for c in hit.commands)
    sales = [c for s in steps for c in s.submits() if c.purpose == "exit"]
    assert sales and all(c.type is OrderType.LIMIT and c.extended_hours for c in sales)
    first = sales[0]
    assert (first.limit_price <= through) if side is Side.LONG else (first.limit_price >= through)
    closed = [r for s in steps for r in s.records("position.closed")]
    assert [r["reason"] for r in closed] == ["watched_stop"]
    assert closed[0]["qty"] == qty


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, int]:
    """A start hour in 2013 near a DST change, a holiday or an early close, and a length."""
    around = draw(
        st.sampled_from([date(2013, 3, 8), date(2013, 11, 1), date(2013, 7, 2), date(2013, 11, 27)])
    )
    start = datetime.combine(around, datetime.min.time(), UTC) + timedelta(
        hours=draw(st.integers(0, 48))
    )
    return start, draw(st.integers(24, 120))


NYSE_2013 = market_hours("us_equity", date(2013, 1, 1), date(2013, 12, 31))


@given(windows(), st.integers(1, 59))
def test_the_protection_mode_changes_exactly_at_session_boundaries(window, minute):
    """A position held across days of prints every hour (at `minute` past): every
    `protection.mode` record is stamped with a session's open or close, a change to
    `watched` at each close and to `broker_stop` at each open crossed while it is held, in
    turn; across DST changes, July 4th and the early close after Thanksgiving."""
    assert NYSE_2013 is not None
    start, hours = window
    opens = {d.open for d in NYSE_2013.days}
    closes = {d.close for d in NYSE_2013.days}
    first_open = min(o for o in opens if o >= start)
    t = first_open + timedelta(minutes=1)
    events: list[Event] = [
        Tick(t, "AAA", Decimal(100)),
        EntryIntent(t + timedelta(seconds=1), "AAA", Side.LONG, Decimal(50), Decimal(1)),
    ]
    events += [
        Tick(t + timedelta(hours=h, minutes=minute), "AAA", Decimal(100)) for h in range(hours)
    ]
    config = Config(protection=ProtectionConfig(take_profit=False), hours=NYSE_2013)
    steps = _fold(events, config)
    modes = [r for s in steps for r in s.records("protection.mode")]
    end = events[-1].ts
    crossed = sorted(b for b in opens | closes if first_open < b <= end)
    assert [r.ts for r in modes] == crossed
    for record in modes:
        assert record["mode"] == ("watched" if record.ts in closes else "broker_stop")


@given(histories(), market_fills(), st.booleans(), st.sampled_from(["limit", "open"]))
def test_no_order_is_sent_that_the_session_or_the_wash_trade_rule_would_refuse(
    history, fill, take_profit, partials
):
    """Lots in one symbol, a session that closes a few prints in: the broker (refusing as
    Alpaca does) never refuses an order as a potential wash trade or an extended-hours order
    it cannot take; outside the regular session ratchet sends no market order and no entry,
    and every sale it sends there is an extended-hours limit."""
    config = Config(
        protection=ProtectionConfig(take_profit=take_profit),
        hours=SHORT,
        extended_partials=partials,
    )
    steps = _fold(list(history.events), config, fill)
    for step in steps:
        if isinstance(step.event, OrderRejected):
            assert step.event.kind is not OrderRefusal.WASH_TRADE, step.event
            assert "extended hours" not in step.event.reason, step.event
        for command in step.commands:
            if not isinstance(command, SubmitOrder) or SHORT.regular(command.ts):
                continue
            assert command.purpose != "entry", command
            assert command.type is not OrderType.MARKET, command
            if command.type is OrderType.LIMIT:
                assert command.extended_hours, command
    records = [c for s in steps for c in s.commands if isinstance(c, Record)]
    assert all(r.kind != "entry.accepted" or SHORT.regular(r.ts) for r in records)


def test_an_entry_still_working_at_the_close_is_canceled_and_does_not_hold_up_an_exit():
    """AAA-2's market entry goes a second before the close and has not filled when the
    session closes (it would wait for the next open). It is canceled at the close
    (`market_closed`, `entry_canceled`), so AAA-1's watched exit, triggered at the same print,
    goes out at once as an extended-hours limit instead of waiting ten seconds for the entry
    and then being refused as a potential wash trade against it (found by the law above)."""

    def tick(s: int, price: str) -> Tick:
        return Tick(T0 + timedelta(seconds=s), "AAA", Decimal(price), Decimal(0))

    events: list[Event] = [
        tick(0, "5.00"),
        EntryIntent(T0 + timedelta(seconds=1), "AAA", Side.LONG, Decimal("4.99"), Decimal(1)),
        tick(2, "5.00"),
        tick(3, "5.01"),
        EntryIntent(T0 + timedelta(seconds=3), "AAA", Side.LONG, Decimal("5.00"), Decimal(1)),
        *(tick(s, "5.00") for s in range(4, 15)),
    ]
    config = Config(protection=ProtectionConfig(take_profit=False), hours=SHORT)
    steps = _fold(events, config, "next")
    refused = [s.event for s in steps if isinstance(s.event, OrderRejected)]
    assert refused == []
    records = [c for s in steps for c in s.commands if isinstance(c, Record)]
    [closed] = [r for r in records if r.kind == "conflict.detected"]
    assert (closed["type"], closed["key"], closed["resolution"]) == (
        "market_closed", "AAA-2", "entry_canceled"
    )  # fmt: skip
    assert closed.ts == T0 + timedelta(seconds=4)
    [exit_sent] = [
        r for r in records if r.kind == "order.submitted" and r["purpose"] == "exit"
    ]  # fmt: skip
    assert exit_sent.ts == T0 + timedelta(seconds=4) and exit_sent["type"] == "limit"
    assert [r["key"] for r in records if r.kind == "trade.closed"] == ["AAA-1"]
