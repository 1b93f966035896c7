"""Opening the configured backend: the one place that knows which classes exist."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.jsonfile import JsonFileStore
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.sqldb import DATABASE_FILE
from codexrelay.relay.storage.sqlite import SqliteStore


class _Storage(Protocol):
    @property
    def backend(self) -> str: ...
    @property
    def url(self) -> str | None: ...


class StoreConfig(Protocol):
    """What opening a store needs of the relay config (``RelayConfig`` has it)."""

    @property
    def storage(self) -> _Storage: ...
    @property
    def data_path(self) -> Path: ...


BACKENDS = ("sqlite", "json", "postgres")


def open_store(
    backend: str,
    data_dir: Path,
    *,
    now: Callable[[], datetime],
    check_saves: bool | None = None,
    url: str | None = None,
) -> MemoryStore:
    """The store of ``data_dir`` for ``backend`` (``url``: the PostgreSQL database). Raises
    ``StateError`` if it cannot be used."""
    if backend == "postgres":
        # Imported here: psycopg is needed only by relays that use it.
        from codexrelay.relay.storage.pgdb import require_url  # noqa: PLC0415
        from codexrelay.relay.storage.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore.open_url(require_url(url), data_dir, now=now, check_saves=check_saves)
    if backend == "sqlite":
        return SqliteStore.open(data_dir, now=now, check_saves=check_saves)
    if backend == "json":
        if (data_dir / DATABASE_FILE).exists() and not (data_dir / "state.json").exists():
            msg = (
                f"{data_dir} holds a {DATABASE_FILE} database but the config asks for the json "
                'backend; set "storage": {"backend": "sqlite"} (the json backend would start '
                "empty)"
            )
            raise StateError(msg)
        return JsonFileStore.open(data_dir / "state.json", now=now, check_saves=check_saves)
    msg = f"unknown storage backend {backend!r}; expected one of {', '.join(BACKENDS)}"
    raise StateError(msg)


def open_configured_store(
    config: StoreConfig, *, now: Callable[[], datetime], check_saves: bool | None = None
) -> MemoryStore:
    """The store a relay config names (backend, data dir, database URL)."""
    storage = config.storage
    return open_store(
        storage.backend, config.data_path, now=now, check_saves=check_saves, url=storage.url
    )
