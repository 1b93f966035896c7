"""The PostgreSQL database: a connection pool for writes, one read connection for the event
loop's finders, one batch per transaction, and a change notice per transaction.

Durability: every write transaction runs with ``synchronous_commit = on`` (set per
connection, whatever the server's default), so ``COMMIT`` returns only once the server has
flushed its WAL: an acknowledged change survives the relay's and the database's crash.

Change notices: each transaction ends with ``pg_notify`` on ``codexrelay_rows`` naming the
writing instance and the keys it upserted or deleted, per table: ids only, never a record
(records are metadata anyway, but a notice is read by every listener on the database). The
other instances re-read those rows (``PostgresStore``), so their caches follow.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from codexrelay.crypto import new_id
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.pgschema import pg_migrate, pg_schema_version
from codexrelay.relay.storage.schema import CACHED_TABLES, TASK_COLUMNS
from codexrelay.relay.storage.sqldb import Batch

CHANNEL = "codexrelay_rows"
# pg_notify payloads must stay under 8000 bytes.
NOTICE_BYTES = 7000
Conn = psycopg.Connection[tuple[Any, ...]]


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("%s" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "key")
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET {updates}"  # noqa: S608 - names are ours
    )


# A task that reached its end is never rewritten by another write (an instance saving its
# copy from before another instance's final write: a lost update), except the one
# correction the task rules allow (``settle_final_report``: the agent's own late report on a
# task interrupted only because it stayed away).
TASK_GUARD = (
    " WHERE tasks.finished = 0"
    " OR (excluded.finished = 1 AND tasks.doc::jsonb ->> 'reason' = 'agent-vanished')"
)
UPSERT = {name: _upsert_sql(name, ("key", "doc")) for name in CACHED_TABLES} | {
    "tasks": _upsert_sql("tasks", TASK_COLUMNS) + TASK_GUARD
}


def redact_url(url: str) -> str:
    """The URL without its password, for messages and ``check-config``."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user, host = info.get("user", ""), info.get("host", "localhost")
    return f"postgresql://{user}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _configure(conn: Conn) -> None:
    conn.execute("SET synchronous_commit = on")
    conn.execute("SET application_name = 'codexrelay'")


def connect(url: str, *, autocommit: bool = True) -> Conn:
    """One connection (the reader, the listener, the operator commands)."""
    conn = psycopg.connect(url, autocommit=True)
    _configure(conn)
    conn.autocommit = autocommit
    return conn


