"""The exchange's venue without sockets: it fills exactly as `ratchet simulate`'s broker does
(one order book for both), and its feed reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alpaca.trading.enums import OrderStatus, TradeEvent
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st

from engine import OrderAction, OrderFilled, OrderType, SubmitOrder, Tick
from shell.broker.simulated import SimulatedBroker
from shell.exchange.server import Exchange, feed_symbols
from shell.exchange.venue import Venue

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
STATUSES = {status.value for status in OrderStatus}
EVENTS = {event.value for event in TradeEvent}
CENT = Decimal("0.01")

exits = st.tuples(
    st.sampled_from(["market", "stop", "limit", "oco"]),
    st.integers(1, 300),  # cents below the market (stop) ...
    st.integers(1, 300),  # ... and above it (limit)
    st.integers(0, 39),  # placed after this print
)


def _tick(i: int, cents: int) -> Tick:
    return Tick(T0 + timedelta(seconds=i), "X", Decimal(cents) * CENT, Decimal(100))


def _simulated(prices: list[int], orders: list[tuple[str, int, int, int]]) -> list[tuple]:
    broker = SimulatedBroker()
    entry = SubmitOrder(T0, "entry", "X", OrderAction.BUY, OrderType.MARKET, Decimal(100))
    broker.execute([evolve(entry, purpose="entry")])
    fills: list[tuple] = []
    for i, cents in enumerate(prices):
        tick = _tick(i, cents)
        fills += [(i, f.order_id, f.qty, f.price) for f in broker.on_tick(tick) if _is_fill(f)]
        for k, (kind, below, above, at) in enumerate(orders):
            if at == i:
                stop = tick.price - below * CENT if kind in ("stop", "oco") else None
                limit = tick.price + above * CENT if kind in ("limit", "oco") else None
                order = SubmitOrder(
                    tick.ts, f"o{k}", "X", OrderAction.SELL, OrderType(kind), Decimal(10)
                )
                broker.execute([evolve(order, stop_price=stop, limit_price=limit)])
    return fills


def _venue(prices: list[int], orders: list[tuple[str, int, int, int]]) -> list[tuple]:
    venue = Venue(start=T0, symbols=frozenset({"X"}))

    def post(body: dict) -> dict:
        reply = venue.handle("POST", "/v2/orders", {}, json.dumps(body).encode())
        assert reply.status == 200, reply.body
        return reply.body

    post(_body("entry", "buy", "market"))
    names: dict[str, str] = {"entry": "entry"}
    fills: list[tuple] = []
    for i, cents in enumerate(prices):
        tick = _tick(i, cents)
        venue.on_print(tick)
        for update in venue.take_outbox():
            # Only what alpaca-py's enums know goes out.
            assert update["order"]["status"] in STATUSES and update["event"] in EVENTS
            if update["event"] in ("fill", "partial_fill"):
                name = names[update["order"]["client_order_id"]]
                fills.append((i, name, Decimal(update["qty"]), Decimal(update["price"])))
        for k, (kind, below, above, at) in enumerate(orders):
            if at == i:
                stop = str(tick.price - below * CENT)
                limit = str(tick.price + above * CENT)
                if kind == "oco":
                    body = _body(f"o{k}", "sell", "limit", order_class="oco")
                    body |= {
                        "take_profit": {"limit_price": limit},
                        "stop_loss": {"stop_price": stop},
                    }
                else:
                    body = _body(f"o{k}", "sell", kind)
                    body |= {"stop_price": stop} if kind == "stop" else {}
                    body |= {"limit_price": limit} if kind == "limit" else {}
                answer = post(body)
                names[answer["client_order_id"]] = f"o{k}"
                for leg in answer["legs"] or []:
                    names[leg["client_order_id"]] = f"o{k}"
    return fills


def _body(cid: str, side: str, kind: str, **extra: str) -> dict:
    qty = "100" if cid == "entry" else "10"
    base = {"symbol": "X", "qty": qty, "side": side, "type": kind, "time_in_force": "gtc"}
    return {**base, "client_order_id": cid, **extra}


def _is_fill(event: object) -> bool:
    return type(event) is OrderFilled


@given(
    prices=st.lists(st.integers(9_000, 11_000), min_size=2, max_size=40),
    orders=st.lists(exits, max_size=8),
)
def test_the_exchange_fills_every_order_where_simulate_does(prices, orders):
    """The same prints and the same exits (market, stop, limit, OCO) give the same fills, at
    the same prints and prices, on the exchange's venue and in `ratchet simulate`'s broker."""
    assert _venue(prices, orders) == _simulated(prices, orders)


def test_a_feed_files_symbols_and_bad_lines(tmp_path):
    """The CSV's symbols are the assets; a bad line is reported and skipped, not fatal."""
    feed = tmp_path / "ticks.csv"
    feed.write_text(
        "ts,symbol,price,size\n"
        "2024-03-04T14:30:00Z,AAA,10.00,100\n"
        "2024-03-04T14:30:01Z,BBB,oops,100\n"
        "2024-03-04T14:30:02Z,AAA,10.01,100\n"
    )
    assert feed_symbols(feed) == {"AAA", "BBB"}
    reported: list[str] = []
    market = Exchange(feed, speed=None, on_bad_line=reported.append)
    market.start()
    try:
        played = market.advance(5)
    finally:
        market.stop()
    assert [str(t.price) for t in played] == ["10.00", "10.01"]
    assert len(reported) == 1 and "ticks.csv:3" in reported[0]
