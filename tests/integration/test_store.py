"""The PostgreSQL store against a real server (RATCHET_TEST_PG_URL, default the local test
database): backfill of a real simulate journal checked by SQL, idempotence, the writer
catching up after the database went away (a proxy taken down, a backend terminated), a dead
database never holding up submit, and the versioned schema under two concurrent starters."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine import Alert, Command, Config, EngineState, Record
from shell.broker.simulated import Faults, SimulatedBroker
from shell.cli import main
from shell.codec import command_to_json, format_ts, parse_ts, read_events
from shell.config import StoreSettings
from shell.secret import Secret
from shell.simulate import run_simulation
from shell.store import SCHEMA_VERSION, TABLES, StoreWriter, describe_url, migrate
from tests.receivers import Proxy, free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "synthetic.jsonl"
PG_URL = os.environ.get("RATCHET_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

# Each table's columns and the journal field each one holds (checked by hand, not by the code).
FIELDS = {
    "position_states": ("position.state", {"symbol": "symbol", "key": "key", "old_state": "old",
                        "new_state": "new", "reason": "reason", "r": "r"}),
    "partial_profits": ("partial.filled", {"symbol": "symbol", "key": "key",
                        "milestone": "milestone", "qty": "qty", "price": "price", "r": "r",
                        "profit": "profit"}),
    "stop_loss_history": ("stop.moved", {"symbol": "symbol", "key": "key", "old_stop": "old",
                          "new_stop": "new", "r": "r", "reason": "reason"}),
    "trades": ("trade.closed", {"symbol": "symbol", "key": "key", "side": "side", "qty": "qty",
               "entry_price": "entry", "exit_price": "exit", "opened": "opened",
               "closed": "closed", "pnl": "pnl", "r": "r", "risk": "risk",
               "risk_per_share": "risk_per_share", "reason": "reason"}),
}  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> str:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        pytest.skip(
            f"PostgreSQL not reachable at {describe_url(Secret(PG_URL))} "
            "(set RATCHET_TEST_PG_URL to a server's URL)"
        )
    return PG_URL


@pytest.fixture
def schema(pg: str) -> Iterator[str]:
    name = f"ratchet_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _run(*args: object, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def _config(tmp_path: Path, schema: str) -> Path:
    path = tmp_path / "ratchet.toml"
    path.write_text(f'[store]\nschema = "{schema}"\nbatch_size = 16\n')
    return path


def _journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    return value


def _rows(pg: str, schema: str, table: str) -> list[dict[str, object]]:
    with psycopg.connect(pg) as conn:
        cursor = conn.execute(
            sql.SQL("SELECT * FROM {}.{} ORDER BY source, line").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        names = [d.name for d in cursor.description or ()]
        return [dict(zip(names, map(_plain, row), strict=True)) for row in cursor]


def _expected(journal: Path, table: str) -> list[dict[str, object]]:
    """The table's rows as the journal says they must be: every record of its kind, each
    field as the journal wrote it (decimals exact, as strings)."""
    kind, fields = FIELDS[table]
    return [
        {"source": str(journal.resolve()), "line": n, "ts": record["ts"],
         **{column: record.get(field) for column, field in fields.items()}}
        for n, record in enumerate(_journal(journal), start=1)
        if record["kind"] == kind
    ]  # fmt: skip


def _expected_alerts(journal: Path) -> list[tuple[int, str, object]]:
    return [(n, r["reason"], r["context"]) for n, r in enumerate(_journal(journal), start=1)
            if r["kind"] == "alert"]  # fmt: skip


def _alerts(pg: str, schema: str) -> list[tuple[int, str, object]]:
    return [
        (int(str(r["line"])), str(r["reason"]), r["context"]) for r in _rows(pg, schema, "alerts")
    ]


def _assert_complete(pg: str, schema: str, journal: Path) -> None:
    for table in FIELDS:
        assert _rows(pg, schema, table) == _expected(journal, table), table
    assert _alerts(pg, schema) == _expected_alerts(journal)


def test_backfill_of_a_simulate_journal_holds_exactly_its_records(tmp_path, pg, schema):
    """`ratchet simulate --journal` then `ratchet store backfill`: the tables hold exactly the
    journal's trades, partial fills, stop moves and state changes, decimals exact."""
    journal = tmp_path / "session.jsonl"
    assert _run("simulate", SAMPLE, "--journal", journal).exit_code == 0
    result = _run("store", "backfill", journal, "--config", _config(tmp_path, schema),
                  env={"RATCHET_STORE_URL": pg})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"store: 1 journal(s) loaded into schema {schema}",
        "  position_states         13 new       0 already stored",
        "  partial_profits          8 new       0 already stored",
        "  stop_loss_history       16 new       0 already stored",
        "  trades                   6 new       0 already stored",
        "  alerts                   0 new       0 already stored",
    ]
    _assert_complete(pg, schema, journal)
    trades = _rows(pg, schema, "trades")
    assert [(t["key"], t["pnl"], t["r"]) for t in trades][:2] == [
        ("SYNA-1", "137.25", "2.745"),
        ("SYNB-1", "127.20", "1.472222222222222222222222222"),
    ]


