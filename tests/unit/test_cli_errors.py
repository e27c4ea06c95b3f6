"""The CLI's one error path: a refused input is one line and exit 1, a usage error exit 2, a
missed target exit 3, and a bug one line saying so and where its traceback went (or the
traceback itself with --debug)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import shell.cli
from shell.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"


def _run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def _boom(*_args, **_kwargs):
    raise ZeroDivisionError("a deliberate bug")


def test_a_bug_is_one_line_and_its_traceback_goes_to_a_file(tmp_path, monkeypatch):
    """An unexpected exception: exit 1, one line naming it as a bug and the file that holds
    the traceback (a temporary file when the command has no state directory)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(shell.cli, "run_simulation", _boom)
    result = _run("simulate", SAMPLE)
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: internal error (a bug in ratchet, please report it): ")
    assert "ZeroDivisionError: a deliberate bug" in line
    [written] = tmp_path.glob("crash-*.txt")
    assert str(written) in line
    text = written.read_text()
    assert text.startswith("Traceback") and "ZeroDivisionError: a deliberate bug" in text


def test_a_bug_under_a_state_directory_leaves_its_traceback_there(tmp_path, monkeypatch):
    """phase status with a bug: the traceback is written inside --state-dir."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(shell.cli.phases, "status", _boom)
    result = _run("phase", "status", "--state-dir", state)
    assert result.exit_code == 1
    [written] = state.glob("crash-*.txt")
    assert f"its traceback is in {written}" in result.stderr


def test_debug_shows_the_traceback(monkeypatch):
    """ratchet --debug: the traceback is shown on stderr, then the one line."""
    monkeypatch.setattr(shell.cli, "run_simulation", _boom)
    result = _run("--debug", "simulate", SAMPLE)
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.splitlines()[-1] == (
        "Error: internal error (a bug in ratchet): ZeroDivisionError: a deliberate bug"
    )


def test_an_operating_system_refusal_is_one_line(monkeypatch):
    """A file the system will not let us read: one line with the file and the reason."""

    def refuse(path, **_kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shell.cli, "read_events", refuse)
    result = _run("simulate", SAMPLE)
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot use {SAMPLE}: Permission denied\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--start", "2024-02-01", "--end", "2024-01-01"], "--start 2024-02-01 is after --end"),
        (["--start", "0001-01-01", "--end", "9999-12-31"], "allowed 1900-01-01 to 2999-12-31"),
        (["--start", "1900-01-01", "--end", "2999-12-31"], "allowed at most 36,525"),
        (["--backfill", "99999999"], "0<=x<=36525"),
    ],
)
def test_report_refuses_reversed_and_boundless_ranges(tmp_path, args, says):
    """--start after --end, dates outside 1900-2999, a range over 100 years: usage errors
    (exit 2) saying what is allowed, not 'No trades in this range' nor a traceback."""
    result = _run("report", "--window", "daily", "--trades", SAMPLE, *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert says in result.stderr.splitlines()[-1]


def test_report_lists_a_century_of_days_when_asked(tmp_path):
    """The widest range allowed (100 years, daily) is listed, every day."""
    result = _run(
        "report", "--window", "monthly", "--trades", SAMPLE, "--start", "1950-01-01",
        "--end", "2049-12-31", "--export", "json",
    )  # fmt: skip
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)["periods"]) == 1200


def test_phase_export_refuses_a_reversed_range(tmp_path):
    """phase export --start after --end is a usage error too."""
    result = _run("phase", "export", "--state-dir", tmp_path, "--start", "2024-02-01",
                  "--end", "2024-01-01")  # fmt: skip
    assert result.exit_code == 2
    assert "--start 2024-02-01 is after --end 2024-01-01" in result.stderr


def test_the_installed_command_prints_no_traceback_on_a_closed_pipe(tmp_path):
    """`ratchet simulate … | head -1` over 2,000 trades (more than a pipe holds): the reader
    goes away; ratchet says nothing more."""
    lines = []
    for i in range(2000):
        ts = f"2024-03-04T14:{i // 60 % 60:02d}:{i % 60:02d}"
        for price, ms in (("10.00", 0), ("10.00", 200), ("8.00", 400)):
            tick = {"type": "tick", "ts": f"{ts}.{ms:03d}Z", "symbol": f"S{i}", "price": price}
            lines.append(json.dumps(tick))
            if ms == 0:
                lines.append(json.dumps({"type": "entry", "ts": f"{ts}.100Z", "symbol": f"S{i}",
                                         "side": "long", "stop": "9.00", "qty": "1"}))  # fmt: skip
    events = tmp_path / "many.jsonl"
    events.write_text("\n".join(lines) + "\n")
    ratchet = Path(sys.executable).with_name("ratchet")
    run = subprocess.run(
        f"'{ratchet}' simulate '{events}' | head -1",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.stdout.startswith("events ")
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
