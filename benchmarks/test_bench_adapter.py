"""The Alpaca adapter (`AlpacaBroker`) through `ratchet exchange`: an order's round trip from
`submit` to the engine's OrderAccepted and a cancel's to OrderCanceled (off trade_updates),
median and p99; and the requests a second the exchange serves the adapter when four
symbols' lanes send at once.

The exchange runs as the `ratchet exchange` command in its own process, in real time over
the bundled sample, its rate limit lifted; the adapter's token bucket is off likewise.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from engine import (
    CancelOrder,
    OrderAccepted,
    OrderAction,
    OrderCanceled,
    OrderRejected,
    OrderType,
    SubmitOrder,
)
from shell.broker.alpaca import AlpacaSettings
from shell.broker.alpaca.live import AlpacaBroker

RATCHET = str(Path(sys.executable).parent / "ratchet")
SYMBOLS = ("SYNA", "SYNB", "SYNC", "SYND")


def _start() -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [RATCHET, "exchange", "--port", "0", "--rate-limit", "1000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    exports = {}
    for _ in range(5):
        name, _, value = process.stdout.readline().strip().removeprefix("export ").partition("=")
        exports[name] = value
    return process, exports


def _p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]


def _bid(n: int, symbol: str = "SYNA") -> SubmitOrder:
    """A limit buy far under the market: answered, never filled."""
    from datetime import UTC, datetime  # noqa: PLC0415

    return SubmitOrder(
        datetime(2024, 3, 4, 14, 30, tzinfo=UTC), f"bench-{symbol}-{n}", symbol,
        OrderAction.BUY, OrderType.LIMIT, Decimal(1), None, Decimal(1), "entry",
    )  # fmt: skip


async def _measure(env: dict[str, str], orders: int) -> dict[str, float]:
    settings = AlpacaSettings.from_env(env, requests_per_minute=None)
    broker = AlpacaBroker(settings, workers=8)
    await broker.start(["SYNA"])
    try:

        async def wait_for(kind: type, order_id: str) -> None:
            while True:
                event = await broker.events.get()
                if isinstance(event, kind) and getattr(event, "order_id", None) == order_id:
                    return

        accepted, canceled = [], []
        for n in range(orders):
            order = _bid(n)
            started = time.perf_counter()
            broker.submit([order])
            await wait_for(OrderAccepted, order.order_id)
            accepted.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            broker.submit([CancelOrder(order.ts, order.order_id, order.symbol)])
            await wait_for(OrderCanceled, order.order_id)
            canceled.append((time.perf_counter() - started) * 1000)
        burst = [_bid(orders + n, s) for n in range(orders) for s in SYMBOLS]
        before = sum(r.requests for r in broker._rests)
        started = time.perf_counter()
        broker.submit(burst)
        answered = refused = 0
        while answered + refused < len(burst):
            event = await broker.events.get()
            answered += isinstance(event, OrderAccepted)
            refused += isinstance(event, OrderRejected)
        elapsed = time.perf_counter() - started
        served = sum(r.requests for r in broker._rests) - before
        return {
            "submit_ms_median": statistics.median(accepted),
            "submit_ms_p99": _p99(accepted),
            "cancel_ms_median": statistics.median(canceled),
            "cancel_ms_p99": _p99(canceled),
            "requests_per_s": served / elapsed,
            "refused": refused,
        }
    finally:
        await broker.close()


def test_bench_adapter_round_trips_and_requests(benchmark):
    """submit -> OrderAccepted and cancel -> OrderCanceled (500 each, one at a time), median
    and p99; then 2,000 submits on four symbols' lanes at once: requests a second."""
    process, env = _start()
    try:
        figures = benchmark.pedantic(
            lambda: asyncio.run(_measure(env, 500)), rounds=1, iterations=1
        )
        benchmark.extra_info.update({k: round(v, 2) for k, v in figures.items()})
        print(
            f"\nadapter via the exchange: submit -> OrderAccepted median "
            f"{figures['submit_ms_median']:.2f} ms, p99 {figures['submit_ms_p99']:.2f} ms; "
            f"cancel -> OrderCanceled median {figures['cancel_ms_median']:.2f} ms, p99 "
            f"{figures['cancel_ms_p99']:.2f} ms; {figures['requests_per_s']:,.0f} requests/s "
            "served on four lanes"
        )
        assert figures["refused"] == 0 and figures["requests_per_s"] > 0
    finally:
        process.terminate()
        process.wait(timeout=30)
