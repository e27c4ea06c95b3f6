"""Market hours: the NYSE calendar as session data, and the fill rules that follow
from it in the shared book, the simulated broker and the exchange."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from engine import (
    MarketHours,
    OrderAction,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    SubmitOrder,
    Tick,
    TradingDay,
)
from shell.broker.matching import WASH_TRADE, Book
from shell.broker.simulated import SimulatedBroker
from shell.config import ConfigError, parse_settings
from shell.exchange.venue import Venue
from shell.hours import market_hours


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def nyse_2013() -> MarketHours:
    hours = market_hours("us_equity", date(2013, 1, 1), date(2013, 12, 31))
    assert hours is not None
    return hours


def test_the_calendar_knows_dst_holidays_and_early_closes(nyse_2013):
    """Regular sessions in UTC: 14:30-21:00 in winter, 13:30-20:00 after the March change and
    back in November; no session on July 4th; 18:00 UTC (13:00 ET) on the day after
    Thanksgiving."""
    by_day = {d.open.date(): d for d in nyse_2013.days}
    assert by_day[date(2013, 3, 8)] == TradingDay(_utc(2013, 3, 8, 14, 30), _utc(2013, 3, 8, 21))
    assert by_day[date(2013, 3, 11)] == TradingDay(_utc(2013, 3, 11, 13, 30), _utc(2013, 3, 11, 20))
    assert by_day[date(2013, 11, 4)].open == _utc(2013, 11, 4, 14, 30)
    assert date(2013, 7, 4) not in by_day and date(2013, 7, 5) in by_day
    assert by_day[date(2013, 11, 29)].close == _utc(2013, 11, 29, 18)
    assert len(nyse_2013.days) == 252  # NYSE's 2013 trading days


def test_at_says_whether_regular_and_when_that_changes(nyse_2013):
    """Before the open: not regular until the open; inside: regular until the close; after
    the close of a Wednesday before a holiday: not regular until Friday's open; past the
    calendar: unknown."""
    assert nyse_2013.at(_utc(2013, 10, 7, 8)) == (False, _utc(2013, 10, 7, 13, 30))
    assert nyse_2013.at(_utc(2013, 10, 7, 13, 30)) == (True, _utc(2013, 10, 7, 20))
    assert nyse_2013.at(_utc(2013, 10, 7, 20)) == (False, _utc(2013, 10, 8, 13, 30))
    assert nyse_2013.at(_utc(2013, 7, 3, 18)) == (False, _utc(2013, 7, 5, 13, 30))
    assert nyse_2013.at(_utc(2014, 1, 3)) == (False, None)
    assert nyse_2013.regular(_utc(2014, 1, 3))  # past the calendar the rules are off


HOURS = MarketHours("test", (TradingDay(_utc(2024, 3, 4, 14, 30), _utc(2024, 3, 4, 21)),))
PRE, OPEN = _utc(2024, 3, 4, 13), _utc(2024, 3, 4, 14, 30)


def _order(oid: str, action: OrderAction, kind: OrderType, qty: str = "10", **kw) -> SubmitOrder:
    return SubmitOrder(PRE, oid, "X", action, kind, D(qty), **kw)


def test_a_stop_sleeps_outside_the_regular_session_and_fills_at_the_first_regular_print():
    """A sell stop a pre-market print goes through does not trigger (counted as waited); the
    first regular print fills it at its own price, gap included."""
    book = Book(hours=HOURS, positions={"X": D(10)})
    book.match(Tick(PRE, "X", D(100)))
    book.place(_order("stop", OrderAction.SELL, OrderType.STOP, stop_price=D(99)))
    assert book.match(Tick(PRE + timedelta(minutes=1), "X", D(98))) == []
    assert book.stops_waited == {"stop"}
    fills = book.match(Tick(OPEN, "X", D("97.50")))
    assert fills == [OrderFilled(OPEN, "stop", D(10), D("97.50"))]


def test_market_orders_wait_for_the_open_and_extended_limits_trade_outside():
    """A market buy sent before the open fills at the first regular print; an extended-hours
    limit sell fills at a pre-market print that reaches it."""
    book = Book(hours=HOURS, positions={"X": D(10)})
    book.match(Tick(PRE, "X", D(100)))
    book.place(_order("buy", OrderAction.BUY, OrderType.MARKET))
    book.place(
        _order(
            "ext", OrderAction.SELL, OrderType.LIMIT, "5", limit_price=D(101), extended_hours=True
        )
    )
    fills = book.match(Tick(PRE + timedelta(minutes=1), "X", D(101)))
    assert fills == [OrderFilled(PRE + timedelta(minutes=1), "ext", D(5), D(101))]
    assert book.orders_waited == {"buy"}
    assert book.match(Tick(OPEN, "X", D("100.10"))) == [
        OrderFilled(OPEN, "buy", D(10), D("100.10"))
    ]


def test_the_book_finds_orders_a_new_one_could_trade_against():
    """A market buy crosses a resting sell limit (or OCO take-profit); a buy limit below it
    does not; stops and OCOs are exempt."""
    book = Book(positions={"X": D(10)})
    book.match(Tick(PRE, "X", D(100)))
    book.place(_order("tp", OrderAction.SELL, OrderType.OCO, stop_price=D(99), limit_price=D(104)))
    assert book.crosses(_order("m", OrderAction.BUY, OrderType.MARKET)) == ["tp"]
    assert book.crosses(_order("l", OrderAction.BUY, OrderType.LIMIT, limit_price=D(104))) == ["tp"]
    assert (
        book.crosses(_order("l", OrderAction.BUY, OrderType.LIMIT, limit_price=D("103.99"))) == []
    )
    assert book.crosses(_order("s", OrderAction.BUY, OrderType.STOP, stop_price=D(105))) == []


def test_the_simulated_broker_refuses_a_wash_trade_as_alpaca_does():
    """With the check on, a market buy while a sell limit rests is refused 403 40310000 with
    Alpaca's message, classified WASH_TRADE; an extended-hours market order is refused 422."""
    broker = SimulatedBroker(wash_check=True, positions={"X": D(10)})
    broker.on_tick(Tick(PRE, "X", D(100)))
    broker.execute([_order("tp", OrderAction.SELL, OrderType.LIMIT, limit_price=D(104))])
    [answer] = broker.execute([_order("buy", OrderAction.BUY, OrderType.MARKET, purpose="entry")])
    assert isinstance(answer, OrderRejected) and answer.kind is OrderRefusal.WASH_TRADE
    assert "40310000" in answer.reason and WASH_TRADE in answer.reason
    [bad] = broker.execute(
        [_order("ext", OrderAction.SELL, OrderType.MARKET, "1", extended_hours=True)]
    )
    assert isinstance(bad, OrderRejected) and bad.kind is OrderRefusal.PERMANENT
    assert broker.wash_trades == 1


