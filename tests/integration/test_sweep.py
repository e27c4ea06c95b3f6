"""`ratchet sweep`: rows equal to separate `simulate --config` runs, the same bytes on any
engine, symbol splitting, resuming, and one-line refusals of bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.analytics import summarize
from shell import tickcache
from shell.cli import main
from shell.codec import read_events
from shell.performance import read_trades
from shell.sweep import SweepError, SweepRequest, SweepResult, run_sweep

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
DATA = Path(os.environ.get("RATCHET_DATA", ROOT.parent / "shared" / "data"))
FOUR_SYMBOLS = DATA / "ticks" / "us_equity_trades_2013-10-07.csv"

SPEC = ("[{ at_r = 1, lock_r = 0 }, { at_r = 1.5, lock_r = 0.5 }, { at_r = 2, lock_r = 1 }, "
        "{ at_r = 3, lock_r = 1.5 }, { at_r = 4, lock_r = 2 }]")  # fmt: skip
EARLY = "[{ at_r = 0.5, lock_r = -0.5 }, { at_r = 1, lock_r = 0 }, { at_r = 2, lock_r = 1 }]"
GRID = f"""
[base.goal]
giveback = 0.3

[axes."protection.ladder"]
spec = {SPEC}
early = {EARLY}

[axes]
"protection.trail" = [false, true]
"goal.target" = [0, 100]
"""


@pytest.fixture(autouse=True)
def _no_goal_from_the_environment(monkeypatch):
    monkeypatch.delenv("PROFIT_TARGET_DAILY", raising=False)
    monkeypatch.delenv("PROFIT_GIVEBACK_THRESHOLD", raising=False)


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _grid(tmp_path: Path, text: str = GRID) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "rows.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _expected_row(tmp_path: Path, name: str, toml: str) -> dict[str, str]:
    """The row of one config, computed from a separate `ratchet simulate --config` run: its
    journal's closed trades and its JSON summary."""
    config = tmp_path / f"{name}.toml"
    journal = tmp_path / f"{name}.jsonl"
    config.write_text(toml)
    result = _cli("simulate", SAMPLE, "--config", config, "--journal", journal, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    stats = summarize(read_trades(journal, []))

    def text(value: D | None) -> str:
        return "" if value is None else str(value)

    return {
        "trades": str(stats.trades),
        "wins": str(stats.wins),
        "losses": str(stats.losses),
        "breakevens": str(stats.breakevens),
        "win_rate": text(stats.win_rate),
        "avg_r": text(stats.avg_r),
        "expectancy": text(stats.expectancy),
        "profit_factor": text(stats.profit_factor),
        "realized_pnl": summary["realized"]["closed_trades"],
        "max_drawdown": str(stats.max_drawdown),
        "longest_losing_streak": str(stats.longest_loss),
        "open_positions": str(summary["positions"]["open"]),
        "unprotected": str(summary["positions"]["unprotected"]),
        "entries_accepted": str(summary["entries"]["accepted"]),
        "entries_blocked": str(summary["entries"]["blocked"]),
        "goal_triggers": str(len(summary["goal"]["triggered"])),
    }


def test_rows_equal_separate_simulate_runs(tmp_path):
    """Each row of a small grid over the bundled sample is what `ratchet simulate --config`
    reports for that config, written by hand as its own ratchet.toml."""
    out = tmp_path / "out"
    result = _cli("sweep", SAMPLE, "--grid", _grid(tmp_path), "--out", out, "--workers", "1",
                  "--no-plot")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    expected = []
    for ladder_name, ladder in (("spec", SPEC), ("early", EARLY)):
        for trail in ("false", "true"):
            for target in ("0", "100"):
                toml = (f"[protection]\nladder = {ladder}\ntrail = {trail}\n"
                        f"[goal]\ntarget = {target}\ngiveback = 0.3\n")  # fmt: skip
                name = f"ladder={ladder_name} trail={trail} target={target}"
                expected.append((name, _expected_row(tmp_path, f"c{len(expected)}", toml)))
    assert [r["name"] for r in rows] == [name for name, _ in expected]
    assert [r["index"] for r in rows] == [str(i) for i in range(1, 9)]
    for row, (_, want) in zip(rows, expected, strict=True):
        assert {k: row[k] for k in want} == want, row["name"]
    # The grid is not degenerate: the goal and the ladder change the outcome.
    assert len({r["realized_pnl"] for r in rows}) >= 4
    assert {r["goal_triggers"] for r in rows} == {"0", "1"}
    assert "Best 8 of 8 configs by realized_pnl" in result.stdout


def test_the_same_rows_on_one_and_two_workers(tmp_path):
    """Serial and a pool of two processes write byte-identical rows (grid order, never the
    order the runs finished in), and both print the same table."""
    grid = _grid(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    a = _cli("sweep", SAMPLE, "--grid", grid, "--out", one, "--workers", "1", "--no-plot")
    b = _cli("sweep", SAMPLE, "--grid", grid, "--out", two, "--workers", "2", "--no-plot")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert (one / "rows.csv").read_bytes() == (two / "rows.csv").read_bytes()
    assert (one / "rows.json").read_bytes() == (two / "rows.json").read_bytes()
    assert a.stdout == b.stdout
    document = json.loads((one / "rows.json").read_text())
    assert [r["index"] for r in document["rows"]] == list(range(1, 9))
    assert document["axes"]["goal.target"] == ["0", "100"]


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray cluster of two CPUs for one test, shut down after it."""
    ray = pytest.importorskip("ray", reason="Ray is in the dev extra: ./dev installs it")
    # A private local cluster needs no token (and so writes none into the home directory).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    print(f"\nRay test: {time.perf_counter() - started:.1f} s including start and shutdown")


def test_the_same_rows_on_a_ray_cluster(tmp_path, local_ray):
    """A local Ray cluster writes the same bytes as one process; a bad line in the events is
    refused in one line from a Ray worker too."""
    grid = _grid(tmp_path)
    here, on_ray = tmp_path / "here", tmp_path / "ray"
    a = _cli("sweep", SAMPLE, "--grid", grid, "--out", here, "--workers", "1", "--no-plot")
    b = _cli("sweep", SAMPLE, "--grid", grid, "--out", on_ray, "--ray", "auto", "--no-plot")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "on ray (auto)" in b.stderr
    assert (here / "rows.csv").read_bytes() == (on_ray / "rows.csv").read_bytes()
    assert (here / "rows.json").read_bytes() == (on_ray / "rows.json").read_bytes()
    bad = tmp_path / "bad.jsonl"
    lines = SAMPLE.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], '{"type": "tick"}', *lines[5:]]) + "\n")
    c = _cli("sweep", bad, "--grid", grid, "--out", tmp_path / "bad", "--ray", "auto")
    assert c.exit_code == 1
    assert c.stderr.strip() == f"Error: {bad}:6: tick is missing 'ts'"


def test_resume_after_an_interruption_runs_only_what_is_missing(tmp_path):
    """Interrupted after three configs (two workers), the sweep keeps their rows; the same
    sweep again runs only the other five and writes what an uninterrupted sweep writes."""
    grid = _grid(tmp_path)
    out = tmp_path / "out"
    request = SweepRequest(events=(SAMPLE,), grid=grid, out=out, workers=2, picture=False)
    finished = []

    def interrupt_after_three(config, outcome):
        finished.append(config.name)
        if len(finished) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(request, on_outcome=interrupt_after_three)
    assert len(list((out / "runs").glob("*.json"))) == 3
    assert not (out / "rows.csv").exists()
    again = []
    result = run_sweep(request, on_outcome=lambda config, _: again.append(config.name))
    assert (result.ran, result.resumed) == (5, 3)
    assert sorted(again + finished) == sorted(c.name for c in result.grid.configs)
    fresh = tmp_path / "fresh"
    run_sweep(SweepRequest(events=(SAMPLE,), grid=grid, out=fresh, workers=1, picture=False))
    assert (out / "rows.csv").read_bytes() == (fresh / "rows.csv").read_bytes()
    assert (out / "rows.json").read_bytes() == (fresh / "rows.json").read_bytes()
    # Nothing left to do: the third run only assembles.
    rerun = _cli("sweep", SAMPLE, "--grid", grid, "--out", out, "--no-plot")
    assert "8 configs (0 run, 8 already done)" in rerun.stderr


def test_a_changed_config_runs_again(tmp_path):
    """A finished config is reused only while its document and inputs are the same."""
    out = tmp_path / "out"
    grid = _grid(tmp_path, '[axes]\n"protection.trail" = [false, true]\n')
    first = run_sweep(SweepRequest(events=(SAMPLE,), grid=grid, out=out, workers=1,
                                   picture=False))  # fmt: skip
    assert (first.ran, first.resumed) == (2, 0)
    grid.write_text(
        '[base.protection]\nlot_step = "2"\n[axes]\n"protection.trail" = [false, true]\n'
    )
    second = run_sweep(SweepRequest(events=(SAMPLE,), grid=grid, out=out, workers=1,
                                    picture=False))  # fmt: skip
    assert (second.ran, second.resumed) == (2, 0)


def test_split_by_symbol_equals_the_whole_run_and_is_refused_with_a_goal(tmp_path):
    """On the four-symbol sample, runs split by symbol give the same rows as whole runs; with
    the daily goal on, splitting is refused in one line saying why."""
    grid = _grid(tmp_path, f'[axes."protection.ladder"]\nspec = {SPEC}\nearly = {EARLY}\n'
                           '[axes]\n"protection.trail" = [false, true]\n')  # fmt: skip
    whole, split = tmp_path / "whole", tmp_path / "split"
    a = _cli("sweep", SAMPLE, "--grid", grid, "--out", whole, "--workers", "1", "--no-plot")
    b = _cli("sweep", SAMPLE, "--grid", grid, "--out", split, "--workers", "2", "--no-plot",
             "--split-symbols")  # fmt: skip
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert (whole / "rows.csv").read_bytes() == (split / "rows.csv").read_bytes()
    refused = _cli("sweep", SAMPLE, "--grid", _grid(tmp_path), "--out", tmp_path / "goal",
                   "--split-symbols")  # fmt: skip
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        "Error: cannot split by symbol: config 'ladder=spec trail=false target=100': "
        "goal.target = 100: the daily goal adds up every symbol's P&L (run without "
        "--split-symbols)"
    )


@pytest.fixture(scope="module")
def real_day(tmp_path_factory):
    """The four-symbol real day, with longs made by tools/make_entries.py every 10,000 ticks,
    and one more per symbol near its last print (stop 5% away: still open at the end)."""
    if not FOUR_SYMBOLS.exists():
        reason = f"real ticks not at {FOUR_SYMBOLS}: set RATCHET_DATA to ../shared/data"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    entries = tmp_path_factory.mktemp("day") / "entries.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_entries.py"), str(FOUR_SYMBOLS),
         str(entries)], check=True, capture_output=True,
    )  # fmt: skip
    late: dict[str, list[str]] = {}
    with FOUR_SYMBOLS.open(newline="") as fh:
        for ts, symbol, price, _ in csv.reader(fh):
            late.setdefault(symbol, []).append(f"{ts},{price}")
            del late[symbol][:-50]
    lines = entries.read_text().splitlines()
    for symbol, prints in sorted(late.items()):
        if symbol == "symbol":
            continue
        ts, price = prints[0].split(",")
        stop = (D(price) * D("0.95")).quantize(D("0.01"))
        lines.append(json.dumps({"type": "entry", "ts": ts, "symbol": symbol, "side": "long",
                                 "stop": str(stop), "qty": "10"}))  # fmt: skip
    lines.sort(key=lambda line: json.loads(line)["ts"])
    entries.write_text("\n".join(lines) + "\n")
    return FOUR_SYMBOLS, entries


def test_split_on_a_real_day_with_the_tick_cache_equals_the_whole_run(tmp_path, real_day):
    """Four real symbols, read through the columnar tick copy and split by symbol, give the
    rows of whole runs over the CSV (positions left open and their protection included)."""
    pytest.importorskip("pyarrow", reason="pyarrow is in the dev extra: ./dev installs it")
    ticks, entries = real_day
    grid = _grid(tmp_path, '[axes]\n"protection.trail" = [true]\n')

    def sweep(out: Path, split: bool) -> SweepResult:
        return run_sweep(SweepRequest(events=(ticks,), entries=entries, grid=grid, out=out,
                                      workers=1, picture=False, split_symbols=split))  # fmt: skip

    whole = sweep(tmp_path / "whole", split=False)
    split = sweep(tmp_path / "split", split=True)  # the tick copy is on for split runs
    assert split.tasks == 4
    assert whole.rows == split.rows
    assert whole.curves == split.curves
    assert all(int(r["trades"]) > 20 for r in whole.rows)
    assert all(int(r["open_positions"]) == 4 for r in whole.rows)
    assert len(list((tmp_path / "split" / "cache").glob("*.arrow"))) == 1


def test_the_tick_copy_reads_back_the_ticks_of_the_csv_reader(tmp_path):
    """The columnar copy yields ticks equal to the CSV reader's (exact decimal texts, UTC
    times, gzip too), and only one symbol's when asked."""
    pytest.importorskip("pyarrow", reason="pyarrow is in the dev extra: ./dev installs it")
    csv_path = tmp_path / "ticks.csv.gz"
    rows = ["ts,symbol,price,size", "2024-03-01T14:30:00.250Z,AAA,10.50,100",
            "2024-03-01T14:30:00.250Z,BBB,0.9876,0", "2024-03-01T09:30:01-05:00,AAA,10.5,1E+2",
            "2024-03-01T14:30:02.000001Z,BBB,1,3.5"]  # fmt: skip
    import gzip  # noqa: PLC0415 (only this test writes gzip)

    csv_path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    digest = "0" * 64
    copy = tickcache.ensure(csv_path, digest, tmp_path / "cache")
    assert copy is not None
    want = list(read_events(csv_path))
    got = list(tickcache.read_ticks(copy))
    assert got == want
    assert [str(t.price) for t in got] == ["10.50", "0.9876", "10.5", "1"]
    assert [str(t.size) for t in got] == ["100", "0", "1E+2", "3.5"]
    assert list(tickcache.read_ticks(copy, "BBB")) == [t for t in want if t.symbol == "BBB"]
    assert list(tickcache.read_ticks(copy, "ZZZ")) == []
    assert tickcache.ensure(csv_path, digest, tmp_path / "cache") == copy  # made once
    assert tickcache.ensure(SAMPLE, digest, tmp_path / "cache") is None  # JSONL: no copy


def test_the_table_and_the_picture(tmp_path):
    """stdout is a Markdown table of the best rows; the picture is a PNG in --out."""
    pytest.importorskip("matplotlib", reason="matplotlib is in the dev extra: ./dev installs it")
    out = tmp_path / "out"
    grid = _grid(tmp_path)
    result = _cli("sweep", SAMPLE, "--grid", grid, "--out", out, "--workers", "1", "--top", "3",
                  "--rank-by", "expectancy", "--heatmap", "ladder,target")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Best 3 of 8 configs by expectancy (grid.toml)"
    assert lines[2].startswith("| # | config | trades | win rate | avg R | expectancy")
    table = [line for line in lines[4:] if line.startswith("|")]
    assert len(table) == 3
    expectancies = [D(r["expectancy"]) for r in _rows(out)]
    best = max(expectancies)
    assert f"+${best:,.2f}" in table[0]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.jsonl"], "Error: missing.jsonl: no such events file"),
        ([SAMPLE, "--entries", "nope.jsonl"], "Error: nope.jsonl: no such entries file"),
        ([SAMPLE, "--heatmap", "ladder,colour"], "Error: --heatmap ladder,colour: no axis"),
        ([SAMPLE, "--ray", "127.0.0.1:1"], "Error: --ray 127.0.0.1:1: cannot reach the cluster"),
        ([SAMPLE, "--ray", "cluster"], "Error: --ray cluster: expected HOST:PORT"),
    ],
)
def test_bad_inputs_are_one_line(tmp_path, monkeypatch, args, expected):
    """A missing events or entries file, an unknown heatmap axis, a Ray address nobody
    answers on (refused at once, not after Ray's minutes of retries): exit 1, one line."""
    monkeypatch.chdir(tmp_path)
    grid = _grid(tmp_path)
    result = _cli("sweep", *args, "--grid", grid, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_grid_value_is_one_line(tmp_path):
    """The grid's file, config and key, as `--config` would say it."""
    grid = _grid(tmp_path, '[axes]\n"protection.trail" = [false, "yes"]\n')
    result = _cli("sweep", SAMPLE, "--grid", grid, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {grid}: config 'trail=yes': protection.trail = 'yes': allowed true or false\n"
    )


def test_an_unwritable_out_is_one_line(tmp_path):
    """--out under a file cannot be made: exit 1 before anything runs."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _cli("sweep", SAMPLE, "--grid", _grid(tmp_path), "--out", blocker / "out")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: --out {blocker / 'out'}: cannot write there: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_input_is_never_overwritten(tmp_path):
    """An events file where rows.csv would go is refused, and left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    events = out / "rows.csv"
    shutil.copy(SAMPLE, events)
    before = events.read_bytes()
    with pytest.raises(SweepError, match=r"would overwrite the input"):
        run_sweep(SweepRequest(events=(events,), grid=_grid(tmp_path), out=out))
    assert events.read_bytes() == before


def test_several_event_files_are_merged_by_time(tmp_path):
    """Events split over two files (by symbol) give the rows of the one file they came from."""
    lines = SAMPLE.read_text().splitlines()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(x for x in lines if '"SYNA"' in x or '"SYNB"' in x) + "\n")
    second.write_text("\n".join(x for x in lines if '"SYNA"' not in x and '"SYNB"' not in x)
                      + "\n")  # fmt: skip
    grid = _grid(tmp_path, '[axes]\n"protection.trail" = [false, true]\n')
    one = run_sweep(SweepRequest(events=(SAMPLE,), grid=grid, out=tmp_path / "one", workers=1,
                                 picture=False))  # fmt: skip
    two = run_sweep(SweepRequest(events=(first, second), grid=grid, out=tmp_path / "two",
                                 workers=1, picture=False))  # fmt: skip
    assert one.rows == two.rows


