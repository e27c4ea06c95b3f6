"""`AlpacaBroker`, the live face of the adapter, on an asyncio loop against `ratchet exchange`
(moved by hand) over real sockets: commands in, the engine's events out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine import (
    BrokerSnapshot,
    CancelOrder,
    CancelRefusal,
    CancelRejected,
    Connectivity,
    Event,
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderFilled,
    OrderRefusal,
    OrderRejected,
    OrderType,
    RequestSnapshot,
    SubmitOrder,
    Tick,
)
from shell.broker.alpaca import AlpacaSettings
from shell.broker.alpaca.live import AlpacaBroker
from shell.broker.faults import Faults
from shell.secret import Secret
from tests.contract.conftest import T0, ticks

D = Decimal
BUY, SELL = OrderAction.BUY, OrderAction.SELL
NOW = datetime(2030, 1, 2, 15, 0, tzinfo=UTC)  # the clock the tests give the adapter


def settings_of(exchange: Any, **options: Any) -> AlpacaSettings:
    endpoints = exchange.endpoints
    options.setdefault("requests_per_minute", None)
    options.setdefault("timeout", 5.0)
    options.setdefault("reconnect", (0.05, 0.2))
    return AlpacaSettings(
        Secret(endpoints.key_id), Secret(endpoints.secret_key), endpoints.base_url, **options
    )


def live(test: Callable[..., Any], *exchanges: Any, **options: Any) -> Any:
    """Run `test(broker)` on a fresh loop with an AlpacaBroker started on `exchanges[0]`
    (the second, if any, is its paper account)."""

    async def main() -> Any:
        paper = settings_of(exchanges[1]) if len(exchanges) > 1 else None
        broker = AlpacaBroker(
            settings_of(exchanges[0], **options), clock=lambda: NOW, paper_settings=paper
        )
        await broker.start(["SPY"])
        try:
            return await test(broker)
        finally:
            await broker.close()

    return asyncio.run(main())


async def next_of(broker: AlpacaBroker, *kinds: type, timeout: float = 10.0) -> Event:
    """The next event of one of `kinds` (others are passed over)."""
    while True:
        event = await asyncio.wait_for(broker.events.get(), timeout)
        if isinstance(event, kinds):
            return event


async def advance(exchange: Any, prints: int = 1) -> None:
    await asyncio.to_thread(exchange.advance, prints)


def entry(oid: str, qty: str = "10", **extra: Any) -> SubmitOrder:
    return SubmitOrder(T0, oid, "SPY", BUY, OrderType.MARKET, D(qty), purpose="entry", **extra)


def test_ticks_fills_and_acceptance_arrive_as_events_stamped_by_the_clock(market):
    """start() connects both streams; a print is a Tick with the price's exact decimal; a
    submit is OrderAccepted, its fill OrderFilled with the exact quantity and price; the
    answers carry clock()'s time, the print its own."""

    async def test(broker: AlpacaBroker) -> list[Event]:
        broker.submit([entry("rt-e")])
        accepted = await next_of(broker, OrderAccepted)
        await advance(market, 1)
        first = await next_of(broker, OrderFilled, Tick)
        second = await next_of(broker, OrderFilled, Tick)
        fill, tick = sorted([first, second], key=lambda e: type(e) is Tick)
        return [accepted, fill, tick]

    accepted, fill, tick = live(test, market)
    assert accepted == OrderAccepted(NOW, "rt-e")
    assert fill == OrderFilled(NOW, "rt-e", D(10), D(100))
    # A print carries its own time (the trade's `t`), an answer the clock's.
    assert tick == Tick(T0, "SPY", D("100.00"), D(100)) and tick.price == D("100.00")


def test_a_cancel_is_told_by_the_stream_and_refusals_are_classified(market):
    """A cancel's 204 says nothing; `canceled` on trade_updates is OrderCanceled. A cancel of
    an id the broker never had is NOT_FOUND; of a filled order, FILLED. A second order under a
    used client id is DUPLICATE (the engine adopts the first); a sell of shares a stop holds
    is SHARES_LOCKED with the shares free and held."""

    async def test(broker: AlpacaBroker) -> list[Event]:
        broker.submit([entry("rt-e")])
        await next_of(broker, OrderAccepted)
        await advance(market, 1)
        await next_of(broker, OrderFilled)
        stop = SubmitOrder(T0, "rt-stop", "SPY", SELL, OrderType.STOP, D(10), D(99))
        broker.submit([stop])
        await next_of(broker, OrderAccepted)
        broker.submit([SubmitOrder(T0, "rt-tp", "SPY", SELL, OrderType.LIMIT, D(5), None, D(105))])
        locked = await next_of(broker, OrderRejected)
        broker.submit([CancelOrder(T0, "rt-stop", "SPY")])
        canceled = await next_of(broker, OrderCanceled, CancelRejected)
        broker.submit([CancelOrder(T0, "rt-never", "SPY"), CancelOrder(T0, "rt-e", "SPY")])
        unknown = await next_of(broker, CancelRejected)
        filled = await next_of(broker, CancelRejected)
        broker.submit([entry("rt-e")])
        duplicate = await next_of(broker, OrderRejected)
        return [locked, canceled, unknown, filled, duplicate]

    locked, canceled, unknown, filled, duplicate = live(test, market)
    assert isinstance(locked, OrderRejected) and locked.kind is OrderRefusal.SHARES_LOCKED
    assert (locked.available, locked.existing) == (D(0), D(10))
    assert canceled == OrderCanceled(NOW, "rt-stop")
    assert isinstance(unknown, CancelRejected) and unknown.kind is CancelRefusal.NOT_FOUND
    assert isinstance(filled, CancelRejected) and filled.kind is CancelRefusal.FILLED
    assert isinstance(duplicate, OrderRejected) and duplicate.kind is OrderRefusal.DUPLICATE


