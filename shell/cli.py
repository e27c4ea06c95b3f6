"""The `ratchet` command line: parses arguments and delegates; every decision is below it."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

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
from engine.analytics import Window
from engine.phase import PHASE_ORDER
from shell import phases
from shell.alerts import AlertDispatcher
from shell.broker.simulated import Faults, SimulatedBroker
from shell.codec import BadLine, format_ts, merge_by_ts, read_events
from shell.config import ConfigError, Settings, load_settings
from shell.errors import UserError, one_line
from shell.hours import with_hours
from shell.journal import JournalWriter
from shell.metrics import Metrics
from shell.outputs import prepare_directory, prepare_file, refuse_inputs
from shell.performance import ReportRequest, run_report
from shell.plot import PlotUnavailable, PriceTrail, plot_simulation
from shell.report import render_summary, summary_to_json
from shell.simulate import run_simulation
from shell.sweep import METRICS, SweepError, SweepRequest, best_table, run_sweep

__all__ = ["EXIT_TARGET_MISSED", "main"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EXIT_TARGET_MISSED = 3  # INTERFACES: 0 success, 1 failure, 2 usage error, 3 target missed
_STATE_DIR_KEY = "ratchet.state_dir"
# Days a report may list (both --start and --end given, every period is listed): 100 years.
_LONGEST_RANGE = 36_525
_FIRST_DAY, _LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


class _Ratchet(click.Group):
    """The command group with ratchet's one error path.

    A refused input or setting (UserError, and an OSError: a file that cannot be read or
    written) is one line on stderr and exit 1; click's usage errors exit 2. Anything else is
    a bug: one line saying so and where its traceback was written (under the state directory
    when the command has one, else a temporary file), or the traceback itself with --debug.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            _quiet_stdout()  # the reader went away (`| head`): nothing more to say
            ctx.exit(1)
        except OSError as exc:
            raise click.ClickException(one_line(_os_error(exc))) from None
        except Exception as exc:  # a bug: it must not surface as a traceback to users
            summary = f"{type(exc).__name__}: {one_line(str(exc), 200)}"
            if ctx.params.get("debug"):
                traceback.print_exc(file=sys.stderr)
                raise click.ClickException(
                    f"internal error (a bug in ratchet): {summary}"
                ) from None
            where = _write_traceback(ctx.meta.get(_STATE_DIR_KEY))
            shown = f"its traceback is in {where}" if where else "run with --debug to see it"
            raise click.ClickException(
                f"internal error (a bug in ratchet, please report it): {summary}; {shown}"
            ) from None


def _os_error(exc: OSError) -> str:
    """An operating system refusal as one line: the file and why."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"cannot use {exc.filename}: {reason}"
    return reason


def _write_traceback(state_dir: object) -> str | None:
    """Write the current exception's traceback to a new file; its path, or None."""
    text = traceback.format_exc()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    places: list[Path] = []
    if isinstance(state_dir, Path) and state_dir.is_dir():
        places.append(state_dir)
    places.append(Path(tempfile.gettempdir()))
    for place in places:
        try:
            fd, name = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".txt", dir=place)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            continue
        return name
    return None


def _quiet_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _remember_state_dir(ctx: click.Context, _: click.Parameter, value: Path) -> Path:
    """Note the command's state directory: a bug's traceback is written there."""
    ctx.meta[_STATE_DIR_KEY] = value
    return value


