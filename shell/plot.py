"""Pictures: a performance report and, per symbol, a replay with its stop ladder.

matplotlib is an optional extra (`pip install 'ratchet[plot]'`); without it the commands say
so in one line.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine import Record, Tick
from engine.analytics import TradeResult, Window, by_window, canonical
from shell.errors import UserError, one_line
from shell.outputs import file_names, refuse_inputs, temp_beside

__all__ = ["PlotUnavailable", "PriceTrail", "plot_report", "plot_simulation", "plot_sweep"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 (optional extra, imported only when plotting)

        matplotlib.use("Agg")
        # Layout and glyph warnings would be tracebacks-like noise on the user's terminal; the
        # picture is written all the same.
        warnings.filterwarnings("ignore", category=UserWarning, module="matplotlib")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib: pip install 'ratchet[plot]' (or ./dev pip install "
            "matplotlib)"
        ) from None
    return plt


def plot_report(trades: Sequence[TradeResult], tz: Any, path: Path) -> None:
    """Equity curve with drawdown shading, R-multiple histogram, win rate by week."""
    plt = _pyplot()
    ordered = canonical(trades)
    fig, (equity_ax, hist_ax, week_ax) = plt.subplots(3, 1, figsize=(10, 11))
    times = [ordered[0].opened] if ordered else []
    times += [t.closed for t in ordered]
    equity, peak, running, top = [0.0], [0.0], Decimal(0), Decimal(0)
    for trade in ordered:
        running += trade.pnl
        top = max(top, running)
        equity.append(float(running))
        peak.append(float(top))
    if times:
        equity_ax.plot(times, equity, color="#1f77b4", label="closed-trade equity")
        equity_ax.fill_between(times, equity, peak, color="#d62728", alpha=0.25, label="drawdown")
    equity_ax.axhline(0, color="grey", linewidth=0.8)
    equity_ax.set_title(f"Equity curve ({len(ordered)} trades, P&L {running:,.2f})")
    equity_ax.set_ylabel("P&L ($)")
    equity_ax.legend(loc="upper left")
    rs = [float(t.r) for t in ordered]
    hist_ax.hist(rs, bins=max(5, min(40, len(rs) // 2 or 5)), color="#2ca02c", edgecolor="black")
    hist_ax.axvline(0, color="grey", linewidth=0.8)
    hist_ax.set_title("R multiple per trade")
    hist_ax.set_xlabel("R")
    hist_ax.set_ylabel("trades")
    weeks = by_window(ordered, Window.WEEKLY, tz)
    labels = list(weeks)
    rates = [float(s.win_rate * 100) if s.win_rate is not None else 0.0 for _, s in weeks.values()]
    week_ax.bar(labels, rates, color="#9467bd")
    week_ax.set_ylim(0, 100)
    week_ax.set_title("Win rate by week")
    week_ax.set_ylabel("%")
    for i, (_, stats) in enumerate(weeks.values()):
        week_ax.annotate(f"{stats.trades} tr", (i, rates[i]), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG atomically: a temporary file beside it, then a rename."""
    tmp = temp_beside(path)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the picture {path}: {exc.strerror or exc}") from None


