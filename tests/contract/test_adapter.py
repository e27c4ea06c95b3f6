"""The Alpaca adapter against `ratchet exchange` over real sockets: one test for each fact of
ALPACA.md the adapter relies on (the section is named), through the adapter's own pieces
(`Rest`, `classify`, `Ledger`, `snapshot_of`) and the real alpaca-py beneath them."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine import (
    CancelRefusal,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    SubmitOrder,
)
from shell.broker.alpaca.classify import (
    Answer,
    classify_cancel,
    classify_submit,
    read_answer,
)
from shell.broker.alpaca.orders import Ledger, order_request, snapshot_of
from shell.broker.alpaca.rest import BrokerError, Rest, TokenBucket
from shell.broker.alpaca.settings import AlpacaSettings, base_url
from shell.broker.faults import Faults
from shell.secret import Secret
from tests.contract.conftest import T0, Updates, ticks

BUY, SELL = OrderAction.BUY, OrderAction.SELL
D = Decimal


def rest_of(exchange, **options) -> Rest:
    """The adapter's REST client on the exchange (no token bucket unless asked)."""
    endpoints = exchange.endpoints
    options.setdefault("requests_per_minute", None)
    options.setdefault("timeout", 5.0)
    settings = AlpacaSettings(
        Secret(endpoints.key_id), Secret(endpoints.secret_key), endpoints.base_url, **options
    )
    return Rest(settings)


def order(oid, action, kind, qty, stop=None, limit=None, purpose="exit") -> SubmitOrder:
    return SubmitOrder(T0, oid, "SPY", action, kind, D(qty), stop, limit, purpose)


def refused(call) -> Answer:
    with pytest.raises(BrokerError) as caught:
        call()
    return caught.value.answer


def _long(market, rest, qty="10"):
    rest.submit(order_request(order("entry", BUY, OrderType.MARKET, qty, purpose="entry")))
    market.advance(1)


def test_s4_the_base_url_is_the_bare_origin_and_keys_travel_in_headers(market):
    """§4 url_override: REST URLs are base + /v2 + path, so the origin is given bare (a /v2 or
    trailing slash in APCA_API_BASE_URL is taken off); §1.1 the keys go in the
    APCA-API-KEY-ID / -SECRET-KEY headers: wrong ones are 401 and the reason never shows
    them."""
    assert base_url("http://127.0.0.1:8765/v2/") == "http://127.0.0.1:8765"
    assert rest_of(market).account()["status"] == "ACTIVE"
    endpoints = market.endpoints
    wrong = AlpacaSettings(Secret("some-key-id"), Secret("some-secret-value"), endpoints.base_url)
    answer = refused(Rest(wrong).account)
    assert answer.status == 401 and answer.reason == "HTTP 401 unauthorized"
    assert "some-secret-value" not in repr(wrong) and "some-key-id" not in repr(wrong)
    assert classify_submit(answer).kind is OrderRefusal.PERMANENT


def test_s1_2_numbers_go_as_json_numbers_and_come_back_exact_strings(market):
    """§1.2/§1.3: alpaca-py sends qty and prices as JSON numbers; the order comes back with
    them as strings, equal to the engine's decimals, under the engine's client order id."""
    rest = rest_of(market)
    _long(market, rest)
    answer = rest.submit(
        order_request(order("rt-stop", SELL, OrderType.STOP, "10", stop=D("99.37")))
    )
    assert answer["client_order_id"] == "rt-stop"
    assert (answer["qty"], answer["stop_price"], answer["type"]) == ("10", "99.37", "stop")
    assert answer["time_in_force"] == "gtc"  # a stop protects overnight
    entry = rest.by_client_id("entry")
    assert entry is not None and entry["time_in_force"] == "day"


def test_s1_11_an_extended_hours_exit_goes_as_a_day_limit_flagged_extended_hours(market):
    """§1.11: an exit outside the regular session is a limit with `extended_hours: true`, time
    in force DAY (what every version of the docs accepts); without the flag Alpaca would
    queue it for the next regular session (the exchange did, and the watched stop's exits
    never filled after 16:00 in lock-step)."""
    rest = rest_of(market)
    _long(market, rest)
    ext = SubmitOrder(
        T0, "rt-ext", "SPY", SELL, OrderType.LIMIT, D(10), None, D("98.50"), "exit",
        extended_hours=True,
    )  # fmt: skip
    answer = rest.submit(order_request(ext))
    assert (answer["extended_hours"], answer["time_in_force"]) == (True, "day")
    assert (answer["type"], answer["limit_price"]) == ("limit", "98.5")
    regular = order("rt-reg", BUY, OrderType.LIMIT, "5", limit=D("90"), purpose="entry")
    answer = rest.submit(order_request(regular))
    assert (answer["extended_hours"], answer["time_in_force"]) == (False, "gtc")


