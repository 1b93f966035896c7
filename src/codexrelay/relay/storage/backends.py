"""Opening the configured backend: the one place that knows which classes exist."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.jsonfile import JsonFileStore
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.sqldb import DATABASE_FILE
from codexrelay.relay.storage.sqlite import SqliteStore

BACKENDS = ("sqlite", "json")


def open_store(
    backend: str, data_dir: Path, *, now: Callable[[], datetime], check_saves: bool | None = None
) -> MemoryStore:
    """The store of ``data_dir`` for ``backend``. Raises ``StateError`` if it cannot be used."""
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
