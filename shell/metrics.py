"""The Prometheus exporter (SPEC §5, INTERFACES "Metrics"): what ratchet is doing, on
`--metrics-port`, in Prometheus's text format, from its own registry and HTTP thread.

The loop that steps the engine feeds it, and nothing it does waits or allocates much:

    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 9464)
    metrics.attach_alerts(dispatcher)          # optional: the sinks' counters
    metrics.attach_store(writer)               # optional: the store writer's counters
    for each event:
        started = time.perf_counter()
        state, commands = step(state, event)
        metrics.step_seconds(time.perf_counter() - started)
        for command in commands:
            metrics.observe(command)           # counters from records and alerts
        metrics.update(state, now)             # keeps the state; the view is made on scrape
    metrics.order_sent(order_id, t) / metrics.order_answered(order_id, t)   # round trips
    metrics.close()

`update` only keeps a reference to the (immutable) state: the per-position series are derived
from it by `engine.metrics_view` when Prometheus scrapes, in the HTTP thread, so a position
that has closed has no series any more. Counters are plain integers the loop's thread bumps;
a scrape reads copies of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import (
    Alert,
    BreakerState,
    Command,
    EngineState,
    Event,
    LinkMode,
    Record,
    Side,
    Transition,
    metrics_view,
)
from shell.errors import UserError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from shell.alerts import AlertDispatcher
    from shell.store import StoreWriter

__all__ = ["ORDER_OUTCOMES", "Metrics"]

# `ratchet_orders_total{outcome}`: the journal record that counts each outcome.
ORDER_OUTCOMES = {
    "submitted": "order.submitted",
    "rejected": "order.rejected",
    "canceled": "order.canceled",
    "filled": "order.filled",  # counted once per order, on the fill that leaves none open
}
_STEP_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
_ROUND_TRIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_WINDOW_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_IN_FLIGHT = 10_000  # orders awaiting their answer that are remembered (oldest forgotten first)
_WHO = ("symbol", "key")
_SIDE = {Side.LONG: 1.0, Side.SHORT: -1.0}


def _number(value: object) -> float | None:
    """A record's number (a Decimal from the engine, text from a journal) as a float."""
    if isinstance(value, Decimal | int | float):
        return float(value)
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


class _Families:
    """Metric families by name, built once per scrape (or empty, for `describe`)."""

    def __init__(self) -> None:
        self.out: list[Metric] = []

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        self.out.append(family)
        return family

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=list(labels))
        self.out.append(family)
        return family


def _one_of(family: GaugeMetricFamily, current: str, values: Iterable[str]) -> None:
    """A state as a set of series, one per possible value: 1 for the current one, else 0."""
    for value in values:
        family.add_metric([value], 1.0 if value == current else 0.0)


