"""The SQLite backend's task repository: history stays on disk, what is in use stays in memory.

In memory: every unfinished task (few, and read on every agent connection), the most
recently used finished ones (a bounded LRU), and an identity map, so a task that some code
holds is the very object every finder returns: a change made in place and then ``save()``d
is never lost to a second, stale copy. Changes not yet written (``dirty``) and being written
(``inflight``) overlay what the database returns, so finders always see this process's own
changes. Reads are single indexed queries with a ``LIMIT`` on the event loop's own read
connection: in WAL mode a reader never waits for the writer.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any, Protocol

from codexrelay.relay.storage.memory import task_order
from codexrelay.relay.storage.records import TERMINAL_STATUSES, TaskRecord
from codexrelay.relay.storage.schema import micros, task_row

RECENT_TASKS = 1024

Overlay = dict[str, TaskRecord | None]


class Reader(Protocol):
    """A connection that runs one query with ``?`` marks (``sqlite3.Connection``, or the
    PostgreSQL backend's ``PgReader``)."""

    def execute(self, sql: str, args: tuple[object, ...] = ..., /) -> Any: ...


log = logging.getLogger("codexrelay.store")

# How far along a task is: a copy further along is never replaced by one behind it.
_STAGE = {"queued": 0, "dispatched": 1, "running": 2}


def is_older(fresh: TaskRecord, held: TaskRecord) -> bool:
    """Whether a row read from the database is an older state of a task than the copy
    held here (another instance's change notice is re-read on a thread and applied a
    moment later, possibly after this instance wrote a newer state of the same task)."""
    stage_fresh, stage_held = _STAGE.get(fresh.status, 3), _STAGE.get(held.status, 3)
    if stage_fresh != stage_held:
        return stage_fresh < stage_held
    return fresh.updated_at < held.updated_at


class SqlTasks:
    """``Tasks`` over the tasks table, with the change tracking the store's writer drains."""

    def __init__(self, reader: Reader, *, recent: int = RECENT_TASKS) -> None:
        self._db = reader
        self._live: weakref.WeakValueDictionary[str, TaskRecord] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[str, TaskRecord] = OrderedDict()
        self._recent_cap = recent
        self._unfinished: dict[str, TaskRecord] = {}
        self._dirty: Overlay = {}
        self._inflight: Overlay = {}
        self._counts: dict[str, int] = {}
        # Every workspace with tasks has a count (a missing one has none): true from
        # ``load`` until another relay instance adds or removes tasks.
        self._counts_complete = True
        self._total = 0

    def load(self) -> None:
        """At start-up: unfinished tasks into memory, and how many tasks each workspace has."""
        for key, doc in self._db.execute(
            "SELECT key, doc FROM tasks WHERE finished = 0 ORDER BY rowid"
        ):
            self._materialize(key, doc)
        self._counts = dict(
            self._db.execute("SELECT workspace_id, COUNT(*) FROM tasks GROUP BY workspace_id")
        )
        self._total = sum(self._counts.values())

    # ---- change tracking (the store's writer and its unsaved-change check) ----

    @property
    def changed(self) -> set[str]:
        """Keys added or saved since the last drain."""
        return {key for key, task in self._dirty.items() if task is not None}

    @property
    def removed(self) -> set[str]:
        """Keys removed since the last drain."""
        return {key for key, task in self._dirty.items() if task is None}

    def key(self, record: TaskRecord) -> str:
        """The primary key of a task."""
        return record.id

    def items(self) -> list[tuple[str, TaskRecord]]:
        """Every task object some code may hold (what the unsaved-change check compares)."""
        return list(self._live.items())

    def take(self) -> tuple[list[tuple[object, ...]], list[str]]:
        """The rows to write and keys to delete since the last take; they stay visible to
        finders until ``written()`` (or go back to pending on ``requeue()``)."""
        batch, self._dirty = self._dirty, {}
        self._inflight.update(batch)
        rows = [task_row(task) for task in batch.values() if task is not None]
        return rows, [key for key, task in batch.items() if task is None]

    def written(self) -> None:
        """The last batch is in the database."""
        self._inflight.clear()

    def requeue(self) -> None:
        """The last batch failed: write it again with the next one (newer changes win)."""
        for key, task in self._inflight.items():
            self._dirty.setdefault(key, task)
        self._inflight.clear()

    def apply_remote(self, key: str, doc: str | None, *, force: bool = False) -> None:
        """Another relay instance wrote this task (PostgreSQL): a copy some code holds takes
        its fields; this instance's own pending change, if any, stays the newer one."""
        if key in self._dirty or (key in self._inflight and not force):
            return
        live = self._live.get(key)
        if doc is None:
            self._forget(key)
            self._counts_stale(live.workspace_id if live else None)
            return
        fresh = TaskRecord.model_validate_json(doc)
        if live is not None and not force and is_older(fresh, live):
            log.info("task %s: kept %s over an older %s", key, live.status, fresh.status)
            return  # read before a change this instance has since written: keep ours
        self._counts_stale(fresh.workspace_id if live is None else None)
        if live is not None:
            live.__dict__.update(fresh.__dict__)
            self._remember(live)
        elif fresh.status not in TERMINAL_STATUSES:
            self._remember(fresh)

    def held(self, key: str) -> TaskRecord | None:
        """The task object code here may hold, if any (no database read)."""
        return self._live.get(key)

    def _counts_stale(self, workspace_id: str | None) -> None:
        """A task this instance did not know came or went: count again when asked."""
        if workspace_id is None:
            self._counts.clear()
        else:
            self._counts.pop(workspace_id, None)
        self._counts_complete = False
        self._total = -1

    # ---- memory ----

    def _remember(self, task: TaskRecord) -> TaskRecord:
        self._live[task.id] = task
        self._recent[task.id] = task
        self._recent.move_to_end(task.id)
        while len(self._recent) > self._recent_cap:
            self._recent.popitem(last=False)
        if task.status in TERMINAL_STATUSES:
            self._unfinished.pop(task.id, None)
        else:
            self._unfinished[task.id] = task
        return task

    def _forget(self, key: str) -> None:
        self._live.pop(key, None)
        self._recent.pop(key, None)
        self._unfinished.pop(key, None)

    def _materialize(self, key: str, doc: str) -> TaskRecord:
        live = self._live.get(key)
        return live if live is not None else self._remember(TaskRecord.model_validate_json(doc))

    def _overlay(self) -> Overlay:
        return {**self._inflight, **self._dirty} if self._inflight else dict(self._dirty)

    # ---- the repository ----

    def get(self, task_id: str) -> TaskRecord | None:
        """A task by id."""
        for pending in (self._dirty, self._inflight):
            if task_id in pending:
                return pending[task_id]
        live = self._live.get(task_id)
        if live is not None:
            return live
        row = self._db.execute("SELECT doc FROM tasks WHERE key = ?", (task_id,)).fetchone()
        return None if row is None else self._materialize(task_id, row[0])

    def add(self, record: TaskRecord) -> None:
        """Insert a task (or replace one with the same id)."""
        if self.get(record.id) is None:
            if record.workspace_id in self._counts or self._counts_complete:
                self._counts[record.workspace_id] = self._counts.get(record.workspace_id, 0) + 1
            if self._total >= 0:
                self._total += 1
        self._dirty[record.id] = record
        self._remember(record)

    def save(self, record: TaskRecord) -> None:
        """Mark a task changed in place as changed."""
        if self.get(record.id) is None:
            msg = f"save() of a record that was never added: TaskRecord {record.id}"
            raise LookupError(msg)
        self._dirty[record.id] = record
        self._remember(record)

    def remove(self, record: TaskRecord) -> None:
        """Delete a task (no error if it is already gone)."""
        if self.get(record.id) is None:
            return
        if record.workspace_id in self._counts:
            self._counts[record.workspace_id] -= 1
        if self._total > 0:
            self._total -= 1
        self._dirty[record.id] = None
        self._forget(record.id)

    def all(self) -> list[TaskRecord]:
        """Every task, in insertion order (reads the whole table: operator views only)."""
        overlay = self._overlay()
        found = [
            self._materialize(key, doc)
            for key, doc in self._db.execute("SELECT key, doc FROM tasks ORDER BY rowid")
            if key not in overlay
        ]
        return found + [task for task in overlay.values() if task is not None]

    def count(self) -> int:
        """How many tasks there are."""
        if self._total < 0:
            row = self._db.execute("SELECT COUNT(*) FROM tasks").fetchone()
            self._total = int(row[0]) + self._pending_new()
        return self._total

    def count_of_workspace(self, workspace_id: str) -> int:
        """How many tasks a workspace has (kept in memory: no count query per submit, unless
        another relay instance added some since the last count)."""
        count = self._counts.get(workspace_id)
        if count is None and self._counts_complete:
            return 0
        if count is None:
            row = self._db.execute(
                "SELECT COUNT(*) FROM tasks WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
            count = self._counts[workspace_id] = int(row[0]) + self._pending_new(workspace_id)
        return count

    def _pending_new(self, workspace_id: str | None = None) -> int:
        """Tasks added here and not yet in the database (a count query misses them)."""
        overlay = self._overlay()
        return sum(
            1
            for key, task in overlay.items()
            if task is not None
            and (workspace_id is None or task.workspace_id == workspace_id)
            and self._db.execute("SELECT 1 FROM tasks WHERE key = ?", (key,)).fetchone() is None
        )

    def unfinished(self, agent_key: str | None = None) -> list[TaskRecord]:
        """Tasks not in a terminal status (of one agent, if given), oldest first."""
        found = [
            t
            for t in self._unfinished.values()
            if t.status not in TERMINAL_STATUSES and (agent_key is None or t.agent_key == agent_key)
        ]
        return sorted(found, key=task_order)

    def _query(self, sql: str, args: tuple[object, ...], overlay: Overlay) -> list[TaskRecord]:
        return [
            self._materialize(key, doc)
            for key, doc in self._db.execute(sql, args)
            if key not in overlay
        ]

    def of_workspace(
        self, workspace_id: str, *, limit: int | None = None, before: TaskRecord | None = None
    ) -> list[TaskRecord]:
        """A workspace's tasks, newest first: one index range scan with a LIMIT."""
        overlay = self._overlay()
        cursor = (micros(before.created_at), before.id) if before is not None else None
        sql = "SELECT key, doc FROM tasks WHERE workspace_id = ?"
        args: tuple[object, ...] = (workspace_id,)
        if cursor is not None:
            sql += " AND (created_us, key) < (?, ?)"
            args += cursor
        sql += " ORDER BY created_us DESC, key DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit + len(overlay),)
        found = self._query(sql, args, overlay)
        found += [
            t
            for t in overlay.values()
            if t is not None
            and t.workspace_id == workspace_id
            and (before is None or task_order(t) < task_order(before))
        ]
        return sorted(found, key=task_order, reverse=True)[:limit]

    def oldest_finished(self, workspace_id: str, limit: int) -> list[TaskRecord]:
        """Up to ``limit`` finished tasks of a workspace, oldest first."""
        overlay = self._overlay()
        found = self._query(
            "SELECT key, doc FROM tasks WHERE workspace_id = ? AND finished = 1 "
            "ORDER BY created_us, key LIMIT ?",
            (workspace_id, limit + len(overlay)),
            overlay,
        )
        found += [
            t
            for t in overlay.values()
            if t is not None and t.workspace_id == workspace_id and t.status in TERMINAL_STATUSES
        ]
        return sorted(found, key=task_order)[:limit]

    def finished_before(self, cutoff: datetime, limit: int) -> list[TaskRecord]:
        """Up to ``limit`` tasks that finished before ``cutoff``, oldest first."""
        overlay = self._overlay()
        found = self._query(
            "SELECT key, doc FROM tasks WHERE finished_us IS NOT NULL AND finished_us < ? "
            "ORDER BY finished_us, key LIMIT ?",
            (micros(cutoff), limit + len(overlay)),
            overlay,
        )
        found += [
            t
            for t in overlay.values()
            if t is not None
            and t.status in TERMINAL_STATUSES
            and t.finished_at is not None
            and t.finished_at < cutoff
        ]
        found = [t for t in found if t.finished_at is not None]
        return sorted(found, key=lambda t: (micros(t.finished_at or cutoff), t.id))[:limit]