@click.group(cls=_Ratchet)
@click.version_option(package_name="ratchet")
@click.option(
    "--debug", is_flag=True, help="On an internal error, print its traceback instead of a line."
)
def main(debug: bool) -> None:
    """ratchet protects the profits of a trading bot: R-multiple stop ladder, partial exits,
    conflict-free orders.

    Exit status: 0 success, 1 failure (one line on stderr), 2 usage error, 3 a performance
    target missed (report).
    """


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
@click.option(
    "--alerts",
    "alerts_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Deliver alerts as the live loop does: to DIR/alerts.jsonl and the [alerts] sinks.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port during the replay (0: any free port).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="The address the metrics endpoint listens on.",
)
@click.option(
    "--metrics-hold",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="With --metrics-port: keep serving this long after the replay (Ctrl-C ends it).",
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
    alerts_dir: Path | None,
    metrics_port: int | None,
    metrics_host: str,
    metrics_hold: float,
) -> None:
    """Fold the engine over recorded EVENTS (JSONL, or CSV ticks) with the simulated broker.
    With --journal and a [store], the journal is then loaded into the store."""
    if metrics_hold and metrics_port is None:
        raise click.UsageError("--metrics-hold needs --metrics-port")
    inputs = [p for p in (events, entries, config_path) if p is not None]
    outputs: list[tuple[str, Path]] = []
    if journal is not None:
        outputs.append(("--journal", journal))
    if plot_dir is not None:
        outputs.append(("--plot", plot_dir))
    refuse_inputs(outputs, inputs)
    try:
        faults = Faults.parse(faults_text) if faults_text else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = load_settings(config_path)
    if journal is not None:
        prepare_file(journal, "--journal")
    if plot_dir is not None:
        prepare_directory(plot_dir, "--plot")
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
    alerts = AlertDispatcher(settings.alerts, alerts_dir) if alerts_dir is not None else None
    metrics = Metrics() if metrics_port is not None else None
    if metrics is not None and metrics_port is not None:
        host, port = metrics.serve(metrics_host, metrics_port)
        click.echo(f"metrics: serving http://{host}:{port}/metrics", err=True)
        if alerts is not None:
            metrics.attach_alerts(alerts)

    def sink(command: Command) -> None:
        if writer is not None:
            writer(command)
        if trail is not None and isinstance(command, Record):
            kept.append(command)
        if alerts is not None:
            alerts.submit(command)
        if metrics is not None:
            metrics.observe(command)

    fill = market_fill or settings.market_fill
    # `[broker] hours`: the market's sessions around the first event, for the engine and the
    # broker alike.
    try:
        config, stream = with_hours(settings.config, settings.hours, stream)
    except BadLine as exc:
        raise click.ClickException(f"{exc} (use --skip-bad-lines to go on)") from None
    broker = SimulatedBroker(
        market_fill=fill,  # type: ignore[arg-type]
        faults=faults,
        hours=config.hours,
        wash_check=True,
    )
    started = time.perf_counter()
    with writer if writer is not None else contextlib.nullcontext():
        try:
            _, summary = run_simulation(
                stream,
                EngineState.empty(config),
                broker,
                sink if any(o is not None for o in (writer, trail, alerts, metrics)) else None,
                metrics.on_step if metrics is not None else None,
            )
        except BadLine as exc:
            raise click.ClickException(f"{exc} (use --skip-bad-lines to go on)") from None
        finally:
            if alerts is not None:
                _close_alerts(alerts)
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
        protect = [*inputs, *([journal] if journal is not None else [])]
        try:
            for path in plot_simulation(trail, kept, plot_dir, protect):
                click.echo(f"wrote {path}", err=True)
        except PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    if journal is not None and settings.store.url is not None:
        _backfill(settings, [journal], err=True)
    if metrics is not None:
        if metrics_hold:
            click.echo(f"metrics: serving {metrics_hold:g} s more (Ctrl-C ends it)", err=True)
            metrics.hold(metrics_hold)
        metrics.close()


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
    callback=_remember_state_dir,
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
    type=click.IntRange(min=0, max=_LONGEST_RANGE),
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
    """Performance by day, week or month from closed trades; exit 3 when a target is missed."""
    first, last = _day_range(start, end)
    settings = load_settings(config_path)
    request = ReportRequest(
        window=Window(window),
        first=first,
        last=last,
        export=export,
        state_dir=state_dir,
        trade_files=trade_files,
        config_path=config_path,
        settings=settings,
        zone_name=zone_name,
        rolling=rolling_n,
        backfill=backfill,
        plot=plot_path,
    )
    run = run_report(request, datetime.now(UTC))
    for line in run.notes:
        click.echo(line, err=True)
    click.echo(run.output)
    if run.missed:
        click.get_current_context().exit(EXIT_TARGET_MISSED)