def test_s1_2_an_oco_exit_is_a_take_profit_with_a_held_stop_leg(market):
    """§1.2 oco: type limit, take_profit and stop_loss; the answer nests the stop-loss leg
    (`held`, a client order id of the server's); the ledger knows both as the engine's one
    order, and a fill of the leg is told under the OCO's id with nothing after it."""
    rest = rest_of(market)
    _long(market, rest)
    updates = Updates(market, raw=True)
    try:
        oco = order("rt-oco", SELL, OrderType.OCO, "10", stop=D("99.50"), limit=D("101.50"))
        answer = rest.submit(order_request(oco))
        [leg] = answer["legs"]
        assert (answer["order_class"], answer["limit_price"]) == ("oco", "101.5")
        assert (leg["status"], leg["stop_price"], leg["type"]) == ("held", "99.5", "stop")
        assert leg["client_order_id"] != "rt-oco"
        ledger = Ledger()
        ledger.placed(answer)
        seen = len(updates.received)
        market.advance(300)  # up to 101.00 (short of 101.50), then down through 99.50
        received = updates.wait(seen + 3)[seen:]
        events = [e for u in received for e in ledger.update(u["data"], T0)]
    finally:
        updates.stop()
    assert events == [OrderFilled(T0, "rt-oco", D(10), D("99.5"))]
    assert ledger.finished("rt-oco")


def test_s1_7_by_client_order_id_finds_an_order_or_says_none(market):
    """§1.7: GET /v2/orders:by_client_order_id (the literal colon) finds the order; a client
    id the broker never had is 404, which the adapter reads as "not there"."""
    rest = rest_of(market)
    _long(market, rest)
    assert rest.by_client_id("entry")["status"] == "filled"
    assert rest.by_client_id("never-sent") is None


def test_s1_7_a_client_order_id_is_single_use_even_after_a_cancel(market):
    """§1.7: a second order under a client id the account has used is 422 40010001 "client
    order id must be unique" (also once the first is canceled): DUPLICATE, the earlier send
    landed."""
    rest = rest_of(market)
    _long(market, rest)
    stop = order_request(order("rt-once", SELL, OrderType.STOP, "10", stop=D("99")))
    placed = rest.submit(stop)
    rest.cancel(placed["id"])
    answer = refused(lambda: rest.submit(stop))
    assert (answer.status, answer.code) == (422, 40010001)
    verdict = classify_submit(answer)
    assert verdict.kind is OrderRefusal.DUPLICATE
    assert verdict.reason == "HTTP 422 code 40010001 client_order_id must be unique"


def test_s2_3_insufficient_qty_is_shares_locked_with_the_shares_free_and_held(market):
    """§2.3: a sell beyond qty_available is 403 40310000 "insufficient qty available for
    order (requested: X, available: Y)" with available / existing_qty / held_for_orders:
    SHARES_LOCKED, with the free shares and the whole position."""
    rest = rest_of(market)
    _long(market, rest)
    rest.submit(order_request(order("rt-stop", SELL, OrderType.STOP, "6", stop=D("99"))))
    answer = refused(
        lambda: rest.submit(order_request(order("rt-tp", SELL, OrderType.LIMIT, "5", limit=D(105))))
    )
    assert answer.status == 403 and answer.fields is not None
    assert answer.fields["held_for_orders"] == "6"
    verdict = classify_submit(answer)
    assert verdict.kind is OrderRefusal.SHARES_LOCKED
    assert (verdict.available, verdict.existing) == (D(4), D(10))
    assert verdict.reason == (
        "HTTP 403 code 40310000 insufficient qty available for order (requested: 5, available: 4)"
    )


def test_s7_the_same_code_for_a_wash_trade_is_permanent():
    """§7 / §1.12: 40310000 is shared; a wash trade or too little buying power (the body from
    ALPACA.md) is PERMANENT, not held shares: the message decides, not the code."""
    wash = read_answer(
        403, '{"code":40310000,"message":"potential wash trade detected. use complex orders"}'
    )
    power = read_answer(
        403,
        '{"buying_power":"176531.28","code":40310000,"cost_basis":"48640000",'
        '"message":"insufficient buying power"}',
    )
    assert classify_submit(wash).kind is OrderRefusal.PERMANENT
    assert classify_submit(power).kind is OrderRefusal.PERMANENT


