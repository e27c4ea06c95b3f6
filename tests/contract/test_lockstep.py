"""Lock-step (`speed=0`, outside Alpaca's API): the feed waits for the client, so a run is
deterministic; and the books that check the protection laws from outside."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import msgpack
import requests
from alpaca.data.live import StockDataStream
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from alpaca.trading.stream import TradingStream
from websockets.sync.client import connect

from tests.contract.conftest import client, ticks, wait_until

BUY, SELL, DAY, GTC = OrderSide.BUY, OrderSide.SELL, TimeInForce.DAY, TimeInForce.GTC

# Up a dollar in ten cents, then down through the stop.
FEED = ticks(
    *[f"{100 + i / 10:.2f}" for i in range(11)], *[f"{100.9 - i / 5:.2f}" for i in range(8)]
)


def _run_bot(start_exchange) -> tuple[list[tuple], dict]:
    """A bot that reacts to what it is sent: buys on the 3rd trade, arms an OCO when filled,
    raises its stop on the 8th trade. Returns every message it received, in order."""
    market = start_exchange(FEED, speed=0, quiet=0.25)
    endpoints = market.endpoints
    trading = client(market, raw=True)
    seen: list[tuple] = []
    lock = threading.Lock()
    armed: dict[str, str] = {}

    async def on_trade(trade):
        with lock:
            seen.append(("trade", trade["i"], trade["p"]))
        if trade["i"] == 3:
            trading.submit_order(
                MarketOrderRequest(
                    symbol="SPY", qty=10, side=BUY, time_in_force=DAY, client_order_id="entry"
                )
            )
        if trade["i"] == 8 and "stop" in armed:
            trading.replace_order_by_id(armed["stop"], ReplaceOrderRequest(stop_price=100.45))

    async def on_update(message):
        data = message["data"]
        order = data["order"]
        with lock:
            seen.append(("update", data["event"], order["client_order_id"], data.get("price")))
        if data["event"] == "fill" and order["client_order_id"] == "entry":
            oco = trading.submit_order(
                LimitOrderRequest(
                    symbol="SPY",
                    qty=10,
                    side=SELL,
                    time_in_force=GTC,
                    order_class=OrderClass.OCO,
                    take_profit=TakeProfitRequest(limit_price=103),
                    stop_loss=StopLossRequest(stop_price=99.95),
                    client_order_id="exit",
                )
            )
            armed["stop"] = oco["legs"][0]["id"]

    updates = TradingStream(
        endpoints.key_id,
        endpoints.secret_key,
        raw_data=True,
        url_override=endpoints.trade_stream_url,
    )
    updates.subscribe_trade_updates(on_update)
    data = StockDataStream(
        endpoints.key_id,
        endpoints.secret_key,
        raw_data=True,
        url_override=endpoints.data_stream_url,
    )
    data.subscribe_trades(on_trade, "SPY")
    threads = [threading.Thread(target=s.run, daemon=True) for s in (updates, data)]
    for thread in threads:
        thread.start()
    assert market.finished(timeout=60), "the feed did not finish"
    wait_until(lambda: market.books()["positions"] == {}, what="the stop to fill")
    books = market.books()
    for stream in (updates, data):
        stream.stop()
    market.stop()
    return seen, books


def test_lock_step_runs_are_identical_and_the_client_reacts_before_the_next_print(
    start_exchange,
):
    """The same feed and the same bot give the same messages twice, byte for byte; each
    reaction lands before the next print (the entry fills at the 4th trade's price, the moved
    stop fills where the original would not have)."""
    first, books = _run_bot(start_exchange)
    second, _ = _run_bot(start_exchange)
    assert first == second
    trades = [m for m in first if m[0] == "trade"]
    assert [m[1] for m in trades] == list(range(1, len(FEED) + 1))
    leg = next(m[2] for m in first if m[1] == "pending_replace")
    story = [
        m if m[0] == "trade" else (*m[:2], "leg" if m[2] == leg else m[2], m[3]) for m in first
    ]
    # The fills come before the trade that made them, as `ratchet simulate` shows the engine.
    assert story[2:7] == [
        ("trade", 3, 100.2),
        ("update", "new", "entry", None),
        ("update", "fill", "entry", "100.3"),
        ("trade", 4, 100.3),
        ("update", "new", "exit", None),
    ]
    assert story[10:13] == [
        ("trade", 8, 100.7),
        ("update", "pending_replace", "leg", None),
        ("update", "replaced", "leg", None),
    ]
    # The raised stop (100.45) fills when 100.30 gaps through it; 99.95 would have waited.
    moved_fill = story.index(("trade", 15, 100.3)) - 2
    assert story[moved_fill][:2] == ("update", "fill") and story[moved_fill][3] == "100.3"
    assert story[moved_fill + 1] == ("update", "canceled", "exit", None)
    assert books["oversells"] == 0 and books["client_order_ids_placed_twice"] == []
    assert books["fills"] == 2 and books["cash"] == "100000"


def test_books_say_whether_working_stops_cover_each_position(market):
    """GET /_ratchet/books (outside Alpaca's API) and books(): a 10-share long with a 4-share
    stop is not covered, with an OCO for all 10 it is; given positions are checked as given."""
    trading = client(market)
    trading.submit_order(MarketOrderRequest(symbol="SPY", qty=10, side=BUY, time_in_force=DAY))
    market.advance(1)
    small = trading.submit_order(
        StopOrderRequest(symbol="SPY", qty=4, side=SELL, time_in_force=GTC, stop_price=99)
    )
    books = market.books()
    assert books["coverage"]["SPY"] == {
        "qty": "10",
        "stop_qty": "4",
        "covered": False,
        "stops": [{"order_id": str(small.id), "stop_price": "99"}],
    }
    assert not books["all_covered"] and market.books({"SPY": Decimal(4)})["all_covered"]
    trading.cancel_order_by_id(small.id)
    oco = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=10,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=105),
            stop_loss=StopLossRequest(stop_price=98),
        )
    )
    wire = requests.get(f"{market.endpoints.base_url}/_ratchet/books", timeout=5).json()
    assert wire == market.books() and wire["all_covered"]
    assert wire["coverage"]["SPY"]["stops"] == [
        {"order_id": str(oco.legs[0].id), "stop_price": "98"}
    ]
    assert (wire["oversells"], wire["client_order_ids_placed_twice"]) == (0, [])
    given = requests.get(
        f"{market.endpoints.base_url}/_ratchet/books?positions=SPY:12", timeout=5
    ).json()
    assert given["coverage"]["SPY"]["covered"] is False


def test_a_client_that_acks_each_print_is_not_made_to_wait(start_exchange):
    """Lock-step with a long quiet period (2 s): a data-stream client that sends
    {"action": "ack"} after each trade (or POSTs /_ratchet/ack) gets the next one at once
    (outside Alpaca's API)."""
    market = start_exchange(ticks(*["100"] * 24), speed=0, quiet=2.0)
    endpoints = market.endpoints
    headers = {"Content-Type": "application/msgpack"}
    with connect(endpoints.data_stream_url, additional_headers=headers) as ws:
        ws.recv(timeout=5)
        key = {"action": "auth", "key": endpoints.key_id, "secret": endpoints.secret_key}
        ws.send(msgpack.packb(key))
        ws.recv(timeout=5)
        ws.send(msgpack.packb({"action": "subscribe", "trades": ["SPY"]}))
        ws.recv(timeout=5)
        ws.recv(timeout=10)  # the first print comes once the client has been quiet
        started = time.monotonic()
        numbers = []
        for _ in range(20):
            ws.send(msgpack.packb({"action": "ack"}))
            [trade] = msgpack.unpackb(ws.recv(timeout=10))
            numbers.append(trade["i"])
        assert numbers == list(range(2, 22))
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        for _ in range(3):  # the same over HTTP, for a client without the socket at hand
            requests.post(f"{endpoints.base_url}/_ratchet/ack", timeout=5)
            ws.recv(timeout=10)
        assert time.monotonic() - started < 2.0


def test_a_feed_moved_by_hand_advances_over_http(start_exchange):
    """POST /_ratchet/advance {"prints": N} plays N prints (speed=None); refused 409 when the
    feed plays by itself."""
    market = start_exchange()
    answer = requests.post(
        f"{market.endpoints.base_url}/_ratchet/advance", json={"prints": 3}, timeout=10
    )
    assert answer.json() == {"prints": 3, "clock": "2024-03-04T14:30:02Z"}
    timed = start_exchange(speed=1.0)
    refused = requests.post(f"{timed.endpoints.base_url}/_ratchet/advance", json={}, timeout=10)
    assert refused.status_code == 409