def _day_range(start: datetime | None, end: datetime | None) -> tuple[date | None, date | None]:
    """--start and --end as days; a usage error when either is outside the years 1900 to 2999,
    when --start is after --end, or when the range is longer than a report can list."""
    first = start.date() if start else None
    last = end.date() if end else None
    for option, day in (("--start", first), ("--end", last)):
        if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
            raise click.BadParameter(
                f"{day.isoformat()}: allowed {_FIRST_DAY.isoformat()} to {_LAST_DAY.isoformat()}",
                param_hint=option,
            )
    if first is not None and last is not None:
        if first > last:
            raise click.UsageError(f"--start {first.isoformat()} is after --end {last.isoformat()}")
        days = (last - first).days + 1
        if days > _LONGEST_RANGE:
            raise click.UsageError(
                f"--start {first.isoformat()} to --end {last.isoformat()} spans {days:,} days: "
                f"allowed at most {_LONGEST_RANGE:,} (100 years), every period of which is listed"
            )
    return first, last


_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ratchet-state"),
    show_default=True,
    callback=_remember_state_dir,
    help="The state directory (journal/, phase-history.jsonl).",
)
_CONFIG = click.option("--config", "config_path", type=_FILE, help="ratchet.toml ([phase]).")


def _phase_config(state_dir: Path, config_path: Path | None) -> Config:
    """The configuration, after phase-history.jsonl has been read through: a phase command
    refuses a history it cannot read before it decides or appends anything."""
    config = load_settings(config_path).config
    phases.check_history(state_dir)
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
    info = phases.status(state_dir, _phase_config(state_dir, config_path), datetime.now(UTC))
    click.echo(json.dumps(info, indent=2) if as_json else phases.render_status(info))


@phase.command("advance")
@_STATE_DIR
@_CONFIG
def phase_advance(state_dir: Path, config_path: Path | None) -> None:
    """Ask to advance one phase; the gates decide. Exit 1 when denied."""
    config = _phase_config(state_dir, config_path)
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
    config = _phase_config(state_dir, config_path)
    if sys.stdin.isatty():
        given = click.prompt("Override password", hide_input=True, default="", show_default=False)
    else:
        try:
            given = sys.stdin.readline().rstrip("\r\n")
        except UnicodeDecodeError:
            raise click.ClickException("the password on stdin is not UTF-8") from None
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
    config = _phase_config(state_dir, config_path)
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
    first, last = _day_range(start, end)
    click.echo(phases.export_csv(state_dir, first, last), nl=False)


def _close_alerts(alerts: AlertDispatcher) -> None:
    """Deliver what is queued (30 s at most) and say what became of the alerts."""
    alerts.close(timeout=30.0)
    for line in alerts.report():
        click.echo(line, err=True)


# --- the PostgreSQL store ------------------------------------------------------------------


@main.group()
def store() -> None:
    """The PostgreSQL store ([store] url or RATCHET_STORE_URL; needs ratchet[postgres])."""