def test_s1_5_cancel_is_204_then_canceled_on_the_stream(market):
    """§1.5: DELETE answers 204 with no body (alpaca-py: None); the cancel is told on
    trade_updates (pending_cancel, then canceled), which the ledger turns into one
    OrderCanceled."""
    rest = rest_of(market)
    _long(market, rest)
    ledger = Ledger()
    updates = Updates(market, raw=True)
    try:
        placed = rest.submit(
            order_request(order("rt-stop", SELL, OrderType.STOP, "10", stop=D(99)))
        )
        ledger.placed(placed)
        assert rest.cancel(placed["id"]) is None
        received = updates.wait(2)
    finally:
        updates.stop()
    assert [u["data"]["event"] for u in received] == ["pending_cancel", "canceled"]
    events = [e for u in received for e in ledger.update(u["data"], T0)]
    assert events == [OrderCanceled(T0, "rt-stop")]


def test_s1_5_cancel_refusals_by_status_and_message(market):
    """§1.5: a filled order is 422 'order is already in "filled" state' (FILLED); an unknown
    id is 404 40410000 (NOT_FOUND); §1.2 a sub-penny price is 422 with the same code 42210000
    but is a PERMANENT refusal of the order: the message decides."""
    rest = rest_of(market)
    _long(market, rest)
    filled = rest.by_client_id("entry")
    answer = refused(lambda: rest.cancel(filled["id"]))
    assert (answer.status, answer.code, answer.message) == (
        422, 42210000, 'order is already in "filled" state',
    )  # fmt: skip
    assert classify_cancel(answer).kind is CancelRefusal.FILLED
    unknown = refused(lambda: rest.cancel("00000000-0000-4000-8000-000000000000"))
    assert (unknown.status, unknown.code) == (404, 40410000)
    assert classify_cancel(unknown).kind is CancelRefusal.NOT_FOUND
    penny = refused(
        lambda: rest.submit(
            order_request(order("rt-x", SELL, OrderType.STOP, "1", stop=D("99.001")))
        )
    )
    assert (penny.status, penny.code) == (422, 42210000) and "sub-penny" in penny.message
    assert classify_submit(penny).kind is OrderRefusal.PERMANENT


def test_s4_a_plain_text_503_and_a_429_are_transient_and_not_retried(start_exchange):
    """§4: alpaca-py's `.code` raises on a non-JSON body (a proxy's 503): the adapter reads it
    as text, TRANSIENT; a 429 is TRANSIENT too, and with alpaca-py's retry off it is one
    request, not four (ALPACA.md: 4 calls by default)."""
    market = start_exchange(faults=Faults(transient=1.0, seed=3))
    rest = rest_of(market)
    seen = {}
    for n in range(8):
        command = order(f"t-{n}", BUY, OrderType.LIMIT, "1", limit=D(90), purpose="entry")
        answer = refused(lambda c=command: rest.submit(order_request(c)))
        seen[answer.status] = answer
    assert set(seen) == {429, 503}
    assert seen[503].reason == "HTTP 503 503 Service Unavailable"
    assert all(classify_submit(a).kind is OrderRefusal.TRANSIENT for a in seen.values())
    assert rest.requests == 8 and market._window.count == 8


