"""The README's example: `ratchet exchange` as a command, and a bot written with plain alpaca-py
trading it through the exports the exchange prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
RATCHET = str(Path(sys.executable).parent / "ratchet")  # the console script beside this Python


def _exchange(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [RATCHET, "exchange", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    exports = {}
    for _ in range(5):
        line = process.stdout.readline().strip()
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = value
    return process, exports


def test_a_plain_alpaca_py_bot_trades_the_exchange(tmp_path):
    """`ratchet exchange --speed 0` prints APCA_API_BASE_URL, the keys and both stream URLs;
    examples/bot.py, given only that environment, buys and sets its stop; the exchange's books
    show both orders; Ctrl-C stops the exchange with status 0."""
    exchange, exports = _exchange("--speed", "0")
    try:
        assert sorted(exports) == [
            "APCA_API_BASE_URL",
            "APCA_API_KEY_ID",
            "APCA_API_SECRET_KEY",
            "RATCHET_DATA_STREAM_URL",
            "RATCHET_TRADE_STREAM_URL",
        ]
        assert exports["RATCHET_TRADE_STREAM_URL"].endswith("/stream")
        bot = subprocess.run(  # the exit status is asserted
            [sys.executable, str(ROOT / "examples" / "bot.py"), "--trades", "30"],
            env={**os.environ, **exports},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert bot.returncode == 0, bot.stderr
        assert "saw 30 trades; bought: True; protected: True" in bot.stdout
        headers = {
            "APCA-API-KEY-ID": exports["APCA_API_KEY_ID"],
            "APCA-API-SECRET-KEY": exports["APCA_API_SECRET_KEY"],
        }
        base = exports["APCA_API_BASE_URL"]

        def order(client_id: str) -> dict[str, str]:
            answer = requests.get(
                f"{base}/v2/orders:by_client_order_id",
                params={"client_order_id": client_id},
                headers=headers,
                timeout=5,
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        assert order("bot-SYNA-entry")["status"] == "filled"
        assert order("bot-SYNA-stop")["type"] == "stop"
        books = requests.get(f"{base}/_ratchet/books", timeout=5).json()
        assert books["oversells"] == 0 and books["orders"] == 2
    finally:
        exchange.send_signal(signal.SIGINT)
        try:
            _, err = exchange.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            exchange.send_signal(signal.SIGUSR1)  # where it is stuck, for the failure message
            time.sleep(1)
            exchange.kill()
            _, err = exchange.communicate(timeout=10)
            raise AssertionError(f"the exchange outlived Ctrl-C by 30 s:\n{err[-6000:]}") from None
    assert exchange.returncode == 0, err
    assert "Traceback" not in err


def test_bad_exchange_options_are_one_line_errors():
    """A bad --faults is a usage error (2) naming the part; a feed with no ticks is exit 1."""
    bad = subprocess.run(  # the exit status is asserted
        [RATCHET, "exchange", "--faults", "loud"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--faults: 'loud'" in bad.stderr
    empty = subprocess.run(  # the exit status is asserted
        [RATCHET, "exchange", "--feed", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert empty.returncode == 1 and "no ticks to trade" in empty.stderr
    assert "Traceback" not in empty.stderr
