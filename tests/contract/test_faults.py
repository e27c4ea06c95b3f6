"""`--faults` on the wire: each fault as Alpaca shows it, met by the real alpaca-py."""

from __future__ import annotations

import json
import random

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopOrderRequest,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shell.broker.faults import Faults
from tests.contract.conftest import client, refusal, ticks

BUY, SELL, DAY, GTC = OrderSide.BUY, OrderSide.SELL, TimeInForce.DAY, TimeInForce.GTC


def _long(market, trading, qty=10):
    trading.submit_order(MarketOrderRequest(symbol="SPY", qty=qty, side=BUY, time_in_force=DAY))
    market.advance(1)


def _stop(trading, price=99, qty=10):
    return trading.submit_order(
        StopOrderRequest(symbol="SPY", qty=qty, side=SELL, time_in_force=GTC, stop_price=price)
    )


def test_transient_refusals_are_429_with_headers_or_a_503_without_json(start_exchange):
    """transient: a submit refused 429 (JSON, X-Ratelimit-Remaining 0) or 503 (a proxy's plain
    text: alpaca-py's `.code` cannot parse it); nothing is created."""
    market = start_exchange(faults=Faults(transient=1.0, seed=3))
    trading = client(market)
    errors = {}
    for n in range(8):
        with pytest.raises(APIError) as caught:
            _buy_limit(trading, f"t-{n}")
        errors[caught.value.status_code] = caught.value
    assert set(errors) == {429, 503}
    limited, unavailable = errors[429], errors[503]
    assert json.loads(str(limited)) == {"code": 42910000, "message": "rate limit exceeded"}
    assert limited.response.headers["X-Ratelimit-Remaining"] == "0"
    assert str(unavailable) == "503 Service Unavailable"
    with pytest.raises(json.JSONDecodeError):
        _ = unavailable.code
    assert trading.get_orders(GetOrdersRequest(status="all")) == []


def _buy_limit(trading, cid):
    return trading.submit_order(
        LimitOrderRequest(
            symbol="SPY", qty=1, side=BUY, time_in_force=GTC, limit_price=90, client_order_id=cid
        )
    )


def test_permanent_accepts_then_rejects_on_the_stream(start_exchange, updates_of):
    """permanent: an exit answers 200 `accepted`, then `rejected` on the stream when routed;
    it never held the shares."""
    market = start_exchange(faults=Faults(permanent=1.0))
    trading = client(market)
    _long(market, trading)
    updates = updates_of(market)
    stop = _stop(trading)
    assert stop.status is OrderStatus.ACCEPTED
    assert trading.get_open_position("SPY").qty_available == "10"
    market.advance(1)
    [rejected] = updates.wait(1)
    assert (rejected.event, str(rejected.order.id)) == ("rejected", str(stop.id))
    assert trading.get_order_by_id(stop.id).failed_at is not None


def test_locked_refuses_a_sell_403_as_if_its_shares_were_held(start_exchange):
    """locked: a sell of free shares is refused 403 40310000, available 0."""
    market = start_exchange(faults=Faults(locked=1.0))
    trading = client(market)
    _long(market, trading)
    status, body, _ = refusal(lambda: _stop(trading))
    assert (status, body["code"], body["available"], body["symbol"]) == (
        403,
        40310000,
        "0",
        "SPY",
    )
    assert body["message"] == "insufficient qty available for order (requested: 10, available: 0)"


def test_partial_fills_a_market_order_in_two_prints(start_exchange, updates_of):
    """partial: half at one print (partial_fill, partially_filled), the rest at the next."""
    # Draws: the submit's transient check, then one split check at each print.
    seed = _seed((">", 0), ("<", 0.5), (">", 0.5))
    market = start_exchange(ticks("100", "101", "102"), faults=Faults(partial=0.5, seed=seed))
    trading = client(market)
    updates = updates_of(market)
    order = trading.submit_order(
        MarketOrderRequest(symbol="SPY", qty=10, side=BUY, time_in_force=DAY)
    )
    market.advance(1)
    _, part = updates.wait(2)
    assert (part.event, part.qty, part.price, part.position_qty) == ("partial_fill", 5, 100, 5)
    halfway = trading.get_order_by_id(order.id)
    assert (halfway.status, halfway.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "5")
    market.advance(1)
    rest = updates.wait(3)[2]
    assert (rest.event, rest.qty, rest.price, rest.position_qty) == ("fill", 5, 101, 10)
    assert trading.get_order_by_id(order.id).filled_avg_price == "100.5"


