"""The Prometheus exporter over real HTTP on 127.0.0.1, read with prometheus_client's own parser:
while a session with several positions runs, every open position's series carry its R, state,
stops, P/L and price age under its symbol and key, a closed position's series are gone, and
the totals equal the records fed (counted here, independently); the histograms, the heartbeat,
the alert dispatcher's and the store writer's counters; serving and closing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import prometheus_client
import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from engine import (
    Alert,
    Command,
    Config,
    EngineState,
    Event,
    GoalConfig,
    Protection,
    Record,
    Tick,
    Transition,
)
from shell.alerts import AlertDispatcher
from shell.broker.simulated import Faults, SimulatedBroker
from shell.cli import main
from shell.codec import event_to_json
from shell.config import AlertSettings, StoreSettings, WebhookSink
from shell.errors import UserError
from shell.metrics import Metrics
from shell.secret import Secret
from shell.simulate import run_simulation
from shell.statedir import StateDir, read_journal
from shell.store import StoreWriter, describe_url
from tests import portfolio
from tests.oracle import r_of
from tests.receivers import HTTPReceiver, free_port

PG_URL = os.environ.get("RATCHET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
LADDER = list(Protection)
PER_POSITION = ("ratchet_position_r", "ratchet_position_stop", "ratchet_position_price",
                "ratchet_position_unrealized_pnl", "ratchet_position_price_age_seconds",
                "ratchet_position_bare", "ratchet_position_qty", "ratchet_position_side",
                "ratchet_position_entry")  # fmt: skip
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str) -> Samples:
    """Every sample of the endpoint: name -> {sorted labels: value}, via prometheus_client's
    parser."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """A metric's values keyed by one label."""
    return {dict(labels)[label]: v for labels, v in samples.get(name, {}).items()}


def one(samples: Samples, name: str) -> float:
    """The value of a metric without labels."""
    return samples[name][()]


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 0)
    yield metrics, f"http://{host}:{port}/metrics"
    metrics.close()


class Expected:
    """What the scrape should show, worked out from the events and records alone."""

    def __init__(self) -> None:
        self.opened: dict[str, Record] = {}  # open positions: key -> its position.opened
        self.state: dict[str, str] = {}
        self.stop: dict[str, Decimal] = {}
        self.last: dict[str, tuple[datetime, Decimal]] = {}  # symbol -> (ts, price)
        self.closed: set[str] = set()
        self.sent_stops: dict[str, set[Decimal]] = {}
        self.seen: Counter[str] = Counter()  # records by kind, as the sink passed them on
        self.conflicts: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.filled = 0
        self.windows: list[Decimal] = []

    def step(self, event: Event, transition: Transition) -> None:
        """The state after this step: prices from the print and from the fills the engine
        took (SPEC §3: a fill is a price, unless a later one is known), positions from the
        records."""
        if isinstance(event, Tick):
            self.last[event.symbol] = (event.ts, event.price)
        for c in transition.commands:
            if not isinstance(c, Record):
                continue
            key = str(c.data.get("key", ""))
            if c.kind == "order.filled":
                known = self.last.get(c.symbol)
                if known is None or known[0] <= c.ts:
                    self.last[c.symbol] = (c.ts, Decimal(str(c["price"])))
            if c.kind == "position.opened" and "added" not in c.data:
                self.opened[key] = c
                self.state[key] = str(c["protection"])
                self.stop[key] = Decimal(str(c["order_stop"]))
            elif c.kind == "position.state":
                self.state[key] = str(c["new"])
            elif c.kind == "stop.moved":
                self.stop[key] = Decimal(str(c["new"]))
            elif c.kind == "order.submitted" and c["stop_price"] is not None:
                self.sent_stops.setdefault(key, set()).add(Decimal(str(c["stop_price"])))
            elif c.kind == "position.closed":
                del self.opened[key]
                self.closed.add(key)

    def sink(self, command: Command) -> None:
        """Count what the exporter is fed."""
        if isinstance(command, Alert):
            self.alerts[command.reason] += 1
        if not isinstance(command, Record):
            return
        self.seen[command.kind] += 1
        if command.kind == "conflict.detected":
            self.conflicts[str(command["type"])] += 1
        elif command.kind == "order.filled" and Decimal(str(command["order_open"])) <= 0:
            self.filled += 1
        elif command.kind == "operation.done":
            self.windows.append(Decimal(str(command["unprotected_ms"])) / 1000)


