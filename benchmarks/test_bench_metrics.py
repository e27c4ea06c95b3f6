"""The exporter's cost to the loop: median ns per `Metrics.observe` and per `Metrics.update` call,
the time of one scrape with 100 and 1,000 open positions (paid by the HTTP thread, not the
loop), and `simulate` events per second on the SPY week with and without the exporter fed.
Reports only; nothing here fails on time."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from benchmarks.spy_entries import MAX_OPEN, with_entries
from benchmarks.test_bench_step import _book
from engine import Command, Config, EngineState, Event, Transition
from shell.broker.simulated import Faults, SimulatedBroker
from shell.codec import read_events
from shell.metrics import Metrics
from shell.simulate import Sink, StepObserver, run_simulation
from tests import portfolio
from tests.data import data_file

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
ROUNDS = 30


def _session() -> tuple[list[Command], list[EngineState]]:
    """Every command and every state of the bundled sample and the portfolio session (with
    faults): the mix of records, alerts and orders a loop feeds the exporter."""
    commands: list[Command] = []
    states: list[EngineState] = []

    def on_step(event: Event, before: EngineState, t: Transition) -> None:
        states.append(t.state)

    for events, faults in ((read_events(ROOT / "samples" / "synthetic.jsonl"), None),
                           (iter(portfolio.events()), "high,seed=1")):  # fmt: skip
        broker = SimulatedBroker(faults=Faults.parse(faults) if faults else None)
        run_simulation(events, EngineState.empty(Config()), broker, commands.append, on_step)
    return commands, states


def _per_call_ns(call: Callable[[], None], calls: int) -> float:
    """Median over ROUNDS of the nanoseconds per call of a loop of `calls` calls."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        call()
        rounds.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(rounds)


def test_bench_observe_and_update_per_call(benchmark):
    """Median ns per observe (over the session's commands) and per update (over its states),
    beside an empty loop over the same items."""
    commands, states = _session()
    metrics = Metrics()
    observe, update = metrics.observe, metrics.update

    def observe_all() -> None:
        for command in commands:
            observe(command)

    def update_all() -> None:
        for state in states:
            update(state, T0)

    def empty() -> None:
        for _ in commands:
            pass

    def measure() -> tuple[float, float, float]:
        return (
            _per_call_ns(observe_all, len(commands)),
            _per_call_ns(update_all, len(states)),
            _per_call_ns(empty, len(commands)),
        )

    per_observe, per_update, loop = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update({"observe_ns": round(per_observe), "update_ns": round(per_update),
                                 "empty_loop_ns": round(loop)})  # fmt: skip
    print(
        f"\nMetrics.observe: median {per_observe:.0f} ns/call over {len(commands):,} commands; "
        f"Metrics.update: {per_update:.0f} ns/call over {len(states):,} states "
        f"(an empty loop: {loop:.0f} ns/item)"
    )
    assert metrics.records  # it counted


@pytest.mark.parametrize("open_positions", [100, 1000])
def test_bench_one_scrape(benchmark, open_positions):
    """One scrape's work (the metrics view and the text) with this many open positions: the
    HTTP thread's cost, not the loop's."""
    metrics = Metrics()
    metrics.update(_book(open_positions), T0)
    text = benchmark(generate_latest, metrics.registry)
    assert text.count(b"ratchet_position_r{") == open_positions
    print(f"\none scrape, {open_positions} open positions: median "
          f"{benchmark.stats.stats.median * 1000:.2f} ms, {len(text):,} bytes")  # fmt: skip


@pytest.fixture
def spy_week() -> Path:
    return data_file("ticks/spy_trades_2013-10-07_2013-10-11.csv.gz")


def test_bench_simulate_with_and_without_metrics(benchmark, spy_week):
    """The SPY week's first 500,000 ticks (read from the file) with and without the exporter
    fed (observe every command, update after every step, served on a port), and with a step
    observer that does nothing (what `run_simulation` itself spends to call one): events per
    second, best of two, interleaved (the machine is shared)."""

    def simulate(sink: Sink | None, on_step: StepObserver | None) -> float:
        events: Iterator[Event] = with_entries(itertools.islice(read_events(spy_week), 500_000))
        state = EngineState.empty(Config(max_open=MAX_OPEN))
        started = time.perf_counter()
        _, summary = run_simulation(events, state, None, sink, on_step)
        return summary.events / (time.perf_counter() - started)

    metrics = Metrics()
    metrics.serve("127.0.0.1", 0)

    def nothing(event: Event, before: EngineState, t: Transition) -> None:
        pass

    def runs() -> tuple[float, float, float]:
        rates = [
            (
                simulate(None, None),
                simulate(None, nothing),
                simulate(metrics.observe, metrics.on_step),
            )
            for _ in range(2)
        ]
        return max(r[0] for r in rates), max(r[1] for r in rates), max(r[2] for r in rates)

    try:
        without, observer, with_metrics = benchmark.pedantic(runs, rounds=1, iterations=1)
    finally:
        metrics.close()
    benchmark.extra_info.update({"events_per_s_without": round(without),
                                 "events_per_s_empty_observer": round(observer),
                                 "events_per_s_with_metrics": round(with_metrics)})  # fmt: skip
    print(
        f"\nsimulate, SPY week 500k ticks: {without:,.0f} events/s without metrics, "
        f"{with_metrics:,.0f} with them ({with_metrics / without:.2f}x); with a step observer "
        f"that does nothing: {observer:,.0f} ({observer / without:.2f}x)"
    )
