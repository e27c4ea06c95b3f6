"""The state directory of a live run: write-ahead journal, snapshot, lock, torn lines, recovery
and `ratchet replay` — driven here by the simulated broker, as `run` drives the exchange."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import Config, Connectivity, EngineState
from shell.broker.simulated import Faults, SimulatedBroker
from shell.cli import main
from shell.codec import read_events
from shell.journaled import Journaled
from shell.replay import recover, replay
from shell.simulate import run_simulation
from shell.statedir import Locked, StateDir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"


def _journaled_run(path: Path, faults: Faults | None = None, upto: int | None = None):
    """The sample through the simulated broker, journaled into the state directory `path`."""
    sd = StateDir(path)
    sd.lock()
    events = list(read_events(SAMPLE))[:upto]
    journaled = Journaled(sd, EngineState.empty(Config()))
    journaled.begin(events[0].ts, "start")
    state, _ = run_simulation(events, journaled.state, SimulatedBroker(faults=faults),
                              on_step=journaled.step_seen)  # fmt: skip
    assert journaled.state == state
    journaled.close()
    return state


def test_a_journaled_run_replays_identically_and_recovers_its_state(tmp_path):
    """Every event and command of a faulty run is in the journal; `replay` folds it back to
    the same commands and records, and `recover` (snapshot, journal after it) gives the state
    the run ended with. The directory and its files are the owner's only."""
    state = _journaled_run(tmp_path / "s", Faults(transient=0.2, partial=0.3, seed=5))
    sd = StateDir(tmp_path / "s")
    [journal] = sd.journal_files()
    result = replay([journal])
    assert result.difference is None and result.events > 1000 and result.commands > 200
    assert recover(sd, Config()).state == state
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    for path in (journal, sd.snapshot_path, tmp_path / "s" / "lock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_journal_changed_by_hand_is_caught_at_its_line(tmp_path):
    """One record altered: `ratchet replay` exits 1 naming the file, the line, what the
    journal holds and what the engine produced."""
    _journaled_run(tmp_path / "s")
    [journal] = StateDir(tmp_path / "s").journal_files()
    lines = journal.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"kind":"stop.moved"' in line)
    lines[n] = lines[n].replace('"kind":"stop.moved"', '"kind":"stop.moved","new":"1.00"', 1)
    record = json.loads(lines[n])
    record["new"] = "1.00"
    lines[n] = json.dumps(record, separators=(",", ":"))
    journal.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["replay", str(journal)])
    assert result.exit_code == 1
    assert f"{journal}:{n + 1}: expected " in result.output and '"new":"1.00"' in result.output


def test_a_torn_last_line_is_kept_aside_and_the_state_rebuilt_without_it(tmp_path):
    """A crash mid-write leaves half a line: at start it goes to FILE.torn (reported), the
    journal is cut back to its last whole line, and recovery folds what is left; a missing
    snapshot is rebuilt from the journal."""
    _journaled_run(tmp_path / "s", upto=400)
    sd = StateDir(tmp_path / "s")
    [journal] = sd.journal_files()
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"kind":"event","event":{"type":"tick","ts":"2024-')
    sd.snapshot_path.unlink()
    recovered = recover(sd, Config())
    assert [n for n in recovered.notes if "torn last line" in n and ".torn" in n]
    assert journal.read_bytes() == whole
    assert (journal.parent / (journal.name + ".torn")).read_bytes().startswith(b'{"kind":"event"')
    assert replay([journal]).difference is None
    assert recovered.events > 100


def test_a_second_run_on_the_same_state_directory_is_refused(tmp_path):
    """The lock names the process holding it; it is released with the process (a kill -9
    included), so the next run gets it."""
    sd = StateDir(tmp_path / "s")
    sd.lock()
    with pytest.raises(Locked, match=f"pid {os.getpid()}"):
        StateDir(tmp_path / "s").lock()
    code = ("import sys; from pathlib import Path; from shell.statedir import StateDir; "
            "StateDir(Path(sys.argv[1])).lock(); print('locked')")  # fmt: skip
    argv = [sys.executable, "-c", code, str(tmp_path / "s")]
    busy = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True)
    assert busy.returncode == 1 and "another ratchet run holds" in busy.stderr
    sd.close()
    free = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True)
    assert free.stdout.strip() == "locked"


def test_a_restart_checkpoint_accepts_the_commands_a_crash_cut_short(tmp_path):
    """Killed between an event's commands: the restart's checkpoint follows a partial list,
    which `replay` accepts as cut short there (and nowhere else)."""
    _journaled_run(tmp_path / "s", upto=600)
    sd = StateDir(tmp_path / "s")
    [journal] = sd.journal_files()
    lines = journal.read_text().splitlines()
    # The last event that had two or more lines after it: drop its last command.
    event = '"kind":"event"'
    i = max(
        k
        for k, line in enumerate(lines[:-2])
        if event in line and event not in lines[k + 1] and event not in lines[k + 2]
    )
    cut = [*lines[: i + 2]]
    journal.write_text("\n".join(cut) + "\n")
    recovered = recover(sd, Config())
    sd.lock()
    journaled = Journaled(sd, recovered.state)
    journaled.begin(recovered.state.due.replace(year=2024), "restart")
    journaled.step_seen(*_connectivity(journaled.state))
    journaled.close()
    assert replay([journal]).difference is None
    # The same cut without a restart after it, in the middle of the journal, is a difference.
    journal.write_text("\n".join([*cut, *lines[i + 3 :]]) + "\n")
    assert replay([journal]).difference is not None


def _connectivity(state: EngineState):
    from engine import step  # noqa: PLC0415

    last = max(m.ts for m in state.marks.values())
    event = Connectivity(last, False)
    return event, state, step(state, event)