def test_simulate_loads_its_journal_and_backfill_twice_changes_nothing(tmp_path, pg, schema):
    """simulate with a [store] loads its journal (with alerts); backfilling the same journal
    again, twice, adds nothing and changes no row."""
    journal = tmp_path / "faulty.jsonl"
    config = _config(tmp_path, schema)
    env = {"RATCHET_STORE_URL": pg}
    result = _run("simulate", SAMPLE, "--faults", "permanent=1", "--journal", journal,
                  "--config", config, env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    alerts = sum(
        1 for line in journal.read_text().splitlines() if json.loads(line)["kind"] == "alert"
    )
    assert alerts > 0
    assert re.search(rf"^  alerts +{alerts} new +0 already stored$", result.output, re.M)
    before = {table: _rows(pg, schema, table) for table in TABLES}
    for _ in range(2):
        again = _run("store", "backfill", journal, "--config", config, env=env)
        assert again.exit_code == 0
        counts = [line.split() for line in again.output.splitlines()[1:]]
        assert all(c[1] == "0" for c in counts), again.output
        assert {c[0]: int(c[3]) for c in counts} == {t: len(before[t]) for t in TABLES}
    assert {table: _rows(pg, schema, table) for table in TABLES} == before
    _assert_complete(pg, schema, journal)


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _live(journal: Path, writer: StoreWriter, at: dict[int, Callable[[], None]]) -> int:
    """Run the sample through the engine as the live loop would: each record is appended and
    flushed to the journal, then handed to the writer; `at[n]` runs after the n-th line."""
    line = 0
    with journal.open("w", encoding="utf-8") as fh:

        def sink(command: Command) -> None:
            nonlocal line
            if not isinstance(command, Record | Alert):
                return
            fh.write(json.dumps(command_to_json(command), separators=(",", ":")) + "\n")
            fh.flush()
            line += 1
            writer.submit(command, str(journal), line)
            if line in at:
                at[line]()

        broker = SimulatedBroker(faults=Faults.parse("permanent=0.5,seed=3"))
        run_simulation(read_events(SAMPLE), EngineState.empty(Config()), broker, sink)
    return line


def test_the_writer_catches_up_after_the_database_went_away(tmp_path, pg, schema):
    """Mid-session the database goes away (every connection cut, new ones refused): submit
    keeps returning, the small buffer overflows, and once the database is back the writer
    writes its buffer and reads the rest back from the journal: the tables are complete."""
    params = conninfo_to_dict(pg)
    if str(params.get("host", "/")).startswith("/"):
        pytest.skip("RATCHET_TEST_PG_URL names a Unix socket; this test needs TCP")
    proxy = Proxy((str(params["host"]), int(params.get("port") or 5432)))
    url = make_conninfo(pg, host="127.0.0.1", port=str(proxy.port))
    settings = StoreSettings(url=Secret(url), schema=schema, batch_size=4, buffer=4)
    writer = StoreWriter(settings, max_backoff=0.05)
    journal = tmp_path / "live.jsonl"
    try:

        def database_stops() -> None:
            assert writer.flush(timeout=30)
            proxy.down()

        lines = _live(journal, writer, {20: database_stops})
        assert lines > 100
        assert _wait(lambda: writer.errors >= 1)
        assert writer.dropped > 0 and journal.resolve().as_posix() in writer.behind
        assert not writer.flush(timeout=0.2)
        proxy.up()
        assert writer.flush(timeout=60)
    finally:
        writer.close(timeout=5)
        proxy.close()
    assert writer.caught_up > 0
    assert writer.written.total() == sum(1 for r in _journal(journal) if r["kind"] in
                                         ("position.state", "partial.filled", "stop.moved",
                                          "trade.closed", "alert"))  # fmt: skip
    _assert_complete(pg, schema, journal)


def test_the_writer_reconnects_after_its_backend_is_terminated(tmp_path, pg, schema):
    """The server ends the writer's session (pg_terminate_backend) mid-stream: the writer
    reconnects and the tables end up complete."""
    name = f"ratchet-test-{uuid.uuid4().hex[:8]}"
    settings = StoreSettings(url=Secret(pg), schema=schema, batch_size=8)
    writer = StoreWriter(settings, application_name=name, max_backoff=0.05)
    journal = tmp_path / "live.jsonl"
    killed: list[bool] = []

    def terminate() -> None:
        assert writer.flush(timeout=30)
        with psycopg.connect(pg, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchall()
        killed.extend(bool(r[0]) for r in rows)

    try:
        _live(journal, writer, {40: terminate})
        assert writer.flush(timeout=60)
    finally:
        writer.close(timeout=5)
    assert killed == [True]
    assert writer.errors >= 1
    _assert_complete(pg, schema, journal)


def test_records_written_live_and_backfilled_later_are_stored_once(
    tmp_path, pg, schema, monkeypatch
):
    """The live writer given the journal's path through a symlinked directory, then a backfill
    of the same journal by a relative path: nothing new, nothing twice."""
    real = tmp_path / "state"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    writer = StoreWriter(StoreSettings(url=Secret(pg), schema=schema))
    try:
        _live(tmp_path / "link" / "live.jsonl", writer, {})
        assert writer.flush(timeout=60)
    finally:
        writer.close(timeout=5)
    monkeypatch.chdir(real)
    result = _run("store", "backfill", "live.jsonl", "--config", _config(tmp_path, schema),
                  env={"RATCHET_STORE_URL": pg})  # fmt: skip
    counts = [line.split() for line in result.output.splitlines()[1:]]
    assert all(c[1] == "0" and int(c[3]) > 0 for c in counts), result.output
    _assert_complete(pg, schema, real / "live.jsonl")


def test_a_dead_database_never_holds_up_submit(tmp_path, caplog):
    """Nothing listens at the store's port: 1,000 submits all return; the buffer keeps what it
    can hold and the rest is remembered as a journal position; no password is ever logged."""
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://postgres:pw-SeCrEt-42@127.0.0.1:{free_port()}/test"
    settings = StoreSettings(url=Secret(url), batch_size=10, buffer=100)
    writer = StoreWriter(settings, max_backoff=0.05)
    journal = tmp_path / "live.jsonl"
    ts = parse_ts("2024-03-04T14:30:00Z")
    for n in range(1, 1001):
        record = Record("stop.moved", ts, {"symbol": "SPY", "key": "SPY-1", "old": "1", "new": "2"})
        writer.submit(record, str(journal), n)
    assert 100 <= writer.buffered <= 110
    assert writer.buffered + writer.dropped == 1000
    [(source, first)] = writer.behind.items()
    assert source == str(journal) and 101 <= first <= 111
    assert _wait(lambda: writer.errors >= 2)
    assert writer.close(timeout=0.2) is False
    assert "ratchet store backfill" in caplog.text
    assert "127.0.0.1" in caplog.text
    assert "pw-SeCrEt-42" not in caplog.text


def test_two_starters_apply_each_migration_once(pg, schema):
    """Two processes creating the schema at the same instant: one applies the migrations, the
    other finds them applied; the version table lists each once; running again is a no-op."""
    barrier = threading.Barrier(2)
    found: list[int] = []

    def start() -> None:
        with psycopg.connect(pg, autocommit=True) as conn:
            barrier.wait()
            found.append(migrate(conn, schema))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(found) == [0, SCHEMA_VERSION]
    with psycopg.connect(pg, autocommit=True) as conn:
        versions = conn.execute(
            sql.SQL("SELECT version FROM {}.ratchet_schema_version ORDER BY version").format(
                sql.Identifier(schema)
            )
        ).fetchall()
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
        assert migrate(conn, schema) == SCHEMA_VERSION


def test_the_tables_have_the_columns_the_writer_fills(pg, schema):
    """After the migrations each table has exactly the columns, in order and type, that the
    writer inserts."""
    names = {"text": "text", "bigint": "bigint", "timestamptz": "timestamp with time zone",
             "numeric": "numeric", "jsonb": "jsonb"}  # fmt: skip
    with psycopg.connect(pg, autocommit=True) as conn:
        migrate(conn, schema)
        for table in TABLES.values():
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table.name),
            ).fetchall()
            assert columns == [(n, names[t]) for n, t in table.columns], table.name