class _StateCollector(Collector):
    """The per-position series and the state's totals, from the latest state given."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None).out)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self._metrics.latest).out)

    def _families(self, latest: tuple[EngineState, datetime, float] | None) -> _Families:
        f = _Families()
        r = f.gauge("ratchet_position_r", "R multiple of the open position at its last price", _WHO)
        state_g = f.gauge(
            "ratchet_position_state",
            "Protection state of the open position (label state); the value is its rank on the "
            "ladder, 0 INITIAL_RISK to 4 FINAL_PROFIT_TAKEN",
            (*_WHO, "state"),
        )
        stop = f.gauge("ratchet_position_stop", "The stop the ladder wants", _WHO)
        working = f.gauge(
            "ratchet_position_working_stop",
            "Stop price of the protective order the broker has accepted and works (absent: none)",
            _WHO,
        )
        price = f.gauge("ratchet_position_price", "Last price of the position's symbol", _WHO)
        entry = f.gauge("ratchet_position_entry", "Average entry price", _WHO)
        qty = f.gauge("ratchet_position_qty", "Shares still open", _WHO)
        side = f.gauge("ratchet_position_side", "1 for a long, -1 for a short", _WHO)
        pnl = f.gauge("ratchet_position_unrealized_pnl", "Unrealized P/L at the last price", _WHO)
        age = f.gauge(
            "ratchet_position_price_age_seconds",
            "Seconds from the last price of the position's symbol to the last engine step",
            _WHO,
        )
        bare = f.gauge(
            "ratchet_position_bare", "1 while some shares have no accepted protective order", _WHO
        )
        by_state = f.gauge("ratchet_positions", "Open positions by protection state", ["state"])
        bare_n = f.gauge("ratchet_positions_bare", "Open positions with bare shares")
        mode = f.gauge("ratchet_link_mode", "Broker link mode: 1 for the current one", ["mode"])
        breaker = f.gauge(
            "ratchet_breaker_state", "Order circuit breaker: 1 for the current state", ["state"]
        )
        daily = f.gauge("ratchet_daily_pnl", "The day's P&L (realized + unrealized) in dollars")
        peak = f.gauge("ratchet_daily_peak", "The day's highest P&L in dollars")
        triggered = f.gauge(
            "ratchet_goal_triggered", "1 once the day gave back too much of its peak"
        )
        target = f.gauge("ratchet_goal_target", "Daily profit target in dollars (0: goal off)")
        giveback = f.gauge("ratchet_goal_giveback", "Share of the peak the day may give back")
        phase = f.gauge(
            "ratchet_phase", "Phase of the progression: 1 for the current one", ["phase"]
        )
        size = f.gauge("ratchet_phase_size", "Position size of the current phase in dollars")
        clock = f.gauge("ratchet_engine_time_seconds", "Time of the last engine step (Unix time)")
        heartbeat = f.gauge(
            "ratchet_heartbeat_age_seconds",
            "Seconds since the loop last stepped the engine (its heartbeat steps it every second)",
        )
        if latest is None:
            return f
        state, now, stamp = latest
        view = metrics_view(state)
        for row in view.positions:
            who = [row.symbol, row.key]
            r.add_metric(who, float(row.r))
            state_g.add_metric([*who, row.protection.value], float(row.rank))
            stop.add_metric(who, float(row.stop))
            if row.working_stop is not None:
                working.add_metric(who, float(row.working_stop))
            price.add_metric(who, float(row.price))
            entry.add_metric(who, float(row.entry))
            qty.add_metric(who, float(row.qty))
            side.add_metric(who, _SIDE[row.side])
            pnl.add_metric(who, float(row.unrealized))
            age.add_metric(who, (now - row.as_of).total_seconds())
            bare.add_metric(who, 1.0 if row.bare else 0.0)
        for protection, count in view.by_protection:
            by_state.add_metric([protection.value], float(count))
        bare_n.add_metric([], float(view.bare))
        _one_of(mode, view.mode.value, (m.value for m in LinkMode))
        _one_of(breaker, view.breaker.value, (b.value for b in BreakerState))
        daily.add_metric([], float(view.daily_pnl))
        peak.add_metric([], float(view.daily_peak))
        triggered.add_metric([], 1.0 if view.goal_triggered else 0.0)
        target.add_metric([], float(view.goal_target))
        giveback.add_metric([], float(view.goal_giveback))
        _one_of(phase, view.phase.value, (p.value for p in type(view.phase)))
        size.add_metric([], float(view.size))
        clock.add_metric([], now.timestamp())
        heartbeat.add_metric([], max(0.0, self._metrics.clock() - stamp))
        return f


class _RecordCollector(Collector):
    """Counters of the records and alerts observed."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(fill=False).out)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(fill=True).out)

    def _families(self, fill: bool) -> _Families:
        f = _Families()
        moves = f.counter("ratchet_stop_moves_total", "Stop moves (stop.moved records)")
        partials = f.counter(
            "ratchet_partial_fills_total", "Fills of partial-profit tranches (partial.filled)"
        )
        conflicts = f.counter(
            "ratchet_conflicts_total", "Conflicts detected, by type (conflict.detected)", ["type"]
        )
        retries = f.counter("ratchet_retries_total", "Order requests retried (order.retry)")
        alerts = f.counter(
            "ratchet_alerts_total", "Alerts raised by the engine, by reason", ["reason"]
        )
        orders = f.counter(
            "ratchet_orders_total",
            "Orders by outcome: submitted, rejected, canceled, filled (completely)",
            ["outcome"],
        )
        records = f.counter("ratchet_records_total", "Journal records by kind", ["kind"])
        if not fill:
            return f
        m = self._metrics
        counts = dict(m.records)  # copies: the loop's thread goes on counting meanwhile
        moves.add_metric([], counts.get("stop.moved", 0))
        partials.add_metric([], counts.get("partial.filled", 0))
        retries.add_metric([], counts.get("order.retry", 0))
        for name, n in sorted(dict(m.conflicts).items()):
            conflicts.add_metric([name], n)
        for reason, n in sorted(dict(m.alerts).items()):
            alerts.add_metric([reason], n)
        for outcome, kind in ORDER_OUTCOMES.items():
            orders.add_metric([outcome], m.filled if outcome == "filled" else counts.get(kind, 0))
        for kind, n in sorted(counts.items()):
            records.add_metric([kind], n)
        return f


