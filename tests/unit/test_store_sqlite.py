"""The SQLite backend: private files, durable commits of changed rows only, group commit,
finders over history with the pending changes overlaid, schema migrations, and the one-time
move from state.json."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from datetime import timedelta

import pytest

from codexrelay.errors import AppError
from codexrelay.relay.storage import schema
from codexrelay.relay.storage import sqlite as sqlite_module
from codexrelay.relay.storage.backends import open_store
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.inspection import check_database, read_database
from codexrelay.relay.storage.jsonfile import JsonFileStore
from codexrelay.relay.storage.jsonfile import read_state as read_state_document
from codexrelay.relay.storage.memory import UnsavedChangeError
from codexrelay.relay.storage.records import TaskRecord, WorkspaceRecord
from codexrelay.relay.storage.sqlite import DATABASE_FILE, SqliteStore
from tests.helpers import FakeClock


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _task(clock: FakeClock, n: int, *, ws: str = "w1", status: str = "completed") -> TaskRecord:
    at = clock() + timedelta(seconds=n)
    return TaskRecord(
        id=f"tsk_{n:06d}",
        workspace_id=ws,
        agent_id="box",
        agent_key="agt_1",
        type="run_action",
        status=status,
        created_by="u1",
        created_at=at,
        updated_at=at,
        finished_at=at if status == "completed" else None,
    )


def _rows(path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_sqlite_creates_private_database_in_private_dir(tmp_path):
    """A new database is 0600 (its WAL too) inside a 0700 dir, at the current schema."""
    data = tmp_path / "data"
    store = SqliteStore.open(data, now=FakeClock())
    assert _mode(data) == 0o700
    assert _mode(data / DATABASE_FILE) == 0o600
    assert (data / f"{DATABASE_FILE}-wal").exists()
    assert _mode(data / f"{DATABASE_FILE}-wal") == 0o600
    assert store.db.schema_version == schema.SCHEMA_VERSION
    asyncio.run(store.close())
    assert _rows(data / DATABASE_FILE, "PRAGMA journal_mode") == [("wal",)]


def test_sqlite_commit_is_durable_and_writes_only_changed_rows(tmp_path):
    """When commit() returns another process reads the change; a save rewrites one row."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock)

    async def scenario() -> None:
        for i in range(50):
            store.workspaces.add(WorkspaceRecord(id=f"ws_{i}", name=str(i), created_at=clock()))
        await store.commit()
        assert len(read_database(tmp_path / DATABASE_FILE).workspaces) == 50
        changes_before = _rows(tmp_path / DATABASE_FILE, "SELECT total_changes()")
        assert changes_before  # a fresh connection: counts only its own changes
        ws = store.workspaces.get("ws_7")
        ws.name = "renamed"
        store.workspaces.save(ws)
        batch = store._collect()
        assert batch.upserts["workspaces"] == [("ws_7", schema.encode(ws))]
        store.db.apply(batch)
        assert read_database(tmp_path / DATABASE_FILE).workspaces["ws_7"].name == "renamed"
        await store.close()

    asyncio.run(scenario())


def test_sqlite_concurrent_commits_share_transactions(tmp_path):
    """Commits that arrive together share transactions; each is durable on return."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock)
    path = tmp_path / DATABASE_FILE

    async def change(i: int) -> None:
        store.workspaces.add(WorkspaceRecord(id=f"ws_{i}", name=str(i), created_at=clock()))
        await store.commit()
        assert f"ws_{i}" in {key for (key,) in _rows(path, "SELECT key FROM workspaces")}

    async def scenario() -> None:
        await asyncio.gather(*(change(i) for i in range(200)))
        await store.close()

    asyncio.run(scenario())
    assert 1 <= store.writes < 50, store.writes
    assert len(read_database(path).workspaces) == 200


def test_sqlite_reopen_restores_every_table_in_order(tmp_path):
    """What was committed comes back after a restart, memberships in insertion order."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock)
    instance = store.instance_id

    async def fill() -> None:
        for i in range(3):
            store.workspaces.add(WorkspaceRecord(id=f"ws_{2 - i}", name="x", created_at=clock()))
        store.tasks.add(_task(clock, 1, status="running"))
        store.tasks.add(_task(clock, 2))
        await store.close()

    asyncio.run(fill())
    again = SqliteStore.open(tmp_path, now=clock)
    assert again.instance_id == instance
    assert [w.id for w in again.workspaces.all()] == ["ws_2", "ws_1", "ws_0"]
    assert [t.id for t in again.tasks.unfinished()] == ["tsk_000001"]
    assert again.tasks.count_of_workspace("w1") == 2
    asyncio.run(again.close())