def test_backfill_reports_bad_lines_and_loads_the_rest(tmp_path, pg, schema):
    """A journal line that is not a valid record is named FILE:LINE and skipped."""
    journal = tmp_path / "j.jsonl"
    journal.write_text(
        '{"kind":"stop.moved","ts":"2024-03-04T14:30:00Z","symbol":"A","key":"A-1",'
        '"old":"1","new":"2","r":"1","reason":"x"}\n'
        '{"kind":"stop.moved","ts":"2024-03-04T14:30:01Z","symbol":"A","old":"one"}\n'
        "not json\n"
    )
    result = _run("store", "backfill", journal, "--config", _config(tmp_path, schema),
                  env={"RATCHET_STORE_URL": pg})  # fmt: skip
    assert result.exit_code == 0
    assert f"skipped {journal}:2: old is not a decimal: 'one'" in result.output
    assert f"skipped {journal}:3: " in result.output
    assert "  stop_loss_history        1 new       0 already stored" in result.output


def test_backfill_without_a_reachable_store_is_one_line(tmp_path):
    """No store configured, or one that does not answer: exit 1 with one line, no traceback,
    no password."""
    journal = tmp_path / "j.jsonl"
    journal.write_text("")
    result = _run("store", "backfill", journal, env={"RATCHET_STORE_URL": ""})
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: no store configured: set [store] url in --config FILE, or RATCHET_STORE_URL"
    )
    port = free_port()
    url = f"postgresql://postgres:pw-SeCrEt-42@127.0.0.1:{port}/test"
    result = _run("store", "backfill", journal, env={"RATCHET_STORE_URL": url})
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: store: cannot connect to 127.0.0.1:{port}/test: ")
    assert "pw-SeCrEt-42" not in result.output


