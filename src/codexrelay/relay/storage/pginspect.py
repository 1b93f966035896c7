"""Looking at a PostgreSQL store from outside the relay (``relay check``, ``snapshot``,
``restore``): one consistent read in a ``REPEATABLE READ`` transaction, safe while relay
instances run; and putting a state document back, in one transaction, when none runs."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import psycopg
from pydantic import ValidationError

from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.inspection import COUNTED, CheckReport
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.pgdb import UPSERT, Conn, connect, redact_url
from codexrelay.relay.storage.pgschema import PG_SCHEMA_VERSION, pg_migrate, pg_schema_version
from codexrelay.relay.storage.records import State, TaskRecord
from codexrelay.relay.storage.schema import CACHED_TABLES, encode, task_row


def _read(conn: Conn) -> State:
    meta: dict[str, str] = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    memory = MemoryStore(meta["instanceId"], datetime.fromisoformat(meta["createdAt"]))
    for name, model in CACHED_TABLES.items():
        table = getattr(memory, name)
        for (doc,) in conn.execute(f"SELECT doc FROM {name} ORDER BY rowid".encode()):  # noqa: S608
            table.add(model.model_validate_json(doc))
    for (doc,) in conn.execute("SELECT doc FROM tasks ORDER BY rowid"):
        memory.tasks.add(TaskRecord.model_validate_json(doc))
    return memory.document()


def read_pg_database(url: str) -> State:
    """Every record as one state document, read consistently. Raises ``StateError``."""
    try:
        with contextlib.closing(connect(url, autocommit=False)) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                return _read(conn)
    except (psycopg.Error, KeyError) as exc:
        msg = f"{redact_url(url)}: the database cannot be read ({exc})"
        raise StateError(msg) from None
    except ValidationError as exc:
        msg = f"{redact_url(url)}: a record is invalid ({exc.error_count()} problems)"
        raise StateError(msg) from None


def check_pg_database(url: str) -> CheckReport:
    """The schema version and every record validated (read-only)."""
    report = CheckReport()
    try:
        with contextlib.closing(connect(url)) as conn:
            report.schema_version = pg_schema_version(conn)
    except psycopg.Error as exc:
        report.problems.append(f"cannot connect ({exc})")
        return report
    if report.schema_version != PG_SCHEMA_VERSION:
        report.problems.append(
            f"schema version {report.schema_version}; this release uses {PG_SCHEMA_VERSION}"
            " (the relay migrates older ones forward at start)"
        )
        return report
    try:
        state = read_pg_database(url)
    except StateError as exc:
        report.problems.append(str(exc))
        return report
    report.counts = {name: len(getattr(state, name)) for name in COUNTED}
    return report


def live_instances(url: str) -> list[str]:
    """The relay instances whose lease on the database has not expired."""
    with contextlib.closing(connect(url)) as conn:
        if pg_schema_version(conn) < PG_SCHEMA_VERSION:
            return []
        rows = conn.execute("SELECT id FROM instances WHERE expires_at > now()").fetchall()
    return [str(row[0]) for row in rows]


def replace_pg_state(url: str, state: State) -> dict[str, int]:
    """Make the database hold exactly ``state`` (one transaction; nothing else on error).
    Refuses while a relay instance runs on it. Returns how many rows each table got."""
    running = live_instances(url)
    if running:
        msg = f"{len(running)} relay instance(s) still use {redact_url(url)}; stop them first"
        raise StateError(msg)
    counts: dict[str, int] = {}
    with contextlib.closing(connect(url)) as conn:
        pg_migrate(conn, redact_url(url))
        with conn.transaction(), conn.cursor() as cur:
            for name in [*CACHED_TABLES, "tasks", "agent_leases"]:
                cur.execute(f"DELETE FROM {name}".encode())  # noqa: S608
            cur.executemany(
                "UPDATE meta SET value = %s WHERE name = %s",
                [(state.instance_id, "instanceId"), (state.created_at.isoformat(), "createdAt")],
            )
            for name in CACHED_TABLES:
                rows = _rows_of(getattr(state, name))
                cur.executemany(UPSERT[name].encode(), [(k, encode(r)) for k, r in rows])
                counts[name] = len(rows)
            tasks = list(state.tasks.values())
            cur.executemany(UPSERT["tasks"].encode(), [task_row(t) for t in tasks])
            counts["tasks"] = len(tasks)
    return counts


def _rows_of(records: Any) -> list[tuple[str, Any]]:
    if isinstance(records, dict):
        return list(records.items())
    from codexrelay.relay.storage.memory import membership_key  # noqa: PLC0415

    return [(membership_key(r.user_id, r.workspace_id), r) for r in records]