def check_positions(s: Samples, expected: Expected, state: EngineState, now: datetime) -> None:
    """Each open position's series, with its labels and values; none of a closed one."""
    who = {(str(rec["symbol"]), key) for key, rec in expected.opened.items()}
    for name in PER_POSITION:
        got = {(dict(labels)["symbol"], dict(labels)["key"]) for labels in s.get(name, {})}
        assert got == who, (name, got, who)
    for symbol, key in who:
        pos = state.positions[key]
        at, price = expected.last[symbol]
        labels = (("key", key), ("symbol", symbol))
        want_r = (
            r_of(price, pos.ladder.entry, pos.ladder.initial_stop, pos.side)
            if pos.risk > 0
            else Decimal(0)
        )
        assert s["ratchet_position_r"][labels] == float(want_r), key
        assert s["ratchet_position_price"][labels] == float(price)
        assert s["ratchet_position_price_age_seconds"][labels] == (now - at).total_seconds()
        assert s["ratchet_position_stop"][labels] == float(expected.stop[key])
        pnl = (price - pos.ladder.entry) * pos.fills.remaining * pos.side.sign
        assert s["ratchet_position_unrealized_pnl"][labels] == float(pnl)
        assert s["ratchet_position_side"][labels] == (1.0 if pos.side.value == "long" else -1.0)
        name = expected.state[key]
        state_labels = (("key", key), ("state", name), ("symbol", symbol))
        assert s["ratchet_position_state"][state_labels] == LADDER.index(Protection(name))
        working = s.get("ratchet_position_working_stop", {}).get(labels)
        if s["ratchet_position_bare"][labels] == 0:  # protected: the broker works a stop
            assert working is not None, key
        if working is not None:  # one the engine sent for this position
            assert Decimal(str(working)) in expected.sent_stops[key], key
    assert not {key for _, key in who} & expected.closed
    states = Counter(expected.state[k] for k in expected.opened)
    assert by(s, "ratchet_positions", "state") == {
        p.value: float(states.get(p.value, 0)) for p in Protection
    }


def check_totals(s: Samples, expected: Expected) -> None:
    """The counters equal the records and alerts fed, counted independently."""
    seen = expected.seen
    assert one(s, "ratchet_stop_moves_total") == seen["stop.moved"]
    assert one(s, "ratchet_partial_fills_total") == seen["partial.filled"]
    assert one(s, "ratchet_retries_total") == seen["order.retry"]
    assert by(s, "ratchet_conflicts_total", "type") == dict(expected.conflicts)
    assert by(s, "ratchet_alerts_total", "reason") == dict(expected.alerts)
    assert by(s, "ratchet_orders_total", "outcome") == {
        "submitted": seen["order.submitted"],
        "rejected": seen["order.rejected"],
        "canceled": seen["order.canceled"],
        "filled": expected.filled,
    }
    assert by(s, "ratchet_records_total", "kind") == dict(seen)
    assert one(s, "ratchet_unprotected_window_seconds_count") == len(expected.windows)
    assert one(s, "ratchet_unprotected_window_seconds_sum") == pytest.approx(
        float(sum(expected.windows, Decimal(0)))
    )


