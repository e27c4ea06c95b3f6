"""Performance reports: read closed trades, summarise them per window, check targets.

Trades come from journals (`trade.closed` records; other kinds are skipped) or from a CSV with
the header `symbol,side,qty,entry,exit,opened,closed,pnl,r,risk` (`key` optional, last).
A state directory's journals are summarised per day and cached under `performance/` with each
file's checksum, so a report re-reads only the journals that changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import cattrs
from attrs import define, field, frozen

from engine.analytics import (
    Breach,
    Stats,
    Targets,
    TradeResult,
    Window,
    by_window,
    check_targets,
    group_days,
    rolling,
)
from shell.codec import (
    LARGEST,
    BadLine,
    Unreadable,
    format_ts,
    parse_ts,
    read_json_lines,
    text_blocks,
    to_jsonable,
)
from shell.config import Settings, zone
from shell.errors import UserError
from shell.figures import cents, metric_text, ratio, two_places
from shell.outputs import prepare_file, refuse_inputs
from shell.plot import PlotUnavailable, plot_report

__all__ = [
    "CSV_FIELDS",
    "DailyBuild",
    "Period",
    "Report",
    "ReportRequest",
    "ReportRun",
    "alert_json",
    "build_report",
    "daily_from_state_dir",
    "read_trades",
    "report_to_csv",
    "report_to_json",
    "report_to_markdown",
    "run_report",
    "trade_from_json",
    "write_json_atomic",
]

CSV_FIELDS = ["symbol", "side", "qty", "entry", "exit", "opened", "closed", "pnl", "r", "risk"]
_DECIMALS = ("qty", "entry", "exit", "pnl", "r", "risk")
_CACHE_VERSION = 2  # 2: bad lines kept as [path, line, reason]

_stats_converter = cattrs.Converter()
_stats_converter.register_unstructure_hook(Decimal, str)


def _cached_decimal(value: object, _: object) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return number


_stats_converter.register_structure_hook(Decimal, _cached_decimal)


def trade_from_json(data: dict[str, Any]) -> TradeResult:
    """A trade from a `trade.closed` record or CSV row; ValueError names the bad field."""
    values: dict[str, Any] = {}
    for name in CSV_FIELDS:
        if name not in data or data[name] in (None, ""):
            raise ValueError(f"missing {name!r}")
        raw = data[name]
        try:
            if name in _DECIMALS:
                number = Decimal(str(raw))
                if not number.is_finite() or abs(number) > LARGEST:
                    raise ValueError
                values[name] = number
            elif name in ("opened", "closed"):
                values[name] = parse_ts(str(raw))
            else:
                values[name] = str(raw)
        except (ValueError, ArithmeticError):
            raise ValueError(f"{name} = {raw!r} is not valid") from None
    if values["side"] not in ("long", "short"):
        raise ValueError(f"side = {values['side']!r}: expected long or short")
    return TradeResult(key=str(data.get("key", "")), **values)


def read_trades(path: Path, bad: list[BadLine]) -> list[TradeResult]:
    """Every trade in a journal (JSONL) or a trades CSV, gzip-compressed when named `.gz`; bad
    lines (not UTF-8 included) go to `bad`, the rest is kept. A `.gz` that is not gzip or is
    cut short raises BadFile: half a file is never reported as the whole."""
    if path.name.removesuffix(".gz").endswith(".csv"):
        return list(_csv_trades(path, bad))
    return list(_jsonl_trades(path, bad))


def _jsonl_trades(path: Path, bad: list[BadLine]) -> Iterator[TradeResult]:
    for number, data in read_json_lines(path):
        try:
            if isinstance(data, ValueError):
                raise data
            if data.get("kind") != "trade.closed":
                continue
            yield trade_from_json(data)
        except ValueError as exc:
            bad.append(BadLine(str(path), number, str(exc)))


def _csv_trades(path: Path, bad: list[BadLine]) -> Iterator[TradeResult]:
    header: list[str] | None = None
    rows = _csv_rows(path)
    for number, row in rows:
        try:
            if isinstance(row, ValueError):
                raise row
            if header is None:
                if row not in (CSV_FIELDS, [*CSV_FIELDS, "key"]):
                    raise ValueError(f"expected the header {','.join(CSV_FIELDS)}[,key]")
                header = row
                continue
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"expected {len(header)} fields, got {len(row)}")
            yield trade_from_json(dict(zip(header, row, strict=True)))
        except ValueError as exc:
            bad.append(BadLine(str(path), number, str(exc)))
            if header is None:
                # Without its header no row can be read; the file is still read to its end,
                # so a .gz cut short is refused rather than reported as this one bad line.
                for _ in rows:
                    pass
                return


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str] | ValueError]]:
    """(line number, fields) of each line of a CSV file, or the ValueError saying why not."""
    number = 0
    for block in text_blocks(path):
        if isinstance(block, Unreadable):
            number += 1
            yield number, ValueError(block.reason)
            continue
        for line in block:
            number += 1
            try:
                yield number, next(csv.reader([line]), [])
            except csv.Error as exc:
                yield number, ValueError(f"not a CSV row ({exc})")


# --- per-day summaries of a state directory, cached by checksum --------------------------


@define
class DailyBuild:
    """Per-day stats of a state directory's journals, and what it took to get them."""

    days: dict[date, Stats] = field(factory=dict)
    bad: list[BadLine] = field(factory=list)
    files: int = 0
    rebuilt: int = 0


