"""The JSON backend: ``state.json``, one versioned document written atomically and durably.

The records live in the in-memory repositories of ``MemoryStore``; requests change them on
the event loop, then ``await store.commit()``. The single writer task coalesces every commit
that arrives while a write is in flight into the next write, and each ``commit()`` returns
only once a write containing its change has been fsync'd. A corrupt or unknown-version file
stops start-up and is never overwritten.
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

from pydantic import ValidationError

from codexrelay.crypto import new_id
from codexrelay.fileio import ensure_private_dir, write_private_file
from codexrelay.relay.storage.durability import GroupWriter
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.memory import MemoryStore, UnsavedChangeError
from codexrelay.relay.storage.records import SCHEMA_VERSION, State
from codexrelay.settings import describe_validation_error

log = logging.getLogger("codexrelay.store")

__all__ = ["CHECK_SAVES_ENV", "JsonFileStore", "StateError", "lock_data_dir", "read_state"]

# Set by the test suite: every commit checks that each changed record was saved (see
# ``MemoryStore``), so a backend that writes only changed rows would lose nothing.
CHECK_SAVES_ENV = "CODEXRELAY_CHECK_SAVES"


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


class JsonFileStore(MemoryStore):
    """The JSON backend: ``<dataDir>/state.json`` guarded by an exclusive lock file. Every
    write re-encodes the whole document, so its cost grows with history: the SQLite backend
    (the default) writes only changed rows."""

    def __init__(self, path: Path, state: State, lock_fd: int, *, check_saves: bool) -> None:
        super().__init__(state.instance_id, state.created_at, check_saves=check_saves)
        self.load(state)
        self.path = path
        self._lock_fd = lock_fd
        self._writer = GroupWriter(self._write)

    @property
    def writes(self) -> int:
        """How many writes reached the disk (tests check that commits are coalesced)."""
        return self._writer.writes

    @classmethod
    def open(
        cls, path: Path, *, now: Callable[[], datetime], check_saves: bool | None = None
    ) -> JsonFileStore:
        """Lock the data dir and load (or start) the state. Raises ``StateError``."""
        ensure_private_dir(path.parent)
        lock_fd = lock_data_dir(path.parent)
        try:
            state = read_state(path)
        except StateError:
            os.close(lock_fd)
            raise
        fresh = state is None
        if state is None:
            state = State(instance_id=new_id("inst"), created_at=now())
        store = cls(path, state, lock_fd, check_saves=check_saves_default(check_saves))
        if fresh:
            store.save_sync()
        return store

    def save_sync(self) -> None:
        """Write the state now, from synchronous code (start-up and CLI commands)."""
        self.check_unsaved()
        self.drain()
        write_private_file(self.path, encode_state(self.document()))

    async def commit(self) -> None:
        """Return once a write that includes every change made so far is durable."""
        await self._writer.commit()

    def touch(self) -> None:
        """Schedule a write without waiting for it (coalesced)."""
        self._writer.touch()

    async def _write(self) -> bool:
        ok = True
        try:
            # Once per write, not per commit: a storm of commits shares one check.
            self.check_unsaved()
        except UnsavedChangeError:
            ok = False
        self.drain()
        data = encode_state(self.document())
        try:
            await asyncio.to_thread(write_private_file, self.path, data)
        except OSError as exc:
            log.error("state write failed: %s", exc.strerror)  # noqa: TRY400 - errno says enough
            return False
        return ok

    async def close(self) -> None:
        """Flush pending changes, stop the writer and release the data dir lock."""
        await self._writer.close()
        if self._writer.pending:
            with contextlib.suppress(OSError):
                self.save_sync()
        os.close(self._lock_fd)


def check_saves_default(check_saves: bool | None) -> bool:
    """The unsaved-change check is on when asked for, or when the environment says so."""
    if check_saves is None:
        return os.environ.get(CHECK_SAVES_ENV) == "1"
    return check_saves


def lock_data_dir(directory: Path) -> int:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = f"{directory} is in use by another relay process; stop it first"
        raise StateError(msg) from None
    return fd
