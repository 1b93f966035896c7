"""The PostgreSQL schema: the same tables as SQLite's, versioned, forward migrations only.

Each table keeps the record as JSON text (``doc``, the camelCase form ``state.json`` holds)
under its primary key (``key``), and a ``rowid`` sequence column: the insertion order the
SQLite tables get for free, named the same so the task finders' SQL is shared. The version
is the ``schemaVersion`` row of ``meta``; migrations run under an advisory lock, so several
relay instances starting at once migrate exactly once.

Never edit a migration that has shipped: databases in the field have run it.
"""

from __future__ import annotations

import psycopg

from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.schema import FIRST_TABLES

# Any 64-bit number that no other application on the same database uses for its own lock.
MIGRATION_LOCK = 0x636F646578726C79  # "codexrly"


def _small_table(name: str) -> str:
    return f"CREATE TABLE {name} (rowid BIGSERIAL, key TEXT PRIMARY KEY, doc TEXT NOT NULL);\n"


MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema (the SQLite backend's version 1).
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    + "".join(_small_table(name) for name in FIRST_TABLES)
    + """
    CREATE TABLE tasks (
        rowid BIGSERIAL,
        key TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        agent_key TEXT NOT NULL,
        finished INTEGER NOT NULL,
        created_us BIGINT NOT NULL,
        finished_us BIGINT,
        doc TEXT NOT NULL
    );
    CREATE INDEX tasks_by_workspace ON tasks (workspace_id, created_us, key);
    CREATE INDEX tasks_unfinished ON tasks (agent_key) WHERE finished = 0;
    CREATE INDEX tasks_by_finish ON tasks (finished_us) WHERE finished_us IS NOT NULL;
    """,
    # 2: the membership logs of protected workspaces.
    _small_table("log_entries"),
    # 3: several relay instances on one database: who is running (and where its peers reach
    # it), and which instance holds each agent's socket (a lease that expires).
    """
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE agent_leases (
        agent_key TEXT PRIMARY KEY,
        instance_id TEXT NOT NULL,
        generation BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX agent_leases_by_instance ON agent_leases (instance_id);
    """,
    # 4: one-time codes spent by any instance (each instance caches the records, so the
    # database decides which of two instances spending a code at once wins).
    """
    CREATE TABLE spent_codes (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        spent_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX spent_codes_by_time ON spent_codes (spent_at);
    """,
)
PG_SCHEMA_VERSION = len(MIGRATIONS)


def pg_schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The version a database is at (0 before the first migration)."""
    exists = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE name = 'schemaVersion'").fetchone()
    return int(str(row[0])) if row else 1


def pg_migrate(conn: psycopg.Connection[tuple[object, ...]], where: str) -> int:
    """Bring the database forward to ``PG_SCHEMA_VERSION``, one transaction per step, under
    the migration lock. Refuses (and leaves untouched) a database from a newer release."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        version = pg_schema_version(conn)
        if version > PG_SCHEMA_VERSION:
            msg = (
                f"{where}: database schema version {version} is newer than this release's "
                f"{PG_SCHEMA_VERSION}; use the codexrelay release that wrote it. "
                "It was left untouched."
            )
            raise StateError(msg)
        for step in range(version, PG_SCHEMA_VERSION):
            with conn.transaction():
                conn.execute(MIGRATIONS[step].encode())
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('schemaVersion', %s) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (str(step + 1),),
                )
    return PG_SCHEMA_VERSION
