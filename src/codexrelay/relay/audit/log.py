"""The append-only audit chain on disk: ``dataDir/audit/*.jsonl`` (B2).

``append`` runs on the event loop and gives a record its sequence number, links and
signature at once, so the chain's order is the order the events happened in. One writer
task then writes every pending record in a single batch and fsyncs; ``durable(seq)``
returns once that is done. Requests await it before they are answered: the same rule as
``state.json``, and many requests share one fsync.

Files are named by the sequence number of their first record and never rewritten: each
start, and each rotation past ``max_file_bytes``, opens a new file, and the chain runs on
across them (a single batch is never split, so the size limit is soft). A line torn by a
crash is left as it is (it was never acknowledged); the next start says so in an
``audit.recovered`` record and carries on from the last complete record.
``checkpoint.json`` remembers the chain heads at a file boundary so a start need not read
every file; the verifier never relies on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexrelay.auditverify import (
    GENESIS,
    RECORD_VERSION,
    canonical,
    chain_files,
    read_lines,
    record_hash,
)
from codexrelay.fileio import PRIVATE_FILE, ensure_private_dir, fsync_dir, write_private_file
from codexrelay.relay.audit.keys import Signer
from codexrelay.relay.storage.durability import DurableWaiters

log = logging.getLogger("codexrelay.audit")

CHECKPOINT_NAME = "checkpoint.json"
MAX_FILE_BYTES = 8 * 1024 * 1024
STARTED_EVENT = "relay.started"
Scalar = str | int | bool | None
# Values that look like credentials never enter a record, whatever a caller passes.
_SECRET_PREFIXES = ("crb_", "cra_", "crs_", "-----BEGIN")


def iso(moment: datetime) -> str:
    """Record times: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_values(values: dict[str, Any]) -> None:
    """Only short scalars that are not credentials: ids, hashes, flags, counts."""
    for name, value in values.items():
        if not isinstance(value, Scalar):
            msg = f"audit value {name!r} must be a scalar"
            raise TypeError(msg)
        if isinstance(value, str) and (len(value) > 256 or value.startswith(_SECRET_PREFIXES)):
            msg = f"audit value {name!r} looks like text or a credential"
            raise ValueError(msg)


@dataclass
class Head:
    """Where the chains end: the global one, each workspace's, and the last start record."""

    seq: int = 0
    hash: str = GENESIS
    workspaces: dict[str, tuple[int, str]] = field(default_factory=dict)
    started: dict[str, Any] | None = None

    def apply(self, record: dict[str, Any]) -> None:
        """Move past ``record``."""
        self.seq, self.hash = record["seq"], record["hash"]
        self.workspaces[record["workspace"]] = (record["wseq"], record["hash"])
        if record["event"] == STARTED_EVENT:
            self.started = dict(record["target"])

    def copy(self) -> Head:
        """An independent copy."""
        return Head(self.seq, self.hash, dict(self.workspaces), self.started)

    def to_json(self) -> dict[str, Any]:
        """The checkpoint form."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "workspaces": {k: list(v) for k, v in self.workspaces.items()},
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Head:
        """Inverse of ``to_json``; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
        workspaces = {str(k): (int(v[0]), str(v[1])) for k, v in data["workspaces"].items()}
        started = data["started"]
        return cls(int(data["seq"]), str(data["hash"]), workspaces, started)


