"""Sweeps: the same events and entries replayed under every config of a grid, one row each.

Every run is `shell.simulate.run_simulation`, the fold behind `ratchet simulate`, so a row is
exactly what `ratchet simulate --config` reports for that config. Runs go to a process pool
(`workers`), to a Ray cluster (`ray`), or run here one after another (one worker); the workers
read the event files themselves (a task carries paths, never ticks). Each finished config is
written to `OUT/runs/<fingerprint>.json` at once (atomically), so an interrupted sweep resumes
where it stopped; the rows are then assembled in grid order, whatever order the runs finished
in, so the same grid gives the same bytes on any number of workers or engines.

With `split_symbols` a config's run is also split by symbol (P30: the ticks of different
symbols commute), which is exact only when nothing couples the symbols: no daily goal, no
phases, no cap on open positions, and no event that concerns every symbol (a clock, a link
drop); the sweep refuses otherwise and says why.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import heapq
import io
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Context, Decimal, localcontext
from importlib import metadata
from pathlib import Path
from typing import Any

from attrs import evolve, frozen

from engine import Config, EngineState, EntryIntent, Event, Tick
from engine.analytics import TradeResult, canonical, summarize
from shell import tickcache
from shell.broker.simulated import SimulatedBroker
from shell.codec import BadLine, format_ts, merge_by_ts, parse_ts, read_events
from shell.config import ENV_GIVEBACK, ENV_TARGET, parse_settings
from shell.grid import Axis, Grid, GridConfig, GridError, load_grid
from shell.plot import PlotUnavailable, plot_sweep
from shell.simulate import run_simulation

__all__ = [
    "METRICS",
    "Heat",
    "OnPart",
    "Outcome",
    "Part",
    "Source",
    "SweepError",
    "SweepRequest",
    "SweepResult",
    "Task",
    "best_table",
    "coupling",
    "draw",
    "fingerprint",
    "heatmap",
    "outcome_of",
    "ranked",
    "rows_csv",
    "run_sweep",
    "run_task",
]


class SweepError(ValueError):
    """A sweep ratchet cannot run: one line naming the file, config, key or value."""


# Row metrics, in column order; True when a higher value is better (for ranking).
METRICS: dict[str, bool] = {
    "trades": True,
    "wins": True,
    "losses": False,
    "breakevens": True,
    "win_rate": True,
    "avg_r": True,
    "expectancy": True,
    "profit_factor": True,
    "realized_pnl": True,
    "max_drawdown": False,
    "longest_losing_streak": False,
    "open_positions": False,
    "unprotected": False,
    "entries_accepted": True,
    "entries_blocked": False,
    "goal_triggers": False,
}
_EXACT = Context(prec=400)  # sums of P&L never round
_FORMAT = 1  # of the files in OUT/runs; a change makes every config run again
ROWS_CSV, ROWS_JSON, PICTURE, RUNS, CACHE = "rows.csv", "rows.json", "sweep.png", "runs", "cache"


# --- one run ------------------------------------------------------------------------------


@frozen
class Task:
    """One simulate run: a config (as its ratchet.toml document), the input paths, and the
    symbol it is limited to when split."""

    index: int
    document: Mapping[str, Any]
    events: tuple[str, ...]
    entries: str | None
    symbol: str | None = None
    caches: tuple[str | None, ...] = ()  # the columnar copy of each events file, when built


@frozen
class Part:
    """What one run tells about its config: the closed trades and the positions left open."""

    index: int
    symbol: str | None
    trades: tuple[TradeResult, ...]
    open_positions: tuple[tuple[str, bool], ...]  # (key, protected), by key
    entries_accepted: int
    entries_blocked: int
    goal_triggers: int


def run_task(task: Task) -> Part:
    """Run one task: the simulate fold over its events with a fresh simulated broker.

    Module-level, so a process pool or Ray can send it by reference; it reads the files itself.
    """
    settings = parse_settings(task.document, {})
    try:
        events = _events(task)
        broker = SimulatedBroker(market_fill=settings.market_fill)  # type: ignore[arg-type]
        _, summary = run_simulation(events, EngineState.empty(settings.config), broker)
    except BadLine as exc:
        raise SweepError(str(exc)) from None
    except tickcache.CacheError as exc:
        raise SweepError(str(exc)) from None
    return Part(
        index=task.index,
        symbol=task.symbol,
        trades=tuple(summary.trades),
        open_positions=tuple((str(p["key"]), bool(p["protected"])) for p in summary.open_positions),
        entries_accepted=summary.entries_accepted,
        entries_blocked=summary.entries_blocked,
        goal_triggers=len(summary.goal_triggers),
    )


def _events(task: Task) -> Iterator[Event]:
    """The task's events in time order: every events file (merged by ts, earlier files first
    on a tie), then the entries merged in as `simulate --entries` does."""
    streams: list[Iterator[Event]] = []
    for i, name in enumerate(task.events):
        cache = task.caches[i] if i < len(task.caches) else None
        if cache is not None:
            streams.append(tickcache.read_ticks(Path(cache), task.symbol))
        else:
            streams.append(_only(read_events(Path(name)), task.symbol))
    stream = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_ts)
    if task.entries is not None:
        stream = merge_by_ts(stream, _only(read_events(Path(task.entries)), task.symbol))
    return stream


def _ts(event: Event) -> datetime:
    return event.ts


def _only(events: Iterator[Event], symbol: str | None) -> Iterator[Event]:
    if symbol is None:
        return events
    return (e for e in events if getattr(e, "symbol", None) == symbol)


# --- one config's outcome -----------------------------------------------------------------


@frozen
class Outcome:
    """A config's metrics (decimals as exact strings) and its closed-trade equity curve."""

    metrics: Mapping[str, int | str | None]
    curve: tuple[tuple[str, str], ...]  # (close time, cumulative realized P&L)


