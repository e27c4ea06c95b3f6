"""`ratchet run` killed with SIGKILL at random instants and started again, against a `ratchet
exchange` in its own process that a plain alpaca-py bot trades too.

After every restart, once the loop has reconciled, the exchange's own books must show every
share under a working stop, no client order id placed twice and no oversell; the journal must
still hold every line written before the kill; at the end `ratchet replay` of the whole
journal must pass. RATCHET_KILLS sets the number of kills (50 here, 200 in `just soak`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from shell.statedir import StateDir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
RATCHET = [sys.executable, "-c", "from shell.cli import main; main()"]
KILLS = int(os.environ.get("RATCHET_KILLS", "50"))
SYMBOLS = ("SYNA", "SYNB", "SYNC", "SYND")


def _exchange() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The exchange in its own process, playing the sample at 10× (under eight minutes)."""
    proc = subprocess.Popen(
        [*RATCHET, "exchange", "--feed", str(SAMPLE), "--speed", "10", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    env: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(env) < 5:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            name, _, value = line[len("export ") :].strip().partition("=")
            env[name] = value
    assert len(env) >= 3, (
        f"the exchange printed no exports: {proc.stderr.read() if proc.stderr else ''}"
    )
    return proc, env


def _books(env: dict[str, str]) -> dict:
    return requests.get(env["APCA_API_BASE_URL"] + "/_ratchet/books", timeout=10).json()


def _complete_lines(state: Path) -> dict[str, bytes]:
    """Every journal file's bytes up to its last newline (what a restart must keep)."""
    out = {}
    for path in StateDir(state).journal_files():
        data = path.read_bytes()
        out[path.name] = data[: data.rfind(b"\n") + 1]
    return out


def _start(state: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*RATCHET, "run", "--broker", "alpaca", "--clock", "feed", "--state-dir", str(state)],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _ready(log: Path, runs: int, within: float = 30.0) -> None:
    """Wait until `runs` runs have said they are reconciled and running."""
    deadline = time.monotonic() + within
    while log.read_text(errors="replace").count("position(s) verified") < runs:
        assert time.monotonic() < deadline, (
            f"no restart within {within} s:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.05)


def _covered(env: dict[str, str], within: float) -> dict:
    """The books once every position is covered (or the last seen after `within` s)."""
    deadline = time.monotonic() + within
    while True:
        books = _books(env)
        if books["all_covered"] or time.monotonic() > deadline:
            return books
        time.sleep(0.1)


def test_kill_9_at_random_instants_never_leaves_a_share_bare(tmp_path):
    rng = random.Random(20261129)
    exchange, env = _exchange()
    state, log = tmp_path / "state", tmp_path / "run.log"
    bot = TradingClient(env["APCA_API_KEY_ID"], env["APCA_API_SECRET_KEY"],
                        url_override=env["APCA_API_BASE_URL"])  # fmt: skip
    run = None
    bought = 0
    try:
        run = _start(state, env, log)
        _ready(log, 1)
        for kill in range(KILLS):
            if kill % 5 == 1:  # the bot opens a position of its own; ratchet adopts it
                symbol = SYMBOLS[(kill // 5) % len(SYMBOLS)]
                try:
                    bot.submit_order(MarketOrderRequest(
                        symbol=symbol, qty=10, side=OrderSide.BUY,
                        time_in_force=TimeInForce.DAY, client_order_id=f"bot-{kill}"))  # fmt: skip
                    bought += 1
                except APIError as refused:  # as on Alpaca: ratchet's exits rest in the symbol
                    assert "wash trade" in str(refused)
            time.sleep(rng.uniform(0.3, 2.5))
            before = _complete_lines(state)
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=10)
            readied = log.read_text(errors="replace").count("position(s) verified")
            run = _start(state, env, log)
            _ready(log, readied + 1)
            books = _covered(env, within=8.0)
            context = (
                f"after kill {kill + 1}: {json.dumps(books)[:2000]}\n{log.read_text()[-3000:]}"
            )
            assert books["all_covered"], context
            assert books["oversells"] == 0, context
            assert books["client_order_ids_placed_twice"] == [], context
            after = {p.name: p.read_bytes() for p in StateDir(state).journal_files()}
            for name, kept in before.items():
                assert after[name].startswith(kept), f"{name} lost lines at kill {kill + 1}"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        exchange.terminate()
        exchange.wait(timeout=10)
    assert bought >= min(2, (KILLS + 3) // 5)
    kinds: dict[str, int] = {}
    for path in StateDir(state).journal_files():
        for line in path.read_text().splitlines():
            data = json.loads(line)
            kind = data["event"]["type"] if data.get("kind") == "event" else data.get("kind")
            kinds[str(kind)] = kinds.get(str(kind), 0) + 1
    # It did its work between the kills: the bot's positions adopted, protected, and followed
    # print by print through restarts.
    assert kinds.get("position.adopted", 0) >= 1, kinds
    assert kinds.get("tick", 0) > 100, kinds
    assert kinds.get("checkpoint", 0) == KILLS + 1, kinds
    replayed = subprocess.run([*RATCHET, "replay", *map(str, StateDir(state).journal_files())],
                              cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "identical" in replayed.stdout