def daily_from_state_dir(
    state_dir: Path, tz: tzinfo, zone_name: str, *, backfill_from: date | None = None
) -> DailyBuild:
    """Daily stats from `state_dir/journal/*.jsonl`, re-reading only journals whose checksum
    changed (or that hold days on or after `backfill_from`). Idempotent."""
    build = DailyBuild()
    cache_path = state_dir / "performance" / "daily-cache.json"
    cache = _load_cache(cache_path, zone_name)
    fresh: dict[str, Any] = {}
    for path in sorted((state_dir / "journal").glob("*.jsonl")):
        build.files += 1
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        entry = cache.get(path.name)
        days = _cached_days(entry) if entry is not None and entry["sha256"] == digest else None
        if days is not None and backfill_from is not None:
            days = None if any(day >= backfill_from for day in days) else days
        if days is None:
            build.rebuilt += 1
            bad: list[BadLine] = []
            windows = by_window(read_trades(path, bad), Window.DAILY, tz)
            days = dict(windows.values())
            entry = {
                "sha256": digest,
                "days": {d.isoformat(): _stats_converter.unstructure(s) for d, s in days.items()},
                "bad": [[b.path, b.line, b.reason] for b in bad],
            }
        assert entry is not None
        fresh[path.name] = entry
        for day, stats in days.items():
            build.days[day] = build.days.get(day, Stats()) + stats
        build.bad.extend(BadLine(str(p), int(n), str(r)) for p, n, r in entry["bad"])
    _save_cache(cache_path, zone_name, fresh)
    build.days = dict(sorted(build.days.items()))
    return build


def _cached_days(entry: Any) -> dict[date, Stats] | None:
    """The per-day stats of one cache entry, or None when the entry is not what this version
    writes (edited or damaged: the journal is read again)."""
    try:
        days = {
            date.fromisoformat(day): _stats_converter.structure(stats, Stats)
            for day, stats in entry["days"].items()
        }
        for p, n, r in entry["bad"]:
            if not (isinstance(p, str) and isinstance(n, int) and isinstance(r, str)):
                return None
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError,
            cattrs.BaseValidationError):  # fmt: skip
        return None
    return days


def _load_cache(path: Path, zone_name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}  # missing or corrupt: rebuild everything
    if not isinstance(data, dict):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("timezone") != zone_name:
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    return {
        name: entry
        for name, entry in files.items()
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("days"), dict) and isinstance(entry.get("bad"), list)
    }  # fmt: skip


def _save_cache(path: Path, zone_name: str, files: dict[str, Any]) -> None:
    body = {"version": _CACHE_VERSION, "timezone": zone_name, "files": files}
    write_json_atomic(path, body)