def run_session(
    metrics: Metrics,
    url: str,
    faults: str | None,
    check: Callable[[Samples, Expected, Event, Transition], None],
) -> Expected:
    """The portfolio session through the engine, the exporter fed as the live loop feeds it;
    `check` runs on a scrape after every step that left a position open."""
    expected = Expected()

    def sink(command: Command) -> None:
        metrics.observe(command)
        expected.sink(command)

    def on_step(event: Event, before: EngineState, transition: Transition) -> None:
        metrics.update(transition.state, event.ts)
        expected.step(event, transition)
        if transition.state.positions:
            check(scrape(url), expected, event, transition)

    broker = SimulatedBroker(faults=Faults.parse(faults) if faults else None)
    run_simulation(portfolio.events(), EngineState.empty(Config()), broker, sink, on_step)
    return expected


@pytest.mark.parametrize("faults", [None, "high,seed=1"])
def test_every_open_position_is_scraped_with_its_r_and_state_and_closed_ones_vanish(served, faults):
    """After every step with a position open, the scrape holds exactly the open positions
    (labels symbol and key) with SPEC's R at the last price, the state of their last
    position.state record, the stop of their last stop.moved, P/L and price age; no series
    of a closed position; positions by state; counters equal to the records fed."""
    metrics, url = served
    scrapes: list[tuple[int, int]] = []  # (open, closed so far) at each scrape

    def check(s: Samples, expected: Expected, event: Event, t: Transition) -> None:
        check_positions(s, expected, t.state, event.ts)
        check_totals(s, expected)
        scrapes.append((len(expected.opened), len(expected.closed)))

    expected = run_session(metrics, url, faults, check)
    assert max(n for n, _ in scrapes) >= 3  # several positions open at once
    assert any(n > 0 and closed > 0 for n, closed in scrapes)  # closed while others open
    assert expected.closed and expected.opened
    if faults:  # the faults showed up in the counters
        assert expected.conflicts and expected.alerts and expected.seen["order.retry"]
    final = scrape(url)
    check_totals(final, expected)  # the last step's records, fed after its scrape
    keys = {dict(labels)["key"] for labels in final["ratchet_position_r"]}
    assert keys == set(expected.opened)


def test_step_round_trip_and_unprotected_histograms(served):
    """Step seconds and order round trips as the loop measures them (a second answer and an
    unknown order change nothing); unprotected windows from operation.done records."""
    metrics, url = served
    for seconds in (0.00002, 0.0003, 0.002):
        metrics.step_seconds(seconds)
    metrics.order_sent("rt-AAA-1-1-stop", 100.0)
    metrics.order_answered("rt-AAA-1-1-stop", 100.25)
    metrics.order_answered("rt-AAA-1-1-stop", 101.0)  # the fill, later: not a round trip
    metrics.order_answered("rt-unknown", 100.5)
    metrics.order_sent("rt-AAA-1-1-stop", 102.0, request="cancel")
    metrics.order_answered("rt-AAA-1-1-stop", 102.03, request="cancel")
    for ms in ("0", "12.5", "2000"):
        metrics.observe(Record("operation.done", T0, {"key": "AAA-1", "unprotected_ms": ms}))
    s = scrape(url)
    assert one(s, "ratchet_engine_step_seconds_count") == 3
    assert one(s, "ratchet_engine_step_seconds_sum") == pytest.approx(0.00232)
    step = by(s, "ratchet_engine_step_seconds_bucket", "le")
    assert (step["2.5e-05"], step["0.0005"], step["0.0025"], step["+Inf"]) == (1, 2, 3, 3)
    trips = by(s, "ratchet_order_round_trip_seconds_count", "request")
    assert trips == {"submit": 1, "cancel": 1}
    sums = by(s, "ratchet_order_round_trip_seconds_sum", "request")
    assert sums["submit"] == pytest.approx(0.25) and sums["cancel"] == pytest.approx(0.03)
    window = by(s, "ratchet_unprotected_window_seconds_bucket", "le")
    assert (window["0.0"], window["0.05"], window["2.0"], window["+Inf"]) == (1, 2, 3, 3)
    assert one(s, "ratchet_unprotected_window_seconds_sum") == pytest.approx(2.0125)


