"""The `ratchet` command line: parses arguments and delegates; every decision is below it."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import click

from engine import (
    BreakerAck,
    Command,
    Config,
    EngineState,
    Event,
    PhaseAdvance,
    PhaseOverride,
    Record,
)
from engine.analytics import TradeResult, Window, by_window
from engine.phase import PHASE_ORDER
from shell import phases
from shell.broker.simulated import Faults, SimulatedBroker
from shell.codec import BadLine, format_ts, merge_by_ts, read_events
from shell.config import ConfigError, load_settings, zone
from shell.journal import JournalWriter
from shell.performance import (
    alert_json,
    build_report,
    daily_from_state_dir,
    read_trades,
    report_to_csv,
    report_to_json,
    report_to_markdown,
    write_json_atomic,
)
from shell.plot import PlotUnavailable, PriceTrail, plot_report, plot_simulation
from shell.report import render_summary, summary_to_json
from shell.simulate import run_simulation

__all__ = ["main"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
@click.version_option(package_name="ratchet")
def main() -> None:
    """ratchet protects the profits of a trading bot: R-multiple stop ladder, partial exits,
    conflict-free orders."""


@main.command()
@click.argument("events", type=_FILE)
@click.option("--entries", type=_FILE, help="JSONL entry intents to merge with CSV ticks.")
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml (defaults otherwise).")
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every journal record to this JSONL file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--skip-bad-lines", is_flag=True, help="Report malformed lines and go on.")
@click.option(
    "--market-fill",
    type=click.Choice(["next", "same"]),
    default=None,
    help="Fill market orders at the next tick (default) or the last one.",
)
@click.option(
    "--faults",
    "faults_text",
    default=None,
    help=(
        "Make the simulated broker misbehave, deterministically: a profile (none, flaky, "
        "alpaca, high) and/or NAME=RATE (transient, permanent, locked, partial, late, drop) "
        "and seed=N."
    ),
)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one PNG per symbol (price, stop ladder, entries and exits) to this directory.",
)
def simulate(
    events: Path,
    entries: Path | None,
    config_path: Path | None,
    journal: Path | None,
    as_json: bool,
    skip_bad_lines: bool,
    market_fill: str | None,
    faults_text: str | None,
    plot_dir: Path | None,
) -> None:
    """Fold the engine over recorded EVENTS (JSONL, or CSV ticks) with the simulated broker."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    bad: list[BadLine] = []
    stream: Iterator[Event] = read_events(events, skip_bad=skip_bad_lines, bad=bad)
    if entries is not None:
        stream = merge_by_ts(stream, read_events(entries, skip_bad=skip_bad_lines, bad=bad))
    if sys.stderr.isatty():
        stream = _progress(stream)
    trail = PriceTrail() if plot_dir is not None else None
    if trail is not None:
        stream = trail.watch(stream)
    kept: list[Record] = []
    writer = JournalWriter(journal) if journal is not None else None

    def sink(command: Command) -> None:
        if writer is not None:
            writer(command)
        if trail is not None and isinstance(command, Record):
            kept.append(command)

    try:
        faults = Faults.parse(faults_text) if faults_text else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    fill = market_fill or settings.market_fill
    broker = SimulatedBroker(market_fill=fill, faults=faults)  # type: ignore[arg-type]
    started = time.perf_counter()
    with writer if writer is not None else contextlib.nullcontext():
        try:
            _, summary = run_simulation(
                stream,
                EngineState.empty(settings.config),
                broker,
                sink if writer is not None or trail is not None else None,
            )
        except BadLine as exc:
            raise click.ClickException(f"{exc} (use --skip-bad-lines to go on)") from None
    elapsed = time.perf_counter() - started
    for problem in bad:
        click.echo(f"skipped {problem}", err=True)
    if as_json:
        click.echo(json.dumps(summary_to_json(summary, bad_lines=len(bad)), indent=2))
    else:
        click.echo(render_summary(summary, bad_lines=len(bad)))
    rate = summary.events / elapsed if elapsed > 0 else 0.0
    click.echo(f"{summary.events:,} events in {elapsed:.2f} s ({rate:,.0f} events/s)", err=True)
    if trail is not None and plot_dir is not None:
        try:
            for path in plot_simulation(trail, kept, plot_dir):
                click.echo(f"wrote {path}", err=True)
        except PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None