class _AlertCollector(Collector):
    """The alert dispatcher's counters, by sink and reason."""

    def __init__(self, dispatcher: AlertDispatcher) -> None:
        self._dispatcher = dispatcher

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(fill=False).out)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(fill=True).out)

    def _families(self, fill: bool) -> _Families:
        f = _Families()
        deliveries = f.counter(
            "ratchet_alert_deliveries_total",
            "Alerts per sink and reason by outcome: delivered, failed, suppressed (duplicate or "
            "rate-limited), dropped (queue full)",
            ["sink", "reason", "outcome"],
        )
        retried = f.counter(
            "ratchet_alert_retries_total", "Delivery attempts after the first", ["sink", "reason"]
        )
        lines = f.counter("ratchet_alert_file_lines_total", "Lines written to alerts.jsonl")
        errors = f.counter(
            "ratchet_alert_file_errors_total", "Batches that could not be written to alerts.jsonl"
        )
        pending = f.gauge("ratchet_alert_pending", "Alerts queued, per sink and the file", ["sink"])
        if not fill:
            return f
        d = self._dispatcher
        stats = d.stats()
        for outcome in ("delivered", "failed", "suppressed", "dropped"):
            for where, n in stats[outcome].items():
                sink, _, reason = where.partition("/")
                deliveries.add_metric([sink, reason, outcome], n)
        for where, n in stats["retried"].items():
            sink, _, reason = where.partition("/")
            retried.add_metric([sink, reason], n)
        lines.add_metric([], d.lines)
        errors.add_metric([], d.file_errors)
        for sink, n in sorted(d.pending().items()):
            pending.add_metric([sink], n)
        return f