def test_the_heartbeat_age_and_the_totals_of_the_state():
    """The heartbeat age grows on the loop's clock from the last update; the link, breaker,
    phase and goal series say the state's values."""
    clock = [1000.0]
    metrics = Metrics(clock=lambda: clock[0])
    host, port = metrics.serve("127.0.0.1", 0)
    url = f"http://{host}:{port}/metrics"
    try:
        config = Config(goal=GoalConfig(target=Decimal(500), giveback=Decimal("0.30")))
        metrics.update(EngineState.empty(config), T0)
        clock[0] += 3.5
        s = scrape(url)
    finally:
        metrics.close()
    assert one(s, "ratchet_heartbeat_age_seconds") == 3.5
    assert one(s, "ratchet_engine_time_seconds") == T0.timestamp()
    assert by(s, "ratchet_link_mode", "mode") == {"normal": 1, "offline": 0, "recovery": 0}
    assert by(s, "ratchet_breaker_state", "state") == {"closed": 1, "open": 0, "half_open": 0}
    phases = by(s, "ratchet_phase", "phase")
    assert sorted(v for v in phases.values()) == [0, 0, 0, 1] and phases["experience"] == 1
    assert one(s, "ratchet_goal_target") == 500 and one(s, "ratchet_goal_giveback") == 0.3
    assert one(s, "ratchet_daily_pnl") == 0 and one(s, "ratchet_goal_triggered") == 0
    assert "ratchet_position_r" not in s  # nothing open: no per-position series at all


def test_alert_dispatcher_counters_are_exported(tmp_path):
    """A real dispatcher delivering to a webhook on 127.0.0.1: delivered and suppressed per
    sink and reason, and the lines written to alerts.jsonl, as the dispatcher counted them."""
    hook = HTTPReceiver()
    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 0)
    settings = AlertSettings(webhook=WebhookSink(Secret(hook.url("/h"))), retry_delays=(0.01,))
    dispatcher = AlertDispatcher(settings, tmp_path)
    try:
        metrics.attach_alerts(dispatcher)
        for _ in range(3):  # one delivery, two duplicates
            dispatcher.submit(Alert(T0, "order_rejected", {"symbol": "AAA", "key": "AAA-1"}))
        dispatcher.submit(Alert(T0, "stale_price", {"symbol": "BBB"}))
        assert dispatcher.flush(timeout=30)
        s = scrape(f"http://{host}:{port}/metrics")
    finally:
        dispatcher.close(timeout=5)
        metrics.close()
        hook.close()
    deliveries = {
        (d["sink"], d["reason"], d["outcome"]): v
        for labels, v in s["ratchet_alert_deliveries_total"].items()
        for d in [dict(labels)]
    }
    assert deliveries == {
        ("webhook", "order_rejected", "delivered"): 1,
        ("webhook", "order_rejected", "suppressed"): 2,
        ("webhook", "stale_price", "delivered"): 1,
    }
    assert len(hook.bodies()) == 2
    assert one(s, "ratchet_alert_file_lines_total") == dispatcher.lines == 4
    assert one(s, "ratchet_alert_file_errors_total") == 0
    assert by(s, "ratchet_alert_pending", "sink") == {"webhook": 0, "file": 0}


