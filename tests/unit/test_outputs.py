"""Writers: an output that is also an input is refused before anything runs (even through a
link), missing directories are created or refused in one line, and file names made from
symbols stay inside the directory given."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from shell.cli import main
from shell.outputs import file_names

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"


def _run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "temp", "entries", "config"])
def test_an_output_that_is_an_input_is_refused_before_anything_runs(tmp_path, how):
    """--journal onto the events file (by name, a symlink, a hard link), onto --entries or
    --config, or an input named like the journal's temporary file: exit 1, one line, and
    every input byte for byte as it was."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(SAMPLE.read_bytes())
    config = tmp_path / "ratchet.toml"
    config.write_text("[simulation]\nmarket_fill = 'next'\n")
    args = ["simulate", events, "--config", config]
    journal = events
    if how == "symlink":
        journal = tmp_path / "link.jsonl"
        journal.symlink_to(events)
    elif how == "hardlink":
        journal = tmp_path / "hard.jsonl"
        os.link(events, journal)
    elif how == "temp":
        journal = tmp_path / "j.jsonl"
        os.replace(events, tmp_path / ".j.jsonl.tmp")
        events = tmp_path / ".j.jsonl.tmp"
        args[1] = events
    elif how == "entries":
        entries = tmp_path / "entries.jsonl"
        entries.write_text("")
        args += ["--entries", entries]
        journal = entries
    elif how == "config":
        journal = config
    before = {p: _sha(p) for p in (events, config)}
    result = _run(*args, "--journal", journal)
    line = _one_error_line(result)
    assert "would overwrite the input" in line and "--journal" in line
    assert {p: _sha(p) for p in before} == before


def test_missing_directories_are_created_and_a_file_in_the_way_is_one_line(tmp_path):
    """--journal and --plot into missing directories create them; a file where a directory
    should be is refused in one line naming it, before the run."""
    journal = tmp_path / "a" / "b" / "j.jsonl"
    result = _run("simulate", SAMPLE, "--journal", journal)
    assert result.exit_code == 0, result.output
    assert journal.read_text().startswith('{"kind":')
    (tmp_path / "file").write_text("x")
    for option, target in (("--journal", tmp_path / "file" / "j.jsonl"),
                           ("--plot", tmp_path / "file" / "plots")):  # fmt: skip
        line = _one_error_line(_run("simulate", SAMPLE, option, target))
        assert f"{tmp_path / 'file'} is a file, not a directory" in line
    line = _one_error_line(
        _run(
            "report",
            "--window",
            "daily",
            "--trades",
            journal,
            "--plot",
            tmp_path / "file" / "r.png",
        )
    )
    assert "is a file, not a directory" in line


def test_a_directory_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    """When the operating system refuses to create the directory (no permission), one line
    says which and why."""

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    line = _one_error_line(_run("simulate", SAMPLE, "--journal", tmp_path / "new" / "j.jsonl"))
    assert f"cannot create the directory {tmp_path / 'new'}: Permission denied" in line


_SYMBOLS = st.text(min_size=1, max_size=300).filter(lambda s: "\x00" not in s) | st.sampled_from(
    ["..", ".", "../../etc/x", "/abs", "a/b", "-rf", ".hidden", "CON", "A" * 5000, "aapl", "AAPL"]
)


@given(symbols=st.lists(_SYMBOLS, min_size=1, max_size=8))
def test_file_names_from_symbols_stay_inside_the_directory(symbols):
    """Any symbol (slashes, dots, NUL-free unicode, 5,000 characters): one distinct, safe,
    short name each, which resolves to a file directly inside the directory, and the same
    name in every run."""
    names = file_names(symbols, ".png")
    assert set(names) == set(symbols)
    assert len({n.casefold() for n in names.values()}) == len(names)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        for name in names.values():
            assert name.endswith(".png") and len(name.encode()) <= 130
            assert not name.startswith((".", "-")) and "/" not in name and "\x00" not in name
            assert (base / name).resolve().parent == base
    assert file_names(reversed(symbols), ".png") == names  # whatever the order they came in


def test_plot_writes_one_safe_file_per_symbol_inside_the_directory(tmp_path):
    """simulate --plot with symbols made to escape (`../../x`, `a/b`, a NUL, 5,000 letters):
    every picture lands directly in the plot directory, nothing is written outside it."""
    symbols = ["../../escaped", "a/b", "nul\u0000x", "Z" * 5000, ".."]
    lines = []
    for i, symbol in enumerate(symbols):
        tick = {"type": "tick", "ts": f"2024-03-04T14:30:{i:02d}Z", "symbol": symbol,
                "price": "10.00"}  # fmt: skip
        lines.append(json.dumps(tick))
    events = tmp_path / "in" / "events.jsonl"
    events.parent.mkdir()
    events.write_text("\n".join(lines) + "\n")
    plots = tmp_path / "in" / "plots"
    result = _run("simulate", events, "--plot", plots)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in plots.iterdir())
    assert len(written) == len(symbols) and all(n.endswith(".png") for n in written)
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert everything == sorted(["in", "in/events.jsonl", "in/plots"] +
                                [f"in/plots/{n}" for n in written])  # fmt: skip