def test_sqlite_task_finders_page_through_history_with_pending_changes(tmp_path):
    """of_workspace pages newest first with limit/before, merging unwritten changes; counts,
    oldest_finished and finished_before agree with the memory store."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock, check_saves=True)

    async def scenario() -> None:
        for n in range(30):
            store.tasks.add(_task(clock, n, ws="w1" if n % 3 else "w2"))
        await store.commit()
        store.tasks.add(_task(clock, 100, status="running"))  # pending, not yet written
        gone = store.tasks.get("tsk_000029")
        store.tasks.remove(gone)  # pending removal
        ids = [t.id for t in store.tasks.of_workspace("w1")]
        assert ids[0] == "tsk_000100"
        assert "tsk_000029" not in ids
        assert len(ids) == store.tasks.count_of_workspace("w1") == 20
        page = store.tasks.of_workspace("w1", limit=5)
        assert [t.id for t in page] == ids[:5]
        rest = store.tasks.of_workspace("w1", limit=100, before=page[-1])
        assert [t.id for t in rest] == ids[5:]
        assert [t.id for t in store.tasks.oldest_finished("w1", 2)] == ["tsk_000001", "tsk_000002"]
        cutoff = clock() + timedelta(seconds=5)
        assert [t.id for t in store.tasks.finished_before(cutoff, 10)] == [
            f"tsk_{n:06d}" for n in range(5)
        ]
        # One object per task: what a finder returns is what get() returns.
        assert store.tasks.get(page[1].id) is page[1]
        await store.commit()
        assert store.tasks.get("tsk_000029") is None
        await store.close()

    asyncio.run(scenario())


def test_sqlite_refuses_unsaved_change_in_checking_mode(tmp_path):
    """The unsaved-change check covers tasks held in memory too."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock, check_saves=True)

    async def scenario() -> None:
        task = _task(clock, 1, status="running")
        store.tasks.add(task)
        await store.commit()
        task.status = "completed"
        with pytest.raises(AppError):
            await store.commit()
        await store.close()

    asyncio.run(scenario())
    with pytest.raises(UnsavedChangeError):
        raise UnsavedChangeError("type is importable for callers")