def test_store_writer_counters_with_the_database_away(tmp_path):
    """A real store writer whose database does not answer: its failed attempts, the records
    it holds and that it is not connected, as the writer counted them."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    writer = StoreWriter(StoreSettings(url=Secret(url), batch_size=10), max_backoff=0.05)
    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        metrics.attach_store(writer)
        for line in range(1, 6):
            record = Record("stop.moved", T0, {"symbol": "AAA", "key": "AAA-1", "old": "1",
                                               "new": "2", "r": "1", "reason": "x"})  # fmt: skip
            writer.submit(record, str(tmp_path / "j.jsonl"), line)
        deadline = time.monotonic() + 30
        while writer.errors < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        s = scrape(f"http://{host}:{port}/metrics")
        errors_after = writer.errors
    finally:
        writer.close(timeout=0.2)
        metrics.close()
    assert 2 <= one(s, "ratchet_store_errors_total") <= errors_after
    assert one(s, "ratchet_store_buffered") == 5
    assert one(s, "ratchet_store_connected") == 0
    assert one(s, "ratchet_store_behind") == 0 and one(s, "ratchet_store_dropped_total") == 0
    assert "ratchet_store_written_total" not in s  # nothing written yet, in no table


@pytest.fixture
def pg_schema() -> Iterator[str]:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        pytest.skip(
            f"PostgreSQL not reachable at {describe_url(Secret(PG_URL))} "
            "(set RATCHET_TEST_PG_URL to a server's URL)"
        )
    name = f"ratchet_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_store_writer_counters_after_writing(tmp_path, pg_schema):
    """A real store writer on the local PostgreSQL: rows written per table, connected."""
    writer = StoreWriter(StoreSettings(url=Secret(PG_URL), schema=pg_schema))
    metrics = Metrics()
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        metrics.attach_store(writer)
        journal = str(tmp_path / "j.jsonl")
        moved = {"symbol": "AAA", "key": "AAA-1", "old": "1", "new": "2", "r": "1", "reason": "x"}
        for line in range(1, 4):
            writer.submit(Record("stop.moved", T0, moved), journal, line)
        writer.submit(Alert(T0, "stale_price", {"symbol": "AAA"}), journal, 4)
        assert writer.flush(timeout=60)
        s = scrape(f"http://{host}:{port}/metrics")
    finally:
        writer.close(timeout=5)
        metrics.close()
    assert by(s, "ratchet_store_written_total", "table") == {"stop_loss_history": 3, "alerts": 1}
    assert one(s, "ratchet_store_connected") == 1 and one(s, "ratchet_store_errors_total") == 0


def test_the_exporter_keeps_to_its_own_registry_and_port():
    """Two exporters live side by side, nothing lands in prometheus_client's global registry,
    a taken port is one line naming it, and a closed exporter stops answering."""
    first, second = Metrics(), Metrics()
    host, port = first.serve("127.0.0.1", 0)
    try:
        first.observe(Record("stop.moved", T0, {}))
        assert prometheus_client.REGISTRY.get_sample_value("ratchet_stop_moves_total") is None
        assert second.registry.get_sample_value("ratchet_stop_moves_total") == 0
        assert first.registry.get_sample_value("ratchet_stop_moves_total") == 1
        with pytest.raises(UserError, match=rf"^metrics: cannot listen on 127\.0\.0\.1:{port}: "):
            second.serve("127.0.0.1", port)
        assert one(scrape(f"http://{host}:{port}/metrics"), "ratchet_stop_moves_total") == 1
    finally:
        first.close()
        second.close()
    with pytest.raises(urllib.error.URLError):
        scrape(f"http://{host}:{port}/metrics")


def test_simulate_serves_metrics_while_it_runs_and_holds(tmp_path):
    """`ratchet simulate --metrics-port 0 --metrics-hold`: the endpoint it prints answers; after
    the replay the positions still open are there and the closed ones are not, the counters
    equal the journal's records; Ctrl-C ends the hold with exit status 0."""
    events = tmp_path / "session.jsonl"
    events.write_text(
        "".join(json.dumps(event_to_json(e)) + "\n" for e in portfolio.events()), encoding="utf-8"
    )
    journal = tmp_path / "journal.jsonl"
    ratchet = Path(sys.executable).with_name("ratchet")
    proc = subprocess.Popen(
        [str(ratchet), "simulate", str(events), "--journal", str(journal),
         "--metrics-port", "0", "--metrics-hold", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = ""
        for line in proc.stderr:
            if line.startswith("metrics: serving http://"):
                url = line.split()[-1]
            if line.startswith("metrics: serving 120 s more"):
                break
        assert url, "no metrics address printed"
        s = scrape(url)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    kinds = Counter(r["kind"] for r in records)
    opened = {r["key"] for r in records if r["kind"] == "position.opened"}
    closed = {r["key"] for r in records if r["kind"] == "position.closed"}
    assert closed and opened - closed == {f"{symbol}-1" for symbol in portfolio.STAYS_OPEN}
    assert {dict(labels)["key"] for labels in s["ratchet_position_r"]} == opened - closed
    assert one(s, "ratchet_stop_moves_total") == kinds["stop.moved"]
    assert one(s, "ratchet_partial_fills_total") == kinds["partial.filled"]
    assert by(s, "ratchet_records_total", "kind") == {
        k: n for k, n in kinds.items() if k != "alert"
    }
    assert sum(by(s, "ratchet_positions", "state").values()) == len(opened - closed)


def test_the_per_position_series_are_made_on_scrape(served):
    """update keeps the state; a position opened after a first scrape shows up in the next,
    and the series of a state replaced by one without it are gone."""
    metrics, url = served
    steps: list[EngineState] = []

    def on_step(event: Event, before: EngineState, t: Transition) -> None:
        steps.append(t.state)

    run_simulation(portfolio.events(), EngineState.empty(Config()), None, None, on_step)
    busiest = max(steps, key=lambda st: len(st.positions))
    metrics.update(busiest, T0 + timedelta(minutes=1))
    assert {dict(k)["key"] for k in scrape(url)["ratchet_position_r"]} == set(busiest.positions)
    metrics.update(EngineState.empty(), T0 + timedelta(minutes=2))
    assert "ratchet_position_r" not in scrape(url)


def test_simulate_refuses_a_taken_port_and_a_hold_without_a_port():
    """A port something else listens on: exit 1 with one line naming it; --metrics-hold
    without --metrics-port: a usage error."""
    sample = str(Path(__file__).resolve().parents[2] / "samples" / "synthetic.jsonl")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["simulate", sample, "--metrics-port", str(port)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: metrics: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    result = CliRunner().invoke(main, ["simulate", sample, "--metrics-hold", "5"])
    assert result.exit_code == 2 and "--metrics-hold needs --metrics-port" in result.output


def test_run_serves_each_open_positions_r_and_state_and_totals_as_the_journal_says(tmp_path):
    """`ratchet run --broker paper --metrics-port 0` at a speed that keeps positions open for a
    while: a scrape finds exactly the journal's open positions, each with its R and its last
    protection state, and the counters equal the journal's records at that moment."""
    state = tmp_path / "s"
    ratchet = Path(sys.executable).with_name("ratchet")
    proc = subprocess.Popen(
        [str(ratchet), "run", "--broker", "paper", "--speed", "20", "--metrics-port", "0",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    matched = None
    try:
        assert proc.stderr is not None
        url = next(line.split()[-1] for line in proc.stderr
                   if line.startswith("metrics: serving http://"))  # fmt: skip
        deadline = time.monotonic() + 60
        while matched is None and time.monotonic() < deadline:
            s = scrape(url)
            records = [line.data for path in StateDir(state).journal_files()
                       for line in read_journal(path) if "kind" in line.data
                       and line.data["kind"] not in ("event", "checkpoint")]  # fmt: skip
            opened = {r["key"] for r in records if r["kind"] == "position.opened"}
            closed = {r["key"] for r in records if r["kind"] == "position.closed"}
            keys = {dict(labels)["key"] for labels in s.get("ratchet_position_r", {})}
            moves = sum(1 for r in records if r["kind"] == "stop.moved")
            if keys and keys == opened - closed and one(s, "ratchet_stop_moves_total") == moves:
                matched = (s, records, keys)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert matched is not None, "no scrape matched the journal's open positions"
    s, records, keys = matched
    last_state = {}
    for r in records:
        if r["kind"] == "position.state":
            last_state[r["key"]] = r["new"]
    for labels in s["ratchet_position_state"]:
        label = dict(labels)
        assert label["state"] == last_state.get(label["key"], "INITIAL_RISK"), label
    assert {dict(labels)["key"] for labels in s["ratchet_position_state"]} == keys
    assert all(isinstance(v, float) for v in s["ratchet_position_r"].values())
