"""The entry gate: one entry decision with phases on and 100 sessions of history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from engine import Config, EngineState, EntryIntent, Side, Tick, step
from engine.goal import GoalConfig
from engine.phase import Phase, PhaseConfig, PhaseState, SessionResult, TradeMark

T0 = datetime(2024, 6, 3, 15, tzinfo=UTC)


def test_bench_entry_gate_with_100_sessions_of_history(benchmark):
    """Goal and phases on, Trial phase, 100 sessions and 200 trades of record."""
    trades = tuple(
        TradeMark(date(2024, 1, 1) + timedelta(days=i // 2), Decimal(50 if i % 3 else -20))
        for i in range(200)
    )
    sessions = tuple(SessionResult(date(2024, 1, 1) + timedelta(days=i), 2, Decimal(80))
                     for i in range(100))  # fmt: skip
    config = Config(goal=GoalConfig(Decimal(500)), phase=PhaseConfig(enabled=True))
    state = EngineState.empty(config)._replace(
        phase=PhaseState(Phase.TRIAL, Decimal(200), trades=trades, sessions=sessions)
    )
    state = step(state, Tick(T0, "ABC", Decimal("20.00"))).state
    intent = EntryIntent(T0, "ABC", Side.LONG, Decimal("19.00"), None)
    result = benchmark(step, state, intent)
    assert any(getattr(c, "kind", "") == "entry.accepted" for c in result.commands)
    print(f"\nentry gate decision: median {benchmark.stats.stats.median * 1e6:.1f} us")