@main.command()
@click.option(
    "--window",
    type=click.Choice([w.value for w in Window]),
    required=True,
    help="Calendar window of each row.",
)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD).")
@click.option(
    "--export",
    type=click.Choice(["md", "json", "csv"]),
    default="md",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ratchet-state"),
    show_default=True,
    help="Read journal/*.jsonl here; cache summaries and append alerts here.",
)
@click.option(
    "--trades",
    "trade_files",
    type=_FILE,
    multiple=True,
    help="Read trades from this JSONL journal or trades CSV instead (repeatable).",
)
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml ([performance]).")
@click.option("--timezone", "zone_name", help="IANA zone of the calendar (default: config).")
@click.option(
    "--rolling",
    "rolling_n",
    type=click.IntRange(min=0),
    default=0,
    help="Also summarise the last N trades.",
)
@click.option(
    "--backfill",
    type=click.IntRange(min=0),
    default=0,
    help="Rebuild the cached summaries of the last N days.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the equity curve, R histogram and weekly win rate to this PNG.",
)
def report(
    window: str,
    start: datetime | None,
    end: datetime | None,
    export: str,
    state_dir: Path,
    trade_files: tuple[Path, ...],
    config_path: Path | None,
    zone_name: str | None,
    rolling_n: int,
    backfill: int,
    plot_path: Path | None,
) -> None:
    """Performance by day, week or month from closed trades; exit 2 when a target is missed."""
    try:
        settings = load_settings(config_path)
        name = zone_name or settings.performance_timezone
        tz = zone(name, "--timezone" if zone_name else "performance.timezone")
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    bad: list[BadLine] = []
    trades: list[TradeResult] | None = None
    alerts_path: Path | None = None
    if trade_files:
        trades = [t for path in trade_files for t in read_trades(path, bad)]
        days = dict(by_window(trades, Window.DAILY, tz).values())
    else:
        journals = state_dir / "journal"
        if not journals.is_dir():
            raise click.ClickException(
                f"no journals in {journals} (give --state-dir DIR, or --trades FILE)"
            )
        today = datetime.now(tz).date()
        since = date.fromordinal(today.toordinal() - backfill + 1) if backfill else None
        build = daily_from_state_dir(state_dir, tz, name, backfill_from=since)
        days, bad = build.days, build.bad
        if rolling_n or plot_path is not None:
            trades = [t for p in sorted(journals.glob("*.jsonl")) for t in read_trades(p, [])]
        alerts_path = state_dir / "performance-alerts.jsonl"
    result = build_report(
        days,
        Window(window),
        tz,
        name,
        settings.targets,
        start=start.date() if start else None,
        end=end.date() if end else None,
        bad=bad,
        trades_for_rolling=trades,
        rolling_n=rolling_n,
    )
    now = datetime.now(UTC)
    for problem in bad:
        click.echo(f"skipped {problem}", err=True)
    document = report_to_json(result, now)
    if not trade_files:  # keep the latest summary of each window beside the cache
        write_json_atomic(state_dir / "performance" / f"{window}.json", document)
    if export == "json":
        click.echo(json.dumps(document, indent=2))
    elif export == "csv":
        click.echo(report_to_csv(result))
    else:
        click.echo(report_to_markdown(result))
    if plot_path is not None:
        try:
            plot_report(trades or [], tz, plot_path)
        except PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"wrote {plot_path}", err=True)
    if result.breaches:
        alerts = [alert_json(result, breach, now) for breach in result.breaches]
        if alerts_path is not None:
            with alerts_path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(alert) + "\n" for alert in alerts)
        for alert in alerts:
            click.echo(
                f"WARN performance {alert['window']} {alert['period']}: {alert['metric']} "
                f"{alert['actual']} misses target {alert['target']} ({alert['severity']})",
                err=True,
            )
        sys.exit(2)


_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ratchet-state"),
    show_default=True,
    help="The state directory (journal/, phase-history.jsonl).",
)
_CONFIG = click.option("--config", "config_path", type=_FILE, help="ratchet.toml ([phase]).")


def _phase_config(config_path: Path | None) -> Config:
    try:
        config = load_settings(config_path).config
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return config


@main.group()
def phase() -> None:
    """Phase progression: Experience, Proof of Concept, Trial, Scaling."""


@phase.command("status")
@_STATE_DIR
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def phase_status(state_dir: Path, config_path: Path | None, as_json: bool) -> None:
    """Phase, size, gates (actual vs required), trades left this session."""
    info = phases.status(state_dir, _phase_config(config_path), datetime.now(UTC))
    click.echo(json.dumps(info, indent=2) if as_json else phases.render_status(info))


@phase.command("advance")
@_STATE_DIR
@_CONFIG
def phase_advance(state_dir: Path, config_path: Path | None) -> None:
    """Ask to advance one phase; the gates decide. Exit 1 when denied."""
    config = _phase_config(config_path)
    commands = phases.decide(state_dir, config, PhaseAdvance(datetime.now(UTC)))
    records = [phases.record_json(c) for c in commands if isinstance(c, Record)]
    phases.append_history(state_dir, records)
    for record in records:
        if record["kind"] == "phase.changed":
            click.echo(f"advanced: {record['from']} -> {record['to']} (size ${record['size_to']})")
            return
        for failure in record.get("failures", []):
            click.echo(
                f"  {failure['criterion']}: {failure['actual']} (required {failure['required']})"
            )
        raise click.ClickException(
            f"advance denied: {len(record.get('failures', []))} criterion(s) not met"
        )


