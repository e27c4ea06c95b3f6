"""`ratchet simulate` end to end through click: outputs, journal, and user errors."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

from click.testing import CliRunner

from shell.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"

# Issue 2's journal contract: each kind carries at least these fields (plus kind and ts).
FIELDS = {
    "position.opened": {"symbol", "side", "qty", "entry", "stop"},
    "position.state": {"symbol", "old", "new", "reason", "r"},
    "stop.moved": {"symbol", "old", "new", "r", "reason"},
    "partial.ordered": {"symbol", "milestone", "qty"},
    "partial.filled": {"symbol", "milestone", "qty", "price", "r", "profit"},
    "position.closed": {"symbol", "qty", "price", "reason", "pnl", "r"},
    "trade.closed": {
        "symbol", "side", "qty", "entry", "exit", "opened", "closed", "pnl", "r", "risk"
    },
    "entry.accepted": {"symbol", "reason"},
    "entry.blocked": {"symbol", "reason"},
    "order.submitted": {"symbol", "order_id", "type", "side", "qty", "price"},
    "order.canceled": {"symbol", "order_id", "type", "side", "qty", "price"},
}  # fmt: skip


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_simulate_the_sample_prints_a_summary():
    """The README's first command: a text summary with trades and P&L."""
    result = _run("simulate", SAMPLE)
    assert result.exit_code == 0, result.output
    assert "6 opened, 6 closed" in result.stdout
    assert "realized P&L  +$" in result.stdout
    assert "take_profit" in result.stdout


def test_json_summary_and_journal_agree(tmp_path):
    """--json prints one object; --journal holds every record with the contract's fields, and
    the trades in the journal add up to the summary's realized P&L."""
    journal = tmp_path / "journal.jsonl"
    result = _run("simulate", SAMPLE, "--json", "--journal", journal)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    kinds = {line["kind"] for line in lines}
    assert set(FIELDS) - {"entry.blocked"} <= kinds
    for line in lines:
        missing = FIELDS.get(line["kind"], set()) - set(line)
        assert not missing, (line["kind"], missing)
        assert line["ts"].endswith("Z")
    trades = [line for line in lines if line["kind"] == "trade.closed"]
    assert len(trades) == summary["positions"]["closed"] == 6
    assert sum(D(t["pnl"]) for t in trades) == D(summary["realized_pnl"])
    assert summary["oversells"] == 0


def test_a_malformed_line_is_refused_unless_skipped(tmp_path):
    """A bad line stops simulate with FILE:LINE: reason and exit 1 (no journal left behind);
    --skip-bad-lines reports it on stderr and goes on."""
    events = tmp_path / "events.jsonl"
    lines = SAMPLE.read_text().splitlines()
    lines.insert(5, '{"type": "tick", "ts": "2024-03-04T14:30:09Z", "symbol": "SYNA"}')
    events.write_text("\n".join(lines) + "\n")
    journal = tmp_path / "j.jsonl"
    result = _run("simulate", events, "--journal", journal)
    assert result.exit_code == 1
    assert f"{events}:6: tick is missing 'price'" in result.stderr
    assert "Traceback" not in result.output and not journal.exists()
    assert not list(tmp_path.glob(".j.jsonl.tmp"))
    skipped = _run("simulate", events, "--skip-bad-lines", "--json")
    assert skipped.exit_code == 0
    assert json.loads(skipped.stdout)["bad_lines"] == 1
    assert f"skipped {events}:6:" in skipped.stderr


def test_a_bad_config_is_refused_with_its_key(tmp_path):
    """An invalid ratchet.toml exits 1 naming the key, the value and the allowed range."""
    config = tmp_path / "ratchet.toml"
    config.write_text("[protection]\nlot_step = -1\n")
    result = _run("simulate", SAMPLE, "--config", config)
    assert result.exit_code == 1
    assert "protection.lot_step = -1: allowed > 0" in result.stderr


def test_csv_ticks_with_entries_from_a_file(tmp_path):
    """CSV ticks plus --entries JSONL are merged by time and traded."""
    ticks = tmp_path / "ticks.csv"
    rows = ["ts,symbol,price,size"]
    prices = ["10.00", "10.00", "10.50", "11.00", "12.00", "12.10", "13.00", "13.10", "14.00"]
    rows += [f"2024-03-04T14:30:{i:02d}Z,ABC,{p},100" for i, p in enumerate(prices)]
    ticks.write_text("\n".join(rows) + "\n")
    entries = tmp_path / "entries.jsonl"
    entries.write_text(
        '{"type": "entry", "ts": "2024-03-04T14:30:00.500Z", "symbol": "ABC", "side": "long", '
        '"stop": "9.00", "qty": "10"}\n'
    )
    result = _run("simulate", ticks, "--entries", entries, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    [trade] = summary["trades"]
    # 5 @ 12.10 (2R at 12.00, filled next print), 2 @ 13.10, 3 by the take-profit at 14.00.
    assert D(trade["pnl"]) == 5 * D("2.10") + 2 * D("3.10") + 3 * D("4.00")
    assert trade["reason"] == "take_profit"


def test_missing_file_is_a_usage_error():
    """A path that does not exist is click's usage error (exit 2)."""
    result = _run("simulate", "no-such-file.jsonl")
    assert result.exit_code == 2
