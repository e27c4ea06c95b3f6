"""Run the same ticks and entries through `ratchet simulate` and through `ratchet exchange` in
lock-step with the Alpaca adapter, and say whether the two summaries agree (for runs too long
for the test suite, such as the SPY week: about five minutes per 400,000 prints).

    ./dev python tools/compare_lockstep.py TICKS.csv[.gz] [--entries ENTRIES.jsonl] \
        [--hours us_equity|always]

Prints each summary field that differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shell.broker.alpaca.compare import HOURS, numbers_as_numbers, simulated, through_exchange


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ticks", type=Path)
    parser.add_argument("--entries", type=Path)
    parser.add_argument("--hours", default=HOURS, choices=["us_equity", "always"])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    expected = numbers_as_numbers(simulated(args.ticks, args.entries, args.hours))
    simulate_s = time.perf_counter() - started
    got, books, broker = through_exchange(args.ticks, args.entries, hours=args.hours)
    exchange_s = time.perf_counter() - started - simulate_s
    got = numbers_as_numbers(got)
    differing = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    for key in differing:
        print(f"{key}:\n  simulate: {json.dumps(expected.get(key))}")
        print(f"  exchange: {json.dumps(got.get(key))}")
    laws = {
        "oversells": books["oversells"],
        "client_order_ids_placed_twice": len(books["client_order_ids_placed_twice"]),
        "all_covered": books["all_covered"],
        "early_prints": broker.early_prints,
    }
    print(
        f"{'different' if differing else 'same'}: {expected['ticks']:,} prints, "
        f"{expected['positions']['opened']} positions, {len(expected['trades'])} trades, "
        f"realized {expected['realized_pnl']}; hours {args.hours}; exchange books {laws}; "
        f"simulate {simulate_s:.0f} s, through the exchange {exchange_s:.0f} s"
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
