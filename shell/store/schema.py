"""The store's schema, created and upgraded by the store itself: numbered migrations, applied in
order, each once, recorded in `ratchet_schema_version`, under an advisory lock so that two
ratchets starting together never race."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SchemaTooNew", "migrate"]

# pg_advisory_xact_lock(classid, objid): this class id is ratchet's; the object is the schema.
_LOCK_CLASS = 0x72617463  # "ratc"

# Each migration is frozen once released: a change to the tables is a new migration.
MIGRATIONS: tuple[tuple[int, str, LiteralString], ...] = (
    (
        1,
        "position states, partial profits, stop history, trades and alerts",
        """
        CREATE TABLE IF NOT EXISTS {s}.position_states (
            source text NOT NULL, line bigint NOT NULL, ts timestamptz NOT NULL,
            symbol text, key text, old_state text, new_state text, reason text, r numeric,
            PRIMARY KEY (source, line));
        CREATE INDEX IF NOT EXISTS position_states_ts ON {s}.position_states (ts);
        CREATE INDEX IF NOT EXISTS position_states_key ON {s}.position_states (key, ts);
        CREATE TABLE IF NOT EXISTS {s}.partial_profits (
            source text NOT NULL, line bigint NOT NULL, ts timestamptz NOT NULL,
            symbol text, key text, milestone numeric, qty numeric, price numeric, r numeric,
            profit numeric,
            PRIMARY KEY (source, line));
        CREATE INDEX IF NOT EXISTS partial_profits_ts ON {s}.partial_profits (ts);
        CREATE TABLE IF NOT EXISTS {s}.stop_loss_history (
            source text NOT NULL, line bigint NOT NULL, ts timestamptz NOT NULL,
            symbol text, key text, old_stop numeric, new_stop numeric, r numeric, reason text,
            PRIMARY KEY (source, line));
        CREATE INDEX IF NOT EXISTS stop_loss_history_ts ON {s}.stop_loss_history (ts);
        CREATE INDEX IF NOT EXISTS stop_loss_history_key ON {s}.stop_loss_history (key, ts);
        CREATE TABLE IF NOT EXISTS {s}.trades (
            source text NOT NULL, line bigint NOT NULL, ts timestamptz NOT NULL,
            symbol text, key text, side text, qty numeric, entry_price numeric,
            exit_price numeric, opened timestamptz, closed timestamptz, pnl numeric, r numeric,
            risk numeric, risk_per_share numeric, reason text,
            PRIMARY KEY (source, line));
        CREATE INDEX IF NOT EXISTS trades_closed ON {s}.trades (closed);
        CREATE TABLE IF NOT EXISTS {s}.alerts (
            source text NOT NULL, line bigint NOT NULL, ts timestamptz NOT NULL,
            reason text NOT NULL, symbol text, key text, context jsonb NOT NULL,
            PRIMARY KEY (source, line));
        CREATE INDEX IF NOT EXISTS alerts_ts ON {s}.alerts (ts);
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaTooNew(Exception):
    """The database was upgraded by a newer ratchet; this one does not write into it."""


def migrate(conn: psycopg.Connection[Any], schema: str) -> int:
    """Bring `schema` to SCHEMA_VERSION (creating it when missing); returns the version found
    before. Safe to run from several processes at once: they queue on an advisory lock."""
    s = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, schema))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.ratchet_schema_version ("
                "version integer PRIMARY KEY, description text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(s)
        )
        row = conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.ratchet_schema_version").format(s)
        ).fetchone()
        found = int(row[0]) if row is not None else 0
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"schema {schema} is at version {found}, newer than this ratchet's "
                f"{SCHEMA_VERSION}: upgrade ratchet"
            )
        for version, description, text in MIGRATIONS:
            if version <= found:
                continue
            conn.execute(sql.SQL(text).format(s=s))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.ratchet_schema_version (version, description) VALUES (%s, %s)"
                ).format(s),
                (version, description),
            )
    return found
