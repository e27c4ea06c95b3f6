"""A run replays byte for byte: the same `simulate --faults` command gives the same journal
whatever Python's hash seed (nothing decides by hash or dict iteration order, SPEC §3)."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

from tests.data import data_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
_RUN = "from shell.cli import main; main()"


def _journal(tmp: Path, hash_seed: str, *args: str) -> bytes:
    journal = tmp / f"journal-{hash_seed}.jsonl"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    run = subprocess.run(
        [sys.executable, "-c", _RUN, "simulate", *args, "--journal", str(journal)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return journal.read_bytes()


def test_the_sample_under_faults_gives_one_journal_whatever_the_hash_seed(tmp_path):
    """Two hash seeds, the bundled sample under every fault at once: identical journals."""
    faults = (
        "--faults=transient=0.3,permanent=0.2,locked=0.2,partial=0.5,late=0.5,drop=0.1,"
        "lost=0.2,stuck=0.1,seed=4"
    )
    one = _journal(tmp_path, "1", str(SAMPLE), faults)
    two = _journal(tmp_path, "2", str(SAMPLE), faults)
    assert one == two and one.count(b"\n") > 100


def test_a_real_day_with_many_lots_gives_one_journal_whatever_the_hash_seed(tmp_path):
    """The first 60,000 prints of the four-symbol day with an entry every 1,000 prints (many
    lots per symbol acting together), `--faults high`: identical journals for hash seeds
    1 and 2."""
    day = data_file("ticks/us_equity_trades_2013-10-07.csv")
    ticks = tmp_path / "day.csv"
    entries = tmp_path / "entries.jsonl"
    with day.open(encoding="utf-8") as source:
        ticks.write_text("".join(islice(source, 60_001)), encoding="utf-8")
    tool = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_entries.py"), str(ticks), str(entries),
         "--every", "1000", "--stop-fraction", "0.001"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert tool.returncode == 0, tool.stderr
    args = (str(ticks), "--entries", str(entries), "--faults", "high,seed=5")
    one = _journal(tmp_path, "1", *args)
    two = _journal(tmp_path, "2", *args)
    assert one == two and one.count(b"order.retry") > 0
