"""The SQLite backend (the default): ``<dataDir>/relay.sqlite3``, each commit writes only its rows.

Durability: WAL journal with ``synchronous=FULL``, so every committed transaction is fsync'd
to the WAL before ``commit()`` returns: an acknowledged change survives a process kill and a
power cut. (``NORMAL`` in WAL mode would survive a kill but could lose the last
transactions to a power cut: not what "acknowledged" promises.) The cost of that fsync is
shared: one writer task groups every commit that arrives while a write is in flight into
the next transaction (``GroupWriter``), and the transaction runs on one dedicated thread, so
the event loop never waits on the disk. Only the rows added, saved or removed since the last
write are serialized (on the loop, a few microseconds each) and written.

What is cached: every table but tasks lives wholly in memory with its indexes (the same
``Memory*`` tables as the in-memory store), loaded at start-up; tasks are read on demand
(see ``sqltasks.py``). The event loop reads through its own connection; the writer thread
has the other. One relay process per data dir (an exclusive lock file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from codexrelay.fileio import ensure_private_dir
from codexrelay.relay.storage.durability import GroupWriter
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.jsonfile import check_saves_default, lock_data_dir
from codexrelay.relay.storage.jsonimport import import_state_file
from codexrelay.relay.storage.memory import MemoryStore, UnsavedChangeError
from codexrelay.relay.storage.records import State
from codexrelay.relay.storage.schema import CACHED_TABLES, SCHEMA_VERSION, encode
from codexrelay.relay.storage.sqldb import DATABASE_FILE, Batch, Database, RowDatabase
from codexrelay.relay.storage.sqltasks import RECENT_TASKS, SqlTasks

log = logging.getLogger("codexrelay.store")

# Transactions between two background checkpoints.
CHECKPOINT_EVERY = 100


class SqliteStore(MemoryStore):
    """Every repository over one SQLite database; ``commit()`` returns once durable."""

    # What a failed write raises (the PostgreSQL backend, built on this class, adds its own).
    DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)

    def __init__(self, db: RowDatabase, lock_fd: int, *, check_saves: bool) -> None:
        instance_id, created_at = db.identity()
        super().__init__(instance_id, created_at, check_saves=check_saves)
        self.db = db
        # The unsaved-change check compares every task held in memory on each write: keep
        # fewer recent ones then, so the check stays cheap under load.
        self.sql_tasks = SqlTasks(db.reader, recent=64 if check_saves else RECENT_TASKS)
        self.tasks = self.sql_tasks
        self._lock_fd = lock_fd
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="codexrelay-db")
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="codexrelay-ckpt")
        self._checkpoint: asyncio.Future[None] | None = None
        self._since_checkpoint = 0
        self._writer = GroupWriter(self._write)
        self._load()

    @classmethod
    def open(
        cls, data_dir: Path, *, now: Callable[[], datetime], check_saves: bool | None = None
    ) -> SqliteStore:
        """Lock the data dir, import a ``state.json`` left by an earlier release, open the
        database. Raises ``StateError`` (and changes nothing) if either cannot be used."""
        ensure_private_dir(data_dir)
        lock_fd = lock_data_dir(data_dir)
        db = None
        try:
            import_state_file(data_dir, now=now)
            db = Database.open(data_dir / DATABASE_FILE, now=now)
            return cls(db, lock_fd, check_saves=check_saves_default(check_saves))
        except BaseException:
            if db is not None:
                db.close()
            os.close(lock_fd)
            raise

    @property
    def writes(self) -> int:
        """How many transactions reached the disk."""
        return self._writer.writes

    def _load(self) -> None:
        for name, model in CACHED_TABLES.items():
            table = getattr(self, name)
            for key, doc in self.db.reader.execute(f"SELECT key, doc FROM {name} ORDER BY rowid"):  # noqa: S608
                try:
                    table.add(model.model_validate_json(doc))
                except ValidationError:
                    msg = f"{self.db.path}: {name} record {key} is invalid; run `relay check`"
                    raise StateError(msg) from None
            table.drain()
        self.sql_tasks.load()
        self.reset_check()

    def load(self, state: State) -> None:
        """Replace every record with a state document's; the next write stores the change."""
        for name, table in self.tables().items():
            for record in table.all():
                table.remove(record)
            records = getattr(state, name)
            for record in records.values() if isinstance(records, dict) else records:
                table.add(record)
        self.reset_check()

    def drain(self) -> None:
        """Not used by this backend: the writer takes each table's changes itself."""
        msg = "SqliteStore writes changed rows; it never drains without writing"
        raise NotImplementedError(msg)

    def _collect(self) -> Batch:
        batch = Batch()
        for name in CACHED_TABLES:
            table = getattr(self, name)
            changed, removed = table.drain()
            batch.upserts[name] = [(key, encode(table.get(key))) for key in changed]
            batch.deletes[name] = list(removed)
        batch.upserts["tasks"], batch.deletes["tasks"] = self.sql_tasks.take()
        return batch

    def _requeue(self, batch: Batch) -> None:
        for name in CACHED_TABLES:
            table = getattr(self, name)
            for row in batch.upserts[name]:
                key = str(row[0])
                if table.get(key) is not None and key not in table.removed:
                    table.changed[key] = None
            for key in batch.deletes[name]:
                if table.get(key) is None:
                    table.removed.add(key)
        self.sql_tasks.requeue()

    def _checked(self) -> bool:
        try:
            # Once per write, not per commit: a storm of commits shares one check.
            self.check_unsaved()
        except UnsavedChangeError:
            return False
        return True

    async def _write(self) -> bool:
        ok = self._checked()
        batch = self._collect()
        if not batch:
            return ok
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.db.apply, batch)
        except self.DB_ERRORS as exc:
            log.error("database write failed: %s", exc)  # noqa: TRY400 - the error says enough
            self._requeue(batch)
            return False
        self.sql_tasks.written()
        self._maybe_checkpoint(loop)
        return ok

    def _maybe_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every ``CHECKPOINT_EVERY`` transactions, fold the WAL into the database on the
        checkpoint thread, so the WAL stays small without a commit ever waiting for it."""
        self._since_checkpoint += 1
        busy = self._checkpoint is not None and not self._checkpoint.done()
        if self._since_checkpoint < CHECKPOINT_EVERY or busy:
            return
        self._since_checkpoint = 0
        self._checkpoint = loop.run_in_executor(self._checkpointer, self._checkpoint_quietly)

    def _checkpoint_quietly(self) -> None:
        try:
            self.db.checkpoint()
        except self.DB_ERRORS as exc:
            log.warning("checkpoint failed (the WAL keeps the data): %s", exc)

    def flush_sync(self) -> None:
        """Write what is pending now, from synchronous code (shutdown's last resort)."""
        batch = self._collect()
        try:
            if batch:
                self.db.apply(batch)
        except self.DB_ERRORS:
            self._requeue(batch)
            raise
        self.sql_tasks.written()

    async def commit(self) -> None:
        """Return once a transaction that includes every change made so far is durable."""
        await self._writer.commit()

    def touch(self) -> None:
        """Schedule a write without waiting for it (coalesced)."""
        self._writer.touch()

    async def close(self) -> None:
        """Flush pending changes, stop the writer, close the database, release the lock."""
        await self._writer.close()
        # Whatever is still pending (a failed last write, changes never committed) goes now.
        with contextlib.suppress(*self.DB_ERRORS):
            self.flush_sync()
        self._executor.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)
        self.db.close()
        os.close(self._lock_fd)


__all__ = ["DATABASE_FILE", "SCHEMA_VERSION", "Database", "SqliteStore"]
