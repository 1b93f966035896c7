"""The SQLite database file: creation (0600), forward migration, two connections, one
batch per transaction. ``SqliteStore`` (``sqlite.py``) builds the relay's store on it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from codexrelay.crypto import new_id
from codexrelay.fileio import PRIVATE_FILE
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.schema import (
    CACHED_TABLES,
    SCHEMA_VERSION,
    TASK_COLUMNS,
    migrate,
    schema_version,
)

DATABASE_FILE = "relay.sqlite3"
# Page cache per connection: the task indexes' upper levels and recent leaves stay hot.
CACHE_KIB = 65536


@dataclass
class Batch:
    """One transaction's worth of changes: rows to upsert and keys to delete, per table."""

    upserts: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    deletes: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.upserts.values()) or any(self.deletes.values())


class RowDatabase(Protocol):
    """What a row-writing store needs of its database (SQLite's file, or PostgreSQL)."""

    @property
    def path(self) -> object: ...
    @property
    def reader(self) -> Any: ...
    def identity(self) -> tuple[str, datetime]: ...
    def apply(self, batch: Batch) -> None: ...
    def checkpoint(self) -> None: ...
    def close(self) -> None: ...


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "key")
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET {updates}"  # noqa: S608 - names are ours
    )


UPSERT = {name: _upsert_sql(name, ("key", "doc")) for name in CACHED_TABLES} | {
    "tasks": _upsert_sql("tasks", TASK_COLUMNS)
}


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Database:
    """The database file and its two connections: the writer's (one thread, all writes)
    and the reader's (the event loop's finders)."""

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        self.path = path
        self.writer = writer
        self.reader = reader

    @classmethod
    def open(
        cls, path: Path, *, now: Callable[[], datetime], meta: dict[str, str] | None = None
    ) -> Database:
        """Open (or create, 0600) and migrate forward. Raises ``StateError``, leaving a
        file it cannot use (not a database, or from a newer release) byte-identical."""
        if path.exists():
            _check_usable(path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
        path.chmod(PRIVATE_FILE)  # SQLite gives its -wal and -shm files the same mode
        try:
            writer = _connect(path)
            if writer.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                msg = f"{path}: cannot use write-ahead logging on this file system"
                raise StateError(msg)
            writer.execute("PRAGMA synchronous = FULL")
            # Checkpoints run on their own connection and thread (``checkpoint``), never
            # inside a commit a request is waiting for.
            writer.execute("PRAGMA wal_autocheckpoint = 0")
            writer.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            migrate(writer, path)
            _ensure_identity(writer, now, meta or {})
            reader = _connect(path)
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            msg = f"{path}: the database cannot be used ({exc}). It was left untouched."
            raise StateError(msg) from None
        return cls(path, writer, reader)

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        return schema_version(self.reader)

    def identity(self) -> tuple[str, datetime]:
        """This relay's instance id and when its state was created."""
        meta = dict(self.reader.execute("SELECT name, value FROM meta"))
        return meta["instanceId"], datetime.fromisoformat(meta["createdAt"])

    def checkpoint(self) -> None:
        """Copy the WAL's pages into the database file (on the checkpoint thread). PASSIVE:
        it never waits for, nor blocks, the writer or the readers."""
        with contextlib.closing(_connect(self.path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def apply(self, batch: Batch) -> None:
        """Write one batch as one durable transaction (on the writer thread)."""
        conn = self.writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, keys in batch.deletes.items():
                conn.executemany(
                    f"DELETE FROM {table} WHERE key = ?",  # noqa: S608 - table names are ours
                    [(key,) for key in keys],
                )
            for table, rows in batch.upserts.items():
                conn.executemany(UPSERT[table], rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close both connections; the last one checkpoints the WAL into the main file."""
        self.reader.close()
        self.writer.close()


def _check_usable(path: Path) -> None:
    """Read the schema version without writing a byte (a WAL switch would rewrite the header)."""
    try:
        with contextlib.closing(_connect(path, readonly=True)) as conn:
            version = schema_version(conn)
    except sqlite3.DatabaseError as exc:
        msg = f"{path}: the database cannot be used ({exc}). It was left untouched."
        raise StateError(msg) from None
    if version > SCHEMA_VERSION:
        msg = (
            f"{path}: database schema version {version} is newer than this release's "
            f"{SCHEMA_VERSION}; use the codexrelay release that wrote it. It was left untouched."
        )
        raise StateError(msg)


def _ensure_identity(
    conn: sqlite3.Connection, now: Callable[[], datetime], meta: dict[str, str]
) -> None:
    if conn.execute("SELECT 1 FROM meta WHERE name = 'instanceId'").fetchone():
        return
    rows = {"instanceId": new_id("inst"), "createdAt": now().isoformat(), **meta}
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(rows.items()))
    conn.execute("COMMIT")
