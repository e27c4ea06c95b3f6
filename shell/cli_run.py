"""`ratchet run` and `ratchet scan`: the live loop on a state directory, against the paper
exchange in this process or a broker speaking Alpaca's API (Alpaca, or a `ratchet exchange`)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import requests
from attrs import evolve

from engine import (
    CancelOrder,
    Command,
    Config,
    EngineState,
    Event,
    Record,
    SubmitOrder,
    Transition,
    metrics_view,
)
from shell.alerts import AlertDispatcher
from shell.broker.faults import Faults
from shell.broker.paper import PaperBroker
from shell.cli import _FILE, _STATE_DIR, _close_alerts, main
from shell.codec import BadLine, merge_by_ts, read_events, to_jsonable
from shell.config import Settings, load_settings
from shell.errors import UserError, one_line
from shell.hours import around, with_hours
from shell.journaled import Journaled
from shell.metrics import Metrics
from shell.replay import recover
from shell.report import render_summary, summary_to_json
from shell.run import LiveBroker, Loop, LoopResult
from shell.secret import redact
from shell.simulate import close_summary
from shell.statedir import StateDir

__all__ = ["SAMPLE", "run", "scan"]

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "synthetic.jsonl"
_EARLIER = "earlier"  # where a paper run puts the state of the paper runs before it


def _feed(feed: Path, entries: Path | None) -> Iterator[Event]:
    stream: Iterator[Event] = read_events(feed)
    if entries is not None:
        stream = merge_by_ts(stream, read_events(entries))
    return stream


def _set_aside(sd: StateDir) -> Path | None:
    """A paper run starts its feed over: the state of an earlier paper run in the directory
    moves to `earlier/N/` (nothing is deleted)."""
    parts = [p for p in (sd.journal_dir, sd.snapshot_path, sd.path / "alerts.jsonl")
             if p.exists() and (p.is_file() or any(p.iterdir()))]  # fmt: skip
    if not parts:
        return None
    earlier = sd.path / _EARLIER
    n = 1
    while (earlier / str(n)).exists():
        n += 1
    target = earlier / str(n)
    target.mkdir(parents=True, mode=0o700)
    for part in parts:
        part.rename(target / part.name)
    sd.create()
    return target


def _alpaca_broker(clock: Callable[[], datetime], feed_clock: bool) -> tuple[LiveBroker, datetime]:
    """The Alpaca adapter on the environment's account (and its paper twin for Experience
    orders, when set), and the market's time now: the broker's clock when the loop keeps the
    feed's time (a `ratchet exchange` replaying a recorded day), else the wall's."""
    # alpaca-py loads only for a run that uses it (other commands start faster).
    from shell.broker.alpaca import AlpacaSettings  # noqa: PLC0415
    from shell.broker.alpaca.live import AlpacaBroker  # noqa: PLC0415

    settings = AlpacaSettings.from_env(os.environ)
    broker = AlpacaBroker(settings, clock=clock, paper_settings=AlpacaSettings.paper_from_env())
    if not feed_clock:
        return broker, _wall()
    try:
        answer = requests.get(
            settings.base_url.rstrip("/") + "/v2/clock",
            headers={"APCA-API-KEY-ID": settings.key_id.reveal(),
                     "APCA-API-SECRET-KEY": settings.secret_key.reveal()},
            timeout=settings.timeout,
        )  # fmt: skip
        answer.raise_for_status()
        now = datetime.fromisoformat(str(answer.json()["timestamp"]).replace("Z", "+00:00"))
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        why = redact(one_line(str(exc), 200), settings.secrets())
        raise UserError(
            f"{settings.base_url}/v2/clock: cannot read the market's time: {why}"
        ) from None
    return broker, now.astimezone(UTC)


def _wall() -> datetime:
    return datetime.now(UTC)


class _Sinks:
    """Where a run's records and alerts go besides the journal: alerts.jsonl and the [alerts]
    sinks, the metrics endpoint."""

    def __init__(self, settings: Settings, sd: StateDir, metrics_port: int | None, host: str):
        self.alerts = AlertDispatcher(settings.alerts, sd.path)
        self.metrics = Metrics() if metrics_port is not None else None
        self.store: Any = None
        if settings.store.url is not None:
            try:
                from shell.store import StoreWriter  # noqa: PLC0415 (the optional extra)
            except ImportError:
                why = "the store needs: pip install 'ratchet[postgres]'"
                raise UserError(f"[store]: {why}") from None
            self.store = StoreWriter(settings.store)
            click.echo(f"store: writing to {self.store.where}", err=True)
        if self.metrics is not None and metrics_port is not None:
            bound, port = self.metrics.serve(host, metrics_port)
            click.echo(f"metrics: serving http://{bound}:{port}/metrics", err=True)
            self.metrics.attach_alerts(self.alerts)
            if self.store is not None:
                self.metrics.attach_store(self.store)

    def line_sinks(self) -> list[Callable[[Command, str, int], None]]:
        if self.store is None:
            return []
        store = self.store

        @functools.cache
        def named(source: str) -> str:
            return os.path.realpath(source)  # as the store names a journal (journal_source)

        def to_store(command: Command, source: str, line: int) -> None:
            store.submit(command, named(source), line)

        return [to_store]

    def sink(self, command: Command) -> None:
        self.alerts.submit(command)
        if self.metrics is not None:
            self.metrics.observe(command)

    def on_step(self, event: Event, before: EngineState, t: Transition) -> None:
        if self.metrics is not None:
            self.metrics.on_step(event, before, t)

    def close(self) -> None:
        _close_alerts(self.alerts)
        if self.store is not None:
            done = self.store.close(timeout=30.0)
            rows = sum(self.store.written.values())
            left = "" if done else " (some left out: see the warning)"
            click.echo(f"store: {rows:,} rows written{left}", err=True)
        if self.metrics is not None:
            self.metrics.close()


def _open(state_dir: Path, config: Config, paper: bool) -> tuple[StateDir, EngineState, bool]:
    """Lock the state directory and recover the state to go on from (a paper run starts its
    feed over, so it starts fresh and keeps the earlier run aside)."""
    sd = StateDir(state_dir)
    sd.lock()
    if paper:
        moved = _set_aside(sd)
        if moved is not None:
            click.echo(f"{state_dir}: an earlier paper run's state is kept in {moved}", err=True)
    recovered = recover(sd, config)
    for note in recovered.notes:
        click.echo(note, err=True)
    if not recovered.fresh:
        click.echo(f"{state_dir}: restarting from the snapshot and {recovered.events:,} "
                   "journaled events after it", err=True)  # fmt: skip
    return sd, recovered.state, not recovered.fresh


def _make_broker(
    broker_name: str, feed: Path | None, entries: Path | None, speed: float, clock_name: str,
    settings: Settings, loops: list[Loop], faults: str | None,
) -> tuple[LiveBroker, Callable[[], datetime], float | None, Config]:  # fmt: skip
    """The broker, the loop's clock, its heartbeat (None: the feed's time moves the clock) and
    the engine's configuration with the market's sessions (`[broker] hours`) around now."""
    if broker_name == "paper":
        try:
            profile = Faults.parse(faults) if faults else None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        config, stream = with_hours(settings.config, settings.hours, _feed(feed or SAMPLE, entries))
        paper = PaperBroker(stream, speed=speed, market_fill=settings.market_fill,
                            faults=profile, hours=config.hours)  # fmt: skip
        epoch = datetime(1970, 1, 1, tzinfo=UTC)

        def feed_clock() -> datetime:
            return paper.now or epoch

        return paper, feed_clock, (1.0 if speed else None), config
    if feed is not None or entries is not None or faults:
        why = "--feed, --entries and --faults are for --broker paper (a broker has its own)"
        raise click.UsageError(why)
    started: list[datetime] = []  # the broker's time at the start

    def market_clock() -> datetime:
        """The time of the last event the loop stepped (the feed's), or the broker's clock
        at the start before there is one."""
        return (loops[0].last_ts if loops else None) or started[0]

    clock = _wall if clock_name == "wall" else market_clock
    broker, now = _alpaca_broker(clock, clock_name == "feed")
    started.append(now)
    return broker, clock, 1.0, evolve(settings.config, hours=around(settings.hours, now))


def _print_result(result: LoopResult, paper: PaperBroker | None, as_json: bool) -> None:
    summary = result.summary
    if paper is not None:
        summary.oversells = paper.oversells
        close_summary(summary, result.state, paper.working_qty, paper.sim)
    else:
        close_summary(summary, result.state, _believed_working(result.state))
    if as_json:
        click.echo(json.dumps(summary_to_json(summary, bad_lines=0), indent=2))
    else:
        click.echo(render_summary(summary))
    rate = summary.events / result.elapsed if result.elapsed > 0 else 0.0
    click.echo(f"{result.reason}: {summary.events:,} events in {result.elapsed:.2f} s "
               f"({rate:,.0f} events/s)", err=True)  # fmt: skip


def _believed_working(state: EngineState) -> Callable[[str, str], Decimal]:
    """What the engine last heard the broker works, by order id (no broker to ask)."""
    working: dict[str, Decimal] = {}
    for pos in state.positions.values():
        order = pos.orders.exit
        if order is not None:
            working[order.id] = order.open_qty

    def qty(symbol: str, order_id: str) -> Decimal:
        return working.get(order_id, Decimal(0))

    return qty


# What a scan's plan shows besides the orders it places and cancels.
_PLAN_RECORDS = frozenset({"position.adopted", "position.reconciled", "divergence.detected",
                           "conflict.detected", "position.closed"})  # fmt: skip

_BROKER = click.option("--broker", "broker_name", type=click.Choice(["paper", "alpaca"]),
                       default="paper", show_default=True,
                       help="paper: a local exchange in this process on --feed; alpaca: "
                            "APCA_API_KEY_ID, APCA_API_SECRET_KEY, APCA_API_BASE_URL.")  # fmt: skip


@main.command()
@_BROKER
@click.option("--feed", type=_FILE, help="Ticks for the paper exchange (default: the sample).")
@click.option("--entries", type=_FILE, help="Entry intents for the paper run (JSONL).")
@click.option("--speed", type=float, default=0.0, show_default=True,
              help="Paper feed speed: 0 as fast as the loop keeps up, 1 real time.")  # fmt: skip
@click.option("--faults", "faults", metavar="PROFILE",
              help="Paper: the exchange's faults, as simulate's (e.g. high).")  # fmt: skip
@click.option("--clock", "clock_name", type=click.Choice(["wall", "feed"]), default="wall",
              show_default=True,
              help="--broker alpaca: the loop's time, the wall's or the last trade's (a "
                   "`ratchet exchange` replaying a recorded feed).")  # fmt: skip
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml (defaults otherwise).")
@_STATE_DIR
@click.option("--dry-run", is_flag=True, help="Decide and journal, send nothing (shadow mode).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus metrics.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def run(
    broker_name: str,
    feed: Path | None,
    entries: Path | None,
    speed: float,
    faults: str | None,
    clock_name: str,
    config_path: Path | None,
    state_dir: Path,
    dry_run: bool,
    metrics_port: int | None,
    metrics_host: str,
    as_json: bool,
) -> None:
    """The live loop: protect every position on the broker, journaled in --state-dir, until
    the feed ends (paper) or SIGINT/SIGTERM (the broker's stops stay working)."""
    result, paper = _run_loop(
        broker_name, feed, entries, speed, clock_name, config_path, state_dir, dry_run,
        metrics_port, metrics_host, scan_only=False, faults=faults,
    )  # fmt: skip
    _print_result(result, paper, as_json)


@main.command()
@_BROKER
@click.option("--clock", "clock_name", type=click.Choice(["wall", "feed"]), default="wall",
              show_default=True, help="As for `run`.")  # fmt: skip
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml (defaults otherwise).")
@_STATE_DIR
@click.option("--dry-run", is_flag=True, help="Print the plan, send nothing.")
def scan(
    broker_name: str, clock_name: str, config_path: Path | None, state_dir: Path, dry_run: bool
) -> None:
    """Reconcile the broker's positions and orders now (SPEC §6): adopt what ratchet did not
    open, correct missing or wrong exit orders, leave correct ones alone; print the plan."""
    plan: list[str] = []

    def note(event: Event, before: EngineState, commands: tuple[Command, ...]) -> None:
        for command in commands:
            if isinstance(command, SubmitOrder):
                price = command.stop_price or command.limit_price or "market"
                plan.append(f"  place {command.action.value} {command.qty} {command.symbol} "
                            f"{command.type.value} @ {price} ({command.order_id})")  # fmt: skip
            elif isinstance(command, Record) and command.kind in _PLAN_RECORDS:
                plan.append(f"  {command.kind}: {json.dumps(to_jsonable(command.data))}")
            elif isinstance(command, CancelOrder):
                plan.append(f"  cancel {command.order_id}")

    result, _ = _run_loop(broker_name, None, None, 0.0, clock_name, config_path, state_dir,
                          dry_run, None, "127.0.0.1", scan_only=True, on_step=note)  # fmt: skip
    held = len(result.state.positions)
    click.echo(f"scan: {held} position(s) held; {'plan (not sent)' if dry_run else 'done'}:")
    for line in plan or ["  nothing to do"]:
        click.echo(line)


def _run_loop(
    broker_name: str, feed: Path | None, entries: Path | None, speed: float, clock_name: str,
    config_path: Path | None, state_dir: Path, dry_run: bool, metrics_port: int | None,
    metrics_host: str, *, scan_only: bool, faults: str | None = None,
    on_step: Callable[[Event, EngineState, tuple[Command, ...]], None] | None = None,
) -> tuple[LoopResult, PaperBroker | None]:  # fmt: skip
    # A signal from now on ends the run gracefully, even one that comes before the loop runs
    # (the loop's own handlers take over once it does).
    early: list[str] = []
    loops: list[Loop] = []  # the loop, once made (a market clock reads its time)

    def stop_early(signum: int, _frame: object) -> None:
        reason = f"signal {signal.Signals(signum).name}"
        early.append(reason)
        for made in loops:
            made.stop(reason)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_early)
    settings = load_settings(config_path)
    paper = broker_name == "paper"
    broker, clock, heartbeat, config = _make_broker(
        broker_name, feed, entries, speed, clock_name, settings, loops, faults
    )
    sd, state, restarted = _open(state_dir, config, paper and not scan_only)
    sinks = _Sinks(settings, sd, metrics_port, metrics_host)
    journaled = Journaled(sd, state, sinks=[sinks.sink], line_sinks=sinks.line_sinks(),
                          dry_run=dry_run)  # fmt: skip

    def observe(event: Event, before: EngineState, commands: tuple[Command, ...]) -> None:
        sinks.on_step(event, before, Transition(journaled.state, commands))
        if on_step is not None:
            on_step(event, before, commands)

    def ready(state: EngineState) -> None:
        view = metrics_view(state)
        click.echo(f"ratchet run: {'restarted' if restarted else 'started'}: "
                   f"{len(view.positions)} position(s) verified with the broker, link "
                   f"{view.mode.value}", err=True)  # fmt: skip

    loop = Loop(journaled, broker, clock, heartbeat=heartbeat, inbox=not scan_only,
                restarted=restarted, on_step=observe, on_ready=ready)  # fmt: skip
    loops.append(loop)
    for reason in early:
        loop.stop(reason)
    status = _Status(loop) if sys.stderr.isatty() and not scan_only else None

    async def main_task() -> LoopResult:
        ticker = asyncio.create_task(status.show()) if status is not None else None
        try:
            return await loop.run(scan_only=scan_only)
        finally:
            if ticker is not None:
                ticker.cancel()
            await broker.close()

    try:
        result = asyncio.run(main_task())
    except BadLine as exc:
        raise click.ClickException(f"--feed: {exc}") from None
    finally:
        journaled.close()
        sinks.close()
        if status is not None:
            status.clear()
    return result, broker if isinstance(broker, PaperBroker) else None


class _Status:
    """One line on a terminal: time, events, positions, P&L."""

    def __init__(self, loop: Loop):
        self.loop = loop

    async def show(self) -> None:
        while True:
            state = self.loop.state
            pnl = metrics_view(state).daily_pnl
            line = (f"\r{self.loop.clock():%Y-%m-%d %H:%M:%S}Z  {self.loop.summary.events:,} "
                    f"events  {len(state.positions)} open  day {pnl:+.2f}  "
                    f"link {state.link.mode.value}")  # fmt: skip
            sys.stderr.write(line[:120].ljust(80))
            sys.stderr.flush()
            await asyncio.sleep(0.5)

    def clear(self) -> None:
        sys.stderr.write("\r" + " " * 80 + "\r")
        sys.stderr.flush()