def test_sqlite_failed_write_is_retried_with_the_next(tmp_path):
    """A write the disk refuses answers storage-unavailable; the next commit writes it."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock)

    async def scenario() -> None:
        real = store.db.apply
        calls = {"n": 0}

        def failing(batch):
            calls["n"] += 1
            if calls["n"] == 1:
                raise sqlite3.OperationalError("disk I/O error")
            real(batch)

        store.db.apply = failing  # the one seam: a disk that fails once
        store.workspaces.add(WorkspaceRecord(id="ws_x", name="x", created_at=clock()))
        store.tasks.add(_task(clock, 1))
        with pytest.raises(AppError) as exc:
            await store.commit()
        assert exc.value.code == "storage-unavailable"
        assert store.tasks.get("tsk_000001") is not None
        await store.commit()
        state = read_database(tmp_path / DATABASE_FILE)
        assert "ws_x" in state.workspaces
        assert "tsk_000001" in state.tasks
        await store.close()

    asyncio.run(scenario())


def test_sqlite_second_store_on_same_dir_refused(tmp_path):
    """Two relays cannot share one data dir."""
    first = SqliteStore.open(tmp_path, now=FakeClock())
    with pytest.raises(StateError, match="in use"):
        SqliteStore.open(tmp_path, now=FakeClock())
    asyncio.run(first.close())


def test_sqlite_newer_schema_refused_and_untouched(tmp_path):
    """A database from a newer release is refused, byte-identical."""
    path = tmp_path / DATABASE_FILE
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    content = path.read_bytes()
    with pytest.raises(StateError, match="newer"):
        SqliteStore.open(tmp_path, now=FakeClock())
    assert path.read_bytes() == content


def test_sqlite_corrupt_database_refused_and_untouched(tmp_path):
    """A file that is not a database stops start-up and stays byte-identical."""
    path = tmp_path / DATABASE_FILE
    content = b"not a database at all" * 100
    path.write_bytes(content)
    with pytest.raises(StateError, match="left untouched"):
        SqliteStore.open(tmp_path, now=FakeClock())
    assert path.read_bytes() == content


def test_sqlite_migrations_run_forward_from_every_version(tmp_path):
    """A database at each earlier version is brought forward step by step."""
    for start in range(schema.SCHEMA_VERSION):
        path = tmp_path / f"v{start}.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None)
        for step in range(start):
            conn.executescript(schema.MIGRATIONS[step])
        conn.execute(f"PRAGMA user_version = {start}")
        assert schema.migrate(conn, path) == schema.SCHEMA_VERSION
        assert schema.schema_version(conn) == schema.SCHEMA_VERSION
        conn.close()


def _json_state(tmp_path, clock) -> bytes:
    """A state.json written by the JSON backend, with records of several kinds."""
    store = JsonFileStore.open(tmp_path / "state.json", now=clock)

    async def fill() -> None:
        store.workspaces.add(WorkspaceRecord(id="ws_old", name="Old", created_at=clock()))
        for n in range(5):
            store.tasks.add(_task(clock, n, ws="ws_old"))
        await store.commit()
        await store.close()

    asyncio.run(fill())
    return (tmp_path / "state.json").read_bytes()


def test_state_json_is_migrated_once_and_kept_as_backup(tmp_path):
    """The first SQLite start moves state.json in and renames it; the next start keeps it."""
    clock = FakeClock()
    content = _json_state(tmp_path, clock)
    instance = json.loads(content)["instanceId"]
    store = SqliteStore.open(tmp_path, now=clock)
    assert store.instance_id == instance
    assert store.workspaces.get("ws_old").name == "Old"
    assert store.tasks.count_of_workspace("ws_old") == 5
    asyncio.run(store.close())
    assert not (tmp_path / "state.json").exists()
    (backup,) = tmp_path.glob("state.json.migrated-*")
    assert backup.read_bytes() == content
    again = SqliteStore.open(tmp_path, now=clock)  # idempotent: nothing more to do
    assert again.tasks.count_of_workspace("ws_old") == 5
    asyncio.run(again.close())
    assert check_database(tmp_path / DATABASE_FILE).problems == []


def test_state_json_migration_finishes_after_a_crash_between_renames(tmp_path):
    """Database in place but state.json not yet renamed: the next start just renames it."""
    clock = FakeClock()
    content = _json_state(tmp_path, clock)
    asyncio.run(SqliteStore.open(tmp_path, now=clock).close())
    (backup,) = tmp_path.glob("state.json.migrated-*")
    backup.rename(tmp_path / "state.json")  # as if the rename had not happened
    store = SqliteStore.open(tmp_path, now=clock)
    assert store.tasks.count_of_workspace("ws_old") == 5
    asyncio.run(store.close())
    assert not (tmp_path / "state.json").exists()
    (backup,) = tmp_path.glob("state.json.migrated-*")
    assert backup.read_bytes() == content


def test_state_json_next_to_a_different_database_is_refused(tmp_path):
    """A state.json the database was not made from is never guessed about."""
    clock = FakeClock()
    asyncio.run(SqliteStore.open(tmp_path, now=clock).close())
    other = tmp_path / "other"
    other.mkdir()
    content = _json_state(other, clock)
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(StateError, match="both"):
        SqliteStore.open(tmp_path, now=clock)
    assert (tmp_path / "state.json").read_bytes() == content


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"schemaVersion": 99}'])
def test_corrupt_state_json_stops_migration_untouched(tmp_path, content):
    """A corrupt state.json refuses to start, stays byte-identical, and no database appears."""
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(StateError, match="left untouched"):
        SqliteStore.open(tmp_path, now=FakeClock())
    assert (tmp_path / "state.json").read_bytes() == content
    assert not (tmp_path / DATABASE_FILE).exists()


def test_json_backend_refuses_a_data_dir_that_moved_to_sqlite(tmp_path):
    """Switching back to json after the move would start empty: refused instead."""
    asyncio.run(SqliteStore.open(tmp_path, now=FakeClock()).close())
    with pytest.raises(StateError, match="sqlite"):
        open_store("json", tmp_path, now=FakeClock())


def test_sqlite_checkpoints_in_the_background(tmp_path):
    """Every CHECKPOINT_EVERY transactions the WAL is folded into the database file on its
    own thread: the main file holds the rows while the relay runs, no commit waited."""
    clock = FakeClock()
    store = SqliteStore.open(tmp_path, now=clock)
    path = tmp_path / DATABASE_FILE

    async def scenario() -> None:
        for i in range(sqlite_module.CHECKPOINT_EVERY + 1):
            store.workspaces.add(WorkspaceRecord(id=f"ws_ck{i}", name="x", created_at=clock()))
            await store.commit()
        assert store._checkpoint is not None
        await store._checkpoint
        assert b"ws_ck5" in path.read_bytes()  # in the database file, not only the WAL
        await store.close()

    asyncio.run(scenario())


def test_sqlite_keeps_every_record_type_of_the_state_document(tmp_path):
    """Each record type the JSON document holds has its SQLite table: a state.json with
    one record of every type comes back whole from the database it is moved into."""
    from codexrelay.relay.storage.records import State  # noqa: PLC0415

    clock = FakeClock()
    cached = set(schema.CACHED_TABLES) | {"tasks"}
    documented = set(State.model_fields) - {"schema_version", "instance_id", "created_at"}
    assert cached == documented
    store = JsonFileStore.open(tmp_path / "state.json", now=clock)
    store.workspaces.add(WorkspaceRecord(id="ws_all", name="All", created_at=clock()))
    store.tasks.add(_task(clock, 1))
    store.save_sync()
    before = read_state_document(tmp_path / "state.json")
    asyncio.run(store.close())
    asyncio.run(SqliteStore.open(tmp_path, now=clock).close())
    after = read_database(tmp_path / DATABASE_FILE)
    assert after.model_dump() == before.model_dump()