def test_the_readme_shows_what_the_sample_sweep_prints(tmp_path):
    """The README's table is what `ratchet sweep` prints for samples/grid.toml over the sample,
    and the picture it shows is committed."""
    result = _cli("sweep", SAMPLE, "--grid", ROOT / "samples" / "grid.toml", "--out",
                  tmp_path / "out", "--top", "5", "--workers", "1", "--no-plot")  # fmt: skip
    assert result.exit_code == 0, result.output
    readme = (ROOT / "README.md").read_text()
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 7
    assert "\n".join(table) in readme
    assert "![sweep of samples/grid.toml over samples/synthetic.jsonl](docs/sweep.png)" in readme
    assert (ROOT / "docs" / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_line_read_by_a_pool_worker_is_one_line(tmp_path):
    """A malformed events line found by a worker process stops the sweep with its file and
    line, and no row is assembled."""
    bad = tmp_path / "bad.jsonl"
    lines = SAMPLE.read_text().splitlines()
    bad.write_text("\n".join([*lines[:9], '{"type": "tick", "ts": "2024-01-01"}', *lines[9:]]))
    out = tmp_path / "out"
    result = _cli("sweep", bad, "--grid", _grid(tmp_path), "--out", out, "--workers", "2")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad}:10: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (out / "rows.csv").exists()


def test_progress_is_drawn_when_asked(tmp_path, capsys):
    """On a terminal the sweep draws a one-line bar on stderr and clears it at the end."""
    run_sweep(SweepRequest(events=(SAMPLE,), grid=_grid(tmp_path), out=tmp_path / "out",
                           workers=1, picture=False), progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "\rsweep [" in err and "8/8 configs" in err
    assert err.endswith("\r")
