"""The live commands: `status`, `enter`, `replay` (and `run`, `scan`: shell.run), registered
on the `ratchet` group."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from engine import metrics_view
from shell.cli import _FILE, _STATE_DIR, main
from shell.codec import to_jsonable
from shell.config import load_settings
from shell.errors import UserError
from shell.inbox import submit_entry
from shell.replay import recover, replay
from shell.statedir import StateDir

__all__ = ["enter", "replay_command", "status"]


def _status_body(state_dir: Path, config_path: Path | None) -> dict[str, Any]:
    """What `status` shows, from the snapshot and the journal after it (read only: a running
    loop is not disturbed)."""
    sd = StateDir(state_dir)
    if not sd.journal_files() and not sd.snapshot_path.exists():
        raise UserError(f"{state_dir}: no ratchet state here (no snapshot, no journal)")
    config = load_settings(config_path).config
    recovered = recover(sd, config, repair=False)
    state = recovered.state
    view = metrics_view(state)
    files = sd.journal_files()
    age = time.time() - files[-1].stat().st_mtime if files else None
    positions = []
    for pos in view.positions:
        held = state.positions[pos.key]
        orders = [
            {"order_id": o.id, "role": o.role.value, "type": o.type.value, "qty": o.open_qty,
             "stop_price": o.stop_price, "limit_price": o.limit_price, "status": o.status.value}
            for o in (held.orders.exit, held.orders.sell) if o is not None
        ]  # fmt: skip
        positions.append(
            {"key": pos.key, "symbol": pos.symbol, "side": pos.side.value, "qty": pos.qty,
             "entry": pos.entry, "price": pos.price, "r": pos.r.quantize(Decimal("0.01")),
             "state": pos.protection.value, "stop": pos.stop, "working_stop": pos.working_stop,
             "unrealized": pos.unrealized.quantize(Decimal("0.01")), "bare": pos.bare,
             "orders": orders},
        )  # fmt: skip
    return {
        "state_dir": str(state_dir),
        "positions": positions,
        "daily_pnl": view.daily_pnl,
        "daily_peak": view.daily_peak,
        "goal_triggered": view.goal_triggered,
        "phase": view.phase.value,
        "mode": view.mode.value,
        "breaker": view.breaker.value,
        "heartbeat_age_s": None if age is None else round(age, 1),
    }


@main.command()
@_STATE_DIR
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml (defaults otherwise).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(state_dir: Path, config_path: Path | None, as_json: bool) -> None:
    """Open positions with R, state, stop and working orders; the day's P&L, peak and goal;
    phase; link mode and breaker; the journal's last write — while `run` runs or after."""
    body = _status_body(state_dir, config_path)
    if as_json:
        click.echo(json.dumps(to_jsonable(body), sort_keys=True))
        return
    age = body["heartbeat_age_s"]
    click.echo(f"{state_dir}: link {body['mode']}, breaker {body['breaker']}, phase "
               f"{body['phase']}; journal written {age} s ago")  # fmt: skip
    goal = " (goal triggered: entries blocked)" if body["goal_triggered"] else ""
    click.echo(f"day P&L {body['daily_pnl']:+.2f}, peak {body['daily_peak']:.2f}{goal}")
    if not body["positions"]:
        click.echo("no open positions")
    for p in body["positions"]:
        working = ", ".join(f"{o['type']} {o['qty']} @{o['stop_price']} {o['status']}"
                            for o in p["orders"]) or "NO ORDER"  # fmt: skip
        click.echo(f"  {p['key']:<10} {p['side']:<5} {p['qty']:>8} @ {p['entry']:<10} "
                   f"now {p['price']:<10} {p['r']:+.2f}R {p['state']:<22} stop {p['stop']} "
                   f"[{working}]{'  BARE' if p['bare'] else ''}")  # fmt: skip


@main.command()
@click.argument("symbol")
@click.option("--side", type=click.Choice(["long", "short"]), required=True)
@click.option("--stop", required=True, help="The initial stop price.")
@click.option("--qty", help="Shares (default: the phase's size).")
@click.option("--id", "entry_id", help="Your id for this entry: sending it again is harmless.")
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for the answer.")
@_STATE_DIR
def enter(
    symbol: str,
    side: str,
    stop: str,
    qty: str | None,
    entry_id: str | None,
    wait: float,
    state_dir: Path,
) -> None:
    """Hand an entry intent to the running loop and print the gate's answer (exit 1 when it
    is refused)."""
    reply = submit_entry(state_dir, symbol, side, stop, qty, entry_id, wait)
    click.echo(json.dumps(reply, sort_keys=True))
    if reply.get("status") != "accepted":
        raise SystemExit(1)


@main.command("replay")
@click.argument("journals", nargs=-1, required=True, type=_FILE)
def replay_command(journals: tuple[Path, ...]) -> None:
    """Feed a live journal's events back through the engine from the checkpoint it starts
    from; every command and record must come out identical (exit 1 at the first that does
    not, with its file and line)."""
    started = datetime.now(UTC)
    result = replay(sorted(journals))
    took = (datetime.now(UTC) - started).total_seconds()
    if result.difference:
        raise UserError(f"replay differs: {result.difference}")
    click.echo(f"replayed {result.events:,} events: {result.commands:,} commands and records "
               f"identical ({took:.1f} s)")  # fmt: skip
