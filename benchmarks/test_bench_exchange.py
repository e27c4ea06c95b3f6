"""`ratchet exchange` as a client sees it: requests a second through alpaca-py, and an order's
round trip (submit -> HTTP answer, submit -> `new` on trade_updates), median and p99.

The exchange runs as the `ratchet exchange` command in its own process (as a user runs it),
in real time over the bundled sample, with the rate limit lifted for the measurement.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from alpaca.trading.stream import TradingStream

RATCHET = str(Path(sys.executable).parent / "ratchet")


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
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def test_bench_exchange_requests_and_round_trips(benchmark):
    """GET /v2/orders a second (10 open orders) and submits a second, one alpaca-py client;
    submit -> answer and submit -> `new` on the stream, median and p99."""
    process, env = _start()
    try:
        key, secret = env["APCA_API_KEY_ID"], env["APCA_API_SECRET_KEY"]
        trading = TradingClient(key, secret, url_override=env["APCA_API_BASE_URL"])
        trading._retry = 0
        arrived: dict[str, float] = {}
        stream = TradingStream(key, secret, url_override=env["RATCHET_TRADE_STREAM_URL"])

        async def on_update(update):
            if update.event == "new":
                arrived.setdefault(update.order.client_order_id, time.perf_counter())

        stream.subscribe_trade_updates(on_update)
        threading.Thread(target=stream.run, daemon=True).start()
        counter = iter(range(10**9))

        def submit() -> tuple[str, float, float]:
            cid = f"bench-{next(counter)}"
            sent = time.perf_counter()
            trading.submit_order(
                LimitOrderRequest(
                    symbol="SYNA",
                    qty=1,
                    side=OrderSide.BUY,
                    time_in_force=TimeInForce.GTC,
                    limit_price=1,
                    client_order_id=cid,
                )
            )
            return cid, sent, time.perf_counter()

        while not arrived:  # the stream listens once a `new` comes through
            submit()
            time.sleep(0.05)
        for _ in range(10):
            submit()

        def measure() -> dict[str, float]:
            gets = 2000
            started = time.perf_counter()
            for _ in range(gets):
                trading.get_orders()
            get_rate = gets / (time.perf_counter() - started)
            sent = [submit() for _ in range(1000)]
            submit_rate = len(sent) / (sent[-1][2] - sent[0][1])
            deadline = time.monotonic() + 30
            while any(cid not in arrived for cid, _, _ in sent) and time.monotonic() < deadline:
                time.sleep(0.01)
            answers = [(done - began) * 1000 for _, began, done in sent]
            news = [(arrived[cid] - began) * 1000 for cid, began, _ in sent if cid in arrived]
            return {
                "missing_new": len(sent) - len(news),
                "get_orders_per_s": get_rate,
                "submits_per_s": submit_rate,
                "answer_ms_median": statistics.median(answers),
                "answer_ms_p99": _p99(answers),
                "new_ms_median": statistics.median(news),
                "new_ms_p99": _p99(news),
            }

        figures = benchmark.pedantic(measure, rounds=1, iterations=1)
        benchmark.extra_info.update({k: round(v, 2) for k, v in figures.items()})
        print(
            f"\nexchange via alpaca-py: GET /v2/orders {figures['get_orders_per_s']:,.0f}/s, "
            f"POST /v2/orders {figures['submits_per_s']:,.0f}/s; submit -> answer median "
            f"{figures['answer_ms_median']:.2f} ms, p99 {figures['answer_ms_p99']:.2f} ms; "
            f"submit -> new on the stream median {figures['new_ms_median']:.2f} ms, "
            f"p99 {figures['new_ms_p99']:.2f} ms"
        )
        assert figures["missing_new"] == 0, "every order's `new` came on the stream"
        stream.stop()
    finally:
        process.terminate()
        process.wait(timeout=30)
