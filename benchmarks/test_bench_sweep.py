"""`ratchet sweep` over the SPY week: configs per minute on 1 and 2 workers, with and without
the columnar tick copy, and the tick reader's throughput against the plain csv-module floor.

Reports only: the machine is shared, so no assertion on absolute time.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shell import tickcache
from shell.codec import read_events
from shell.sweep import SweepRequest, run_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RATCHET_DATA", ROOT.parent / "shared" / "data"))
FOUR_SYMBOLS = DATA / "ticks" / "us_equity_trades_2013-10-07.csv"
# 2 ladders × 2 partial schedules × trail on/off × take-profit on/off = 16 configs.
GRID = """
[axes."protection.ladder"]
spec = [{ at_r = 1, lock_r = 0 }, { at_r = 1.5, lock_r = 0.5 }, { at_r = 2, lock_r = 1 },
        { at_r = 3, lock_r = 1.5 }, { at_r = 4, lock_r = 2 }]
early = [{ at_r = 0.5, lock_r = -0.5 }, { at_r = 1, lock_r = 0 }, { at_r = 2, lock_r = 1 }]

[axes."protection.partials"]
spec = [{ at_r = 2, fraction = 0.5 }, { at_r = 3, fraction = 0.25 }, { at_r = 4, fraction = 0.25 }]
halves = [{ at_r = 1.5, fraction = 0.5 }, { at_r = 3, fraction = 0.5 }]

[axes]
"protection.trail" = [false, true]
"protection.take_profit" = [true, false]
"""
_PER_MINUTE: dict[str, float] = {}
_TICKS_PER_S: dict[str, float] = {}


@pytest.fixture(scope="module")
def week(spy_week, tmp_path_factory):
    """The SPY week, its entries (tools/make_entries.py) and the 16-config grid."""
    where = tmp_path_factory.mktemp("sweep")
    entries = where / "entries.jsonl"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_entries.py"), str(spy_week),
                    str(entries)], check=True, capture_output=True)  # fmt: skip
    grid = where / "grid.toml"
    grid.write_text(GRID)
    return spy_week, entries, grid, where


@pytest.mark.parametrize(
    ("workers", "cache"), [(1, False), (2, False), (1, True), (2, True)], ids=str
)
def test_bench_sweep_16_configs_on_the_spy_week(benchmark, week, workers, cache):
    """16 configs × 1.9M ticks: configs per minute (a fresh --out each round, so the tick copy
    is built inside the measured time when it is on)."""
    ticks, entries, grid, where = week
    rounds = iter(range(1_000))

    def sweep() -> int:
        out = where / f"out-{workers}-{cache}-{next(rounds)}"
        request = SweepRequest(events=(ticks,), entries=entries, grid=grid, out=out,
                               workers=workers, tick_cache=cache, picture=False)  # fmt: skip
        result = run_sweep(request)
        return len(result.rows)

    before = _cpu()
    rows = benchmark.pedantic(sweep, rounds=1, iterations=1)
    cpu = _cpu() - before
    assert rows == 16
    wall = benchmark.stats.stats.median
    minutes = wall / 60
    name = f"{workers} worker{'s' if workers > 1 else ''}{' + tick copy' if cache else ''}"
    _PER_MINUTE[name] = rows / minutes
    benchmark.extra_info["configs_per_minute"] = round(rows / minutes, 2)
    benchmark.extra_info["cpu_s_per_config"] = round(cpu / rows, 2)
    # On a machine shared with other work the wall-clock ratio understates the scaling: the
    # CPU this sweep got (driver and workers) over its wall time says how many cores it had.
    print(f"\nsweep, {name}: {rows} configs in {wall:.1f} s = {rows / minutes:.1f} configs/min; "
          f"{cpu / rows:.2f} CPU s per config, {cpu / wall:.2f} cores busy on average")  # fmt: skip
    base = _PER_MINUTE.get("1 worker")
    if base and name != "1 worker":
        benchmark.extra_info["speedup_over_1_worker"] = round(_PER_MINUTE[name] / base, 2)
        print(f"  {_PER_MINUTE[name] / base:.2f}x one worker (aim for 2 workers: >= 1.8x)")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _floor(path: Path) -> int:
    n = 0
    with gzip.open(path, "rt", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        for _ in rows:
            n += 1
    return n


@pytest.fixture(scope="module")
def tick_copy(spy_week, tmp_path_factory):
    pytest.importorskip("pyarrow", reason="the tick copy needs pyarrow (in the dev extra)")
    digest = hashlib.sha256(spy_week.read_bytes()).hexdigest()
    started = time.perf_counter()
    path = tickcache.ensure(spy_week, digest, tmp_path_factory.mktemp("cache"))
    print(f"\ntick copy of the SPY week built in {time.perf_counter() - started:.1f} s")
    assert path is not None
    return path


@pytest.mark.parametrize("reader", ["csv-module floor", "ratchet CSV reader", "tick copy"])
def test_bench_tick_reader_throughput(benchmark, spy_week, tick_copy, reader):
    """Ticks per second: csv.reader rows over the gzip (no values made: the floor), the
    project's reader (validated Ticks), and the columnar copy (the same Ticks)."""
    read = {
        "csv-module floor": lambda: _floor(spy_week),
        "ratchet CSV reader": lambda: sum(1 for _ in read_events(spy_week)),
        "tick copy": lambda: sum(1 for _ in tickcache.read_ticks(tick_copy)),
    }[reader]
    n = benchmark.pedantic(read, rounds=3, iterations=1)
    assert n == 1_887_450
    rate = n / benchmark.stats.stats.median
    _TICKS_PER_S[reader] = rate
    benchmark.extra_info["ticks_per_s"] = round(rate)
    print(f"\n{reader}: {rate:,.0f} ticks/s (median of 3)")
    floor = _TICKS_PER_S.get("csv-module floor")
    if floor and reader != "csv-module floor":
        print(f"  {rate / floor:.2f}x the csv-module floor")
    csv_reader = _TICKS_PER_S.get("ratchet CSV reader")
    if csv_reader and reader == "tick copy":
        benchmark.extra_info["over_csv_reader"] = round(rate / csv_reader, 2)
        print(f"  {rate / csv_reader:.2f}x the CSV reader")


