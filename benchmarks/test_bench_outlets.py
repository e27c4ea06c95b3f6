"""The cost of the store and of alert delivery: records per second the store writer sustains
into PostgreSQL (by batch size), the caller's cost of `submit` (median and p99 µs), and
`simulate` events per second on the SPY week with and without a store writer beside it.
Reports only; nothing here fails on time. Needs PostgreSQL at RATCHET_TEST_PG_URL."""

from __future__ import annotations

import itertools
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from benchmarks.spy_entries import MAX_OPEN, with_entries
from engine import Alert, Command, Config, EngineState, Record
from shell.alerts import AlertDispatcher
from shell.codec import read_events
from shell.config import AlertSettings, StoreSettings, WebhookSink
from shell.journal import JournalWriter
from shell.secret import Secret
from shell.simulate import run_simulation
from shell.store import StoreWriter
from tests.receivers import HTTPReceiver

PG_URL = os.environ.get("RATCHET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        pytest.skip("PostgreSQL not reachable (set RATCHET_TEST_PG_URL)")
    name = f"ratchet_bench_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _records(n: int) -> list[Command]:
    """A mix like a busy session's: stop moves, state changes, partial fills, trades, alerts."""
    out: list[Command] = []
    for i in range(n):
        ts = T0 + timedelta(milliseconds=i)
        key = f"S{i % 100:03d}-1"
        who = {"symbol": key[:4], "key": key}
        match i % 10:
            case 0 | 1 | 2 | 3:
                out.append(Record("stop.moved", ts, {**who, "old": Decimal("99.50"),
                                  "new": Decimal("100.25"), "r": Decimal("1.5"),
                                  "reason": "reached 1.5R: lock 0.5R"}))  # fmt: skip
            case 4 | 5 | 6:
                out.append(Record("position.state", ts, {**who, "old": "INITIAL_RISK",
                                  "new": "BREAKEVEN_PROTECTED", "reason": "reached 1.0R",
                                  "r": Decimal(1)}))  # fmt: skip
            case 7 | 8:
                out.append(Record("partial.filled", ts, {**who, "milestone": Decimal(2),
                                  "qty": Decimal(50), "price": Decimal("101.01"),
                                  "r": Decimal("2.02"), "profit": Decimal("50.50")}))  # fmt: skip
            case _:
                out.append(Alert(ts, "stale_price", {**who, "age_s": 61.5}))
    return out


RECORDS = _records(20_000)


@pytest.mark.parametrize("batch_size", [50, 500, 2000])
def test_bench_store_writer_records_per_second(benchmark, schema, batch_size):
    """Submit 20,000 records and wait until they are committed: records per second."""
    settings = StoreSettings(url=Secret(PG_URL), schema=schema, batch_size=batch_size)
    writer = StoreWriter(settings)
    writer.flush(30)  # connect and create the schema outside the measurement

    def run() -> None:
        source = f"/bench/{uuid.uuid4().hex}.jsonl"
        for line, record in enumerate(RECORDS, start=1):
            writer.submit(record, source, line)
        assert writer.flush(timeout=300)

    benchmark.pedantic(run, rounds=3, iterations=1)
    writer.close()
    rate = len(RECORDS) / benchmark.stats.stats.median
    benchmark.extra_info["records_per_s"] = round(rate)
    print(f"\nstore writer, batch {batch_size}: {rate:,.0f} records/s into PostgreSQL")
    assert writer.written.total() == 3 * len(RECORDS)


def _median_p99_us(call_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(call_ns)
    return statistics.median(ordered) / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def test_bench_submit_costs_the_caller_microseconds(benchmark, schema, tmp_path):
    """The caller's cost of one submit (median and p99 µs over 20,000 calls) while the worker
    threads write to PostgreSQL and POST to a local webhook."""
    writer = StoreWriter(StoreSettings(url=Secret(PG_URL), schema=schema, batch_size=500))
    writer.flush(30)
    receiver = HTTPReceiver()
    alerts = AlertDispatcher(
        AlertSettings(webhook=WebhookSink(Secret(receiver.url("/hook"))), dedup_window=timedelta(0),
                      rate_limit=0, queue_size=100_000),
        tmp_path,
    )  # fmt: skip
    costs: dict[str, list[int]] = {"store": [], "alerts": []}
    clock = time.perf_counter_ns

    def run() -> None:
        source = f"/bench/{uuid.uuid4().hex}.jsonl"
        for line, record in enumerate(RECORDS, start=1):
            started = clock()
            writer.submit(record, source, line)
            costs["store"].append(clock() - started)
        alert = Alert(T0, "stale_price", {"symbol": "SPY"})
        for _ in range(2000):
            started = clock()
            alerts.submit(alert)
            costs["alerts"].append(clock() - started)

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert writer.flush(timeout=300)
    alerts.close(timeout=120)
    writer.close()
    receiver.close()
    for name, calls in costs.items():
        median, p99 = _median_p99_us(calls)
        benchmark.extra_info[f"{name}_submit_median_us"] = round(median, 2)
        benchmark.extra_info[f"{name}_submit_p99_us"] = round(p99, 2)
        print(f"\n{name} submit: median {median:.2f} µs, p99 {p99:.2f} µs ({len(calls):,} calls)")
    assert len(receiver.requests) == 2000


def test_bench_simulate_with_and_without_the_store(benchmark, schema, spy_week, tmp_path):
    """The SPY week (first 500,000 ticks) journaled, with and without every record also
    submitted to the store writer: events per second (best of two, interleaved: the machine
    is shared), and the ratio."""

    def simulate(store: StoreWriter | None) -> float:
        journal = tmp_path / f"{uuid.uuid4().hex}.jsonl"
        events = with_entries(itertools.islice(read_events(spy_week), 500_000))
        started = time.perf_counter()
        with JournalWriter(journal) as writer:

            def sink(command: Command) -> None:
                before = writer.lines
                writer(command)
                if store is not None and writer.lines > before:
                    store.submit(command, str(journal), writer.lines)

            _, summary = run_simulation(events, EngineState.empty(Config(max_open=MAX_OPEN)),
                                        None, sink)  # fmt: skip
        elapsed = time.perf_counter() - started
        return summary.events / elapsed

    store = StoreWriter(StoreSettings(url=Secret(PG_URL), schema=schema))
    store.flush(30)

    def both() -> tuple[float, float]:
        runs = [(simulate(None), simulate(store)) for _ in range(2)]
        return max(r[0] for r in runs), max(r[1] for r in runs)

    without, with_store = benchmark.pedantic(both, rounds=1, iterations=1)
    assert store.flush(timeout=300)
    store.close()
    benchmark.extra_info.update({"events_per_s_without": round(without),
                                 "events_per_s_with_store": round(with_store)})  # fmt: skip
    print(
        f"\nsimulate, SPY week 500k ticks: {without:,.0f} events/s without the store, "
        f"{with_store:,.0f} with it ({with_store / without:.2f}x); "
        f"{store.written.total() // 2:,} records written per run"
    )
