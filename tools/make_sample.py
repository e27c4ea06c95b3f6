"""Write ratchet's bundled sample: SYNTHETIC ticks and entries (no real market data).

Deterministic: a fixed seed and scripted episodes, so the file is byte-for-byte reproducible
and `tests/unit/test_sample.py` checks the committed copy against a fresh run. Each episode
opens a position and walks price through a path of R multiples, so the demo shows every part of
the ladder: breakeven, the 1.5R lock, each partial, the take-profit, a gap through several
milestones, a short, an odd quantity and a loss.

    python tools/make_sample.py samples/synthetic.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

SEED = 20240301
START = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # a Monday, 09:30 New York
CENT = Decimal("0.01")

# (symbol, side, qty, entry price, risk per share, path of (R, ticks to get there); a path
# step with 1 tick is a gap.)
EPISODES = [
    (
        "SYNA",
        "long",
        "100",
        "50.00",
        "0.50",
        [(0.6, 40), (1.2, 60), (1.7, 40), (2.3, 60), (3.1, 60), (4.3, 80), (4.5, 10)],
    ),
    (
        "SYNB",
        "short",
        "80",
        "120.00",
        "1.00",
        [(0.8, 50), (1.6, 50), (2.4, 60), (1.5, 60), (0.9, 80)],
    ),
    ("SYNC", "long", "60", "80.00", "0.80", [(0.4, 40), (-0.5, 50), (-1.3, 60)]),
    (
        "SYNA",
        "long",
        "100",
        "52.00",
        "0.40",
        [(0.8, 60), (3.2, 1), (3.5, 40), (2.0, 80), (1.2, 60)],
    ),
    (
        "SYND",
        "short",
        "150",
        "25.00",
        "0.25",
        [(1.1, 50), (2.2, 50), (3.4, 60), (2.6, 60), (1.4, 80)],
    ),
    ("SYNC", "long", "37", "78.00", "0.60", [(0.7, 40), (1.6, 60), (0.6, 60), (-0.2, 60)]),
]


def _price(entry: Decimal, risk: Decimal, side: str, r: float) -> Decimal:
    sign = 1 if side == "long" else -1
    return entry + Decimal(str(r)) * risk * sign


def lines() -> list[str]:
    """Every line of the sample, in time order."""
    rng = random.Random(SEED)
    out: list[str] = []
    ts = START
    step = timedelta(seconds=2)
    for symbol, side, qty, entry_text, risk_text, path in EPISODES:
        entry, risk = Decimal(entry_text), Decimal(risk_text)
        stop = entry - risk if side == "long" else entry + risk
        out.append(_tick(ts, symbol, entry))
        ts += step
        out.append(
            json.dumps(
                {
                    "type": "entry",
                    "ts": _iso(ts),
                    "symbol": symbol,
                    "side": side,
                    "stop": str(stop),
                    "qty": qty,
                }
            )
        )
        r_now = 0.0
        for r_target, n in path:
            for i in range(1, n + 1):
                ts += step
                r = r_now + (r_target - r_now) * i / n
                noise = 0.0 if n in (1, i) else rng.uniform(-0.08, 0.08)
                price = _price(entry, risk, side, r + noise).quantize(CENT, ROUND_HALF_EVEN)
                out.append(_tick(ts, symbol, max(price, CENT)))
            r_now = r_target
        ts += timedelta(minutes=5)
    return out


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _tick(ts: datetime, symbol: str, price: Decimal) -> str:
    size = 100
    return json.dumps(
        {"type": "tick", "ts": _iso(ts), "symbol": symbol, "price": str(price), "size": str(size)}
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[1]).write_text("\n".join(lines()) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
