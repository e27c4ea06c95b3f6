"""The trade_updates and stock data WebSockets (ALPACA.md §3): alpaca-py's streams, and the
handshakes byte by byte with a plain WebSocket client."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import msgpack
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from websockets.sync.client import connect

from tests.contract.conftest import T0, client, ticks, wait_until


def test_trade_updates_authenticate_then_listen(market):
    """authenticate -> authorization authorized; listen -> listening trade_updates; wrong
    keys -> unauthorized and the connection closes."""
    endpoints = market.endpoints
    with connect(endpoints.trade_stream_url) as ws:
        key = {"key_id": endpoints.key_id, "secret_key": endpoints.secret_key}
        ws.send(json.dumps({"action": "authenticate", "data": key}))
        assert json.loads(ws.recv(timeout=5)) == {
            "stream": "authorization",
            "data": {"status": "authorized", "action": "authenticate"},
        }
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads(ws.recv(timeout=5)) == {
            "stream": "listening",
            "data": {"streams": ["trade_updates"]},
        }
    with connect(endpoints.trade_stream_url) as ws:
        bad = {"key_id": endpoints.key_id, "secret_key": "guess"}
        ws.send(json.dumps({"action": "authenticate", "data": bad}))
        answer = json.loads(ws.recv(timeout=5))
        assert answer["data"]["status"] == "unauthorized"


def test_alpaca_py_parses_fills_and_raw_data_keeps_the_decimal_strings(start_exchange, updates_of):
    """TradingStream hands alpaca-py's TradeUpdate (price, qty, position_qty as floats);
    with raw_data=True the message keeps Alpaca's strings ("100.01")."""
    market = start_exchange(ticks("100.01", "100.02"))
    typed, raw = updates_of(market), updates_of(market, raw=True)
    client(market).submit_order(
        MarketOrderRequest(symbol="SPY", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    market.advance(1)
    fill = typed.wait(2)[1]
    assert (fill.event, fill.price, fill.qty, fill.position_qty) == ("fill", 100.01, 3.0, 3.0)
    assert fill.order.filled_avg_price == "100.01" and fill.timestamp == T0
    message = raw.wait(2)[1]
    assert message["stream"] == "trade_updates"
    data = message["data"]
    assert (data["event"], data["price"], data["qty"], data["position_qty"]) == (
        "fill",
        "100.01",
        "3",
        "3",
    )
    assert data["timestamp"] == "2024-03-04T14:30:00Z" and data["execution_id"]


def test_stock_data_stream_sends_msgpack_trades_of_subscribed_symbols(start_exchange, trades_of):
    """StockDataStream (MsgPack only): trades of the symbols subscribed, `t` a MsgPack
    Timestamp that alpaca-py turns into a datetime; other symbols are not sent."""
    feed = sorted(
        [*ticks("100.5", "100.25"), *ticks("20.1", "20.2", symbol="BAC")], key=lambda t: t.ts
    )
    market = start_exchange(feed)
    spy, raw = trades_of(market, "SPY"), trades_of(market, "SPY", raw=True)
    market.advance(4)
    wait_until(lambda: len(spy.received) == 2 and len(raw.received) == 2, what="two trades")
    first, second = spy.received
    assert (first.symbol, first.price, first.size, first.timestamp) == ("SPY", 100.5, 100, T0)
    assert second.price == 100.25 and second.timestamp == T0 + timedelta(seconds=1)
    message = raw.received[0]
    assert isinstance(message["t"], msgpack.Timestamp) and message["T"] == "t"
    assert Decimal(repr(message["p"])) == Decimal("100.5")


def test_data_stream_handshake_in_msgpack(market):
    """connected -> auth -> authenticated -> subscribe -> subscription; bad keys: error 402."""
    endpoints = market.endpoints
    headers = {"Content-Type": "application/msgpack"}
    with connect(endpoints.data_stream_url, additional_headers=headers) as ws:
        assert msgpack.unpackb(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(msgpack.packb({"action": "auth", "key": endpoints.key_id, "secret": "guess"}))
        assert msgpack.unpackb(ws.recv(timeout=5)) == [
            {"T": "error", "code": 402, "msg": "auth failed"}
        ]
    with connect(endpoints.data_stream_url, additional_headers=headers) as ws:
        ws.recv(timeout=5)
        key = {"action": "auth", "key": endpoints.key_id, "secret": endpoints.secret_key}
        ws.send(msgpack.packb(key))
        assert msgpack.unpackb(ws.recv(timeout=5)) == [{"T": "success", "msg": "authenticated"}]
        ws.send(msgpack.packb({"action": "subscribe", "trades": ["SPY"], "quotes": []}))
        [subscription] = msgpack.unpackb(ws.recv(timeout=5))
        assert subscription["T"] == "subscription" and subscription["trades"] == ["SPY"]
        market.advance(1)
        [trade] = msgpack.unpackb(ws.recv(timeout=5))
        assert (trade["S"], trade["p"], trade["s"], trade["i"]) == ("SPY", 100.0, 100, 1)
        assert trade["t"].to_datetime() == T0
