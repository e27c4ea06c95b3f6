"""`ratchet run` on the paper exchange in its own process: the same decisions as `simulate`,
a journal that replays, entries handed in by `ratchet enter`, a graceful stop on SIGTERM, a
second run refused, shadow mode sending nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from shell.cli import main
from shell.statedir import StateDir, read_journal

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
RATCHET = [sys.executable, "-c", "from shell.cli import main; main()"]


def _records(state_dir: Path) -> list[dict]:
    """The journal's commands and records (not its events and checkpoints)."""
    out = []
    for path in StateDir(state_dir).journal_files():
        for line in read_journal(path):
            if line.kind not in ("event", "checkpoint"):
                out.append(line.data)
    return out


def test_run_on_the_paper_exchange_decides_as_simulate_does_and_replays(tmp_path):
    """With no arguments but a state directory, `run` trades the bundled sample to its end and
    prints the same summary (trades, stops, partials, P&L, exposure) as `simulate` on it; its
    journal replays identically and `status` reads the end state."""
    runner = CliRunner()
    simulated = runner.invoke(main, ["simulate", str(SAMPLE), "--json"])
    ran = runner.invoke(main, ["run", "--state-dir", str(tmp_path / "s"), "--json"])
    assert ran.exit_code == 0, ran.output
    sim, live = json.loads(simulated.stdout), json.loads(ran.stdout)
    assert live == sim
    assert live["trades"] and live["realized_pnl"] != "0"
    [journal] = StateDir(tmp_path / "s").journal_files()
    assert journal.name == "2024-03-04.jsonl"
    again = runner.invoke(main, ["replay", str(journal)])
    assert again.exit_code == 0 and "identical" in again.output, again.output
    status = runner.invoke(main, ["status", "--state-dir", str(tmp_path / "s"), "--json"])
    assert json.loads(status.stdout)["positions"] == []


@pytest.mark.parametrize(
    "faults", ["high", "transient=0.3,partial=0.3,seed=4", "locked=0.5,late=0.5,seed=2",
               "permanent=1", "drop=0.3,seed=3"],
)  # fmt: skip
def test_under_faults_the_loop_decides_as_simulate_does(tmp_path, faults):
    """The paper exchange under every kind of fault: the loop's summary (trades, retries,
    alerts, exposure windows) and its journal's records are `simulate`'s, because what falls
    due between two prints reaches the exchange before it matches the second, and a broker's
    answers are stepped before anything else, as `simulate` orders them."""
    runner = CliRunner()
    journal = tmp_path / "sim.jsonl"
    simulated = runner.invoke(main, ["simulate", str(SAMPLE), "--faults", faults, "--json",
                                     "--journal", str(journal)])  # fmt: skip
    ran = runner.invoke(main, ["run", "--faults", faults, "--json",
                               "--state-dir", str(tmp_path / "s")])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout) == json.loads(simulated.stdout)
    records = [r for r in _records(tmp_path / "s") if "kind" in r and r["kind"] != "mode.changed"]
    expected = [json.loads(line) for line in journal.read_text().splitlines()]
    assert records == [r for r in expected if r["kind"] != "mode.changed"]
    assert len(records) > 50


def test_a_second_paper_run_keeps_the_first_aside(tmp_path):
    """A paper run starts its feed over: the earlier run's journal and snapshot move to
    earlier/1/ untouched, and the new run's journal is its own."""
    runner = CliRunner()
    state = tmp_path / "s"
    first = runner.invoke(main, ["run", "--state-dir", str(state)])
    assert first.exit_code == 0, first.output
    [journal] = StateDir(state).journal_files()
    kept = journal.read_bytes()
    second = runner.invoke(main, ["run", "--state-dir", str(state)])
    assert second.exit_code == 0, second.output
    assert "earlier paper run" in second.stderr
    assert (state / "earlier" / "1" / "journal" / journal.name).read_bytes() == kept
    assert journal.read_bytes() == kept  # the same decisions again, byte for byte


def test_a_run_on_a_held_state_directory_is_refused(tmp_path):
    sd = StateDir(tmp_path / "s")
    sd.lock()
    refused = subprocess.run([*RATCHET, "run", "--state-dir", str(tmp_path / "s")],
                             cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert f"another ratchet run holds this state directory (pid {os.getpid()})" in refused.stderr
    sd.close()


def test_shadow_mode_journals_decisions_and_sends_nothing(tmp_path):
    """--dry-run: the engine decides (entries accepted, orders journaled) and the paper
    exchange receives no order, so nothing opens."""
    runner = CliRunner()
    ran = runner.invoke(main, ["run", "--dry-run", "--state-dir", str(tmp_path / "s"), "--json"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["trades"] == [] and summary["positions"]["opened"] == 0
    commands = _records(tmp_path / "s")
    submitted = [c for c in commands if c.get("command") == "submit_order"]
    assert len(submitted) == 6  # the six entries, decided and journaled, never sent


def test_an_entry_handed_in_while_running_is_answered_and_sigterm_stops_cleanly(tmp_path):
    """`ratchet enter` reaches a running loop and prints the gate's answer; the same --id
    again is answered without a second entry; SIGTERM ends the run with exit 0, a snapshot
    and a journal that replays."""
    state = tmp_path / "s"
    proc = subprocess.Popen([*RATCHET, "run", "--speed", "200", "--state-dir", str(state)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not StateDir(state).journal_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        enter = [*RATCHET, "enter", "SYNA", "--side", "long", "--stop", "45", "--qty", "10",
                 "--id", "bot-1", "--state-dir", str(state)]  # fmt: skip
        first = subprocess.run(enter, cwd=ROOT, capture_output=True, text=True, check=False)
        assert first.returncode == 0, first.stdout + first.stderr
        reply = json.loads(first.stdout)
        assert reply["status"] == "accepted" and reply["symbol"] == "SYNA"
        again = subprocess.run(enter, cwd=ROOT, capture_output=True, text=True, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout) == reply  # the first answer, not a second entry
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "signal SIGTERM" in err and "realized P&L" in out  # the summary, at a signal too
    commands = _records(state)
    accepted = [c for c in commands if c.get("kind") == "entry.accepted"
                and c.get("id") == "bot-1"]  # fmt: skip
    assert len(accepted) == 1
    replayed = CliRunner().invoke(main, ["replay", *map(str, StateDir(state).journal_files())])
    assert replayed.exit_code == 0, replayed.output
    assert (state / "snapshot.json").exists()
