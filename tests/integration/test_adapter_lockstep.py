"""End to end in lock-step: events through `ratchet exchange` (speed 0) + the Alpaca adapter
(alpaca-py over real sockets) + the engine give what `ratchet simulate` gives on the same
files; under `--faults`, the exchange's own books show the protection laws kept."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from shell.broker.alpaca.compare import numbers_as_numbers, simulated, through_exchange
from shell.broker.faults import Faults
from tests.data import data_file

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"


def test_the_sample_through_the_exchange_matches_simulate():
    """samples/synthetic.jsonl: positions, stops, partials, fills, orders, P&L and every
    trade are those of `ratchet simulate`; the adapter never ran ahead of the feed and the
    exchange saw no oversell, no client order id twice, every position covered."""
    expected = simulated(SAMPLE)
    got, books, broker = through_exchange(SAMPLE)
    assert numbers_as_numbers(got) == numbers_as_numbers(expected)
    assert got["positions"]["opened"] == 6 and got["realized_pnl"] == "399.92"
    assert broker.early_prints == 0
    assert books["prints"] == expected["ticks"]
    assert books["oversells"] == 0 and books["client_order_ids_placed_twice"] == []
    assert books["all_covered"] and books["positions"] == {}


def _day_entries(ticks: Path, out: Path, every: int = 1_500) -> Path:
    """An entry every `every` ticks, alternating long and short, the stop 0.2% away (the
    workload of tests/integration/test_real_ticks.py), as a file for `--entries`."""
    with ticks.open(encoding="utf-8") as rows, out.open("w", encoding="utf-8") as written:
        next(rows)
        for i, line in enumerate(rows):
            if i % every != every // 2:
                continue
            ts, symbol, price, _ = line.strip().split(",")
            side = "long" if (i // every) % 2 == 0 else "short"
            mark = Decimal(price)
            offset = (mark * Decimal("0.002")).quantize(Decimal("0.01"))
            stop = mark - offset if side == "long" else mark + offset
            entry = {"type": "entry", "ts": ts, "symbol": symbol, "side": side,
                     "stop": str(stop), "qty": "37"}  # fmt: skip
            written.write(json.dumps(entry) + "\n")
    return out


def test_the_four_symbol_day_through_the_exchange_matches_simulate(tmp_path):
    """The real day of four symbols (388,417 prints from 4:00 to 20:00 ET) with an entry
    every 1,500 ticks, under NYSE's sessions: through exchange + adapter + engine, the same
    positions, stops, partials, fills and P&L as `ratchet simulate` on the same files, the
    same exits by protection mode (broker stops in the session, watched stops and their
    extended-hours limits outside it) and the same stops that slept until the open (about
    five minutes here: every print is a round trip over the data stream and an ack)."""
    ticks = data_file("ticks/us_equity_trades_2013-10-07.csv")
    entries = _day_entries(ticks, tmp_path / "entries.jsonl")
    expected = simulated(ticks, entries)
    got, books, broker = through_exchange(ticks, entries)
    assert numbers_as_numbers(got) == numbers_as_numbers(expected)
    assert expected["positions"]["opened"] > 100 and len(expected["trades"]) > 100
    session = expected["hours"]
    assert session["calendar"] == "us_equity" and session["exits_by_mode"]["watched"] > 0
    assert session["wash_trades_refused"] == 0 and books["wash_trades_refused"] == 0
    assert broker.early_prints == 0
    assert books["prints"] == expected["ticks"] and books["oversells"] == 0
    assert books["client_order_ids_placed_twice"] == [] and books["all_covered"]


@pytest.mark.parametrize(
    "faults",
    [
        Faults.parse("flaky,seed=1"),
        Faults.parse("alpaca,seed=2"),
        Faults.parse("high,seed=3"),
    ],
    ids=["flaky", "alpaca", "high"],
)
def test_under_faults_the_exchange_books_keep_the_laws(faults):
    """Under the exchange's `--faults` (429/503, held shares, partial fills, late cancels,
    dropped links, lost answers), the adapter's run of the sample never oversells (P11), never
    places a client order id twice (the lookup before a resend; P10/P22 send no second
    stop), and ends with every position covered by working stops (P25: what was held back
    while the link was down went out when it came back)."""
    got, books, _ = through_exchange(
        SAMPLE, faults=faults, adapter={"timeout": 2.0}, slow_answer=3.0
    )
    assert books["oversells"] == 0, books["oversold"]
    assert books["client_order_ids_placed_twice"] == []
    assert books["all_covered"], books["coverage"]
    assert got["oversells"] == 0
    assert got["positions"]["opened"] >= 1