@dataclass
class Recovery:
    """What a start found at the end of the chain that deserves a record of its own."""

    torn_bytes: int = 0
    torn_sha256: str = ""
    unreadable_lines: int = 0

    def target(self) -> dict[str, Scalar] | None:
        """The ``audit.recovered`` target, or None when there is nothing to say."""
        if not (self.torn_bytes or self.unreadable_lines):
            return None
        return {
            "tornBytes": self.torn_bytes,
            "tornSha256": self.torn_sha256 or None,
            "unreadableLines": self.unreadable_lines,
        }


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            return None
        int(record["seq"]), int(record["wseq"]), str(record["workspace"]), record["hash"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return record


def _load_checkpoint(directory: Path) -> tuple[str, Head] | None:
    try:
        data = json.loads((directory / CHECKPOINT_NAME).read_bytes())
        return str(data["after"]), Head.from_json(data["head"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def scan(directory: Path) -> tuple[Head, Recovery]:
    """Find the chain heads: from the checkpoint on if it fits the files, else from the
    start. Only the newest file's torn tail is news (older ones were recorded already)."""
    files = chain_files(directory)
    start = _load_checkpoint(directory)
    if start is not None and start[0] in {p.name for p in files}:
        after, head = start
        # The checkpoint's own file is read again: it may have gained a torn tail since.
        found = _scan_files([p for p in files if p.name >= after], head.copy())
        if found is not None:
            return found
    found = _scan_files(files, Head())
    assert found is not None  # noqa: S101 - a full scan has nothing to contradict
    return found


def _scan_files(files: list[Path], head: Head) -> tuple[Head, Recovery] | None:
    """Apply every readable record past ``head``; None if they do not follow it."""
    recovery = Recovery()
    for index, path in enumerate(files):
        newest = index == len(files) - 1
        lines, tail = read_lines(path)
        for line in lines:
            record = _parse(line)
            if record is None:
                recovery.unreadable_lines += newest
                continue
            if record["seq"] <= head.seq:
                continue
            if head.seq and (record["seq"], record.get("prev")) != (head.seq + 1, head.hash):
                return None
            head.apply(record)
        if tail and newest:
            recovery.torn_bytes = len(tail)
            recovery.torn_sha256 = hashlib.sha256(tail).hexdigest()
    return head, recovery


@dataclass(frozen=True)
class Entry:
    """A signed record waiting to be written."""

    seq: int
    record: dict[str, Any]
    line: bytes


class AuditLog:
    """The chain: sync ``append``, awaited ``durable``, one writer task, size rotation."""

    def __init__(
        self,
        directory: Path,
        signer: Signer,
        head: Head,
        *,
        recovery: Recovery | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.head = head
        self.recovery = recovery or Recovery()
        self.max_file_bytes = max_file_bytes
        self._durable = head.seq
        self._durable_head = head.copy()
        self._pending: list[Entry] = []
        self._waiters = DurableWaiters()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._fd: int | None = None
        self._file: str | None = None
        self._size = 0
        self.writes = 0

    @classmethod
    def open(
        cls, directory: Path, signer: Signer, *, max_file_bytes: int = MAX_FILE_BYTES
    ) -> AuditLog:
        """Make the directory (0700) and find where the chain ends."""
        ensure_private_dir(directory)
        head, recovery = scan(directory)
        return cls(directory, signer, head, recovery=recovery, max_file_bytes=max_file_bytes)

    @property
    def durable_seq(self) -> int:
        """The last sequence number known to be on disk."""
        return self._durable

    def append(
        self,
        event: str,
        *,
        workspace: str,
        actor: dict[str, Any],
        target: dict[str, Scalar],
        client: str | None,
        now: datetime,
    ) -> int:
        """Chain, sign and queue one record; returns its sequence number."""
        check_values(actor)
        check_values(target)
        wseq, wprev = self.head.workspaces.get(workspace, (0, GENESIS))
        record: dict[str, Any] = {
            "v": RECORD_VERSION,
            "seq": self.head.seq + 1,
            "time": iso(now),
            "workspace": workspace,
            "wseq": wseq + 1,
            "event": event,
            "actor": actor,
            "target": target,
            "client": client,
            "prev": self.head.hash,
            "wprev": wprev,
        }
        record["hash"] = record_hash(record)
        record["sig"] = self.signer.sign_record(record["hash"])
        self.head.apply(record)
        self._pending.append(Entry(record["seq"], record, canonical(record) + b"\n"))
        self._kick()
        return int(record["seq"])

    async def durable(self, seq: int | None = None) -> None:
        """Return once record ``seq`` (default: every record so far) is on disk."""
        target = self.head.seq if seq is None else seq
        if target <= self._durable:
            return
        waiting = self._waiters.wait_for(target)
        self._kick()
        await waiting

    def _kick(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (CLI use): flush_sync() writes
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop())
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write_batch, batch)
            except OSError as exc:
                log.error("audit write failed: %s", exc.strerror)  # noqa: TRY400 - errno says enough
                self._pending[:0] = batch  # kept, in order: the chain must not lose a link
                self._waiters.settle(batch[-1].seq, failed=True)
                if self._closing:
                    return
                await self._wake.wait()  # retry with the next record, not in a tight loop
                self._wake.clear()
                continue
            self._durable = batch[-1].seq
            self._waiters.settle(self._durable, failed=False)

    # --- the writer's side (a worker thread, one batch at a time) ---

    def _write_batch(self, batch: list[Entry]) -> None:
        data = b"".join(entry.line for entry in batch)
        if self._fd is None or (self._size and self._size + len(data) > self.max_file_bytes):
            self._rotate(batch[0].seq)
        assert self._fd is not None  # noqa: S101 - _rotate opened it
        before = self._size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError:
            # Take back a partial write so the retry does not follow half a line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise
        self._size += len(data)
        self.writes += 1
        for entry in batch:
            self._durable_head.apply(entry.record)

    def _rotate(self, first_seq: int) -> None:
        if self._fd is not None:
            self._close_file()
        n = 0
        while (self.directory / f"{first_seq:012d}-{n:03d}.jsonl").exists():
            n += 1  # a file from a start that died before its first complete record
        name = f"{first_seq:012d}-{n:03d}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._fd = os.open(self.directory / name, flags, PRIVATE_FILE)
        self._file, self._size = name, 0
        fsync_dir(self.directory)

    def _close_file(self) -> None:
        """Close the current file and remember the heads at its end."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        checkpoint = {"after": self._file, "head": self._durable_head.to_json()}
        with contextlib.suppress(OSError):
            write_private_file(self.directory / CHECKPOINT_NAME, canonical(checkpoint))

    def flush_sync(self) -> None:
        """Write every pending record now, from code without an event loop."""
        if self._pending:
            batch, self._pending = self._pending, []
            self._write_batch(batch)
            self._durable = batch[-1].seq

    async def close(self) -> None:
        """Write what is pending, stop the writer, close the file."""
        self._closing = True
        if self._writer is not None and not self._writer.done():
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._writer
        with contextlib.suppress(OSError):
            self.flush_sync()
        self._close_file()
