"""The PostgreSQL backend: several relay instances on one database.

Writing is the SQLite backend's, unchanged (``SqliteStore``, which this class extends): one
group-commit writer, only the rows changed since the last write, one transaction per batch
on a pooled connection, ``commit()`` returning once the server has flushed it.

What differs is that other instances write too. Every instance holds the small tables in
memory, as with SQLite, and follows the others' writes: each transaction's change notice
(ids only, see ``pgdb.py``) reaches every instance listening on the database, which re-reads
those rows and puts them in its cache (``follow``). A ``get`` that misses the cache asks the
database before answering "none", so a record another instance made a moment ago (a session
just opened behind another instance, an agent just paired) is found at once, notice or not.
Tasks are read on demand as with SQLite; a task some code holds is updated in place when
another instance changes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError

from codexrelay.fileio import ensure_private_dir
from codexrelay.relay.storage.jsonfile import check_saves_default, lock_data_dir
from codexrelay.relay.storage.pgdb import CHANNEL, PgDatabase, connect
from codexrelay.relay.storage.records import TERMINAL_STATUSES, Record, TaskRecord
from codexrelay.relay.storage.schema import CACHED_TABLES
from codexrelay.relay.storage.sqlite import SqliteStore
from codexrelay.relay.storage.table import Table

log = logging.getLogger("codexrelay.store")

# How long the listener waits for a notice before checking whether it should stop.
LISTEN_POLL_SEC = 0.5
# How long the listener keeps collecting notices that follow the first one.
BURST_SEC = 0.002


class PostgresStore(SqliteStore):
    """Every repository over a PostgreSQL database shared with other relay instances."""

    DB_ERRORS = (psycopg.Error, OSError)

    def __init__(self, db: PgDatabase, lock_fd: int, *, check_saves: bool) -> None:
        self.pg = db
        super().__init__(db, lock_fd, check_saves=check_saves)
        for name in CACHED_TABLES:
            _read_through(getattr(self, name), name, db)
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.remote_changes = 0
        # Unix ms before which every other instance's change is applied here (0: not yet).
        self.caught_up_ms = 0
        # Told of every task another instance changed (the cluster publishes it to phones).
        self.on_remote_task: Callable[[TaskRecord], None] | None = None
        # A task another instance ended first keeps that end: this instance takes it.
        db.on_refused = lambda docs: self._hand_over("tasks", sorted(docs), docs, force=True)

    @classmethod
    def open_url(
        cls,
        url: str,
        data_dir: Path,
        *,
        now: Callable[[], datetime],
        check_saves: bool | None = None,
    ) -> PostgresStore:
        """Lock this instance's data dir, connect, migrate. ``StateError`` if unusable."""
        ensure_private_dir(data_dir)
        lock_fd = lock_data_dir(data_dir)
        db = None
        try:
            db = PgDatabase.open(url, now=now)
            return cls(db, lock_fd, check_saves=check_saves_default(check_saves))
        except BaseException:
            if db is not None:
                db.close()
            os.close(lock_fd)
            raise

    @property
    def node_id(self) -> str:
        """This process's id among the instances sharing the database."""
        return self.pg.node_id

    def spend_once(self, kind: str, key: str) -> bool:
        """Spend a one-time code in the database itself (one indexed insert on the event
        loop): of two instances spending the same code at once, exactly one gets True."""
        row = self.pg.reader.execute(
            "INSERT INTO spent_codes (kind, key) VALUES (?, ?) ON CONFLICT DO NOTHING "
            "RETURNING key",
            (kind, key),
        ).fetchone()
        return row is not None

    # ---- following the other instances ----

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start applying the other instances' changes to this one's cache."""
        if self._listener is not None:
            return
        self._loop = loop
        self._listener = threading.Thread(
            target=self._listen, name="codexrelay-listen", daemon=True
        )
        self._listener.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with contextlib.closing(connect(self.pg.url)) as conn:
                    conn.execute(f"LISTEN {CHANNEL}".encode())
                    # Anything written while no one listened is picked up by a full re-read.
                    self._resync()
                    self._drain_notices(conn)
            except psycopg.Error as exc:
                log.warning("change notices interrupted (%s); listening again", exc)
                self._stop.wait(1.0)

    def _drain_notices(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            keys: dict[str, set[str]] = {}
            sent: int | None = None
            # Wait for the first notice, then take the ones already there with it: a
            # burst is re-read in one query per table, and a lone notice without delay.
            polled = time.time_ns() // 1_000_000
            first = list(conn.notifies(timeout=LISTEN_POLL_SEC, stop_after=1))
            if not first:
                sent = polled  # nothing was waiting: caught up as of the poll's start
            burst = list(conn.notifies(timeout=BURST_SEC, stop_after=500)) if first else []
            for notice in first + burst:
                payload = json.loads(notice.payload)
                # Notices come in commit order: once this burst is applied, so is every
                # change written before its newest notice (this instance's own included).
                if isinstance(payload.get("t"), int):
                    sent = payload["t"] if sent is None else max(sent, payload["t"])
                if payload.get("n") == self.pg.node_id:
                    continue
                for table, names in payload.get("k", {}).items():
                    keys.setdefault(table, set()).update(names)
            for table, names in keys.items():
                if table in CACHED_TABLES or table == "tasks":
                    docs = self.pg.fetch(table, sorted(names))
                    self._hand_over(table, sorted(names), docs)
            if sent is not None and self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._caught_up, sent)

    def _caught_up(self, sent_ms: int) -> None:
        """Every change written before ``sent_ms`` (writer's clock) is applied here now (on
        the event loop). Event ids start no later than this (``cluster.routing``): while
        the listener or the loop falls behind, it stays behind with them."""
        self.caught_up_ms = max(self.caught_up_ms, sent_ms)

    def _resync(self) -> None:
        for table in CACHED_TABLES:
            # Rows only: a key missing from the database may be one this instance has just
            # added and not yet written, so a re-read never removes anything.
            rows = dict(self.pg.reader.execute(f"SELECT key, doc FROM {table}").fetchall())  # noqa: S608
            self._hand_over(table, sorted(rows), rows)

    def _hand_over(
        self, table: str, keys: list[str], docs: dict[str, str], *, force: bool = False
    ) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.apply_remote, table, keys, docs, force)

    def apply_remote(
        self, table: str, keys: list[str], docs: dict[str, str], force: bool = False
    ) -> None:
        """Another instance changed these rows (on the event loop): take its versions,
        except where this instance has a change of its own not yet written, or (tasks) a
        newer state than the one read; ``force``: the database's state wins (a task this
        instance tried to change after another instance ended it)."""
        for key in keys:
            doc = docs.get(key)
            if table == "tasks":
                self.sql_tasks.apply_remote(key, doc, force=force)
                held = self.sql_tasks.held(key)
                self._forget_snapshot(table, key, held)
                if self.on_remote_task is not None and doc is not None:
                    self.on_remote_task(held or TaskRecord.model_validate_json(doc))
            else:
                self._apply_cached(table, key, doc)
            self.remote_changes += 1

    def refresh_task(self, key: str) -> TaskRecord | None:
        """A task as the database has it now, taken into this instance's copy (its own
        unsaved change, if any, still wins). One indexed read, on the event loop."""
        row = self.pg.reader.execute("SELECT doc FROM tasks WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self.sql_tasks.apply_remote(key, str(row[0]))
        self._forget_snapshot("tasks", key, self.sql_tasks.held(key))
        return self.tasks.get(key)

    def _apply_cached(self, table: str, key: str, doc: str | None) -> None:
        rows: Table[Record] = getattr(self, table)
        if key in rows.changed or key in rows.removed:
            return  # ours is newer, and is being written
        current = getattr(rows, "get_cached", rows.get)(key)
        if doc is None:
            if current is not None:
                rows.remove(current)
                rows.removed.discard(key)
        else:
            try:
                record = CACHED_TABLES[table].model_validate_json(doc)
            except ValidationError:
                log.warning("%s record %s from another instance is invalid", table, key)
                return
            if current is not None and type(current) is type(record):
                current.__dict__.update(record.__dict__)  # holders see the new fields
                rows.add(current)
            else:
                rows.add(record)
            rows.changed.pop(key, None)
        self._forget_snapshot(table, key, getattr(rows, "get_cached", rows.get)(key))

    def _forget_snapshot(self, table: str, key: str, record: Record | None) -> None:
        """The unsaved-change check compares with the last commit: a remote change is not
        an unsaved local one."""
        if not self.check_saves:
            return
        snap = self._snapshots.setdefault(table, {})
        if record is None:
            snap.pop(key, None)
        else:
            snap[key] = record.model_dump_json()

    async def close(self) -> None:
        """Stop following, then what ``SqliteStore.close`` does."""
        self._stop.set()
        await super().close()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5)


def _read_through(table: Table[Any], name: str, db: PgDatabase) -> None:
    """Make ``table.get`` ask the database when the cache has no such key (a row another
    instance wrote whose notice has not arrived yet), caching what it finds."""
    cached = table.get
    model = CACHED_TABLES[name]

    def get(key: str) -> Any:
        record = cached(key)
        if record is not None or key in table.removed:
            return record
        row = db.reader.execute(f"SELECT doc FROM {name} WHERE key = ?", (key,)).fetchone()  # noqa: S608
        if row is None:
            return None
        found = model.model_validate_json(row[0])
        table.add(found)
        table.changed.pop(key, None)
        return found

    table.get = get  # type: ignore[method-assign]
    table.get_cached = cached  # type: ignore[attr-defined]


__all__ = ["TERMINAL_STATUSES", "PostgresStore", "TaskRecord"]
