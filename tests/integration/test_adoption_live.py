"""Adoption, live: a bot written with plain alpaca-py trades a `ratchet exchange` beside
`ratchet run --broker alpaca`. A position it held before the start is adopted by the startup
scan; one it opens while the loop runs is protected within a second of its fill and climbs the
ladder as the feed moves; `ratchet scan --dry-run` then finds nothing to change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from shell.exchange.server import Exchange
from shell.statedir import StateDir, read_journal

ROOT = Path(__file__).resolve().parents[2]
RATCHET = [sys.executable, "-c", "from shell.cli import main; main()"]


def _records(state: Path, kind: str) -> list[dict]:
    return [line.data for path in StateDir(state).journal_files()
            for line in read_journal(path) if line.data.get("kind") == kind]  # fmt: skip


def _wait(what: str, check, within: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.02)


def _feed(path: Path) -> Path:
    """Three symbols printing every second for twenty minutes, each rising 5% in that time:
    enough for a stop at the default risk (2%) to climb, not for its take-profit (8%)."""
    start = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    lines = []
    for second in range(1200):
        ts = (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for symbol, base in (("AAA", Decimal(100)), ("BBB", Decimal(50)), ("CCC", Decimal(20))):
            price = base * (1 + Decimal(second) / 24000)  # +5% over the twenty minutes
            lines.append(json.dumps({"type": "tick", "ts": ts, "symbol": symbol,
                                     "price": str(price.quantize(Decimal("0.01"))),
                                     "size": "100"}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_bots_positions_are_adopted_at_start_and_within_a_second_while_running(tmp_path):
    exchange = Exchange(_feed(tmp_path / "feed.jsonl"), speed=20)
    endpoints = exchange.start()
    env = dict(line[len("export ") :].split("=", 1) for line in endpoints.exports())
    bot = TradingClient(env["APCA_API_KEY_ID"], env["APCA_API_SECRET_KEY"],
                        url_override=env["APCA_API_BASE_URL"])  # fmt: skip
    state, log = tmp_path / "state", tmp_path / "run.log"
    run = None
    try:
        # Before ratchet starts: the bot already holds BBB.
        bot.submit_order(MarketOrderRequest(symbol="BBB", qty=20, side=OrderSide.BUY,
                                            time_in_force=TimeInForce.DAY))  # fmt: skip
        _wait("the bot's BBB fill", lambda: exchange.books()["positions"].get("BBB"), 30)
        assert not exchange.books()["all_covered"]
        with log.open("wb") as out:
            run = subprocess.Popen(
                [*RATCHET, "run", "--broker", "alpaca", "--clock", "feed", "--state-dir",
                 str(state)], cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out,
            )  # fmt: skip
        _wait("the startup scan", lambda: "position(s) verified" in log.read_text(), 60)
        books = _wait("BBB covered", lambda: (b := exchange.books())["all_covered"] and b, 5)
        assert books["coverage"]["BBB"]["stop_qty"] == "20"
        [adopted] = _records(state, "position.adopted")
        assert adopted["symbol"] == "BBB" and adopted["stop_source"] == "default_risk"

        # While it runs: the bot buys AAA; ratchet covers it within a second of the fill.
        bot.submit_order(MarketOrderRequest(symbol="AAA", qty=10, side=OrderSide.BUY,
                                            time_in_force=TimeInForce.DAY))  # fmt: skip
        _wait("the bot's AAA fill", lambda: exchange.books()["positions"].get("AAA"), 30)
        filled = time.monotonic()
        _wait("AAA covered", lambda: exchange.books()["coverage"]["AAA"]["covered"], 5)
        assert time.monotonic() - filled < 1.0

        # An entry handed in for a symbol whose prints ratchet does not follow yet: the loop
        # subscribes and the entry waits for the first print, then the gate takes it.
        enter = subprocess.run(
            [*RATCHET, "enter", "CCC", "--side", "long", "--stop", "19", "--qty", "5",
             "--id", "bot-ccc", "--state-dir", str(state)],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert enter.returncode == 0, enter.stdout + enter.stderr
        assert json.loads(enter.stdout)["status"] == "accepted"
        _wait("CCC covered", lambda: exchange.books()["coverage"].get("CCC", {}).get("covered"), 5)

        # The feed moves: the adopted AAA climbs (its stop moves up from the default risk).
        moved = _wait("a stop move of AAA", lambda: [r for r in _records(state, "stop.moved")
                                                      if r["symbol"] == "AAA"], 120)  # fmt: skip
        assert Decimal(moved[0]["new"]) > Decimal(moved[0]["old"])
        books = exchange.books()
        assert books["oversells"] == 0 and books["client_order_ids_placed_twice"] == []
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0, log.read_text()[-3000:]
        run = None

        # With the loop stopped, a scan finds every position protected: nothing to change.
        scan = subprocess.run(
            [*RATCHET, "scan", "--dry-run", "--broker", "alpaca", "--clock", "feed",
             "--state-dir", str(state)],
            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert scan.returncode == 0, scan.stdout + scan.stderr
        assert "3 position(s) held" in scan.stdout and "nothing to do" in scan.stdout
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        exchange.stop()