def test_the_exchange_refuses_a_wash_trade_and_an_extended_market_order():
    """On the wire: 403 {code 40310000, "potential wash trade detected. use complex orders"};
    `extended_hours` on anything but a simple limit is 422."""
    venue = Venue(start=PRE, symbols=frozenset({"X"}))

    def post(body: dict) -> tuple[int, dict]:
        reply = venue.handle("POST", "/v2/orders", {}, json.dumps(body).encode())
        return reply.status, reply.body

    venue.on_print(Tick(PRE, "X", D(100)))
    base = {"symbol": "X", "qty": "10", "time_in_force": "day"}
    assert post({**base, "side": "buy", "type": "market"})[0] == 200
    venue.on_print(Tick(PRE + timedelta(seconds=1), "X", D(100)))
    assert post({**base, "side": "sell", "type": "limit", "limit_price": "104"})[0] == 200
    status, body = post({**base, "side": "buy", "type": "market"})
    assert (status, body["code"], body["message"]) == (403, 40310000, WASH_TRADE)
    status, body = post({**base, "side": "sell", "type": "market", "extended_hours": True})
    assert (status, body["code"]) == (422, 42210000)


def test_the_broker_section_names_the_calendar():
    """`[broker] hours` is "us_equity" by default or "always"; anything else is refused with the
    key and what is allowed; the extended-hours keys are checked too."""
    assert parse_settings({}).hours == "us_equity"
    assert parse_settings({"broker": {"hours": "always"}}).hours == "always"
    with pytest.raises(ConfigError, match=r"broker\.hours = 'nyse': allowed 'us_equity' or"):
        parse_settings({"broker": {"hours": "nyse"}})
    config = parse_settings(
        {"protection": {"extended_exit": "wait", "extended_offset": "0.01",
                        "extended_partials": "open"}, "entries": {"wash_trade": "refuse"}}
    ).config  # fmt: skip
    assert (config.extended_exit, config.extended_offset, config.extended_partials) == (
        "wait", D("0.01"), "open")  # fmt: skip
    assert config.wash_trade == "refuse"
    with pytest.raises(ConfigError, match=r"protection\.extended_offset = '0\.5': allowed 0 to"):
        parse_settings({"protection": {"extended_offset": "0.5"}})


def test_the_exchange_clock_follows_the_calendar_holidays_and_early_closes(nyse_2013):
    """GET /v2/clock on an exchange with NYSE's sessions: closed all day on July 4th 2013 (next
    open the 5th, 9:30 New York), closed at 13:30 on the day after Thanksgiving (it closed at
    13:00; next open Monday), open at 10:00 on an ordinary day (next close 16:00)."""

    def clock(at: datetime) -> dict:
        venue = Venue(start=at, symbols=frozenset({"X"}), hours=nyse_2013)
        return venue.handle("GET", "/v2/clock", {}, b"").body

    july4 = clock(_utc(2013, 7, 4, 14))
    assert july4["is_open"] is False
    assert july4["next_open"] == "2013-07-05T09:30:00-04:00"
    assert july4["next_close"] == "2013-07-05T16:00:00-04:00"
    friday = clock(_utc(2013, 11, 29, 18, 30))
    assert friday["is_open"] is False and friday["next_open"] == "2013-12-02T09:30:00-05:00"
    ordinary = clock(_utc(2013, 10, 7, 14))
    assert ordinary["is_open"] is True
    assert ordinary["next_close"] == "2013-10-07T16:00:00-04:00"
    assert ordinary["next_open"] == "2013-10-08T09:30:00-04:00"


def test_entries_wash_trade_takes_limit_wait_or_refuse():
    assert parse_settings({"entries": {"wash_trade": "wait"}}).config.wash_trade == "wait"
    with pytest.raises(ConfigError, match=r"entries\.wash_trade = 'hold': allowed 'limit', 'wait'"):
        parse_settings({"entries": {"wash_trade": "hold"}})
