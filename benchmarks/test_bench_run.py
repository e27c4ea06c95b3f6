"""`ratchet run`'s loop on the paper exchange: events per second with every event journaled
(fsynced before each order), against `simulate` on the same ticks, and the wall time of one
step (engine + journal) per event."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path

from benchmarks.spy_entries import MAX_OPEN, with_entries
from engine import Config, EngineState
from shell.broker.paper import PaperBroker
from shell.codec import read_events
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
