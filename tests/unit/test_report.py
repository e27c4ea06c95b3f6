"""`ratchet report`: windows, exports, schemas, targets, bad input and the incremental cache."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from referencing import Registry, Resource

from shell.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "shell" / "schemas"


def _trade(closed: str, pnl: str, r: str = "1", key: str = "K") -> str:
    return json.dumps(
        {
            "kind": "trade.closed", "ts": closed, "symbol": "ABC", "key": key, "side": "long",
            "qty": "10", "entry": "10", "exit": "11", "opened": closed, "closed": closed,
            "pnl": pnl, "r": r, "risk": "10", "reason": "stop",
        }
    )  # fmt: skip


# Hand-computed week: Mon +100, Mon -50, Tue 0 (breakeven), Wed +30, Thu -80, Thu -20.
WEEK = [
    _trade("2024-03-04T15:00:00Z", "100", "1.0", "A"),
    _trade("2024-03-04T16:00:00Z", "-50", "-0.5", "B"),
    _trade("2024-03-05T15:00:00Z", "0", "0", "C"),
    _trade("2024-03-06T15:00:00Z", "30", "0.3", "D"),
    _trade("2024-03-07T15:00:00Z", "-80", "-0.8", "E"),
    _trade("2024-03-07T16:00:00Z", "-20", "-0.2", "F"),
]


def _run(*args):
    return CliRunner().invoke(main, ["report", *[str(a) for a in args]], catch_exceptions=False)


def _validate(document: dict, name: str) -> None:
    base = "https://ratchet.invalid/schemas/"
    resources = [
        (base + p.name, Resource.from_contents(json.loads(p.read_text())))
        for p in SCHEMAS.glob("*.json")
    ]
    registry = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(document)


@pytest.fixture
def week_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text("\n".join(WEEK) + "\n")
    return path


def test_a_week_by_hand(week_file):
    """Weekly: 6 trades, 2 wins / 3 losses / 1 breakeven, win rate 0.4, P&L -20, PF 130/150,
    expectancy -20/6, max drawdown 120 (equity 100, 50, 50, 80, 0, -20), streak -2."""
    result = _run("--window", "weekly", "--trades", week_file, "--export", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    _validate(report, "summary.schema.json")
    [week] = report["periods"]
    assert week["period"] == "2024-W10" and week["start"] == "2024-03-04"
    assert (week["trades"], week["wins"], week["losses"], week["breakevens"]) == (6, 2, 3, 1)
    assert D(week["win_rate"]) == D("0.4")
    assert D(week["realized_pnl"]) == D(-20) and D(week["max_drawdown"]) == D(120)
    assert D(week["profit_factor"]) == D(130) / D(150)
    assert D(week["expectancy"]) == D(-20) / 6
    assert D(week["avg_win"]) == D(65) and D(week["avg_loss"]) == D(-50)
    assert week["current_streak"] == -2 and week["longest_loss_streak"] == 2
    assert week["longest_win_streak"] == 1
    assert not report["partial"] and report["alerts"] == []


def test_daily_rows_add_up_and_an_explicit_range_lists_empty_days(week_file):
    """Daily P&L sums to the week; days without trades in --start..--end say no trades."""
    result = _run("--window", "daily", "--trades", week_file, "--export", "json",
                  "--start", "2024-03-03", "--end", "2024-03-08")  # fmt: skip
    report = json.loads(result.stdout)
    days = {p["period"]: p for p in report["periods"]}
    assert list(days) == [f"2024-03-0{d}" for d in range(3, 9)]
    assert days["2024-03-03"]["no_trades"] and days["2024-03-08"]["trades"] == 0
    assert sum(D(p["realized_pnl"]) for p in days.values()) == D(-20)
    md = _run("--window", "daily", "--trades", week_file, "--start", "2024-03-03",
              "--end", "2024-03-03")  # fmt: skip
    assert "no trades" in md.stdout


def test_missed_targets_exit_3_with_alerts_and_warnings(tmp_path, week_file):
    """A win rate under target: exit 3 (INTERFACES: 2 is a usage error), a WARN line with the
    ratio to three places, and a schema-valid performance.alert keeping the exact values."""
    state = tmp_path / "state"
    (state / "journal").mkdir(parents=True)
    (state / "journal" / "2024-03-04.jsonl").write_text(week_file.read_text())
    config = tmp_path / "ratchet.toml"
    config.write_text("[performance]\nmin_win_rate = 0.55\nmax_drawdown = 150\n")
    result = _run("--window", "weekly", "--state-dir", state, "--config", config)
    assert result.exit_code == 3
    assert "WARN performance weekly 2024-W10: win_rate 0.400 misses target 0.550 (critical)" in (
        result.stderr
    )
    [alert] = [json.loads(x) for x in (state / "performance-alerts.jsonl").read_text().splitlines()]
    saved = json.loads((state / "performance" / "weekly.json").read_text())
    _validate(saved, "summary.schema.json")
    assert saved["total"]["trades"] == 6
    _validate(alert, "alert.schema.json")
    assert (alert["metric"], alert["actual"], alert["target"]) == ("win_rate", "0.4", "0.55")


def test_bad_lines_are_reported_and_the_rest_is_kept(tmp_path):
    """A malformed line is named with file and line; the summary says partial."""
    path = tmp_path / "t.jsonl"
    path.write_text(WEEK[0] + "\nnot json\n" + WEEK[1].replace('"pnl": "-50"', '"pnl": "x"')
                    + "\n" + WEEK[3] + "\n")  # fmt: skip
    result = _run("--window", "weekly", "--trades", path, "--export", "json")
    report = json.loads(result.stdout)
    assert report["partial"] and len(report["bad_lines"]) == 2
    assert report["bad_lines"][0].startswith(f"{path}:2: ")
    assert "pnl = 'x' is not valid" in report["bad_lines"][1]
    assert report["total"]["trades"] == 2 and D(report["total"]["realized_pnl"]) == D(130)
    assert f"skipped {path}:2:" in result.stderr


def test_a_trades_csv_is_read_too(tmp_path):
    """CSV with the documented header gives the same summary as the JSONL journal."""
    path = tmp_path / "t.csv"
    rows = ["symbol,side,qty,entry,exit,opened,closed,pnl,r,risk"]
    for line in WEEK:
        t = json.loads(line)
        rows.append(",".join(t[k] for k in rows[0].split(",")))
    path.write_text("\n".join(rows) + "\n")
    csv_report = json.loads(_run("--window", "weekly", "--trades", path, "--export", "json").stdout)
    assert D(csv_report["total"]["realized_pnl"]) == D(-20)
    assert csv_report["total"]["trades"] == 6
    exported = _run("--window", "weekly", "--trades", path, "--export", "csv").stdout
    assert exported.splitlines()[0].startswith("period,start,trades,no_trades,wins")


def test_the_cache_rebuilds_only_changed_journals(tmp_path):
    """Second run re-reads nothing; editing one journal re-reads that one; results agree."""
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    from shell.performance import daily_from_state_dir  # noqa: PLC0415

    state = tmp_path / "state"
    (state / "journal").mkdir(parents=True)
    (state / "journal" / "2024-03-04.jsonl").write_text("\n".join(WEEK[:2]) + "\n")
    (state / "journal" / "2024-03-05.jsonl").write_text("\n".join(WEEK[2:]) + "\n")
    tz = ZoneInfo("America/New_York")
    first = daily_from_state_dir(state, tz, "America/New_York")
    again = daily_from_state_dir(state, tz, "America/New_York")
    assert (first.files, first.rebuilt, again.rebuilt) == (2, 2, 0)
    assert first.days == again.days
    with (state / "journal" / "2024-03-05.jsonl").open("a") as fh:
        fh.write(_trade("2024-03-08T15:00:00Z", "5", "0.05", "G") + "\n")
    changed = daily_from_state_dir(state, tz, "America/New_York")
    assert changed.rebuilt == 1 and sum(s.trades for s in changed.days.values()) == 7
    backfilled = daily_from_state_dir(
        state, tz, "America/New_York", backfill_from=datetime(2024, 3, 8, tzinfo=UTC).date()
    )
    assert backfilled.rebuilt == 1 and backfilled.days == changed.days
    (state / "performance" / "daily-cache.json").write_text("{corrupt")
    assert daily_from_state_dir(state, tz, "America/New_York").days == changed.days


def test_no_state_dir_and_bad_timezone_are_one_line_errors(tmp_path, week_file):
    """Missing journals or an unknown zone: exit 1 with the reason."""
    result = _run("--window", "daily", "--state-dir", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no journals in" in result.stderr
    result = _run("--window", "daily", "--trades", week_file, "--timezone", "Mars/Olympus")
    assert result.exit_code == 1 and "--timezone = 'Mars/Olympus': not a known time zone" in (
        result.stderr
    )


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path, week_file):
    """Without the plot extra, --plot fails in one line naming the extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = _run("--window", "weekly", "--trades", week_file, "--plot", tmp_path / "x.png")
    assert result.exit_code == 1 and "pip install 'ratchet[plot]'" in result.stderr


def test_plots_are_written_for_a_simulated_journal(tmp_path):
    """report --plot and simulate --plot produce PNG files from the bundled sample."""
    journal, plots = tmp_path / "j.jsonl", tmp_path / "plots"
    runner = CliRunner()
    sim = runner.invoke(main, ["simulate", str(ROOT / "samples" / "synthetic.jsonl"),
                               "--journal", str(journal), "--plot", str(plots)])  # fmt: skip
    assert sim.exit_code == 0, sim.output
    assert sorted(p.name for p in plots.glob("*.png")) == [f"SYN{c}.png" for c in "ABCD"]
    result = _run("--window", "weekly", "--trades", journal, "--plot", tmp_path / "r.png")
    assert result.exit_code == 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
