"""The PostgreSQL store (`ratchet[postgres]`): a copy of the journal's position states, partial
profits, stop moves, closed trades and alerts, in tables Grafana can read. The journal stays
the source of truth; the store is written beside the engine loop and catches up."""

from shell.store.rows import KIND_TABLE, TABLES, Table, journal_source, read_rows, row_of
from shell.store.schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate
from shell.store.writer import (
    Loaded,
    StoreUnavailable,
    StoreWriter,
    backfill,
    connect,
    describe_url,
    insert,
)

__all__ = [
    "KIND_TABLE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "Loaded",
    "SchemaTooNew",
    "StoreUnavailable",
    "StoreWriter",
    "Table",
    "backfill",
    "connect",
    "describe_url",
    "insert",
    "journal_source",
    "migrate",
    "read_rows",
    "row_of",
]