def outcome_of(parts: Iterable[Part]) -> Outcome:
    """Merge the parts of one config (one, or one per symbol) into its metrics."""
    parts = list(parts)
    trades = [t for p in parts for t in p.trades]
    stats = summarize(trades)
    open_positions = sorted(pos for p in parts for pos in p.open_positions)
    metrics: dict[str, int | str | None] = {
        "trades": stats.trades,
        "wins": stats.wins,
        "losses": stats.losses,
        "breakevens": stats.breakevens,
        "win_rate": _text(stats.win_rate),
        "avg_r": _text(stats.avg_r),
        "expectancy": _text(stats.expectancy),
        "profit_factor": _text(stats.profit_factor),
        "realized_pnl": str(stats.pnl),
        "max_drawdown": str(stats.max_drawdown),
        "longest_losing_streak": stats.longest_loss,
        "open_positions": len(open_positions),
        "unprotected": sum(1 for _, protected in open_positions if not protected),
        "entries_accepted": sum(p.entries_accepted for p in parts),
        "entries_blocked": sum(p.entries_blocked for p in parts),
        "goal_triggers": sum(p.goal_triggers for p in parts),
    }
    return Outcome(metrics, _curve(trades))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _curve(trades: Sequence[TradeResult]) -> tuple[tuple[str, str], ...]:
    """Cumulative realized P&L after each trade, in the order every summary uses."""
    points = []
    running = Decimal(0)
    with localcontext(_EXACT):
        for trade in canonical(trades):
            running += trade.pnl
            points.append((format_ts(trade.closed), str(running)))
    return tuple(points)


# --- inputs and what identifies a run -----------------------------------------------------


@frozen
class Source:
    """An input file as the workers will find it, with its digest (what a run depends on)."""

    path: Path  # absolute
    given: str  # as the user wrote it, for messages and outputs
    size: int
    mtime_ns: int
    sha256: str