def test_late_cancels_take_effect_at_the_next_print_or_lose_to_a_fill(start_exchange, updates_of):
    """late: DELETE answers 204 and the order is pending_cancel (no replace meanwhile); it is
    canceled at the symbol's next print, unless that print fills it first."""
    market = start_exchange(ticks("100", "100.5", "98", "97"), faults=Faults(late=1.0))
    trading = client(market)
    _long(market, trading)
    updates = updates_of(market)
    far, near = _stop(trading, price=95, qty=5), _stop(trading, price=99, qty=5)
    market.advance(1)  # 100.5: routed
    assert trading.cancel_order_by_id(far.id) is None
    assert trading.cancel_order_by_id(near.id) is None
    assert trading.get_order_by_id(far.id).status is OrderStatus.PENDING_CANCEL
    status, body, _ = refusal(
        lambda: trading.replace_order_by_id(far.id, ReplaceOrderRequest(stop_price=94))
    )
    assert (status, body) == (
        422,
        {"code": 42210000, "message": 'order is already in "pending_cancel" state'},
    )
    market.advance(1)  # 98: through the near stop before its cancel
    updates.wait(6)
    assert updates.events()[2:] == [
        ("pending_cancel", str(far.id)),
        ("pending_cancel", str(near.id)),
        ("fill", str(near.id)),
        ("canceled", str(far.id)),
    ]
    assert trading.get_order_by_id(near.id).status is OrderStatus.FILLED


def _seed(*draws: tuple[str, float]) -> int:
    """The first seed whose random draws fall as asked: ("<", x) below x, (">", x) at or
    above it, in order (to pick, say, "the first request drops, the next goes through")."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < cut) == (side == "<") for side, cut in draws):
            return seed
    raise AssertionError(draws)


def test_drop_carried_out_answer_cut_then_the_resend_is_a_duplicate(start_exchange):
    """drop: the order is placed but the connection is reset before its answer; the streams
    drop; requests are cut until the link is back (a second of feed time); then the order is
    there by its client id and a resend is refused 422 duplicate."""
    seed = _seed(("<", 0.5), ("<", 0.5), ("<", 0.5), (">", 0.5))
    market = start_exchange(faults=Faults(drop=0.5, seed=seed))
    trading = client(market)
    endpoints = market.endpoints
    with connect(endpoints.trade_stream_url) as ws:
        key = {"key_id": endpoints.key_id, "secret_key": endpoints.secret_key}
        ws.send(json.dumps({"action": "authenticate", "data": key}))
        ws.recv(timeout=5)
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        ws.recv(timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):
            _buy_limit(trading, "lost-answer")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        trading.get_orders()  # still down
    market.advance(2)  # a second later: back
    assert trading.get_order_by_client_id("lost-answer").status is OrderStatus.NEW
    status, body, _ = refusal(lambda: _buy_limit(trading, "lost-answer"))
    assert (status, body) == (422, {"code": 40010001, "message": "client_order_id must be unique"})
    assert market.books()["drops"] == 1


def test_drop_carried_out_answer_too_slow_for_the_client(start_exchange):
    """drop, slow: the order is placed, its answer comes after the client's timeout."""
    seed = _seed(("<", 0.5), ("<", 0.5), (">", 0.5), (">", 0.5))
    market = start_exchange(faults=Faults(drop=0.5, seed=seed), slow_answer=3.0)
    trading = client(market, timeout=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _buy_limit(trading, "slow")
    market.advance(2)
    assert trading.get_order_by_client_id("slow").status is OrderStatus.NEW


def test_drop_not_carried_out_leaves_nothing_behind(start_exchange):
    """drop before the exchange got it: reset, no order; the resend goes through."""
    seed = _seed(("<", 0.5), (">", 0.5), (">", 0.5))
    market = start_exchange(faults=Faults(drop=0.5, seed=seed))
    trading = client(market)
    with pytest.raises(requests.exceptions.ConnectionError):
        _buy_limit(trading, "never-arrived")
    market.advance(2)
    status, _, _ = refusal(lambda: trading.get_order_by_client_id("never-arrived"))
    assert status == 404
    assert _buy_limit(trading, "never-arrived").status is OrderStatus.ACCEPTED


def test_the_same_seed_and_requests_meet_the_same_faults(start_exchange):
    """Faults come from one seeded generator in request order: two exchanges, one script,
    identical answers."""

    def script(market):
        trading = client(market)
        answers = []
        for n in range(12):
            try:
                answers.append(_buy_limit(trading, f"o-{n}").status.value)
            except Exception as error:
                answers.append(getattr(error, "status_code", type(error).__name__))
            market.advance(1)
        return answers

    profile = Faults.parse("high,seed=11,drop=0")
    first = script(start_exchange(faults=profile))
    assert first == script(start_exchange(faults=profile))
    assert {429, 503} & set(first) and "accepted" in first