class PriceTrail:
    """Prices seen per symbol, thinned so memory stays bounded (every k-th tick, k doubling)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.points: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
        self.every: dict[str, int] = defaultdict(lambda: 1)
        self.seen: dict[str, int] = defaultdict(int)

    def watch(self, events: Iterable[Any]) -> Iterator[Any]:
        """Pass events through, remembering the ticks."""
        for event in events:
            if type(event) is Tick:
                self._add(event)
            yield event

    def _add(self, tick: Tick) -> None:
        symbol = tick.symbol
        self.seen[symbol] += 1
        if self.seen[symbol] % self.every[symbol]:
            return
        points = self.points[symbol]
        points.append((tick.ts, tick.price))
        if len(points) > self.limit:
            self.points[symbol] = points[::2]
            self.every[symbol] *= 2


def plot_simulation(
    trail: PriceTrail, records: Sequence[Record], directory: Path, inputs: Sequence[Path] = ()
) -> list[Path]:
    """One PNG per symbol: price, the stop as it ratcheted, entries, partial and final exits.

    Each file is named after its symbol, made safe (see shell.outputs.file_names) so that it
    stays inside `directory`; none is written when one would overwrite one of `inputs`.
    """
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    names = file_names(trail.points, ".png")
    refuse_inputs([("--plot", directory / name) for name in names.values()], inputs)
    written = []
    by_symbol: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.symbol:
            by_symbol[record.symbol].append(record)
    for symbol, points in sorted(trail.points.items()):
        shown = one_line(symbol, 40)  # a title, not a place to print a 5,000-character symbol
        fig, ax = plt.subplots(figsize=(12, 6))
        ax.plot([t for t, _ in points], [float(p) for _, p in points], color="#7f7f7f",
                linewidth=0.8, label=f"{shown} price")  # fmt: skip
        stops: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for record in by_symbol.get(symbol, []):
            key = str(record.data.get("key", ""))
            if record.kind == "position.opened" and "added" not in record.data:
                stops[key].append((record.ts, float(_dec(record["order_stop"]))))
                ax.scatter([record.ts], [float(_dec(record["entry"]))], marker="^",
                           color="#1f77b4", zorder=3)  # fmt: skip
            elif record.kind == "stop.moved":
                stops[key].append((record.ts, float(_dec(record["new"]))))
            elif record.kind == "partial.filled":
                ax.scatter([record.ts], [float(_dec(record["price"]))], marker="o",
                           color="#2ca02c", zorder=3)  # fmt: skip
            elif record.kind == "position.closed":
                price = float(_dec(record["price"]))
                stops[key].append((record.ts, stops[key][-1][1] if stops[key] else price))
                ax.scatter([record.ts], [price], marker="x", color="#d62728", zorder=3)
                ax.annotate(f"{key} {_dec(record['r']):+.2f}R", (record.ts, price),
                            textcoords="offset points", xytext=(4, 6), fontsize=8)  # fmt: skip
        for key, steps in stops.items():
            ax.step([t for t, _ in steps], [p for _, p in steps], where="post",
                    color="#ff7f0e", linewidth=1.4, label="stop" if key == next(iter(stops))
                    else None)  # fmt: skip
        ax.set_title(f"{shown}: price, stop ladder (orange), entries ▲, partials ●, exits ✕")
        ax.legend(loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        path = directory / names[symbol]
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _dec(value: object) -> Decimal:
    assert isinstance(value, Decimal), value
    return value


def plot_sweep(
    path: Path,
    title: str,
    heatmap: tuple[str, Sequence[str], str, Sequence[str], str, Sequence[Sequence[float | None]]]
    | None,
    curves: Sequence[tuple[str, Sequence[tuple[datetime, float]]]],
) -> None:
    """A sweep: a heatmap of one metric over two grid axes (x key, x names, y key, y names,
    metric, values by row of y) beside the closed-trade equity curves of the best configs."""
    plt = _pyplot()
    panels = 2 if heatmap is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels + 1, 6), squeeze=False)
    if heatmap is not None:
        x_key, x_names, y_key, y_names, metric, values = heatmap
        ax = axes[0][0]
        grid = [[float("nan") if v is None else v for v in row] for row in values]
        image = ax.imshow(grid, cmap="RdYlGn", aspect="auto", origin="lower")
        fig.colorbar(image, ax=ax, label=metric)
        ax.set_xticks(range(len(x_names)), labels=list(x_names), rotation=30, ha="right")
        ax.set_yticks(range(len(y_names)), labels=list(y_names))
        ax.set_xlabel(x_key)
        ax.set_ylabel(y_key)
        ax.set_title(f"{metric} (best over the other axes)")
        for yi, row in enumerate(values):
            for xi, value in enumerate(row):
                text = "—" if value is None else f"{value:,.2f}"
                ax.text(xi, yi, text, ha="center", va="center", fontsize=8)
    ax = axes[0][panels - 1]
    for label, points in curves:
        if points:
            ax.step([t for t, _ in points], [v for _, v in points], where="post", label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("Closed-trade equity of the best configs")
    ax.set_ylabel("realized P&L ($)")
    if curves:
        ax.legend(loc="best", fontsize=7)
    fig.autofmt_xdate()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
