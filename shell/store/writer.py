"""Writing records into PostgreSQL: in batches, idempotently, beside the engine loop.

The journal stays the source of truth. A dead database never blocks or fails the caller:
`StoreWriter.submit` only queues; the writer thread retries with backoff while records wait
in a bounded buffer, and when the buffer is full it remembers the journal position instead
and reads the rest back from the journal once the database answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from attrs import frozen
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from engine import Alert, Command, Record
from shell.background import Worker
from shell.codec import BadLine, command_to_json
from shell.config import StoreSettings
from shell.secret import Secret, redact
from shell.store.rows import KIND_TABLE, TABLES, Row, journal_source, read_rows, row_of
from shell.store.schema import SchemaTooNew, migrate

__all__ = [
    "Loaded",
    "StoreUnavailable",
    "StoreWriter",
    "backfill",
    "connect",
    "describe_url",
    "insert",
]

_log = logging.getLogger("ratchet.store")


class StoreUnavailable(Exception):
    """The database cannot be reached or refuses the schema; the message is safe to show."""


def describe_url(url: Secret) -> str:
    """`host:port/database` of a connection URL: what messages may show (never a password)."""
    try:
        params = conninfo_to_dict(url.reveal())
    except psycopg.Error:
        return "the configured database"
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user', '')}"


def connect(url: Secret, *, application_name: str = "ratchet") -> psycopg.Connection[Any]:
    """An autocommit connection that notices a vanished server within about a minute."""
    return psycopg.connect(
        url.reveal(),
        autocommit=True,
        connect_timeout=5,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )


def _short(exc: BaseException, url: Secret) -> str:
    """The first line of a database error, without any part of the URL's secrets."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(text, [url])


_INSERTS: dict[str, sql.Composed] = {}


def _insert_sql(schema: str, table: str) -> sql.Composed:
    key = f"{schema}.{table}"
    found = _INSERTS.get(key)
    if found is None:
        columns = TABLES[table].columns
        found = sql.SQL(
            "INSERT INTO {}.{} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING"
        ).format(
            sql.Identifier(schema),
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns),
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(kind)) for _, kind in columns),
        )
        _INSERTS[key] = found
    return found


def insert(
    conn: psycopg.Connection[Any], schema: str, rows: dict[str, list[Row]]
) -> dict[str, int]:
    """Insert rows (by table) in one transaction; the number new in each table (the rest were
    there already: same journal, same line)."""
    new: dict[str, int] = {}
    with conn.transaction():
        for table, batch in rows.items():
            if not batch:
                continue
            columns = [list(c) for c in zip(*batch, strict=True)]
            if table == "alerts":
                columns[-1] = [Jsonb(c) for c in columns[-1]]
            cursor = conn.execute(_insert_sql(schema, table), columns)
            new[table] = max(cursor.rowcount, 0)
    return new


# (command, journal, line); a None command is a marker that makes the thread look at its gaps.
_Item = tuple[Command | None, str, int]
_MARK: _Item = (None, "", 0)


