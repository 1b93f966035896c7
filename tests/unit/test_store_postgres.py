"""The row stores on both databases (SQLite and a real PostgreSQL server): durable commits
of changed rows only, group commit, finders over history with pending changes overlaid,
the unsaved-change check, a failed write retried; and on PostgreSQL, what several relay
instances sharing one database need: each follows the others' writes, finds a record
another just made, migrates once, and refuses a newer schema untouched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from codexrelay.errors import AppError
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.inspection import read_database
from codexrelay.relay.storage.memory import UnsavedChangeError
from codexrelay.relay.storage.pgdb import notices
from codexrelay.relay.storage.pginspect import check_pg_database, read_pg_database
from codexrelay.relay.storage.pgschema import PG_SCHEMA_VERSION
from codexrelay.relay.storage.postgres import PostgresStore
from codexrelay.relay.storage.records import SessionRecord, TaskRecord, WorkspaceRecord
from codexrelay.relay.storage.sqldb import Batch
from codexrelay.relay.storage.sqlite import SqliteStore
from tests.helpers import FakeClock
from tests.pgserver import PgServer

Opener = Callable[..., SqliteStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_row_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store of one test database (the same one each call), either backend."""
    if request.param == "sqlite":
        return lambda check_saves=False, data=tmp_path / "data": SqliteStore.open(
            data, now=FakeClock(), check_saves=check_saves
        )
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database()
    counter = iter(range(1000))
    return lambda check_saves=False, data=None: PostgresStore.open_url(
        url, data or tmp_path / f"node{next(counter)}", now=FakeClock(), check_saves=check_saves
    )


def _stored(store: SqliteStore):
    """What another process reads from the store's database now."""
    if isinstance(store, PostgresStore):
        return read_pg_database(store.pg.url)
    return read_database(Path(str(store.db.path)))


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


def test_commit_is_durable_and_writes_only_changed_rows(open_row_store: Opener) -> None:
    """When commit() returns another process reads the change; a save writes one row."""
    clock = FakeClock()
    store = open_row_store()

    async def scenario() -> None:
        for i in range(50):
            store.workspaces.add(WorkspaceRecord(id=f"ws_{i}", name=str(i), created_at=clock()))
        await store.commit()
        assert len(_stored(store).workspaces) == 50
        ws = store.workspaces.get("ws_7")
        assert ws is not None
        ws.name = "renamed"
        store.workspaces.save(ws)
        batch = store._collect()
        assert [row[0] for row in batch.upserts["workspaces"]] == ["ws_7"]
        assert not any(batch.upserts[name] for name in batch.upserts if name != "workspaces")
        store.db.apply(batch)
        assert _stored(store).workspaces["ws_7"].name == "renamed"
        await store.close()

    asyncio.run(scenario())


def test_concurrent_commits_share_transactions(open_row_store: Opener) -> None:
    """Commits that arrive together share transactions; each is durable on return."""
    clock = FakeClock()
    store = open_row_store()

    async def change(i: int) -> None:
        store.workspaces.add(WorkspaceRecord(id=f"ws_{i}", name=str(i), created_at=clock()))
        await store.commit()

    async def scenario() -> None:
        await asyncio.gather(*(change(i) for i in range(200)))
        await store.close()

    asyncio.run(scenario())
    assert 1 <= store.writes < 50, store.writes
    assert len(_stored(store).workspaces) == 200


def test_reopen_restores_every_table_in_order(open_row_store: Opener, tmp_path: Path) -> None:
    """What was committed comes back after a restart, in insertion order."""
    clock = FakeClock()
    store = open_row_store(data=tmp_path / "a")
    instance = store.instance_id

    async def fill() -> None:
        for i in range(3):
            store.workspaces.add(WorkspaceRecord(id=f"ws_{2 - i}", name="x", created_at=clock()))
        store.tasks.add(_task(clock, 1, status="running"))
        store.tasks.add(_task(clock, 2))
        await store.close()

    asyncio.run(fill())
    again = open_row_store(data=tmp_path / "a")
    assert again.instance_id == instance
    assert [w.id for w in again.workspaces.all()] == ["ws_2", "ws_1", "ws_0"]
    assert [t.id for t in again.tasks.unfinished()] == ["tsk_000001"]
    assert again.tasks.count_of_workspace("w1") == 2
    asyncio.run(again.close())


def test_task_finders_page_through_history_with_pending_changes(open_row_store: Opener) -> None:
    """of_workspace pages newest first with limit/before, merging unwritten changes."""
    clock = FakeClock()
    store = open_row_store(check_saves=True)

    async def scenario() -> None:
        for n in range(30):
            store.tasks.add(_task(clock, n, ws="w1" if n % 3 else "w2"))
        await store.commit()
        store.tasks.add(_task(clock, 100, status="running"))
        gone = store.tasks.get("tsk_000029")
        assert gone is not None
        store.tasks.remove(gone)
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
        assert store.tasks.get(page[1].id) is page[1]
        await store.commit()
        assert store.tasks.get("tsk_000029") is None
        await store.close()

    asyncio.run(scenario())


def test_unsaved_change_is_refused_in_checking_mode(open_row_store: Opener) -> None:
    """A task changed in place without save() fails the commit in checking mode."""
    clock = FakeClock()
    store = open_row_store(check_saves=True)

    async def scenario() -> None:
        store.tasks.add(_task(clock, 1, status="running"))
        await store.commit()
        task = store.tasks.get("tsk_000001")
        assert task is not None
        task.status = "completed"  # type: ignore[assignment]
        with pytest.raises(AppError):
            await store.commit()
        store.tasks.save(task)
        await store.commit()
        await store.close()

    asyncio.run(scenario())
    assert _stored(store).tasks["tsk_000001"].status == "completed"
    assert issubclass(UnsavedChangeError, RuntimeError)


