"""`step` latency: one tick with 1, 100 and 1,000 open positions, and p99 over a realistic mix."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine import (
    CancelOrder,
    Clock,
    EngineState,
    EntryIntent,
    Side,
    SubmitOrder,
    Tick,
    step,
)
from shell.broker.simulated import SimulatedBroker
from shell.simulate import run_simulation

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def _book(n: int, broker: SimulatedBroker | None = None) -> EngineState:
    """n open long positions, one per symbol, each at 100.00 with its stop at 99.00, opened
    at `broker` (a new one by default)."""
    events: list = []
    for i in range(n):
        symbol = f"S{i:04d}"
        events.append(Tick(T0, symbol, Decimal("100.00")))
        events.append(EntryIntent(T0, symbol, Side.LONG, Decimal("99.00"), Decimal(100)))
    broker = broker if broker is not None else SimulatedBroker(market_fill="same")
    state, _ = run_simulation(events, EngineState.empty(), broker)
    assert len(state.positions) == n
    return state


@pytest.mark.parametrize("open_positions", [1, 100, 1000])
def test_bench_step_one_quiet_tick(benchmark, open_positions):
    """A tick that crosses no threshold: O(1) whatever the number of open positions."""
    state = _book(open_positions)
    tick = Tick(T0 + timedelta(seconds=1), "S0000", Decimal("100.37"))
    result = benchmark(step, state, tick)
    assert result.commands == ()


@pytest.mark.parametrize("open_positions", [1, 100, 1000])
def test_bench_step_one_tick_that_moves_a_stop(benchmark, open_positions):
    """A tick reaching 1R: state transition, stop.moved, and the cancel of the old stop."""
    state = _book(open_positions)
    tick = Tick(T0 + timedelta(seconds=1), "S0000", Decimal("101.00"))
    result = benchmark(step, state, tick)
    assert any(getattr(c, "kind", "") == "stop.moved" for c in result.commands)


def _kind(event: object, commands: tuple[object, ...]) -> str:
    """The event mix the p99 is measured over."""
    if isinstance(event, Tick):
        sends = any(isinstance(c, SubmitOrder | CancelOrder) for c in commands)
        return "tick with orders" if sends else "quiet tick"
    if isinstance(event, Clock):
        return "clock"
    return "answer"


def _percentile(samples: list[int], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] / 1e3


def test_bench_step_p99_with_100_open_positions(benchmark):
    """p50/p99 of `step` over 200,000 ticks and everything they cause (acknowledgements,
    fills, clock events), on 100 open positions stepped against the broker that holds them:
    seeded random walks that climb the ladder, sell tranches and stop out. Reported overall
    and per kind of event (quiet ticks, ticks that send orders, broker answers)."""
    rng = random.Random(7)
    broker = SimulatedBroker(market_fill="same")
    state = _book(100, broker)
    prices = {f"S{i:04d}": Decimal("100.00") for i in range(100)}
    symbols = list(prices)
    samples: dict[str, list[int]] = defaultdict(list)

    def run() -> None:
        nonlocal state
        ts = T0
        for i in range(200_000):
            ts += timedelta(milliseconds=5)
            while state.due <= ts:  # the heartbeat, at each instant something falls due
                due = state.due
                t = step(state, Clock(due))
                state = t.state
                for event in broker.execute(t.commands):
                    state = step(state, event).state
                if state.due <= due:
                    break
            symbol = symbols[i % 100]
            prices[symbol] = max(Decimal("1.00"), prices[symbol] + rng.choice(_STEPS))
            queue = [*broker.on_tick(tick := Tick(ts, symbol, prices[symbol])), tick]
            while queue:
                event = queue.pop(0)
                started = time.perf_counter_ns()
                t = step(state, event)
                elapsed = time.perf_counter_ns() - started
                samples[_kind(event, t.commands)].append(elapsed)
                state = t.state
                queue.extend(broker.execute(t.commands))

    benchmark.pedantic(run, rounds=1, iterations=1)
    every = sorted(x for kind in samples.values() for x in kind)
    lines = [
        f"\nstep over {len(every):,} events, 100 open positions at the broker that holds them:",
        f"  all              p50 {_percentile(every, 0.5):6.1f} us  p99 "
        f"{_percentile(every, 0.99):6.1f} us  (target: p99 under 100 us)",
    ]
    info: dict[str, object] = {"events": len(every), "p50_us": _percentile(every, 0.5),
                               "p99_us": _percentile(every, 0.99)}  # fmt: skip
    for kind in sorted(samples):
        got = sorted(samples[kind])
        share = len(got) / len(every)
        p50, p99 = _percentile(got, 0.5), _percentile(got, 0.99)
        lines.append(f"  {kind:<16} p50 {p50:6.1f} us  p99 {p99:6.1f} us  {len(got):>8,} "
                     f"events ({share:.1%})")  # fmt: skip
        info[f"{kind} count"] = len(got)
        info[f"{kind} p99_us"] = p99
    benchmark.extra_info.update(info)
    # Reported, never asserted: a loaded machine's p99 is not the code's.
    print("\n".join(lines))
    assert sum(len(v) for k, v in samples.items() if k != "quiet tick") > 1_000  # a real mix
    assert len(every) >= 200_000


def test_bench_step_against_a_broker_that_never_saw_the_positions(benchmark):
    """The scenario the p99 used to measure by mistake: 100 positions stepped against a
    broker that holds none of them. The first contradiction brings the broker's snapshot and
    every position closes `closed_outside`; what follows is quiet ticks."""
    state = _book(100, SimulatedBroker(market_fill="same"))
    broker = SimulatedBroker(market_fill="next")
    rng = random.Random(7)
    prices = {f"S{i:04d}": Decimal("100.00") for i in range(100)}
    symbols = list(prices)
    sent = 0

    def run() -> None:
        nonlocal state, sent
        ts = T0
        for i in range(60_000):
            ts += timedelta(milliseconds=5)
            symbol = symbols[i % 100]
            prices[symbol] = max(Decimal("1.00"), prices[symbol] + rng.choice(_STEPS))
            queue = [*broker.on_tick(tick := Tick(ts, symbol, prices[symbol])), tick]
            while queue:
                t = step(state, queue.pop(0))
                state = t.state
                sent += sum(1 for c in t.commands if isinstance(c, SubmitOrder | CancelOrder))
                queue.extend(broker.execute(t.commands))

    benchmark.pedantic(run, rounds=1, iterations=1)
    print(f"\n60,000 ticks against a broker that never saw the 100 positions: {sent} "
          f"requests, {len(state.positions)} positions left")  # fmt: skip
    benchmark.extra_info.update({"requests": sent, "positions_left": len(state.positions)})
    assert not state.positions and sent <= state.config.max_requests_per_minute


_STEPS = [Decimal(c) / 100 for c in (-3, -2, -1, -1, 0, 0, 1, 1, 2, 3, 4)]
