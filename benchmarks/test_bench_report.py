"""Report speed: a daily summary of 1,000 trades; a monthly one of 30,000, cold and warm cache."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.analytics import Targets, Window, by_window
from shell.performance import build_report, daily_from_state_dir, read_trades, report_to_json

NY = "America/New_York"
START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def _journal_lines(n: int, days: int, seed: int) -> dict[str, list[str]]:
    """n trade.closed records spread over `days` sessions, one journal file per session."""
    rng = random.Random(seed)
    files: dict[str, list[str]] = {}
    for i in range(n):
        day = i * days // n
        closed = START + timedelta(days=day, seconds=rng.randrange(6 * 3600))
        pnl = rng.randrange(-40_000, 60_000) / 100
        risk = rng.randrange(1_000, 20_000) / 100
        line = json.dumps({
            "kind": "trade.closed", "ts": closed.isoformat(), "symbol": "SYM", "key": f"K{i}",
            "side": "long", "qty": "100", "entry": "10", "exit": "11",
            "opened": (closed - timedelta(minutes=30)).isoformat(), "closed": closed.isoformat(),
            "pnl": str(pnl), "r": str(round(pnl / risk, 6)), "risk": str(risk),
        })  # fmt: skip
        files.setdefault((START + timedelta(days=day)).date().isoformat(), []).append(line)
    return files


def test_bench_daily_summary_of_1000_trades(benchmark, tmp_path):
    """Read a 1,000-trade journal, summarise per day, render JSON (seed target: 500 ms)."""
    path = tmp_path / "trades.jsonl"
    lines = [x for day in _journal_lines(1_000, 5, 1).values() for x in day]
    path.write_text("\n".join(lines) + "\n")
    tz = ZoneInfo(NY)

    def run() -> dict:
        trades = read_trades(path, [])
        days = dict(by_window(trades, Window.DAILY, tz).values())
        report = build_report(days, Window.DAILY, tz, NY, Targets())
        return report_to_json(report, START)

    result = benchmark(run)
    assert result["total"]["trades"] == 1_000
    print(f"\ndaily summary of 1,000 trades: median {benchmark.stats.stats.median * 1e3:.1f} ms")


@pytest.fixture(scope="module")
def big_state(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("state")
    (state / "journal").mkdir()
    for day, lines in _journal_lines(30_000, 60, 2).items():
        (state / "journal" / f"{day}.jsonl").write_text("\n".join(lines) + "\n")
    return state


def _monthly(state: Path) -> dict:
    tz = ZoneInfo(NY)
    build = daily_from_state_dir(state, tz, NY)
    return report_to_json(build_report(build.days, Window.MONTHLY, tz, NY, Targets()), START)


def test_bench_monthly_summary_of_30000_trades_cold(benchmark, big_state):
    """No cache: every journal is read (seed target: 2.5 s)."""

    def setup() -> tuple[tuple, dict]:
        shutil.rmtree(big_state / "performance", ignore_errors=True)
        return (), {}

    result = benchmark.pedantic(lambda: _monthly(big_state), setup=setup, rounds=3)
    assert result["total"]["trades"] == 30_000
    print(f"\nmonthly, 30,000 trades, cold: median {benchmark.stats.stats.median:.3f} s")


def test_bench_monthly_summary_of_30000_trades_warm(benchmark, big_state):
    """Cache in place, no journal changed: only checksums are computed (seed target: 1.5 s)."""
    _monthly(big_state)
    result = benchmark.pedantic(lambda: _monthly(big_state), rounds=5)
    assert result["total"]["trades"] == 30_000
    print(f"\nmonthly, 30,000 trades, warm: median {benchmark.stats.stats.median:.3f} s")
