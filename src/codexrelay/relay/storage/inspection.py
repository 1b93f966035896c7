"""Looking at a store from outside the relay: read-only, safe while the relay runs.

``relay check``, ``relay snapshot``/``restore`` and the tests use these. A SQLite database
is opened read-only (WAL lets it be read while the relay writes); a consistent copy is made
with SQLite's online backup, never by copying the file, which could tear across the WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from codexrelay.fileio import PRIVATE_FILE
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.records import State, TaskRecord
from codexrelay.relay.storage.schema import CACHED_TABLES, SCHEMA_VERSION, schema_version

COUNTED = ("users", "workspaces", "memberships", "sessions", "passkeys", "agents", "tasks")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an existing database (``StateError`` if there is none)."""
    if not path.is_file():
        msg = f"{path} does not exist"
        raise StateError(msg)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        yield conn
    finally:
        conn.close()


def read_database(path: Path) -> State:
    """Every record of a database as one state document (validated). Raises ``StateError``."""
    with read_only(path) as conn:
        try:
            return _read(conn)
        except (sqlite3.DatabaseError, KeyError) as exc:
            msg = f"{path}: the database cannot be read ({exc})"
            raise StateError(msg) from None
        except ValidationError as exc:
            msg = f"{path}: a record is invalid ({exc.error_count()} problems)"
            raise StateError(msg) from None


def _read(conn: sqlite3.Connection) -> State:
    meta = dict(conn.execute("SELECT name, value FROM meta"))
    memory = MemoryStore(meta["instanceId"], datetime.fromisoformat(meta["createdAt"]))
    for name, model in CACHED_TABLES.items():
        table = getattr(memory, name)
        for (doc,) in conn.execute(f"SELECT doc FROM {name} ORDER BY rowid"):  # noqa: S608
            table.add(model.model_validate_json(doc))
    for (doc,) in conn.execute("SELECT doc FROM tasks ORDER BY rowid"):
        memory.tasks.add(TaskRecord.model_validate_json(doc))
    return memory.document()


@dataclass
class CheckReport:
    """What ``relay check`` found."""

    schema_version: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_database(path: Path) -> CheckReport:
    """SQLite's integrity check, the schema version, and every record validated."""
    report = CheckReport()
    try:
        with read_only(path) as conn:
            report.schema_version = schema_version(conn)
            if report.schema_version != SCHEMA_VERSION:
                report.problems.append(
                    f"schema version {report.schema_version}; this release uses {SCHEMA_VERSION}"
                    " (the relay migrates older ones forward at start)"
                )
                return report
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                report.problems += [f"integrity: {line}" for line in integrity[:10]]
                return report
            state = _read(conn)
    except (StateError, sqlite3.DatabaseError, KeyError) as exc:
        report.problems.append(str(exc))
        return report
    except ValidationError as exc:
        report.problems.append(f"a record is invalid ({exc.error_count()} problems)")
        return report
    report.counts = {name: len(getattr(state, name)) for name in COUNTED}
    return report


def backup_database(source: Path, target: Path) -> None:
    """A consistent copy of a live database (SQLite's online backup), 0600, as one file."""
    target.unlink(missing_ok=True)
    target.touch(mode=PRIVATE_FILE)
    with read_only(source) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