@phase.command("override")
@_STATE_DIR
@_CONFIG
@click.option("--to", "target", type=click.Choice([p.value for p in PHASE_ORDER]), required=True)
@click.option("--reason", default="", help="Why (journaled).")
def phase_override(state_dir: Path, config_path: Path | None, target: str, reason: str) -> None:
    """Set the phase by hand: the override password comes from a hidden prompt (or one line on
    stdin) and is checked against PHASE_OVERRIDE_PASSWORD; every attempt is journaled, the
    password never."""
    config = _phase_config(config_path)
    if sys.stdin.isatty():
        given = click.prompt("Override password", hide_input=True, default="", show_default=False)
    else:
        given = sys.stdin.readline().rstrip("\r\n")
    now = datetime.now(UTC)
    verdict = phases.password_matches(given, os.environ)
    del given
    attempt = {
        "kind": "phase.override_attempt",
        "ts": format_ts(now),
        "to": target,
        "accepted": bool(verdict),
        "reason": reason,
    }
    if not verdict:
        why = "PHASE_OVERRIDE_PASSWORD is not set" if verdict is None else "wrong password"
        phases.append_history(state_dir, [{**attempt, "refusal": why}])
        raise click.ClickException(f"override refused: {why}")
    commands = phases.decide(state_dir, config, PhaseOverride(now, target, reason))
    records = [phases.record_json(c) for c in commands if isinstance(c, Record)]
    phases.append_history(state_dir, [attempt, *records])
    for record in records:
        click.echo(f"phase set: {record['from']} -> {record['to']} (size ${record['size_to']})")


@phase.command("ack")
@_STATE_DIR
@_CONFIG
def phase_ack(state_dir: Path, config_path: Path | None) -> None:
    """Acknowledge a downgrade: close the phase breaker so entries may resume."""
    config = _phase_config(config_path)
    commands = phases.decide(state_dir, config, BreakerAck(datetime.now(UTC)))
    records = [phases.record_json(c) for c in commands if isinstance(c, Record)]
    phases.append_history(state_dir, records)
    click.echo("breaker closed" if records else "the breaker was not open")


@phase.command("export")
@_STATE_DIR
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD).")
def phase_export(state_dir: Path, start: datetime | None, end: datetime | None) -> None:
    """The phase history between two days, as CSV."""
    click.echo(
        phases.export_csv(state_dir, start.date() if start else None, end.date() if end else None),
        nl=False,
    )


@main.command()
@click.option(
    "--feed",
    type=_FILE,
    default=None,
    help="Ticks to trade against: CSV ts,symbol,price,size or JSONL, gzip too (default: the "
    "bundled sample).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="1 = real time by the feed's timestamps, 10 = ten times faster; 0 = lock-step (outside "
    "Alpaca's API): the next print waits until every request is answered and the client is quiet.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--faults",
    "faults_text",
    default=None,
    help="Misbehave as Alpaca does, from a seed (the profiles of `simulate --faults`).",
)
@click.option(
    "--quiet",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Lock-step: seconds the client must be quiet before the next print.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Requests a minute before HTTP 429.",
)
def exchange(
    feed: Path | None,
    speed: float,
    port: int,
    faults_text: str | None,
    quiet: float,
    rate_limit: int,
) -> None:
    """A local Alpaca-compatible exchange on 127.0.0.1: Trading API, trade_updates and stock
    trades, filling orders by simulate's rules against the feed. Prints the exports a client
    needs; Ctrl-C stops it."""
    import asyncio  # noqa: PLC0415 (only this command needs the event loop and the server)
    import signal  # noqa: PLC0415

    from shell.exchange import Endpoints, Exchange  # noqa: PLC0415

    try:
        faults = Faults.parse(faults_text) if faults_text else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        market = Exchange(
            feed,
            speed=speed,
            quiet=quiet,
            faults=faults,
            port=port,
            rate_limit=rate_limit,
            on_bad_line=lambda line: click.echo(line, err=True),
            on_error=lambda line: click.echo(f"ratchet exchange: {line}", err=True),
        )
    except (BadLine, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None

    def ready(endpoints: Endpoints) -> None:
        for line in endpoints.exports():
            click.echo(line)
        mode = "lock-step" if speed == 0 else f"speed {speed:g}"
        click.echo(f"ratchet exchange on {endpoints.base_url} ({mode}); Ctrl-C stops it", err=True)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a stop request ends it as Ctrl-C does
    try:
        asyncio.run(market.run(ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def _progress(events: Iterator[Event]) -> Iterator[Event]:
    """Yield `events`, showing a count and a rate on stderr every 2**16 events."""
    started = time.perf_counter()
    n = 0
    for n, event in enumerate(events, start=1):
        if not n & 0xFFFF:
            rate = n / max(time.perf_counter() - started, 1e-9)
            sys.stderr.write(f"\r{n:,} events, {rate:,.0f}/s ")
            sys.stderr.flush()
        yield event
    if n >= 0x10000:
        sys.stderr.write("\r" + " " * 40 + "\r")
