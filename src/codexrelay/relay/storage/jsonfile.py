"""state.json persistence: one versioned document, written atomically and durably.

Requests mutate the in-memory ``State`` on the event loop, then ``await store.commit()``;
the single writer task coalesces every commit that arrives while a write is in flight into
the next write, and each ``commit()`` returns only once a write containing its change has
been fsync'd. A corrupt or unknown-version file stops start-up and is never overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from codexrelay.crypto import new_id
from codexrelay.fileio import ensure_private_dir, write_private_file
from codexrelay.relay.storage.durability import DurableWaiters
from codexrelay.relay.storage.records import SCHEMA_VERSION, State
from codexrelay.settings import describe_validation_error

log = logging.getLogger("codexrelay.store")

LAZY_WRITE_DELAY_SEC = 0.25


class StateError(Exception):
    """The state file cannot be used; the relay must not start (and must not overwrite it)."""


class StateStore(Protocol):
    """What the domain needs from storage; a PostgreSQL backend would implement the same."""

    state: State

    async def commit(self) -> None:
        """Return once every change made so far is durable."""

    def touch(self) -> None:
        """Schedule a write of low-value changes (e.g. last-seen times) without waiting."""


def read_state(path: Path) -> State | None:
    """Parse ``path``; None if it does not exist. Raises ``StateError`` on anything else."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"{path}: cannot read state: {exc.strerror}"
        raise StateError(msg) from None
    advice = "It was left untouched; restore a backup or move it aside to start empty."
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path}: state file is corrupt (not valid JSON: {exc}). {advice}"
        raise StateError(msg) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("schemaVersion"), int):
        msg = f"{path}: state file has no schemaVersion. {advice}"
        raise StateError(msg)
    if raw["schemaVersion"] != SCHEMA_VERSION:
        msg = (
            f"{path}: state schemaVersion {raw['schemaVersion']} is not the supported "
            f"version {SCHEMA_VERSION}; use the codexrelay release that wrote it. {advice}"
        )
        raise StateError(msg)
    try:
        return State.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(State, exc)[:5])
        msg = f"{path}: state file is invalid ({problems}). {advice}"
        raise StateError(msg) from None


def encode_state(state: State) -> bytes:
    """The on-disk bytes of ``state``."""
    return state.model_dump_json(by_alias=True).encode("utf-8") + b"\n"


class JsonFileStore:
    """The embedded store: ``<dataDir>/state.json`` guarded by an exclusive lock file."""

    def __init__(self, path: Path, state: State, lock_fd: int) -> None:
        self.path = path
        self.state = state
        self._lock_fd = lock_fd
        self._version = 0
        self._durable = 0
        self._attempted = 0
        self._waiters = DurableWaiters()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._lazy: asyncio.Task[None] | None = None
        self.writes = 0

    @classmethod
    def open(cls, path: Path, *, now: Callable[[], datetime]) -> JsonFileStore:
        """Lock the data dir and load (or start) the state. Raises ``StateError``."""
        ensure_private_dir(path.parent)
        lock_fd = _lock_data_dir(path.parent)
        try:
            state = read_state(path)
        except StateError:
            os.close(lock_fd)
            raise
        fresh = state is None
        if state is None:
            state = State(instance_id=new_id("inst"), created_at=now())
        store = cls(path, state, lock_fd)
        if fresh:
            store.save_sync()
        return store

    def save_sync(self) -> None:
        """Write the state now, from synchronous code (start-up and CLI commands)."""
        write_private_file(self.path, encode_state(self.state))
        self.writes += 1

    async def commit(self) -> None:
        """Return once a write that includes every change made so far is durable."""
        self._version += 1
        waiting = self._waiters.wait_for(self._version)
        self._kick()
        await waiting

    def touch(self) -> None:
        """Schedule a write without waiting for it, batched over ``LAZY_WRITE_DELAY_SEC``
        so a stream of low-value changes costs a few writes, not one each."""
        self._version += 1
        if self._lazy is None or self._lazy.done():
            self._lazy = asyncio.get_running_loop().create_task(self._lazy_kick())

    async def _lazy_kick(self) -> None:
        await asyncio.sleep(LAZY_WRITE_DELAY_SEC)
        self._kick()

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            if self._version == self._attempted:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            version = self._attempted = self._version
            data = encode_state(self.state)
            try:
                await asyncio.to_thread(write_private_file, self.path, data)
            except OSError as exc:
                log.error("state write failed: %s", exc.strerror)  # noqa: TRY400 - errno says enough
                self._waiters.settle(version, failed=True)
                continue
            self.writes += 1
            self._durable = version
            self._waiters.settle(version, failed=False)

    async def close(self) -> None:
        """Flush pending changes, stop the writer and release the data dir lock."""
        self._closing = True
        if self._lazy is not None:
            self._lazy.cancel()
        if self._writer is not None and not self._writer.done():
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._writer
        if self._version != self._durable:
            with contextlib.suppress(OSError):
                self.save_sync()
        os.close(self._lock_fd)


def _lock_data_dir(directory: Path) -> int:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = f"{directory} is in use by another relay process; stop it first"
        raise StateError(msg) from None
    return fd
