"""The ids of tasks this agent has accepted, kept on disk so a repeat is refused (B4).

A task is executed at most once: the relay never re-sends a dispatched task, and this
ledger makes the agent refuse one even if the relay (or someone who replays its messages)
does, across agent restarts. An id is appended and fsynced before its task starts. The
file stays bounded: once it holds twice ``capacity`` ids it is rewritten with the newest
``capacity``, so the newest ``capacity`` ids are always remembered.

A signed task's id (TRUST.md §4.6 step 5) is also kept until its statement has expired
(``keep_until``, Unix seconds, skew included), however many ids came after it, so a
statement can never be replayed while it would still verify. Its durable record is the
agent's audit log (fsynced before the task starts), so its line here need not be fsynced
again; :meth:`TaskLedger.remember` restores such ids from the audit log at start-up.

A plain task's id goes through :meth:`TaskLedger.reserve`: it is remembered at once (a
repeat is refused from that moment) and its line is appended and fsynced on a thread
together with every id reserved while a write is in flight (group commit). The task waits
for that fsync before it starts, so "durable before it runs" holds as before, while the
agent's event loop keeps reading messages instead of waiting on the disk for each task.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from codexrelay.fileio import PRIVATE_FILE, ensure_private_dir, write_private_file

LEDGER_FILE = "task-ledger.jsonl"
DEFAULT_CAPACITY = 10_000


class TaskLedger:
    """An append-only, bounded, durable set of accepted task ids."""

    def __init__(self, path: Path, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.path = path
        self.capacity = capacity
        self._ids: dict[str, int | None] = {}  # insertion-ordered: oldest first; keep-until
        self._lines = 0
        # Reserved ids whose lines are not written yet, and who waits for their fsync.
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, state_dir: Path, *, capacity: int = DEFAULT_CAPACITY) -> TaskLedger:
        """Load the ledger from ``state_dir`` (0700), creating it if needed."""
        ensure_private_dir(state_dir)
        ledger = cls(state_dir / LEDGER_FILE, capacity=capacity)
        ledger._load()
        return ledger

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def record(self, task_id: str, keep_until: int | None = None, *, sync: bool = True) -> bool:
        """Remember ``task_id`` (durably unless ``sync`` is off because the caller writes a
        durable record of it before the task starts); False if it was seen before."""
        if task_id in self._ids:
            return False
        self._append(task_id, keep_until, sync=sync)
        self._ids[task_id] = keep_until
        self._lines += 1
        flushing = self._flusher is not None and not self._flusher.done()
        if self._lines >= 2 * self.capacity and not flushing:
            self._compact()
        return True

    def reserve(self, task_id: str) -> asyncio.Future[None] | None:
        """Remember ``task_id`` now and return a future that resolves once its line is
        fsynced (or fails with the ``OSError``); None if it was seen before. Lines reserved
        while a write is in flight share the next write and its one fsync."""
        if task_id in self._ids:
            return None
        self._ids[task_id] = None
        self._lines += 1
        self._pending.append(self._line(task_id, None).encode("utf-8"))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return waiter

    async def _flush(self) -> None:
        """Write and fsync every pending line in one go, until none is left; then compact
        if the file has grown past its bound (never while a write is in flight)."""
        while self._pending:
            data, waiters = b"".join(self._pending), self._waiters
            self._pending, self._waiters = [], []
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self._lines >= 2 * self.capacity:
            self._compact()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            write_private_file(self.path, b"")  # created durably, directory entry included
            return
        self.path.chmod(PRIVATE_FILE)
        if text and not text.endswith("\n"):
            self._write(b"\n")  # end a torn last line so the next id starts cleanly
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash: its task never started
            if isinstance(item, str):
                self._ids[item] = None
            elif isinstance(item, dict) and isinstance(item.get("id"), str):
                until = item.get("until")
                self._ids[item["id"]] = until if isinstance(until, int) else None
            self._lines += 1

    @staticmethod
    def _line(task_id: str, keep_until: int | None) -> str:
        # JSON keeps any id on one line, whatever characters it holds.
        item: object = task_id if keep_until is None else {"id": task_id, "until": keep_until}
        return json.dumps(item) + "\n"

    def _append(self, task_id: str, keep_until: int | None = None, *, sync: bool = True) -> None:
        self._write(self._line(task_id, keep_until).encode("utf-8"), sync=sync)

    def remember(self, found: Iterable[tuple[str, int]]) -> None:
        """Ids accepted before, as another durable record (the audit log) holds them."""
        for task_id, keep_until in found:
            if task_id not in self._ids:
                self._ids[task_id] = keep_until

    def _write(self, data: bytes, *, sync: bool = True) -> None:
        """Append ``data`` (and fsync before returning, unless told not to)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _compact(self) -> None:
        now = int(time.time())
        newest = set(list(self._ids)[-self.capacity :])
        keep = {
            task_id: until
            for task_id, until in self._ids.items()
            if task_id in newest or (until is not None and until >= now)
        }
        data = "".join(self._line(task_id, until) for task_id, until in keep.items())
        write_private_file(self.path, data.encode("utf-8"))
        self._ids = keep
        self._lines = len(keep)