def test_a_snapshot_reads_positions_orders_prices_and_marks(market):
    """RequestSnapshot is answered with a BrokerSnapshot: the signed position, its average
    entry price, the last price, and the OCO as one open order under its client id."""

    async def test(broker: AlpacaBroker) -> Event:
        broker.submit([entry("rt-e")])
        await next_of(broker, OrderAccepted)
        await advance(market, 3)
        await next_of(broker, OrderFilled)
        oco = SubmitOrder(T0, "rt-oco", "SPY", SELL, OrderType.OCO, D(10), D("99.5"), D(103))
        broker.submit([oco, RequestSnapshot(T0, "asked")])
        return await next_of(broker, BrokerSnapshot)

    snap = live(test, market)
    assert isinstance(snap, BrokerSnapshot) and snap.ts == NOW
    assert (snap.positions, snap.prices, snap.marks) == (
        (("SPY", D(10)),), (("SPY", D(100)),), (("SPY", D("100.02")),),
    )  # fmt: skip
    [oco] = snap.orders
    assert (oco.order_id, oco.type, oco.status, oco.stop_price) == (
        "rt-oco",
        OrderType.OCO,
        "open",
        D("99.5"),
    )


def test_a_submit_without_an_answer_is_looked_up_and_a_dropped_link_comes_back(start_exchange):
    """The exchange's `drop`: the order is placed but its answer comes too late for the
    adapter's timeout, and both streams drop. The adapter asks for the order by client id
    (not sending it again) and finds it: OrderAccepted; the streams' drop is
    Connectivity(False); once the link is back (alpaca-py reconnects), Connectivity(True)
    and the broker's snapshot, which holds the order."""
    market = start_exchange(faults=Faults(drop=1.0, seed=7), slow_answer=5.0)

    async def test(broker: AlpacaBroker) -> list[Event]:
        broker.submit([entry("rt-slow")])
        down = await next_of(broker, Connectivity)
        await advance(market, 2)  # a second of feed later: the link is back
        seen: list[Event] = []
        while not any(isinstance(e, BrokerSnapshot) for e in seen) or not any(
            isinstance(e, OrderAccepted | OrderRejected) for e in seen
        ):
            seen.append(
                await next_of(broker, OrderAccepted, OrderRejected, Connectivity, BrokerSnapshot)
            )
        [answer] = [e for e in seen if isinstance(e, OrderAccepted | OrderRejected)]
        [up] = [e for e in seen if isinstance(e, Connectivity)]
        [snap] = [e for e in seen if isinstance(e, BrokerSnapshot)]
        assert seen.index(up) < seen.index(snap)
        return [down, answer, up, snap]

    down, answer, up, snap = live(test, market, timeout=1.0)
    assert down == Connectivity(NOW, False) and up == Connectivity(NOW, True)
    assert answer == OrderAccepted(NOW, "rt-slow")
    assert isinstance(snap, BrokerSnapshot)
    assert [o.order_id for o in snap.orders] == ["rt-slow"]
    assert market.books()["client_order_ids_placed_twice"] == []


def test_paper_orders_go_to_the_paper_account(start_exchange):
    """An order with paper=True (the Experience phase) goes to the paper settings' account,
    whose trade updates are read too; the main account never sees it."""
    main, paper = start_exchange(), start_exchange()

    async def test(broker: AlpacaBroker) -> list[Event]:
        broker.submit([entry("rt-paper", paper=True)])
        accepted = await next_of(broker, OrderAccepted)
        await advance(paper, 1)
        fill = await next_of(broker, OrderFilled)
        return [accepted, fill]

    accepted, fill = live(test, main, paper)
    assert accepted == OrderAccepted(NOW, "rt-paper")
    assert fill == OrderFilled(NOW, "rt-paper", D(10), D(100))
    assert paper.books()["positions"] == {"SPY": "10"} and main.books()["orders"] == 0


def test_more_symbols_later_and_the_keys_never_show(start_exchange):
    """subscribe() adds a symbol's trades on the running stream; the keys show in no repr."""
    market = start_exchange(ticks("100", "100.5") + ticks("20", "21", symbol="QQQ"))

    async def test(broker: AlpacaBroker) -> Event:
        broker.subscribe(["QQQ"])
        await asyncio.sleep(0.3)
        await advance(market, 4)
        return await next_of(broker, Tick)

    first = live(test, market)
    assert first == Tick(T0, "SPY", D(100), D(100))
    settings = settings_of(market)
    shown = repr(settings) + repr(AlpacaBroker(settings))
    assert market.endpoints.secret_key not in shown and market.endpoints.key_id not in shown