def write_json_atomic(path: Path, body: object) -> None:
    """Write JSON to `path` all at once: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(body, fh, separators=(",", ":"), sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --- the report --------------------------------------------------------------------------


@define
class Period:
    """One window of the report."""

    label: str
    start: date
    stats: Stats


@define
class Report:
    """A report: periods in order, the total, breaches and what could not be read."""

    window: Window
    timezone: str
    periods: list[Period]
    total: Stats
    breaches: list[Breach]
    bad: list[BadLine]
    rolling: tuple[int, Stats] | None = None

    @property
    def partial(self) -> bool:
        """True when some input could not be read."""
        return bool(self.bad)


def build_report(
    days: dict[date, Stats],
    window: Window,
    tz: tzinfo,
    zone_name: str,
    targets: Targets,
    *,
    start: date | None = None,
    end: date | None = None,
    bad: list[BadLine] | None = None,
    trades_for_rolling: Iterable[TradeResult] | None = None,
    rolling_n: int = 0,
) -> Report:
    """Group daily stats into windows (days merge in order, exactly), between start and end."""
    grouped = group_days(days, window, tz, start=start, end=end)
    ordered = [Period(label, first, stats) for label, first, stats in grouped]
    total = Stats()
    for period in ordered:
        total = total + period.stats
    breaches = check_targets({p.label: p.stats for p in ordered}, targets)
    roll = None
    if rolling_n > 0 and trades_for_rolling is not None:
        roll = (rolling_n, rolling(trades_for_rolling, rolling_n))
    return Report(window, zone_name, ordered, total, breaches, list(bad or []), roll)


def _stats_json(stats: Stats) -> dict[str, Any]:
    data = {
        "trades": stats.trades,
        "no_trades": stats.trades == 0,
        "wins": stats.wins,
        "losses": stats.losses,
        "breakevens": stats.breakevens,
        "win_rate": stats.win_rate,
        "current_streak": stats.current_streak,
        "longest_win_streak": stats.longest_win,
        "longest_loss_streak": stats.longest_loss,
        "avg_win": stats.avg_win,
        "avg_loss": stats.avg_loss,
        "avg_r": stats.avg_r,
        "profit_factor": stats.profit_factor,
        "expectancy": stats.expectancy,
        "realized_pnl": stats.pnl,
        "max_drawdown": stats.max_drawdown,
    }
    result = to_jsonable(data)
    assert isinstance(result, dict)
    return result


def alert_json(report: Report, breach: Breach, now: datetime) -> dict[str, Any]:
    """A `performance.alert` record."""
    return {
        "kind": "performance.alert",
        "ts": format_ts(now),
        "window": report.window.value,
        "period": breach.period,
        "metric": breach.metric,
        "actual": str(breach.actual),
        "target": str(breach.target),
        "severity": breach.severity,
    }


def report_to_json(report: Report, now: datetime) -> dict[str, Any]:
    """The report as one JSON object (see shell/schemas/summary.schema.json)."""
    out: dict[str, Any] = {
        "window": report.window.value,
        "timezone": report.timezone,
        "partial": report.partial,
        "bad_lines": [str(b) for b in report.bad],
        "periods": [
            {"period": p.label, "start": p.start.isoformat(), **_stats_json(p.stats)}
            for p in report.periods
        ],
        "total": _stats_json(report.total),
        "alerts": [alert_json(report, b, now) for b in report.breaches],
    }
    if report.rolling is not None:
        n, stats = report.rolling
        out["rolling"] = {"trades_back": n, **_stats_json(stats)}
    return out


# How each column reads in text: money to the cent, R to two places, ratios to three.
_TEXT: dict[str, Callable[[Decimal], str]] = {
    "win_rate": lambda v: f"{v * 100:.1f}%",
    "avg_r": two_places,
    "profit_factor": ratio,
}

_COLUMNS = [
    ("trades", "trades"),
    ("W/L/BE", ""),
    ("win rate", "win_rate"),
    ("streak", "current_streak"),
    ("avg win", "avg_win"),
    ("avg loss", "avg_loss"),
    ("avg R", "avg_r"),
    ("PF", "profit_factor"),
    ("expectancy", "expectancy"),
    ("P&L", "realized_pnl"),
    ("max DD", "max_drawdown"),
]


def _cells(stats: Stats) -> list[str]:
    if not stats.trades:
        return ["0", "no trades", *[""] * (len(_COLUMNS) - 2)]
    data = _stats_json(stats)

    def fmt(name: str) -> str:
        value = data[name]
        if value is None:
            return "—"
        if name in ("trades", "current_streak"):
            return str(value)
        return _TEXT.get(name, cents)(Decimal(value))

    wlb = f"{stats.wins}/{stats.losses}/{stats.breakevens}"
    return [fmt("trades"), wlb, *[fmt(name) for _, name in _COLUMNS[2:]]]


def report_to_markdown(report: Report) -> str:
    """A GitHub-flavoured Markdown table that reads well in a terminal too."""
    head = ["period", *[title for title, _ in _COLUMNS]]
    lines = [
        f"## ratchet performance — {report.window.value} ({report.timezone})",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for period in report.periods:
        lines.append("| " + " | ".join([period.label, *_cells(period.stats)]) + " |")
    lines.append("| **total** | " + " | ".join(_cells(report.total)) + " |")
    if not report.periods:
        lines.append("")
        lines.append("No trades in this range.")
    if report.rolling is not None:
        n, stats = report.rolling
        lines += ["", f"Last {n} trades: " + ", ".join(
            f"{title} {cell}" for (title, _), cell in zip(_COLUMNS, _cells(stats), strict=True)
        )]  # fmt: skip
    if report.breaches:
        lines += ["", "**Targets missed**", ""]
        lines += [
            f"- {b.period}: {b.metric} {metric_text(b.metric, b.actual)} vs target "
            f"{metric_text(b.metric, b.target)} ({b.severity})"
            for b in report.breaches
        ]
    if report.partial:
        lines += ["", f"**Partial**: {len(report.bad)} input line(s) could not be read:"]
        lines += [f"- `{b}`" for b in report.bad]
    return "\n".join(lines)


def report_to_csv(report: Report) -> str:
    """One row per period, then the total, with the JSON fields as columns."""
    names = list(_stats_json(Stats()))
    rows = [["period", "start", *names]]
    for period in report.periods:
        data = _stats_json(period.stats)
        rows.append([period.label, period.start.isoformat(), *[_cell(data[n]) for n in names]])
    data = _stats_json(report.total)
    rows.append(["total", "", *[_cell(data[n]) for n in names]])
    lines = []
    for row in rows:
        lines.append(",".join(row))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@frozen
class ReportRequest:
    """What `ratchet report` was asked: the window, the days, where the trades are, the
    settings, and the extras (rolling summary, backfill, picture)."""

    window: Window
    first: date | None
    last: date | None
    export: str  # md, json or csv
    state_dir: Path
    trade_files: tuple[Path, ...]
    config_path: Path | None
    settings: Settings
    zone_name: str | None
    rolling: int
    backfill: int
    plot: Path | None


@frozen
class ReportRun:
    """What a report produced: its text, the lines for stderr (skipped lines, target
    warnings, a picture written), and whether a target was missed (exit status 3)."""

    output: str
    notes: tuple[str, ...]
    missed: bool


def run_report(request: ReportRequest, now: datetime) -> ReportRun:
    """Build the report, keep its cache and latest summary in the state directory, append
    target misses to `performance-alerts.jsonl` there, and draw the picture if asked."""
    name = request.zone_name or request.settings.performance_timezone
    tz = zone(name, "--timezone" if request.zone_name else "performance.timezone")
    state_dir, window = request.state_dir, request.window
    bad: list[BadLine] = []
    trades: list[TradeResult] | None = None
    alerts_path: Path | None = None
    journals = state_dir / "journal"
    config = [request.config_path] if request.config_path is not None else []
    inputs = [*request.trade_files, *config]
    if not request.trade_files:
        if not journals.is_dir():
            raise UserError(f"no journals in {journals} (give --state-dir DIR, or --trades FILE)")
        inputs += sorted(journals.glob("*.jsonl"))
        alerts_path = state_dir / "performance-alerts.jsonl"
        performance = state_dir / "performance"
        refuse_inputs(
            [
                ("--state-dir", alerts_path),
                ("--state-dir", performance / "daily-cache.json"),
                ("--state-dir", performance / f"{window.value}.json"),
            ],
            inputs,
        )
    if request.plot is not None:
        refuse_inputs([("--plot", request.plot)], inputs)
        prepare_file(request.plot, "--plot")
    if request.trade_files:
        trades = [t for path in request.trade_files for t in read_trades(path, bad)]
        days = dict(by_window(trades, Window.DAILY, tz).values())
    else:
        today = now.astimezone(tz).date()
        backfill = request.backfill
        since = date.fromordinal(today.toordinal() - backfill + 1) if backfill else None
        build = daily_from_state_dir(state_dir, tz, name, backfill_from=since)
        days, bad = build.days, build.bad
        if request.rolling or request.plot is not None:
            trades = [t for p in sorted(journals.glob("*.jsonl")) for t in read_trades(p, [])]
    result = build_report(
        days,
        window,
        tz,
        name,
        request.settings.targets,
        start=request.first,
        end=request.last,
        bad=bad,
        trades_for_rolling=trades,
        rolling_n=request.rolling,
    )
    notes = [f"skipped {problem}" for problem in bad]
    document = report_to_json(result, now)
    if not request.trade_files:  # keep the latest summary of each window beside the cache
        write_json_atomic(state_dir / "performance" / f"{window.value}.json", document)
    if request.export == "json":
        output = json.dumps(document, indent=2)
    elif request.export == "csv":
        output = report_to_csv(result)
    else:
        output = report_to_markdown(result)
    if request.plot is not None:
        try:
            plot_report(trades or [], tz, request.plot)
        except PlotUnavailable as exc:
            raise UserError(str(exc)) from None
        notes.append(f"wrote {request.plot}")
    if result.breaches:
        alerts = [alert_json(result, breach, now) for breach in result.breaches]
        if alerts_path is not None:
            with alerts_path.open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(alert) + "\n" for alert in alerts)
        notes += [
            f"WARN performance {window.value} {breach.period}: {breach.metric} "
            f"{metric_text(breach.metric, breach.actual)} misses target "
            f"{metric_text(breach.metric, breach.target)} ({breach.severity})"
            for breach in result.breaches
        ]
    return ReportRun(output, tuple(notes), bool(result.breaches))
