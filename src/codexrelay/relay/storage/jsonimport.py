"""Moving a relay from ``state.json`` (the earlier releases' store) to SQLite, once.

On the first start with the SQLite backend, a ``state.json`` in the data dir is read and
validated exactly as the JSON backend would (a corrupt or unknown-version file stops
start-up and is never touched), written into a new database beside it under a temporary
name, and only then renamed into place; finally ``state.json`` is renamed to
``state.json.migrated-<time>`` and kept as a backup. The database records the SHA-256 of
the file it came from, so a crash between the two renames is finished on the next start,
and a different ``state.json`` next to an existing database is refused rather than guessed
about.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from codexrelay.fileio import fsync_dir
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.jsonfile import read_state
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.records import State
from codexrelay.relay.storage.schema import CACHED_TABLES, encode, task_row
from codexrelay.relay.storage.sqldb import DATABASE_FILE, Batch, Database

log = logging.getLogger("codexrelay.store")

STATE_FILE = "state.json"
IMPORTED_FROM = "importedStateSha256"


def import_state_file(data_dir: Path, *, now: Callable[[], datetime]) -> bool:
    """Migrate ``data_dir/state.json`` into ``relay.sqlite3`` if it is there; True if it was.
    Raises ``StateError`` (changing nothing) if it cannot be used."""
    state_path, db_path = data_dir / STATE_FILE, data_dir / DATABASE_FILE
    try:
        data = state_path.read_bytes()
    except FileNotFoundError:
        return False
    state = read_state(state_path)
    if state is None:
        return False
    digest = hashlib.sha256(data).hexdigest()
    if db_path.exists():
        if _imported_from(db_path) != digest:
            msg = (
                f"{data_dir} holds both {STATE_FILE} and {DATABASE_FILE}, and the database was "
                f"not made from that {STATE_FILE}. Both were left untouched: move the one you "
                "do not want out of the data dir."
            )
            raise StateError(msg)
    else:
        _build(state, db_path, digest, now)
    backup = _keep_as_backup(state_path, now())
    log.info("moved %d tasks from %s into %s; kept the file as %s",
             len(state.tasks), STATE_FILE, DATABASE_FILE, backup.name)  # fmt: skip
    return True


def _imported_from(db_path: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (IMPORTED_FROM,)).fetchone()
        except sqlite3.DatabaseError:
            return None
    return None if row is None else str(row[0])


def state_batch(state: State) -> Batch:
    """Every record of a state document as rows."""
    memory = MemoryStore(state.instance_id, state.created_at)
    memory.load(state)
    batch = Batch()
    for name in CACHED_TABLES:
        table = getattr(memory, name)
        batch.upserts[name] = [(key, encode(record)) for key, record in table.items()]
    batch.upserts["tasks"] = [task_row(task) for task in state.tasks.values()]
    return batch


def _build(state: State, db_path: Path, digest: str, now: Callable[[], datetime]) -> None:
    """Write the whole database under a temporary name, then rename it into place."""
    tmp = db_path.with_name(f".{db_path.name}.importing")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    meta = {
        "instanceId": state.instance_id,
        "createdAt": state.created_at.isoformat(),
        IMPORTED_FROM: digest,
        "importedAt": now().isoformat(),
    }
    db = Database.open(tmp, now=now, meta=meta)
    try:
        db.apply(state_batch(state))
    finally:
        db.close()  # the last connection checkpoints the WAL into the file and removes it
    tmp.replace(db_path)
    fsync_dir(db_path.parent)


def _keep_as_backup(state_path: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    backup = state_path.with_name(f"{STATE_FILE}.migrated-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = state_path.with_name(f"{STATE_FILE}.migrated-{stamp}-{n}")
    state_path.rename(backup)
    fsync_dir(state_path.parent)
    return backup