class StoreWriter:
    """Writes the store's records (position states, partial fills, stop moves, closed trades,
    alerts) to PostgreSQL, keyed by (journal, line).

    `submit(command, source, line)` must come after the record's line was written and flushed
    to the journal file `source` (SPEC §6b's write-ahead): that file is what the writer reads
    back when its buffer overflowed. Counters for a metrics exporter: `written` and
    `duplicates` by table, `rejected` (records the database or the mapping refused),
    `errors` (failed attempts), `dropped` (records not buffered, to be read back from the
    journal), `caught_up` (records read back), `connected`.
    """

    def __init__(
        self,
        settings: StoreSettings,
        *,
        application_name: str = "ratchet",
        max_backoff: float = 10.0,
    ) -> None:
        if settings.url is None:
            raise ValueError("no store configured")
        self.settings = settings
        self.url: Secret = settings.url
        self.where = describe_url(settings.url)
        self.application_name = application_name
        self.max_backoff = max_backoff
        self.written: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.rejected = 0
        self.errors = 0
        self.dropped = 0
        self.caught_up = 0
        self.lost = 0  # records given up at shutdown with the database still away
        self.connected = False
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._gaps: dict[str, int] = {}  # journal -> first line not buffered
        self._sources: dict[str, str] = {}
        self._failures = 0
        self._worker: Worker[_Item] = Worker(
            "ratchet-store", self._handle, capacity=settings.buffer, batch=settings.batch_size
        )

    def submit(self, command: Command, source: str, line: int) -> None:
        """Queue a record for the store (other commands are ignored). Never blocks, never
        raises for the database's sake."""
        if isinstance(command, Record):
            if command.kind not in KIND_TABLE:
                return
        elif not isinstance(command, Alert):
            return
        with self._lock:
            if source in self._gaps:
                self.dropped += 1
                return
            if not self._worker.put((command, source, line)):
                self._gaps[source] = line
                self.dropped += 1
                _log.warning(
                    "store: buffer full (%d records); %s from line %d on will be read back from "
                    "the journal when %s answers",
                    self.settings.buffer,
                    source,
                    line,
                    self.where,
                )

    @property
    def buffered(self) -> int:
        """Records waiting in memory."""
        return self._worker.pending

    @property
    def behind(self) -> dict[str, int]:
        """Journals with records still to be read back: path -> first line."""
        with self._lock:
            return dict(self._gaps)

    def flush(self, timeout: float) -> bool:
        """Wait until every record submitted so far is in the database (read back from the
        journal if need be); False on timeout."""
        self._worker.put(_MARK, force=True)
        return self._worker.flush(timeout) and not self.behind

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is buffered within `timeout` seconds, then stop. False, with a warning
        saying what to backfill, when records are left out of the database."""
        self._worker.put(_MARK, force=True)
        done = self._worker.close(timeout) and not self.behind
        if not done:
            lost = self._worker.abandoned + self.lost
            journals = sorted(self.behind)
            _log.warning(
                "store: %s not complete at shutdown (%d buffered records not written%s); the "
                "journal has them: run `ratchet store backfill JOURNAL...`",
                self.where,
                lost,
                f"; behind in {', '.join(journals)}" if journals else "",
            )
        if self._conn is not None and not self._worker.alive:
            self._conn.close()
            self._conn = None
        return done

    # the thread ---------------------------------------------------------------------------

    def _source(self, given: str) -> str:
        found = self._sources.get(given)
        if found is None:
            found = self._sources[given] = journal_source(given)
        return found

    def _rows(self, items: Iterable[_Item]) -> dict[str, list[Row]]:
        rows: dict[str, list[Row]] = {}
        for command, given, line in items:
            if command is None:
                continue
            source = self._source(given)
            try:
                found = row_of(command_to_json(command), source, line)
            except ValueError as exc:
                self.rejected += 1
                _log.error("store: %s:%d: not stored: %s", source, line, exc)
                continue
            if found is not None:
                rows.setdefault(found[0], []).append(found[1])
        return rows

    def _handle(self, items: list[_Item]) -> None:
        rows = self._rows(items)
        abandon = self._worker.abandon
        while True:
            if abandon.is_set():
                self.lost += sum(len(b) for b in rows.values())
                return
            try:
                conn = self._connection()
                self._write(conn, rows)
                self._catch_up(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError, StoreUnavailable) as exc:
                self._lost(exc)
                abandon.wait(min(self.max_backoff, 0.5 * 2 ** min(self._failures - 1, 10)))
                continue
            if self._failures:
                _log.warning(
                    "store: %s answers again after %d failed attempt(s)", self.where, self._failures
                )
                self._failures = 0
            return

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = connect(self.url, application_name=self.application_name)
        except psycopg.Error as exc:
            raise StoreUnavailable(_short(exc, self.url)) from None
        try:
            migrate(conn, self.settings.schema)
        except Exception as exc:
            conn.close()
            raise StoreUnavailable(
                f"schema {self.settings.schema}: {_short(exc, self.url)}"
            ) from None
        self._conn = conn
        self.connected = True
        return conn

    def _lost(self, exc: BaseException) -> None:
        self.errors += 1
        self._failures += 1
        self.connected = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        _log.log(
            level,
            "store: %s unreachable (%s); %d records buffered, retrying",
            self.where,
            _short(exc, self.url),
            self.buffered,
        )

    def _write(self, conn: psycopg.Connection[Any], rows: dict[str, list[Row]]) -> None:
        if not any(rows.values()):
            return
        try:
            new = insert(conn, self.settings.schema, rows)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error:
            new = self._one_by_one(conn, rows)
        for table, batch in rows.items():
            self.written[table] += new.get(table, 0)
            self.duplicates[table] += len(batch) - new.get(table, 0)

    def _one_by_one(
        self, conn: psycopg.Connection[Any], rows: dict[str, list[Row]]
    ) -> dict[str, int]:
        """A batch the database refused: each row alone, so one bad row costs only itself."""
        new: Counter[str] = Counter()
        for table, batch in rows.items():
            for row in batch:
                try:
                    new.update(insert(conn, self.settings.schema, {table: [row]}))
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as exc:
                    self.rejected += 1
                    _log.error(
                        "store: %s:%s: refused by the database: %s",
                        row[0],
                        row[1],
                        _short(exc, self.url),
                    )
        return dict(new)

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        """Read back from the journals what the full buffer could not hold."""
        with self._lock:
            gaps, self._gaps = self._gaps, {}
        pending = list(gaps.items())
        try:
            while pending:
                given, first = pending[0]
                source = self._source(given)
                count = 0
                for rows in _batches(Path(source), source, first, self.settings.batch_size):
                    self._write(conn, rows)
                    count += sum(len(b) for b in rows.values())
                self.caught_up += count
                _log.info("store: read back %d records from %s", count, source)
                pending.pop(0)
        except OSError as exc:
            _log.error("store: cannot read %s back: %s", pending[0][0], exc.strerror or exc)
            self._restore(pending)
        except BaseException:
            self._restore(pending)
            raise

    def _restore(self, pending: list[tuple[str, int]]) -> None:
        with self._lock:
            for source, first in pending:
                self._gaps[source] = min(first, self._gaps.get(source, first))


def _batches(path: Path, source: str, first: int, size: int) -> Iterator[dict[str, list[Row]]]:
    bad: list[BadLine] = []
    rows: dict[str, list[Row]] = {}
    count = 0
    for table, row in read_rows(path, source, first, bad, growing=True):
        rows.setdefault(table, []).append(row)
        count += 1
        if count >= size:
            yield rows
            rows, count = {}, 0
    for problem in bad:
        _log.error("store: %s: not stored", problem)
    if rows:
        yield rows


@frozen
class Loaded:
    """What a backfill did: rows new in each table, and rows that were there already."""

    schema: str
    journals: int
    new: dict[str, int]
    already: dict[str, int]

    def report(self) -> list[str]:
        """A line for the whole, then one per table."""
        lines = [f"store: {self.journals} journal(s) loaded into schema {self.schema}"]
        lines += [
            f"  {table:<18} {self.new[table]:>7} new {self.already[table]:>7} already stored"
            for table in self.new
        ]
        return lines


def backfill(settings: StoreSettings, paths: Iterable[Path], bad: list[BadLine]) -> Loaded:
    """Load whole journals into the store, idempotently. Lines that are not valid records are
    appended to `bad`. StoreUnavailable when the database cannot be reached."""
    paths = list(paths)
    if settings.url is None:
        raise ValueError("no store configured")
    url = settings.url
    new: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    started = time.monotonic()
    try:
        conn = connect(url, application_name="ratchet-backfill")
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot connect to {describe_url(url)}: {_short(exc, url)}"
        ) from None
    with conn:
        try:
            migrate(conn, settings.schema)
        except SchemaTooNew as exc:
            raise StoreUnavailable(str(exc)) from None
        try:
            for path in paths:
                source = journal_source(path)
                rows: dict[str, list[Row]] = {}
                count = 0
                for table, row in read_rows(path, source, 1, bad):
                    rows.setdefault(table, []).append(row)
                    count += 1
                    if count >= settings.batch_size:
                        _count(conn, settings.schema, rows, new, seen)
                        rows, count = {}, 0
                _count(conn, settings.schema, rows, new, seen)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{describe_url(url)}: {_short(exc, url)}") from None
    _log.info("store: backfill took %.2f s", time.monotonic() - started)
    already = {t: seen[t] - new[t] for t in TABLES}
    return Loaded(settings.schema, len(paths), {t: new[t] for t in TABLES}, already)


def _count(
    conn: psycopg.Connection[Any],
    schema: str,
    rows: dict[str, list[Row]],
    new: Counter[str],
    seen: Counter[str],
) -> None:
    new.update(insert(conn, schema, rows))
    seen.update({t: len(b) for t, b in rows.items()})