@pytest.mark.parametrize("reader", ["ratchet CSV reader", "tick copy"])
def test_bench_reading_each_symbol_of_four(benchmark, tmp_path_factory, reader):
    """What a sweep split by symbol reads per config on the four-symbol day: each symbol's
    ticks once, from the CSV (the whole file per symbol) or from the copy (its rows only)."""
    pytest.importorskip("pyarrow", reason="the tick copy needs pyarrow (in the dev extra)")
    if not FOUR_SYMBOLS.exists():
        pytest.fail(f"the four-symbol day is not at {FOUR_SYMBOLS} (set RATCHET_DATA)")
    digest = hashlib.sha256(FOUR_SYMBOLS.read_bytes()).hexdigest()
    copy = tickcache.ensure(FOUR_SYMBOLS, digest, tmp_path_factory.mktemp("cache4"))
    assert copy is not None
    symbols = ("AIG", "BAC", "IBM", "SPY")

    def from_csv() -> int:
        return sum(1 for s in symbols for e in read_events(FOUR_SYMBOLS) if e.symbol == s)

    def from_copy() -> int:
        return sum(1 for s in symbols for _ in tickcache.read_ticks(copy, s))

    read = from_copy if reader == "tick copy" else from_csv
    n = benchmark.pedantic(read, rounds=3, iterations=1)
    assert n == 388_417
    print(f"\n{reader}, each of 4 symbols: median {benchmark.stats.stats.median:.2f} s")
