"""state.json persistence: atomic, private, versioned, coalesced, durable before answers."""

from __future__ import annotations

import asyncio
import json
import stat

import pytest

from codexrelay.errors import AppError
from codexrelay.relay.storage.jsonfile import JsonFileStore, StateError, read_state
from codexrelay.relay.storage.records import SCHEMA_VERSION, WorkspaceRecord
from tests.helpers import FakeClock


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_creates_private_file_and_dir(tmp_path):
    """A new state file is 0600 inside a 0700 directory, with the schema version."""
    path = tmp_path / "data" / "state.json"
    store = JsonFileStore.open(path, now=FakeClock())
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert json.loads(path.read_text())["schemaVersion"] == SCHEMA_VERSION
    asyncio.run(store.close())


def test_store_tightens_loose_data_dir(tmp_path):
    """An existing data dir readable by others is tightened to 0700."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    store = JsonFileStore.open(data / "state.json", now=FakeClock())
    assert _mode(data) == 0o700
    asyncio.run(store.close())


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b'{"schemaVersion": "1"}', b"\xff\xfe garbage"],
    ids=["broken", "empty", "array", "string-version", "binary"],
)
def test_corrupt_state_refused_and_untouched(tmp_path, content):
    """A corrupt file stops start-up with a clear error and stays byte-identical."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="left untouched"):
        JsonFileStore.open(path, now=FakeClock())
    assert path.read_bytes() == content


def test_unknown_schema_version_refused(tmp_path):
    """A file from another schema version is refused, never rewritten."""
    path = tmp_path / "state.json"
    content = json.dumps({"schemaVersion": SCHEMA_VERSION + 1, "instanceId": "x"}).encode()
    path.write_bytes(content)
    with pytest.raises(StateError, match=f"schemaVersion {SCHEMA_VERSION + 1}"):
        JsonFileStore.open(path, now=FakeClock())
    assert path.read_bytes() == content


def test_invalid_record_refused(tmp_path):
    """A file whose records do not validate is refused and named."""
    path = tmp_path / "state.json"
    content = json.dumps(
        {"schemaVersion": SCHEMA_VERSION, "instanceId": "x", "createdAt": "yesterday"}
    ).encode()
    path.write_bytes(content)
    with pytest.raises(StateError, match="createdAt"):
        JsonFileStore.open(path, now=FakeClock())
    assert path.read_bytes() == content


def test_second_store_on_same_dir_refused(tmp_path):
    """Two relays cannot share one data dir."""
    path = tmp_path / "state.json"
    first = JsonFileStore.open(path, now=FakeClock())
    with pytest.raises(StateError, match="in use"):
        JsonFileStore.open(path, now=FakeClock())
    asyncio.run(first.close())
    JsonFileStore.open(path, now=FakeClock())


def test_commit_is_durable_on_return(tmp_path):
    """When commit() returns, the change is in the file on disk."""
    clock = FakeClock()
    path = tmp_path / "state.json"
    store = JsonFileStore.open(path, now=clock)

    async def scenario() -> None:
        store.workspaces.add(WorkspaceRecord(id="ws_1", name="A", created_at=clock()))
        await store.commit()
        on_disk = read_state(path)
        assert on_disk is not None
        assert "ws_1" in on_disk.workspaces
        await store.close()

    asyncio.run(scenario())


def test_concurrent_commits_are_coalesced(tmp_path):
    """Commits that arrive together share writes, and every one is durable on return."""
    clock = FakeClock()
    path = tmp_path / "state.json"
    store = JsonFileStore.open(path, now=clock)
    writes_before = store.writes

    async def change(i: int) -> None:
        store.workspaces.add(WorkspaceRecord(id=f"ws_{i}", name=str(i), created_at=clock()))
        await store.commit()
        on_disk = read_state(path)
        assert on_disk is not None
        assert f"ws_{i}" in on_disk.workspaces

    async def scenario() -> None:
        await asyncio.gather(*(change(i) for i in range(200)))
        await store.close()

    asyncio.run(scenario())
    writes = store.writes - writes_before
    assert 1 <= writes < 50, writes
    assert len(read_state(path).workspaces) == 200


def test_touch_writes_without_waiting(tmp_path):
    """touch() schedules a write that close() flushes."""
    clock = FakeClock()
    path = tmp_path / "state.json"
    store = JsonFileStore.open(path, now=clock)

    async def scenario() -> None:
        store.workspaces.add(WorkspaceRecord(id="ws_t", name="t", created_at=clock()))
        store.touch()
        await store.close()

    asyncio.run(scenario())
    assert "ws_t" in read_state(path).workspaces


def test_failed_write_surfaces_as_storage_unavailable(tmp_path):
    """If the disk refuses a write, waiting requests get storage-unavailable, not a hang."""
    clock = FakeClock()
    path = tmp_path / "data" / "state.json"
    store = JsonFileStore.open(path, now=clock)

    async def scenario() -> None:
        # A non-empty directory where the file should be makes the rename fail, even as root.
        path.unlink()
        path.mkdir()
        (path / "blocker").write_text("x")
        store.workspaces.add(WorkspaceRecord(id="ws_x", name="x", created_at=clock()))
        with pytest.raises(AppError) as exc:
            await store.commit()
        assert exc.value.code == "storage-unavailable"
        (path / "blocker").unlink()
        path.rmdir()
        await store.commit()
        assert "ws_x" in read_state(path).workspaces
        await store.close()

    asyncio.run(scenario())