def _run_tables_match_the_journal(pg: str, schema: str, state: Path) -> Path:
    [journal] = sorted((state / "journal").glob("*.jsonl"))
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    for table, (kind, fields) in FIELDS.items():
        expected = [
            {"source": str(journal.resolve()), "line": n, "ts": record["ts"],
             **{column: record.get(field) for column, field in fields.items()}}
            for n, record in enumerate(lines, start=1) if record.get("kind") == kind
        ]  # fmt: skip
        assert expected, table
        assert _rows(pg, schema, table) == expected, table
    return journal


def test_a_paper_run_writes_its_records_to_the_store_as_its_journal_holds_them(tmp_path, pg,
                                                                              schema):  # fmt: skip
    """`ratchet run` with a [store]: while it runs, the tables receive every trade, partial
    fill, stop move and state change of the journal, keyed by the journal's file and line
    (so backfilling the live journal afterwards finds every row already stored)."""
    config = _config(tmp_path, schema)
    env = {"RATCHET_STORE_URL": pg}
    state = tmp_path / "state"
    ran = _run("run", "--state-dir", state, "--config", config, env=env)
    assert ran.exit_code == 0, ran.output
    journal = _run_tables_match_the_journal(pg, schema, state)
    again = _run("store", "backfill", journal, "--config", config, env=env)
    assert again.exit_code == 0, again.output
    assert "  trades                   0 new       6 already stored" in again.output


def test_a_run_whose_database_stops_and_comes_back_mid_session_stores_everything(
    tmp_path, pg, schema
):
    """The database stops (connections cut, new ones refused) a few seconds into a paper run
    at 200x and comes back later: protection goes on, and once it is back the writer catches
    up from its buffer and the journal: the tables hold exactly the journal's records."""
    params = conninfo_to_dict(pg)
    if str(params.get("host", "/")).startswith("/"):
        pytest.skip("RATCHET_TEST_PG_URL names a Unix socket; this test needs TCP")
    proxy = Proxy((str(params["host"]), int(params.get("port") or 5432)))
    url = make_conninfo(pg, host="127.0.0.1", port=str(proxy.port))
    config = tmp_path / "ratchet.toml"
    config.write_text(f'[store]\nschema = "{schema}"\nbatch_size = 4\nbuffer = 4\n')
    state = tmp_path / "state"
    down = threading.Timer(4.0, proxy.down)
    up = threading.Timer(10.0, proxy.up)
    try:
        down.start()
        up.start()
        ran = _run("run", "--speed", "200", "--state-dir", state, "--config", config,
                   env={"RATCHET_STORE_URL": url})  # fmt: skip
    finally:
        down.cancel()
        up.cancel()
        proxy.close()
    assert ran.exit_code == 0, ran.output
    assert "6 closed" in ran.output  # the run went on while the database was away
    _run_tables_match_the_journal(pg, schema, state)