class _StoreCollector(Collector):
    """The PostgreSQL store writer's counters."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(fill=False).out)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(fill=True).out)

    def _families(self, fill: bool) -> _Families:
        f = _Families()
        written = f.counter("ratchet_store_written_total", "Rows written, by table", ["table"])
        duplicates = f.counter(
            "ratchet_store_duplicates_total", "Rows found already stored, by table", ["table"]
        )
        errors = f.counter("ratchet_store_errors_total", "Failed attempts to reach the database")
        rejected = f.counter("ratchet_store_rejected_total", "Records the database refused")
        dropped = f.counter(
            "ratchet_store_dropped_total", "Records not buffered (read back from the journal)"
        )
        caught_up = f.counter("ratchet_store_caught_up_total", "Records read back from journals")
        behind = f.gauge("ratchet_store_behind", "Journals with records still to read back")
        buffered = f.gauge("ratchet_store_buffered", "Records waiting in memory")
        connected = f.gauge("ratchet_store_connected", "1 while connected to the database")
        if not fill:
            return f
        w = self._writer
        for table, n in sorted(dict(w.written).items()):
            written.add_metric([table], n)
        for table, n in sorted(dict(w.duplicates).items()):
            duplicates.add_metric([table], n)
        errors.add_metric([], w.errors)
        rejected.add_metric([], w.rejected)
        dropped.add_metric([], w.dropped)
        caught_up.add_metric([], w.caught_up)
        behind.add_metric([], len(w.behind))
        buffered.add_metric([], w.buffered)
        connected.add_metric([], 1.0 if w.connected else 0.0)
        return f


class Metrics:
    """ratchet's metrics, in their own registry (never the process-wide default one).

    The loop's thread calls `observe`, `update`, `step_seconds`, `order_sent` and
    `order_answered`; the HTTP thread reads. `clock` is the monotonic clock of the heartbeat
    age (seconds, like `time.monotonic`).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self.latest: tuple[EngineState, datetime, float] | None = None
        self.records: dict[str, int] = {}
        self.conflicts: dict[str, int] = {}
        self.alerts: dict[str, int] = {}
        self.filled = 0
        self._in_flight: dict[tuple[str, str], float] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._attached: dict[str, Collector] = {}
        self._step = Histogram(
            "ratchet_engine_step_seconds",
            "Wall time of one engine step",
            buckets=_STEP_BUCKETS,
            registry=self.registry,
        )
        self._round_trip = Histogram(
            "ratchet_order_round_trip_seconds",
            "From sending an order request to the broker's first answer",
            ["request"],
            buckets=_ROUND_TRIP_BUCKETS,
            registry=self.registry,
        )
        self._window = Histogram(
            "ratchet_unprotected_window_seconds",
            "Time each operation left shares without an accepted protective order "
            "(operation.done unprotected_ms; 0 when never)",
            buckets=_WINDOW_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        self.registry.register(_RecordCollector(self))
        self._on: dict[str, Callable[[Record], None]] = {
            "conflict.detected": self._conflict,
            "order.filled": self._order_filled,
            "operation.done": self._operation_done,
        }

    # what the loop calls ------------------------------------------------------------------

    def observe(self, command: Command) -> None:
        """Count one command the engine emitted (records and alerts; orders are ignored)."""
        if type(command) is Record:
            kind = command.kind
            records = self.records
            records[kind] = records.get(kind, 0) + 1
            handler = self._on.get(kind)
            if handler is not None:
                handler(command)
        elif type(command) is Alert:
            alerts = self.alerts
            alerts[command.reason] = alerts.get(command.reason, 0) + 1

    def update(self, state: EngineState, now: datetime) -> None:
        """The engine's state after a step, and the loop's time (wall time live, the event's
        time in a replay). Only a reference is kept; the view is derived when scraped."""
        self.latest = (state, now, self.clock())

    def on_step(self, event: Event, before: EngineState, transition: Transition) -> None:
        """`update` shaped as `run_simulation`'s step observer (the event's time is now)."""
        self.latest = (transition.state, event.ts, self.clock())

    def step_seconds(self, seconds: float) -> None:
        """The wall time one engine step took."""
        self._step.observe(seconds)

    def order_sent(self, order_id: str, t: float, request: str = "submit") -> None:
        """A request about `order_id` (`submit`, `cancel`) left at monotonic time `t`."""
        in_flight = self._in_flight
        if len(in_flight) >= _IN_FLIGHT:
            del in_flight[next(iter(in_flight))]  # an answer never came: forget the oldest
        in_flight[(request, order_id)] = t

    def order_answered(self, order_id: str, t: float, request: str = "submit") -> None:
        """The broker's first answer to that request came at `t`; later answers are ignored."""
        sent = self._in_flight.pop((request, order_id), None)
        if sent is not None:
            self._round_trip.labels(request).observe(max(0.0, t - sent))

    def attach_alerts(self, dispatcher: AlertDispatcher) -> None:
        """Export the alert dispatcher's counters (replacing any attached before)."""
        self._attach("alerts", _AlertCollector(dispatcher))

    def attach_store(self, writer: StoreWriter) -> None:
        """Export the store writer's counters (replacing any attached before)."""
        self._attach("store", _StoreCollector(writer))

    # serving --------------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve the registry over HTTP from a daemon thread; the address it listens on (port
        0 picks a free one). A port that cannot be had is one line for the user."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already served")
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UserError(f"metrics: cannot listen on {host}:{port}: {reason}") from None
        self._server, self._thread = server, thread
        address: tuple[Any, ...] = server.server_address
        return str(address[0]), int(address[1])

    def hold(self, seconds: float) -> None:
        """Keep serving for `seconds` (Ctrl-C ends it early)."""
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            return

    def close(self) -> None:
        """Stop serving (the counters stay readable)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # records with more to them than a count ----------------------------------------------

    def _conflict(self, record: Record) -> None:
        name = str(record.data.get("type", ""))
        self.conflicts[name] = self.conflicts.get(name, 0) + 1

    def _order_filled(self, record: Record) -> None:
        value = record.data.get("order_open")
        # A Decimal from the engine (compared as it is: cheaper than a float), text from a
        # journal read back.
        left = value if type(value) is Decimal else _number(value)
        if left is not None and left <= 0:
            self.filled += 1

    def _operation_done(self, record: Record) -> None:
        ms = _number(record.data.get("unprotected_ms"))
        if ms is not None:
            self._window.observe(ms / 1000)

    def _attach(self, name: str, collector: Collector) -> None:
        old = self._attached.pop(name, None)
        if old is not None:
            self.registry.unregister(old)
        self.registry.register(collector)
        self._attached[name] = collector