@store.command("backfill")
@click.argument("journals", nargs=-1, required=True, type=_FILE)
@click.option("--config", "config_path", type=_FILE, help="ratchet.toml ([store]).")
def store_backfill(journals: tuple[Path, ...], config_path: Path | None) -> None:
    """Load existing JOURNALS (JSONL, e.g. from simulate --journal) into the store; records
    already there are left as they are."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.store.url is None:
        raise click.ClickException(
            "no store configured: set [store] url in --config FILE, or RATCHET_STORE_URL"
        )
    _backfill(settings, list(journals))


def _backfill(settings: Settings, journals: list[Path], *, err: bool = False) -> None:
    try:
        from shell.store import StoreUnavailable, backfill  # noqa: PLC0415 (optional extra)
    except ImportError:
        raise click.ClickException("the store needs: pip install 'ratchet[postgres]'") from None
    bad: list[BadLine] = []
    try:
        lines = backfill(settings.store, journals, bad).report()
    except StoreUnavailable as exc:
        raise click.ClickException(f"store: {exc}") from None
    for problem in bad:
        click.echo(f"skipped {problem}", err=True)
    for line in lines:
        click.echo(line, err=err)


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
@click.option(
    "--hours",
    type=click.Choice(["us_equity", "always"]),
    default="us_equity",
    show_default=True,
    help="Market hours: stops and market orders trade only in NYSE's regular session "
    "(us_equity), or at every print (always).",
)
def exchange(
    feed: Path | None,
    speed: float,
    port: int,
    faults_text: str | None,
    quiet: float,
    rate_limit: int,
    hours: str,
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
            hours=hours,
        )
    except (BadLine, ValueError, OSError, UserError) as exc:
        raise click.ClickException(str(exc)) from None

    def ready(endpoints: Endpoints) -> None:
        for line in endpoints.exports():
            click.echo(line)
        mode = "lock-step" if speed == 0 else f"speed {speed:g}"
        click.echo(f"ratchet exchange on {endpoints.base_url} ({mode}); Ctrl-C stops it", err=True)

    async def serve() -> None:
        # Ctrl-C and a stop request end it cleanly (the exchange's own stop), even when it was
        # started from a shell that ignores SIGINT for its background jobs.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, market.stop)
        await market.run(ready)

    # `kill -USR1 PID` writes where every thread is to stderr (for a stop that takes long).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        asyncio.run(serve())
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


@main.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--entries", type=click.Path(path_type=Path), help="JSONL entry intents.")
@click.option(
    "--grid",
    "grid_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The grid: [axes] (a cross product) or [[configs]] (see README).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Processes (default: the cores).")
@click.option("--ray", "ray_address", help="Run on a Ray cluster: ADDRESS, auto, or local.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sweep-out"),
    show_default=True,
    help="rows.csv, rows.json, sweep.png and runs/ (resume).",
)
@click.option(
    "--split-symbols",
    is_flag=True,
    help="Also split each run by symbol (refused when something couples symbols).",
)
@click.option(
    "--tick-cache/--no-tick-cache",
    default=None,
    help="Share a columnar copy of CSV ticks (OUT/cache) between runs (pyarrow; default: "
    "with --split-symbols).",
)
@click.option(
    "--rank-by",
    type=click.Choice(list(METRICS)),
    default="realized_pnl",
    show_default=True,
    help="What makes a row best.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rows in the printed table.",
)
@click.option("--heatmap", "heat_axes", help="Two grid axes for the heatmap: X,Y.")
@click.option("--metric", type=click.Choice(list(METRICS)), help="Heatmap metric (--rank-by).")
@click.option(
    "--curves",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Equity curves of the best rows in the picture.",
)
@click.option("--no-plot", is_flag=True, help="Write no picture.")
def sweep(
    events: tuple[Path, ...],
    entries: Path | None,
    grid_path: Path,
    workers: int | None,
    ray_address: str | None,
    out: Path,
    split_symbols: bool,
    tick_cache: bool | None,
    rank_by: str,
    top: int,
    heat_axes: str | None,
    metric: str | None,
    curves: int,
    no_plot: bool,
) -> None:
    """Replay the same EVENTS under every protection config of a grid, in parallel; write one
    row per config (CSV, JSON), print the best as Markdown, draw a heatmap and equity curves."""
    if workers is not None and ray_address is not None:
        raise click.UsageError("give --workers or --ray, not both")
    axes = None
    if heat_axes:
        x, comma, y = heat_axes.partition(",")
        if not comma or not x or not y or "," in y:
            raise click.UsageError(f"--heatmap {heat_axes}: expected two axes, X,Y")
        axes = (x, y)
    request = SweepRequest(
        events=events,
        grid=grid_path,
        out=out,
        entries=entries,
        workers=workers,
        ray=ray_address,
        split_symbols=split_symbols,
        tick_cache=tick_cache,
        picture=not no_plot,
        rank_by=rank_by,
        metric=metric,
        axes=axes,
        curves=curves,
    )
    try:
        result = run_sweep(request, progress=sys.stderr.isatty())
    except SweepError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted: finished configs are kept in {out}/runs; the same command resumes"
        ) from None
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(best_table(result, rank_by, top))
    click.echo(
        f"{len(result.rows)} configs ({result.ran} run, {result.resumed} already done) on "
        f"{result.engine}: {out / 'rows.csv'}, {out / 'rows.json'}"
        + (f", {result.picture}" if result.picture else ""),
        err=True,
    )


# The live commands (run, status, enter, replay, scan) register themselves on `main`.
from shell import cli_live, cli_run  # noqa: E402, F401