def test_s4_no_timeout_by_default_so_the_adapter_sets_one():
    """§4: alpaca-py calls requests without a timeout; a server that never answers is given
    up after the adapter's `timeout`, as an answer of unknown outcome."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    port = server.getsockname()[1]
    settings = AlpacaSettings(
        Secret("k"), Secret("s"), f"http://127.0.0.1:{port}", timeout=0.5, requests_per_minute=None
    )
    started = time.monotonic()
    answer = refused(Rest(settings).account)
    assert time.monotonic() - started < 3
    assert answer.status is None and answer.reason == "no answer within 0.5 s"
    assert classify_submit(answer).kind is OrderRefusal.UNKNOWN
    assert classify_cancel(answer).kind is CancelRefusal.TRANSIENT
    server.close()


def test_s1_6_open_orders_nested_roll_an_oco_up_into_one_broker_order(market):
    """§1.6: GET /v2/orders?status=open&nested=True (alpaca-py sends Python's True) lists an
    OCO once with its leg; the snapshot sees one order: an OCO with the leg's stop."""
    rest = rest_of(market)
    _long(market, rest)
    oco = order("rt-oco", SELL, OrderType.OCO, "10", stop=D("99.50"), limit=D("103"))
    rest.submit(order_request(oco))
    orders = rest.open_orders()
    assert [o["client_order_id"] for o in orders] == ["rt-oco"]
    snap = snapshot_of(T0, rest.positions(), orders)
    [mine] = snap.orders
    assert (mine.order_id, mine.type, mine.status) == ("rt-oco", OrderType.OCO, "open")
    assert (mine.stop_price, mine.limit_price, mine.qty) == (D("99.5"), D(103), D(10))


def test_s2_2_positions_are_strings_short_is_negative(start_exchange):
    """§2.2: positions come with every number a string (avg_entry_price, current_price); a
    short has side "short" and a negative qty: the snapshot's signed quantities, average
    entry prices and marks."""
    market = start_exchange(ticks("50", "50.10", "50.20") + ticks("20", "19.9", symbol="QQQ"))
    rest = rest_of(market)
    rest.submit(order_request(order("long", BUY, OrderType.MARKET, "3", purpose="entry")))
    command = SubmitOrder(T0, "short", "QQQ", SELL, OrderType.MARKET, D(2), purpose="entry")
    rest.submit(order_request(command))
    market.advance(5)
    positions = rest.positions()
    assert {p["symbol"]: (p["qty"], p["side"]) for p in positions} == {
        "SPY": ("3", "long"), "QQQ": ("-2", "short"),
    }  # fmt: skip
    snap = snapshot_of(T0, positions, [])
    assert snap.positions == (("QQQ", D(-2)), ("SPY", D(3)))
    assert snap.prices == (("QQQ", D(20)), ("SPY", D(50)))
    assert snap.marks == (("QQQ", D("19.9")), ("SPY", D("50.2")))


def test_s3_1_fills_keep_their_decimal_strings_raw(market):
    """§3.1: trade_updates `fill` carries price, qty and position_qty; alpaca-py parses them
    as floats, so the adapter reads the stream raw: the engine gets the strings' exact
    decimals, and the position after the fill."""
    rest = rest_of(market)
    ledger = Ledger()
    updates = Updates(market, raw=True)
    try:
        placed = rest.submit(order_request(order("e", BUY, OrderType.MARKET, "7", purpose="entry")))
        ledger.placed(placed)
        market.advance(1)
        [new, fill] = updates.wait(2)
    finally:
        updates.stop()
    data = fill["data"]
    assert (data["event"], data["price"], data["qty"], data["position_qty"]) == (
        "fill", "100", "7", "7",
    )  # fmt: skip
    assert ledger.update(new["data"], T0) == []
    assert ledger.update(data, T0) == [OrderFilled(T0, "e", D(7), D(100))]
    assert ledger.positions == {"SPY": D(7)}
    assert ledger.update(data, T0) == []  # the same execution told twice counts once


def test_s1_8_accepted_then_rejected_on_the_stream_is_a_permanent_rejection(start_exchange):
    """§1.8: rejection can be asynchronous: the POST answers `accepted`, then `rejected`
    comes on trade_updates; the engine hears OrderRejected, PERMANENT."""
    market = start_exchange(faults=Faults(permanent=1.0, seed=1))
    rest = rest_of(market)
    _long(market, rest)
    ledger = Ledger()
    updates = Updates(market, raw=True)
    try:
        placed = rest.submit(
            order_request(order("rt-stop", SELL, OrderType.STOP, "10", stop=D(99)))
        )
        assert placed["status"] == "accepted"
        ledger.placed(placed)
        market.advance(1)
        [rejected] = updates.wait(1)
    finally:
        updates.stop()
    [event] = ledger.update(rejected["data"], T0)
    assert type(event) is OrderRejected and event.kind is OrderRefusal.PERMANENT


def test_s2_5_the_token_bucket_keeps_any_minute_under_the_limit():
    """§2.5: 200 requests a minute per account: at 190 a minute the bucket lets fewer than 200
    through in any 60 seconds, however the requests come."""
    now = [0.0]
    bucket = TokenBucket(190, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    times = []
    for _ in range(600):
        bucket.take()
        times.append(now[0])
    worst = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert 180 <= worst < 200
    assert times[-1] > 180  # it waits rather than refuses


def test_s3_2_trades_are_msgpack_with_a_timestamp_read_raw(market, trades_of):
    """§3.2: the data stream is MsgPack with `t` a MsgPack Timestamp; raw, a trade keeps the
    price Alpaca packed, which the adapter reads as the decimal it prints as."""
    trades = trades_of(market, "SPY", raw=True)
    market.advance(3)
    deadline = time.monotonic() + 5
    while len(trades.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    third = trades.received[2]
    assert third["t"].to_datetime() == datetime(2024, 3, 4, 14, 30, 2, tzinfo=UTC)
    assert Decimal(str(third["p"])) == D("100.02")
