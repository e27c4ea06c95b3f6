"""`ratchet run`'s loop on the paper exchange: events per second with every event journaled
(fsynced before each order), against `simulate` on the same ticks, and the wall time of one
step (engine + journal) per event."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.spy_entries import MAX_OPEN, with_entries
from engine import Config, EngineState, EntryIntent, Side, Tick
from shell.broker.alpaca import AlpacaSettings
from shell.broker.alpaca.live import AlpacaBroker
from shell.broker.paper import PaperBroker
from shell.codec import read_events
from shell.exchange.server import Exchange
from shell.journaled import Journaled
from shell.run import Loop, LoopResult
from shell.simulate import run_simulation
from shell.statedir import StateDir
from tests.data import data_file

SPY_WEEK = data_file("ticks/spy_trades_2013-10-07_2013-10-11.csv.gz")
TICKS = 300_000  # the week's first 300,000 prints (about a day and a half), with entries


def _events() -> list:
    return list(itertools.islice(with_entries(read_events(SPY_WEEK)), TICKS))


def _loop(events: list, state_dir: Path) -> LoopResult:
    broker = PaperBroker(events)
    sd = StateDir(state_dir)
    sd.lock()
    journaled = Journaled(sd, EngineState.empty(Config(max_open=MAX_OPEN)))
    loop = Loop(journaled, broker, lambda: broker.now or events[0].ts, heartbeat=None,
                inbox=False)  # fmt: skip
    try:
        return asyncio.run(loop.run())
    finally:
        journaled.close()


def test_bench_run_loop_against_simulate(benchmark, tmp_path):
    """The loop with its journal against simulate without one: events per second each, the
    ratio, the journal's bytes per event and the step's median and p99 wall time."""
    events = _events()
    started = time.perf_counter()
    _, summary = run_simulation(events, EngineState.empty(Config(max_open=MAX_OPEN)))
    simulate_s = time.perf_counter() - started
    rounds = iter(range(100))

    def once() -> LoopResult:
        return _loop(events, tmp_path / f"s{next(rounds)}")

    result = benchmark.pedantic(once, rounds=3, iterations=1)
    loop_s = benchmark.stats.stats.median
    assert result.summary.trades == summary.trades  # the same decisions
    journal = sum(p.stat().st_size for p in StateDir(tmp_path / "s0").journal_files())
    steps = sorted(result.step_seconds)
    p50 = statistics.median(steps) * 1e6
    p99 = steps[int(len(steps) * 0.99)] * 1e6
    benchmark.extra_info.update(events_per_s=round(len(events) / loop_s), step_p50_us=round(p50, 1),
                                step_p99_us=round(p99, 1))  # fmt: skip
    print(
        f"\nrun loop (paper, journaled): {len(events):,} events, median {loop_s:.2f} s, "
        f"{len(events) / loop_s:,.0f} events/s; simulate {len(events) / simulate_s:,.0f} "
        f"events/s ({loop_s / simulate_s:.1f}x the time); journal {journal / len(events):.0f} "
        f"bytes/event; step + journal p50 {p50:.1f} us, p99 {p99:.1f} us"
    )


def _climbing_feed(path: Path, prints: int) -> Path:
    """One symbol printing every second: 30 s up by 4% (every lot climbs its ladder), then a
    drop of 5% (the stops go), again and again."""
    start = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    lines = []
    for i in range(prints):
        step = i % 40
        price = Decimal(100) * (1 + Decimal(min(step, 30)) / 750) - (
            Decimal(5) if step >= 30 else 0
        )
        ts = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cents = str(price.quantize(Decimal("0.01")))
        lines.append(json.dumps({"type": "tick", "ts": ts, "symbol": "AAA", "price": cents,
                                 "size": "100"}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_run_tick_to_order_through_the_exchange(benchmark, tmp_path):
    """`ratchet run`'s loop with the Alpaca adapter against `ratchet exchange` (in this
    process, real sockets, prints 0.25 s apart): from a print leaving the exchange to the
    first order request it causes arriving there (a cancel of a stop to move, or a sale).
    Entries come every 10 prints, so lots are always climbing."""
    prints = 400
    exchange = Exchange(_climbing_feed(tmp_path / "feed.jsonl", prints), speed=4)
    published: list[float] = []
    arrived: list[float] = []
    publish, answer = exchange._publish, exchange._on_request

    def timed_publish(tick: Tick) -> None:
        published.append(time.perf_counter())
        publish(tick)

    async def timed_request(request: Any) -> Any:
        order = request.path.startswith("/v2/orders") and request.method in ("POST", "DELETE")
        if order and b"-entry" not in request.body:  # an entry comes of an intent, not a print
            arrived.append(time.perf_counter())
        return await answer(request)

    exchange._publish = timed_publish  # type: ignore[method-assign]
    exchange._on_request = timed_request  # type: ignore[method-assign]
    endpoints = exchange.start()
    env = dict(line[len("export ") :].split("=", 1) for line in endpoints.exports())
    settings = AlpacaSettings.from_env(env)
    sd = StateDir(tmp_path / "state")
    sd.lock()
    journaled = Journaled(sd, EngineState.empty(Config(max_open=MAX_OPEN)))
    holder: list[Loop] = []
    broker = AlpacaBroker(
        settings, clock=lambda: holder[0].last_ts or datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    )
    loop = Loop(journaled, broker, broker.clock, heartbeat=1.0, inbox=False)
    holder.append(loop)

    async def entries() -> None:
        await asyncio.sleep(1.0)
        for _ in range(prints // 10):
            ts = loop.last_ts or datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
            price = loop.state.last_price("AAA") or Decimal(100)
            loop.broker.events.put_nowait(EntryIntent(ts, "AAA", Side.LONG, price - 1, Decimal(10)))
            await asyncio.sleep(2.5)
        loop.stop("done")

    async def main() -> LoopResult:
        task = asyncio.create_task(entries())
        try:
            return await loop.run()
        finally:
            task.cancel()
            await broker.close()

    try:
        result = benchmark.pedantic(lambda: asyncio.run(main()), rounds=1, iterations=1)
    finally:
        journaled.close()
        exchange.stop()
    latencies = []
    for i, sent in enumerate(published):
        until = published[i + 1] if i + 1 < len(published) else float("inf")
        first = next((a for a in arrived if sent <= a < until), None)
        if first is not None:
            latencies.append((first - sent) * 1000)
    latencies.sort()
    assert len(latencies) >= 20 and result.summary.stop_moves > 10
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    benchmark.extra_info.update(
        tick_to_order_p50_ms=round(p50, 2), tick_to_order_p99_ms=round(p99, 2)
    )
    print(f"\ntick to order through the exchange: {len(latencies)} prints that caused an order, "
          f"median {p50:.2f} ms, p99 {p99:.2f} ms ({result.summary.stop_moves} stop moves, "
          f"{result.summary.positions_opened} positions)")  # fmt: skip