class PgReader:
    """The event loop's read connection, answering the task finders' SQLite-style SQL
    (``?`` marks). Reconnects once if the server dropped it (a database restart)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn = connect(url)
        self._lock = threading.Lock()

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> psycopg.Cursor[Any]:
        """Run one read; the cursor's rows are already fetched, so iterating never waits."""
        query = sql.replace("?", "%s")
        with self._lock:
            try:
                return self._run(query, args)
            except psycopg.OperationalError:
                if not self._conn.closed:
                    raise
                self._conn = connect(self._url)
                return self._run(query, args)

    def _run(self, query: str, args: tuple[object, ...]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor()
        cur.execute(query.encode(), args)
        return cur

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class PgDatabase:
    """One relay instance's connections to the shared database."""

    def __init__(self, url: str, node_id: str) -> None:
        self.url = url
        self.node_id = node_id
        # Told of task rows a write left as they were (see ``_write_tasks``).
        self.on_refused: Callable[[dict[str, str]], None] | None = None
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            configure=_configure,
            open=True,
            name="codexrelay",
        )
        self.reader = PgReader(url)

    @classmethod
    def open(cls, url: str, *, now: Callable[[], datetime]) -> PgDatabase:
        """Connect, migrate forward, make sure the relay has its identity. ``StateError`` if
        the database cannot be used."""
        where = redact_url(url)
        try:
            with contextlib.closing(connect(url)) as conn:
                pg_migrate(conn, where)
                _ensure_identity(conn, now)
            return cls(url, new_id("node"))
        except psycopg.Error as exc:
            msg = f"{where}: the database cannot be used ({exc})"
            raise StateError(msg) from None

    @property
    def path(self) -> str:
        """Where the database is, for messages (no password)."""
        return redact_url(self.url)

    @property
    def schema_version(self) -> int:
        """The schema version of the database."""
        with self.pool.connection() as conn:
            return pg_schema_version(conn)

    def identity(self) -> tuple[str, datetime]:
        """The relay's instance id and when its state was created (shared by all nodes)."""
        meta = dict(self.reader.execute("SELECT name, value FROM meta").fetchall())
        return meta["instanceId"], datetime.fromisoformat(meta["createdAt"])

    def apply(self, batch: Batch) -> None:
        """Write one batch as one durable transaction, with its change notices."""
        with self.pool.connection() as conn, conn.transaction():
            for table, keys in batch.deletes.items():
                if keys:
                    conn.execute(
                        f"DELETE FROM {table} WHERE key = ANY(%s)".encode(),  # noqa: S608
                        (list(keys),),
                    )
            refused: dict[str, str] = {}
            with conn.cursor() as cur:
                for table, rows in batch.upserts.items():
                    if table == "tasks" and rows:
                        refused = self._write_tasks(cur, rows)
                    elif rows:
                        cur.executemany(UPSERT[table].encode(), rows)
            for notice in notices(self.node_id, batch):
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, notice))

        if refused and self.on_refused is not None:
            self.on_refused(refused)

    @staticmethod
    def _write_tasks(cur: psycopg.Cursor[Any], rows: list[tuple[object, ...]]) -> dict[str, str]:
        """Upsert task rows; the rows ``TASK_GUARD`` kept (another instance ended the task
        first) come back as they are in the database, for this instance to take."""
        cur.executemany((UPSERT["tasks"] + " RETURNING key").encode(), rows, returning=True)
        written: set[str] = set()
        while True:
            written.update(str(row[0]) for row in cur.fetchall())
            if not cur.nextset():
                break
        kept = [str(row[0]) for row in rows if str(row[0]) not in written]
        if not kept:
            return {}
        cur.execute(b"SELECT key, doc FROM tasks WHERE key = ANY(%s)", (kept,))
        return {str(key): str(doc) for key, doc in cur.fetchall()}

    def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints its own WAL."""

    def fetch(self, table: str, keys: list[str]) -> dict[str, str]:
        """The current docs of some rows (missing keys are deleted rows)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT key, doc FROM {table} WHERE key = ANY(%s)".encode(),  # noqa: S608
                (keys,),
            ).fetchall()
        return {str(key): str(doc) for key, doc in rows}

    def close(self) -> None:
        """Close every connection."""
        self.reader.close()
        self.pool.close()


def notices(node_id: str, batch: Batch) -> Iterator[str]:
    """The change notices of a batch: table -> keys, chunked under the payload limit, with
    the writer's time (``t``, Unix ms): how far behind a listener is (see ``PostgresStore``)."""
    sent = time.time_ns() // 1_000_000
    entries = [(t, str(row[0])) for t, rows in batch.upserts.items() for row in rows]
    entries += [(t, key) for t, keys in batch.deletes.items() for key in keys]
    chunk: dict[str, list[str]] = {}
    size = 0
    for table, key in entries:
        if size + len(key) + len(table) + 8 > NOTICE_BYTES and chunk:
            yield json.dumps({"n": node_id, "t": sent, "k": chunk}, separators=(",", ":"))
            chunk, size = {}, 0
        chunk.setdefault(table, []).append(key)
        size += len(key) + len(table) + 8
    if chunk:
        yield json.dumps({"n": node_id, "t": sent, "k": chunk}, separators=(",", ":"))


def _ensure_identity(conn: Conn, now: Callable[[], datetime]) -> None:
    with conn.transaction():
        conn.execute("LOCK TABLE meta IN EXCLUSIVE MODE")
        if conn.execute("SELECT 1 FROM meta WHERE name = 'instanceId'").fetchone():
            return
        rows = [("instanceId", new_id("inst")), ("createdAt", now().isoformat())]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO meta (name, value) VALUES (%s, %s)", rows)


def require_url(url: str | None) -> str:
    """The configured URL, or a clear error."""
    if not url:
        msg = 'storage.backend "postgres" needs storage.url (postgresql://...)'
        raise StateError(msg)
    return url