def test_failed_write_is_retried_with_the_next(open_row_store: Opener) -> None:
    """A write the database refuses answers storage-unavailable; the next commit writes it."""
    clock = FakeClock()
    store = open_row_store()

    async def scenario() -> None:
        real = store.db.apply
        calls = {"n": 0}

        def failing(batch: Batch) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError("connection lost")
            real(batch)

        store.db.apply = failing  # type: ignore[method-assign]
        store.workspaces.add(WorkspaceRecord(id="ws_x", name="x", created_at=clock()))
        store.tasks.add(_task(clock, 1))
        with pytest.raises(AppError) as exc:
            await store.commit()
        assert exc.value.code == "storage-unavailable"
        await store.commit()
        state = _stored(store)
        assert "ws_x" in state.workspaces
        assert "tsk_000001" in state.tasks
        await store.close()

    asyncio.run(scenario())


def _session(clock: FakeClock, n: int) -> SessionRecord:
    return SessionRecord(
        id=f"ses_{n}",
        token_hash=f"{n:064x}",
        user_id="usr_1",
        created_at=clock(),
        expires_at=clock() + timedelta(hours=1),
        last_seen_at=clock(),
        via="bootstrap",
    )


def test_instances_follow_each_others_writes(pg_server: PgServer, tmp_path: Path) -> None:
    """Two relay instances on one database: a session one opens is found by the other at
    once (read-through), a change one makes reaches the other's cache through the change
    notice, and a task the other holds is updated in place."""
    url = pg_server.new_database()
    clock = FakeClock()
    a = PostgresStore.open_url(url, tmp_path / "a", now=clock, check_saves=True)
    b = PostgresStore.open_url(url, tmp_path / "b", now=clock, check_saves=True)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        a.follow(loop)
        b.follow(loop)
        a.sessions.add(_session(clock, 1))
        a.tasks.add(_task(clock, 1, status="running"))
        await a.commit()
        assert b.sessions.get(f"{1:064x}") is not None  # found before any notice
        held = b.tasks.get("tsk_000001")
        assert held is not None
        assert held.status == "running"
        task = a.tasks.get("tsk_000001")
        assert task is not None
        task.status = "completed"  # type: ignore[assignment]
        task.finished_at = clock()
        a.tasks.save(task)
        a.workspaces.add(WorkspaceRecord(id="ws_new", name="New", created_at=clock()))
        gone = a.sessions.get(f"{1:064x}")
        assert gone is not None
        a.sessions.remove(gone)
        await a.commit()
        await _until(lambda: held.status == "completed")
        await _until(lambda: b.workspaces.get_cached("ws_new") is not None)  # type: ignore[attr-defined]
        await _until(lambda: b.sessions.get(f"{1:064x}") is None)
        assert [t.id for t in b.tasks.unfinished()] == []
        assert b.tasks.count_of_workspace("w1") == 1
        await b.commit()  # the remote changes are not unsaved local ones
        await a.close()
        await b.close()

    asyncio.run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_change_notices_carry_ids_only_and_fit_the_payload_limit() -> None:
    """A notice names the writer and the keys; a big batch is split under 8000 bytes."""
    batch = Batch(
        upserts={"tasks": [(f"tsk_{n:020d}", "SECRET-DOC") for n in range(1000)]},
        deletes={"sessions": ["abc"]},
    )
    found = list(notices("node_x", batch))
    assert len(found) > 1
    assert all(len(n.encode()) < 8000 for n in found)
    assert not any("SECRET-DOC" in n for n in found)
    assert sum(n.count("tsk_") for n in found) == 1000


def test_instances_starting_together_migrate_once(pg_server: PgServer, tmp_path: Path) -> None:
    """Three instances opening a new database at once agree on one schema and identity."""
    url = pg_server.new_database()

    async def scenario() -> list[PostgresStore]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(PostgresStore.open_url, url, tmp_path / f"n{i}", now=FakeClock())
                for i in range(3)
            )
        )

    stores = asyncio.run(scenario())
    assert len({s.instance_id for s in stores}) == 1
    assert len({s.node_id for s in stores}) == 3
    report = check_pg_database(url)
    assert report.problems == []
    assert report.schema_version == PG_SCHEMA_VERSION
    for store in stores:
        asyncio.run(store.close())


def test_newer_schema_is_refused_untouched(pg_server: PgServer, tmp_path: Path) -> None:
    """A database from a newer release is left as it is, with a clear error."""
    url = pg_server.new_database()
    asyncio.run(PostgresStore.open_url(url, tmp_path / "a", now=FakeClock()).close())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schemaVersion'")
    with pytest.raises(StateError, match="newer than this release"):
        PostgresStore.open_url(url, tmp_path / "b", now=FakeClock())
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name = 'schemaVersion'").fetchone()
    assert row == ("99",)


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    """No server at the URL: a StateError naming the database, without a password."""
    url = "postgresql://relay:hunter2@127.0.0.1:1/relay?connect_timeout=2"
    with pytest.raises(StateError) as exc:
        PostgresStore.open_url(url, tmp_path / "a", now=FakeClock())
    assert "127.0.0.1" in str(exc.value)
    assert "hunter2" not in str(exc.value)
