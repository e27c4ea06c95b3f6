"""Write entry intents for a CSV of ticks: a long after every N-th tick, the stop a fixed share
under that tick's price (the workload of the SPY benchmark, as a file for `--entries`).

    python tools/make_entries.py TICKS.csv[.gz] ENTRIES.jsonl [--every 10000] \
        [--stop-fraction 0.002] [--qty 100]

then `ratchet simulate TICKS.csv.gz --entries ENTRIES.jsonl --faults high`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

CENT = Decimal("0.01")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ticks", type=Path)
    parser.add_argument("entries", type=Path)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--stop-fraction", type=Decimal, default=Decimal("0.002"))
    parser.add_argument("--qty", type=Decimal, default=Decimal(100))
    args = parser.parse_args(argv)
    opener = gzip.open if args.ticks.suffix == ".gz" else open
    written = 0
    with opener(args.ticks, "rt", newline="") as fh, args.entries.open("w") as out:
        rows = csv.reader(fh)
        header = next(rows)
        if header[:3] != ["ts", "symbol", "price"]:
            parser.error(f"{args.ticks}: expected the header ts,symbol,price,size")
        for i, (ts, symbol, price, *_) in enumerate(rows, start=1):
            if i % args.every:
                continue
            mark = Decimal(price)
            stop = (mark - mark * args.stop_fraction).quantize(CENT, ROUND_CEILING)
            entry = {"type": "entry", "ts": ts, "symbol": symbol, "side": "long",
                     "stop": str(stop), "qty": str(args.qty)}  # fmt: skip
            out.write(json.dumps(entry) + "\n")
            written += 1
    print(f"{written} entries written to {args.entries}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
