"""Positions, account, clock, assets, keys and the rate limit (ALPACA.md §2, §4)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import requests
from alpaca.trading.enums import AccountStatus, OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import ClosePositionRequest, MarketOrderRequest, StopOrderRequest

from tests.contract.conftest import T0, client, refusal

BUY, SELL, DAY, GTC = OrderSide.BUY, OrderSide.SELL, TimeInForce.DAY, TimeInForce.GTC


def _order(trading, side, qty, **extra):
    kind = StopOrderRequest if "stop_price" in extra else MarketOrderRequest
    time_in_force = GTC if "stop_price" in extra else DAY
    return trading.submit_order(
        kind(symbol="SPY", qty=qty, side=side, time_in_force=time_in_force, **extra)
    )


def test_positions_are_strings_and_qty_available_excludes_held_shares(market):
    """GET /v2/positions[/SPY]: every number a string (alpaca-py's model insists), qty the
    holding, qty_available what open sells leave."""
    raw = client(market, raw=True)
    _order(raw, BUY, 10)
    market.advance(1)  # bought at 100.00
    _order(raw, SELL, 4, stop_price=99)
    market.advance(5)  # 100.05
    [position] = raw.get_all_positions()
    assert position == raw.get_open_position("SPY")
    assert {k: position[k] for k in ("symbol", "side", "qty", "qty_available")} == {
        "symbol": "SPY",
        "side": "long",
        "qty": "10",
        "qty_available": "6",
    }
    assert (position["avg_entry_price"], position["cost_basis"]) == ("100", "1000")
    assert (position["current_price"], position["market_value"]) == ("100.05", "1000.5")
    assert position["unrealized_pl"] == "0.5" and uuid.UUID(position["asset_id"])
    numbers = [k for k, v in position.items() if k not in ("asset_marginable",)]
    assert all(isinstance(position[k], str) for k in numbers)
    typed = client(market).get_open_position("SPY")  # alpaca-py's Position parses it
    assert typed.qty_available == "6" and typed.side.value == "long"


def test_a_symbol_without_a_position_is_404(market):
    """GET /v2/positions/SPY with nothing held: 404."""
    trading = client(market)
    status, body, _ = refusal(lambda: trading.get_open_position("SPY"))
    assert (status, body) == (404, {"code": 40410000, "message": "position does not exist"})
    assert trading.get_all_positions() == []


def test_close_position_by_qty_and_by_percentage_and_403_when_held(market):
    """DELETE /v2/positions/SPY?qty= / ?percentage=: a market order for that many shares;
    refused 403 with the insufficient-qty body while a stop holds them."""
    trading = client(market)
    _order(trading, BUY, 10)
    market.advance(1)
    by_qty = trading.close_position("SPY", ClosePositionRequest(qty="3"))
    assert (by_qty.side, by_qty.qty, by_qty.type.value) == (SELL, "3", "market")
    market.advance(1)
    by_share = trading.close_position("SPY", ClosePositionRequest(percentage="50"))
    assert by_share.qty == "3.5"
    market.advance(1)
    assert trading.get_open_position("SPY").qty == "3.5"
    _order(trading, SELL, 3, stop_price=99)
    status, body, _ = refusal(lambda: trading.close_position("SPY"))
    assert status == 403 and body["message"] == (
        "insufficient qty available for order (requested: 3.5, available: 0.5)"
    )
    assert (body["held_for_orders"], body["existing_qty"]) == ("3", "3.5")


def test_close_all_positions_cancels_orders_and_answers_207(market):
    """DELETE /v2/positions?cancel_orders=true: the stop is canceled, then one closing order
    per position, 207 [{symbol, status 200, body: Order}]."""
    trading = client(market)
    _order(trading, BUY, 10)
    market.advance(1)
    stop = _order(trading, SELL, 10, stop_price=99)
    [closed] = trading.close_all_positions(cancel_orders=True)
    assert (closed.symbol, closed.status, closed.body.qty) == ("SPY", 200, "10")
    assert trading.get_order_by_id(stop.id).status is OrderStatus.CANCELED
    market.advance(1)
    assert trading.get_all_positions() == []


def test_the_account_follows_the_fills(market):
    """GET /v2/account: id a UUID, account_number, status ACTIVE; cash, buying_power and
    equity are strings and move with each fill."""
    raw = client(market, raw=True)
    before = raw.get_account()
    assert uuid.UUID(before["id"]) and before["account_number"] and before["status"] == "ACTIVE"
    assert (before["cash"], before["buying_power"], before["equity"]) == (
        "100000",
        "100000",
        "100000",
    )
    _order(raw, BUY, 10)
    market.advance(2)  # bought at 100.00, marked at 100.01
    after = raw.get_account()
    assert (after["cash"], after["buying_power"], after["equity"]) == (
        "99000",
        "99000",
        "100000.1",
    )
    assert client(market).get_account().status is AccountStatus.ACTIVE


def test_the_clock_is_the_feeds(market):
    """GET /v2/clock: the time of the last print, in New York; open during the session."""
    trading = client(market)
    market.advance(3)
    clock = trading.get_clock()
    assert clock.timestamp == T0 + timedelta(seconds=2) and clock.is_open
    assert clock.next_close == T0.replace(hour=21, minute=0)  # 16:00 New York, EST
    assert clock.next_open == T0 + timedelta(days=1)


def test_assets_are_the_feeds_symbols(market):
    """GET /v2/assets/SPY: an active, tradable us_equity; an unknown symbol is 404, and an
    order for it 422."""
    trading = client(market)
    asset = trading.get_asset("SPY")
    assert (asset.symbol, asset.tradable, asset.asset_class.value) == ("SPY", True, "us_equity")
    assert trading.get_asset(asset.id).symbol == "SPY"
    status, body, _ = refusal(lambda: trading.get_asset("NOPE"))
    assert (status, body) == (404, {"code": 40410000, "message": "asset not found for NOPE"})
    status, body, _ = refusal(
        lambda: trading.submit_order(
            MarketOrderRequest(symbol="NOPE", qty=1, side=BUY, time_in_force=DAY)
        )
    )
    assert (status, body) == (422, {"code": 42210000, "message": "asset 'NOPE' not found"})


def test_requests_without_the_keys_are_401(market):
    """No key headers, or wrong ones: 401 {"message": "unauthorized"} (no code)."""
    endpoints = market.endpoints
    bare = requests.get(f"{endpoints.base_url}/v2/account", timeout=5)
    assert (bare.status_code, bare.json()) == (401, {"message": "unauthorized"})
    wrong = requests.get(
        f"{endpoints.base_url}/v2/orders",
        headers={"APCA-API-KEY-ID": endpoints.key_id, "APCA-API-SECRET-KEY": "guess"},
        timeout=5,
    )
    assert (wrong.status_code, wrong.json()) == (401, {"message": "unauthorized"})


def test_over_200_requests_a_minute_is_429_with_the_rate_limit_headers(start_exchange):
    """Every answer carries X-Ratelimit-Limit/Remaining/Reset; the 201st request in a minute
    is refused 429."""
    market = start_exchange(rate_limit=200)
    trading = client(market)
    session = trading._session
    url = f"{market.endpoints.base_url}/v2/clock"
    headers = {
        "APCA-API-KEY-ID": market.endpoints.key_id,
        "APCA-API-SECRET-KEY": market.endpoints.secret_key,
    }
    first = session.get(url, headers=headers, timeout=5)
    assert first.headers["X-Ratelimit-Limit"] == "200"
    assert first.headers["X-Ratelimit-Remaining"] == "199"
    reset = int(first.headers["X-Ratelimit-Reset"])
    assert time.time() <= reset <= time.time() + 60
    for _ in range(199):
        assert session.get(url, headers=headers, timeout=5).status_code == 200
    status, body, error = refusal(trading.get_clock)
    assert status == 429 and body == {"code": 42910000, "message": "rate limit exceeded"}
    assert error.response.headers["X-Ratelimit-Remaining"] == "0"
    assert json.loads(str(error))["message"] == "rate limit exceeded"
