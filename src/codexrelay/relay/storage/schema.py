"""The SQLite schema: one table per record type, versioned, with forward migrations only.

Every table has the record's primary key (``key``) and the record itself as JSON (``doc``,
the same camelCase form ``state.json`` holds). Tables whose records are few (everything but
tasks) are held wholly in memory with in-memory indexes, so they need nothing else. The
tasks table, which grows with use, adds the columns its finders filter and sort on.

Adding a record type is: a ``Memory*`` table class in ``memory.py``, an entry in
``CACHED_TABLES`` below, and a new migration at the end of ``MIGRATIONS`` that creates its
table. Never edit a migration that has shipped: databases in the field have run it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.records import (
    TERMINAL_STATUSES,
    AgentRecord,
    ApprovalRecord,
    InviteRecord,
    LogEntryRecord,
    MembershipRecord,
    PairingCodeRecord,
    PairRequestRecord,
    PasskeyRecord,
    PushSubscriptionRecord,
    Record,
    RecoveryCodeRecord,
    SessionRecord,
    TaskRecord,
    ThreadRecord,
    TurnRecord,
    UserRecord,
    WorkspaceRecord,
)

# Store attribute (and SQL table) -> record model, for every table held wholly in memory.
CACHED_TABLES: dict[str, type[Record]] = {
    "users": UserRecord,
    "workspaces": WorkspaceRecord,
    "memberships": MembershipRecord,
    "sessions": SessionRecord,
    "passkeys": PasskeyRecord,
    "invites": InviteRecord,
    "recovery_codes": RecoveryCodeRecord,
    "agents": AgentRecord,
    "pairing_codes": PairingCodeRecord,
    "pair_requests": PairRequestRecord,
    "push_subscriptions": PushSubscriptionRecord,
    # Conversation metadata: few records per thread, kept wholly in memory for now. If they
    # grow like tasks, they get a repository over the database as tasks have.
    "threads": ThreadRecord,
    "turns": TurnRecord,
    "approvals": ApprovalRecord,
    # Protected workspaces' membership logs (signed entries; metadata, R10).
    "log_entries": LogEntryRecord,
}
# The small tables the first schema created. Frozen: a later table comes with a migration.
FIRST_TABLES = (
    "users",
    "workspaces",
    "memberships",
    "sessions",
    "passkeys",
    "invites",
    "recovery_codes",
    "agents",
    "pairing_codes",
    "pair_requests",
    "push_subscriptions",
    "threads",
    "turns",
    "approvals",
)


def _small_table(name: str) -> str:
    return f"CREATE TABLE {name} (key TEXT PRIMARY KEY, doc TEXT NOT NULL);\n"


# MIGRATIONS[i] takes a database from schema version i to i + 1 (``PRAGMA user_version``).
MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    + "".join(_small_table(name) for name in FIRST_TABLES)
    + """
    CREATE TABLE tasks (
        key TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        agent_key TEXT NOT NULL,
        finished INTEGER NOT NULL,
        created_us INTEGER NOT NULL,
        finished_us INTEGER,
        doc TEXT NOT NULL
    );
    CREATE INDEX tasks_by_workspace ON tasks (workspace_id, created_us, key);
    CREATE INDEX tasks_unfinished ON tasks (agent_key) WHERE finished = 0;
    CREATE INDEX tasks_by_finish ON tasks (finished_us) WHERE finished_us IS NOT NULL;
    """,
    # 2: the membership logs of protected workspaces.
    _small_table("log_entries"),
)
SCHEMA_VERSION = len(MIGRATIONS)

TASK_COLUMNS = ("key", "workspace_id", "agent_key", "finished", "created_us", "finished_us", "doc")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """A time as whole microseconds since the epoch: sorts the way the time does."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def encode(record: Record) -> str:
    """The stored form of a record."""
    return record.model_dump_json(by_alias=True)


def task_row(task: TaskRecord) -> tuple[object, ...]:
    """The tasks table's row for ``task``, in ``TASK_COLUMNS`` order."""
    done = task.status in TERMINAL_STATUSES
    finished_us = micros(task.finished_at) if done and task.finished_at is not None else None
    return (
        task.id,
        task.workspace_id,
        task.agent_key,
        int(done),
        micros(task.created_at),
        finished_us,
        encode(task),
    )


def schema_version(conn: sqlite3.Connection) -> int:
    """The version a database is at (0 for a new, empty one)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, path: object) -> int:
    """Bring the database forward to ``SCHEMA_VERSION``, one transaction per step. Refuses
    a database from a newer release (it is left untouched)."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        msg = (
            f"{path}: database schema version {version} is newer than this release's "
            f"{SCHEMA_VERSION}; use the codexrelay release that wrote it. It was left untouched."
        )
        raise StateError(msg)
    for step in range(version, SCHEMA_VERSION):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\nPRAGMA user_version = {step + 1};\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.rollback()
            raise
    return SCHEMA_VERSION
