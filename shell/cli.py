"""The `ratchet` command line: parses arguments and delegates; every decision is below it."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from engine import EngineState, Event
from shell.broker.simulated import SimulatedBroker
from shell.codec import BadLine, merge_by_ts, read_events
from shell.config import ConfigError, load_settings
from shell.journal import JournalWriter
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
def simulate(
    events: Path,
    entries: Path | None,
    config_path: Path | None,
    journal: Path | None,
    as_json: bool,
    skip_bad_lines: bool,
    market_fill: str | None,
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
    broker = SimulatedBroker(market_fill=market_fill or settings.market_fill)  # type: ignore[arg-type]
    started = time.perf_counter()
    writer = JournalWriter(journal) if journal is not None else None
    with writer if writer is not None else contextlib.nullcontext():
        try:
            _, summary = run_simulation(stream, EngineState.empty(settings.config), broker, writer)
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