def _source(path: Path, role: str) -> Source:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SweepError(f"{path}: no such {role} file") from None
    except OSError as exc:
        raise SweepError(f"{path}: cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise SweepError(f"{path}: not a file ({role})")
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise SweepError(f"{path}: cannot read: {exc.strerror}") from None
    return Source(path.resolve(), str(path), stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def fingerprint(config: GridConfig, events: Sequence[Source], entries: Source | None) -> str:
    """What a config's row depends on: its document, the inputs' bytes and ratchet's version.
    Names and places in the grid are not part of it (renaming a value re-runs nothing)."""
    body = {
        "format": _FORMAT,
        "ratchet": _version(),
        "config": config.document,
        "events": [s.sha256 for s in events],
        "entries": entries.sha256 if entries is not None else None,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_toml_scalar)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _toml_scalar(value: object) -> str:
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    raise TypeError(f"not a TOML value: {value!r}")


def _version() -> str:
    try:
        return metadata.version("ratchet")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


# --- the results directory ----------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    """Write `path` all at once: temp file, fsync, rename (a reader sees all or nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Runs:
    """OUT/runs: one file per finished config, named by its fingerprint."""

    def __init__(self, out: Path) -> None:
        self.dir = out / RUNS

    def load(self, key: str) -> Outcome | None:
        path = self.dir / f"{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not written yet (or not ours): the config runs again
        if not isinstance(data, dict) or data.get("fingerprint") != key:
            return None
        metrics, curve = data.get("metrics"), data.get("curve")
        if not isinstance(metrics, dict) or set(metrics) != set(METRICS):
            return None
        if not isinstance(curve, list):
            return None
        return Outcome(
            {name: metrics[name] for name in METRICS}, tuple((str(t), str(v)) for t, v in curve)
        )

    def save(self, key: str, outcome: Outcome) -> None:
        body = {"fingerprint": key, "metrics": dict(outcome.metrics), "curve": outcome.curve}
        _atomic_write(self.dir / f"{key}.json", json.dumps(body, separators=(",", ":")) + "\n")


def _prepare_out(out: Path, inputs: Sequence[Path]) -> None:
    """Create OUT (and OUT/runs), prove it writable, and refuse to overwrite an input."""
    taken = {out / ROWS_CSV, out / ROWS_JSON, out / PICTURE}
    owned = (out / RUNS, out / CACHE)
    for path in inputs:
        resolved = path.resolve()
        if resolved in {p.resolve() for p in taken} or any(
            resolved.is_relative_to(d.resolve()) for d in owned
        ):
            raise SweepError(f"--out {out}: would overwrite the input {path}")
    try:
        (out / RUNS).mkdir(parents=True, exist_ok=True)
        probe = out / f".probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SweepError(f"--out {out}: cannot write there: {exc.strerror}") from None


# --- engines: here, a process pool, Ray ---------------------------------------------------

OnPart = Callable[[Part], None]


def _run_here(tasks: Sequence[Task], on_part: OnPart) -> None:
    for task in tasks:
        on_part(run_task(task))


def _quiet_worker() -> None:
    # Ctrl-C goes to the whole process group: the driver alone answers it (it stops the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_processes(tasks: Sequence[Task], workers: int, on_part: OnPart) -> None:
    # spawn: a fresh interpreter per worker, safe whatever threads the driver has.
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(min(workers, len(tasks)), initializer=_quiet_worker)
    try:
        for part in pool.imap_unordered(run_task, tasks, chunksize=1):
            on_part(part)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _run_ray(tasks: Sequence[Task], address: str, on_part: OnPart) -> None:
    try:
        import ray  # noqa: PLC0415 (optional extra `ratchet[ray]`)
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'ratchet[ray]'") from None
    started = False
    if not ray.is_initialized():
        _probe(address)
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False,
                     configure_logging=False)  # fmt: skip
        except Exception as exc:  # Ray raises several kinds; the user needs one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepError(f"--ray {address}: cannot reach the cluster: {reason}") from None
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
    pending = [remote.remote(task) for task in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                part = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                if isinstance(cause, SweepError):
                    raise SweepError(str(cause)) from None
                raise
            on_part(part)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _probe(address: str) -> None:
    """Refuse at once a HOST:PORT nobody answers on (Ray itself would retry for minutes)."""
    if address in ("auto", "local"):
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        raise SweepError(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SweepError(f"--ray {address}: cannot reach the cluster: {reason}") from None


# --- the sweep ----------------------------------------------------------------------------


@frozen
class SweepRequest:
    """What `ratchet sweep` was asked for."""

    events: tuple[Path, ...]
    grid: Path
    out: Path
    entries: Path | None = None
    workers: int | None = None  # None: one per core
    ray: str | None = None  # an address, "auto", or "local"
    split_symbols: bool = False
    # The columnar tick copy: None decides by the measurements in the README: on for split
    # runs (each reads only its symbol's rows) when pyarrow is there, off otherwise (a whole
    # run reads the copy only 1.1-1.2x faster than the CSV, and the copy is 7.5x the gzip).
    tick_cache: bool | None = None
    picture: bool = True  # OUT/sweep.png (needs matplotlib: a note without it)
    rank_by: str = "realized_pnl"  # which rows are the best (the curves drawn)
    metric: str | None = None  # of the heatmap (default: rank_by)
    axes: tuple[str, str] | None = None  # of the heatmap (default: the first two varied)
    curves: int = 5


@frozen
class SweepResult:
    """Every row in grid order, each config's equity curve, and what was run or reused."""

    grid: Grid
    rows: tuple[dict[str, Any], ...]
    curves: tuple[tuple[tuple[str, str], ...], ...]  # by row
    ran: int
    resumed: int
    tasks: int
    engine: str
    notes: tuple[str, ...]
    picture: Path | None = None


def run_sweep(
    request: SweepRequest,
    *,
    progress: bool = False,
    on_outcome: Callable[[GridConfig, Outcome], None] | None = None,
) -> SweepResult:
    """Run every config of the grid that has no row yet, write the rows, return them."""
    try:
        grid = load_grid(request.grid)
    except GridError as exc:
        raise SweepError(str(exc)) from None
    if not request.events:
        raise SweepError("give at least one EVENTS file")
    for name in (request.rank_by, request.metric or request.rank_by):
        if name not in METRICS:
            raise SweepError(f"no metric {name!r} (metrics: {', '.join(METRICS)})")
    if request.axes is not None:
        _heat_axes(grid, request.axes)
    events = [_source(path, "events") for path in request.events]
    entries = _source(request.entries, "entries") if request.entries is not None else None
    inputs = [*request.events, request.grid, *([request.entries] if request.entries else [])]
    _prepare_out(request.out, inputs)
    notes = [
        f"{name} is set but ignored: the grid alone decides every config"
        for name in (ENV_TARGET, ENV_GIVEBACK)
        if os.environ.get(name, "").strip()
    ]
    runs = _Runs(request.out)
    keys = [fingerprint(c, events, entries) for c in grid.configs]
    outcomes: dict[int, Outcome] = {}
    for config, key in zip(grid.configs, keys, strict=True):
        done = runs.load(key)
        if done is not None:
            outcomes[config.index] = done
    resumed = len(outcomes)
    todo = [c for c in grid.configs if c.index not in outcomes]
    symbols: tuple[str | None, ...] = (None,)
    if request.split_symbols:
        _refuse_coupled(grid.configs)
        symbols = tuple(_symbols(events, entries)) or (None,)
    caches: tuple[str | None, ...] = ()
    use_cache = request.tick_cache
    if use_cache is None:
        use_cache = request.split_symbols and tickcache.available()
    if use_cache and todo:
        try:
            copies = [tickcache.ensure(s.path, s.sha256, request.out / CACHE) for s in events]
        except (BadLine, tickcache.CacheError) as exc:
            raise SweepError(str(exc)) from None
        caches = tuple(str(p) if p is not None else None for p in copies)
    tasks = [
        Task(
            c.index,
            c.document,
            tuple(str(s.path) for s in events),
            str(entries.path) if entries is not None else None,
            symbol,
            caches,
        )
        for c in todo
        for symbol in symbols
    ]
    by_index = {c.index: (c, k) for c, k in zip(grid.configs, keys, strict=True)}
    parts: dict[int, list[Part]] = {}
    bar = _Progress(len(grid.configs), resumed) if progress and todo else None

    def on_part(part: Part) -> None:
        got = parts.setdefault(part.index, [])
        got.append(part)
        if len(got) < len(symbols):
            return
        outcome = outcome_of(sorted(got, key=lambda p: p.symbol or ""))
        del parts[part.index]
        config, key = by_index[part.index]
        runs.save(key, outcome)
        outcomes[part.index] = outcome
        if on_outcome is not None:
            on_outcome(config, outcome)
        if bar is not None:
            bar.update(len(outcomes))

    try:
        engine = _dispatch(tasks, request, on_part)
    finally:
        if bar is not None:
            bar.close()
    rows = tuple(_row(grid, c, outcomes[c.index]) for c in grid.configs)
    curves = tuple(outcomes[c.index].curve for c in grid.configs)
    _atomic_write(request.out / ROWS_CSV, rows_csv(grid, rows))
    document = {
        "grid": str(request.grid),
        "events": [s.given for s in events],
        "entries": entries.given if entries is not None else None,
        "axes": {a.key: list(a.names) for a in grid.axes},
        "rows": list(rows),
    }
    _atomic_write(request.out / ROWS_JSON, json.dumps(document, indent=2) + "\n")
    result = SweepResult(grid, rows, curves, len(todo), resumed, len(tasks), engine, tuple(notes))
    if not request.picture:
        return result
    try:
        picture = draw(result, request.out / PICTURE, request.metric or request.rank_by,
                       request.rank_by, request.axes, request.curves)  # fmt: skip
    except PlotUnavailable as exc:
        return evolve(result, notes=(*result.notes, f"no picture: {exc}"))
    return evolve(result, picture=picture)


def _dispatch(tasks: Sequence[Task], request: SweepRequest, on_part: OnPart) -> str:
    """Run the tasks where the request says; return how, in words."""
    workers = request.workers or os.cpu_count() or 1
    if request.ray is not None:
        if tasks:
            _run_ray(tasks, request.ray, on_part)
        return f"ray ({request.ray})"
    if workers == 1 or len(tasks) <= 1:
        _run_here(tasks, on_part)
    else:
        _run_processes(tasks, workers, on_part)
    return f"{workers} worker{'s' if workers > 1 else ''}"


def _row(grid: Grid, config: GridConfig, outcome: Outcome) -> dict[str, Any]:
    row: dict[str, Any] = {"index": config.index, "name": config.name}
    row.update(dict(config.choices))
    row.update(outcome.metrics)
    return row


def rows_csv(grid: Grid, rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV: index, name, one column per axis, then every metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = ["index", "name", *(a.key for a in grid.axes), *METRICS]
    writer.writerow(columns)
    for row in rows:
        writer.writerow("" if row.get(c) is None else row[c] for c in columns)
    return buffer.getvalue()


def _refuse_coupled(configs: Sequence[GridConfig]) -> None:
    for config in configs:
        reason = coupling(config.settings.config)
        if reason is not None:
            raise SweepError(
                f"cannot split by symbol: config {config.name!r}: {reason} "
                "(run without --split-symbols)"
            )


def coupling(config: Config) -> str | None:
    """Why the symbols of a run under `config` are not independent, or None when they are."""
    if config.goal.target > 0:
        return f"goal.target = {config.goal.target}: the daily goal adds up every symbol's P&L"
    if config.phase.enabled:
        return "phase.enabled = true: phases count trades and sessions across symbols"
    if config.max_open:
        return f"max_open = {config.max_open}: the cap on open positions counts every symbol"
    return None


def _symbols(events: Sequence[Source], entries: Source | None) -> list[str]:
    """Every symbol of the inputs; refused when an event concerns every symbol."""
    found: set[str] = set()
    for source in [*events, *([entries] if entries is not None else [])]:
        if tickcache.is_csv(source.path):
            found |= _csv_symbols(source.path)
            continue
        try:
            for event in read_events(source.path):
                if type(event) is Tick or type(event) is EntryIntent:
                    found.add(event.symbol)
                else:
                    raise SweepError(
                        f"cannot split by symbol: {source.given} holds a "
                        f"{type(event).__name__} event, which concerns every symbol"
                    )
        except BadLine as exc:
            raise SweepError(str(exc)) from None
    return sorted(found)


def _csv_symbols(path: Path) -> set[str]:
    """The symbols of a CSV tick file, read fast (the runs validate every line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        return {row[1] for row in rows if len(row) > 1}


class _Progress:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.first, self.started = total, done, time.monotonic()
        self.update(done)

    def update(self, done: int) -> None:
        width = 30
        filled = width * done // max(self.total, 1)
        elapsed = time.monotonic() - self.started
        ran = done - self.first
        eta = f", {elapsed / ran * (self.total - done):.0f} s left" if ran else ""
        sys.stderr.write(
            f"\rsweep [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} configs{eta} "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 72 + "\r")
        sys.stderr.flush()


# --- the table of the best rows -------------------------------------------------------------


def ranked(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    """Rows best first by `metric` (rows without a value last), ties in grid order."""
    higher = METRICS[metric]

    def key(row: Mapping[str, Any]) -> tuple[int, Decimal, int]:
        value = row[metric]
        if value is None:
            return (1, Decimal(0), row["index"])
        number = Decimal(value)
        return (0, -number if higher else number, row["index"])

    return sorted(rows, key=key)


def best_table(result: SweepResult, metric: str, top: int) -> str:
    """The best `top` rows by `metric` as a Markdown table."""
    rows = ranked(result.rows, metric)[:top]
    lines = [
        f"Best {len(rows)} of {len(result.rows)} configs by {metric} ({result.grid.path.name})",
        "",
        "| # | config | trades | win rate | avg R | expectancy | profit factor | P&L "
        "| max drawdown | losing streak | unprotected |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [
            str(row["index"]),
            row["name"].replace("|", "\\|"),
            str(row["trades"]),
            _shown(row["win_rate"], lambda d: f"{d * 100:.1f}%"),
            _shown(row["avg_r"], lambda d: f"{d:+.2f}"),
            _shown(row["expectancy"], _money),
            _shown(row["profit_factor"], lambda d: f"{d:.2f}"),
            _money(Decimal(row["realized_pnl"])),
            _money(Decimal(row["max_drawdown"])).lstrip("+"),
            str(row["longest_losing_streak"]),
            str(row["unprotected"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown(value: str | None, fmt: Callable[[Decimal], str]) -> str:
    return "—" if value is None else fmt(Decimal(value))


def _money(value: Decimal) -> str:
    sign = "-" if value < 0 else "+"
    return f"{sign}${abs(value):,.2f}"


# --- the picture --------------------------------------------------------------------------


def draw(
    result: SweepResult,
    path: Path,
    metric: str,
    rank_by: str,
    axes: tuple[str, str] | None = None,
    best: int = 5,
) -> Path:
    """Write the sweep's picture: a heatmap of `metric` over two grid axes (by default the first
    two with more than one value) and the equity curves of the `best` rows by `rank_by`."""
    heat = heatmap(result, metric, axes)
    chosen = ranked(result.rows, rank_by)[:best]
    series = [[(parse_ts(t), float(v)) for t, v in result.curves[r["index"] - 1]] for r in chosen]
    # Every curve starts from 0 at the first close drawn, so each first trade is a step too.
    firsts = [points[0][0] for points in series if points]
    start = [(min(firsts), 0.0)] if firsts else []
    curves = [
        (f"#{row['index']} {row['name']}", start + points)
        for row, points in zip(chosen, series, strict=True)
    ]
    title = f"ratchet sweep: {len(result.rows)} configs of {result.grid.path.name}"
    plot_sweep(path, title, heat, curves)
    return path


def _heat_axes(grid: Grid, axes: tuple[str, str]) -> tuple[Axis, Axis]:
    found = {a.key: a for a in grid.axes} | {a.label: a for a in grid.axes}
    missing = [name for name in axes if name not in found]
    if missing:
        known = ", ".join(a.key for a in grid.axes) or "none: the grid lists its configs"
        raise SweepError(f"--heatmap {','.join(axes)}: no axis {missing[0]!r} (axes: {known})")
    x, y = found[axes[0]], found[axes[1]]
    if x.key == y.key:
        raise SweepError(f"--heatmap {','.join(axes)}: give two different axes")
    return x, y


Heat = tuple[str, list[str], str, list[str], str, list[list[float | None]]]


def heatmap(result: SweepResult, metric: str, axes: tuple[str, str] | None = None) -> Heat | None:
    """The metric's best value (over every other axis) for each pair of values of two axes:
    (x key, x names, y key, y names, metric, rows of values by y); None with fewer than two
    axes to draw on (a grid of listed configs, or one axis)."""
    grid = result.grid
    if axes is None:
        varied = [a for a in grid.axes if len(a.names) > 1]
        if len(varied) < 2:
            return None
        x, y = varied[0], varied[1]
    else:
        x, y = _heat_axes(grid, axes)
    higher = METRICS[metric]
    cells: dict[tuple[str, str], Decimal] = {}
    for row in result.rows:
        value = row[metric]
        if value is None:
            continue
        number = Decimal(value)
        where = (row[x.key], row[y.key])
        kept = cells.get(where)
        if kept is None or (number > kept if higher else number < kept):
            cells[where] = number
    values = [
        [float(cells[(xn, yn)]) if (xn, yn) in cells else None for xn in x.names] for yn in y.names
    ]
    return (x.key, list(x.names), y.key, list(y.names), metric, values)
