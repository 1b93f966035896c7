"""The in-memory repositories: finders by index, change tracking, the unsaved-change check,
and a lossless round trip through the state document."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codexrelay.relay.storage.memory import MemoryStore, UnsavedChangeError
from codexrelay.relay.storage.records import (
    AgentRecord,
    MembershipRecord,
    Role,
    SessionRecord,
    TaskRecord,
    UserRecord,
    WorkspaceRecord,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _store() -> MemoryStore:
    store = MemoryStore("inst_t", NOW, check_saves=True)
    store.users.add(UserRecord(id="u1", name="Ada", is_owner=True, created_at=NOW))
    store.users.add(UserRecord(id="u2", name="Bo", created_at=NOW))
    store.workspaces.add(WorkspaceRecord(id="w1", name="One", created_at=NOW))
    store.workspaces.add(WorkspaceRecord(id="w2", name="Two", created_at=NOW))
    for user, ws, role in (
        ("u1", "w1", Role.OWNER),
        ("u2", "w1", Role.MEMBER),
        ("u1", "w2", Role.OWNER),
    ):
        store.memberships.add(
            MembershipRecord(user_id=user, workspace_id=ws, role=role, created_at=NOW)
        )
    return store


def _task(task_id: str, ws: str, agent_key: str, status: str, minutes: int) -> TaskRecord:
    at = NOW + timedelta(minutes=minutes)
    return TaskRecord(
        id=task_id,
        workspace_id=ws,
        agent_id="box",
        agent_key=agent_key,
        type="run_action",
        status=status,
        created_by="u1",
        created_at=at,
        updated_at=at,
    )


def test_finders_use_indexes_and_follow_removals():
    """Memberships by user, by workspace and by pair; a removal leaves every index."""
    store = _store()
    assert store.users.owner().id == "u1"
    assert [m.workspace_id for m in store.memberships.of_user("u1")] == ["w1", "w2"]
    assert [m.user_id for m in store.memberships.of_workspace("w1")] == ["u1", "u2"]
    gone = store.memberships.find("u2", "w1")
    store.memberships.remove(gone)
    assert store.memberships.find("u2", "w1") is None
    assert [m.user_id for m in store.memberships.of_workspace("w1")] == ["u1"]
    store.memberships.remove(gone)  # removing twice is harmless


def test_sessions_by_hash_by_id_by_user_and_expiry():
    """A session is found by its cookie hash or its public id; expired ones are listed."""
    store = _store()
    for n, hours in ((1, 1), (2, -1)):
        store.sessions.add(
            SessionRecord(
                id=f"s{n}",
                token_hash=f"h{n}",
                user_id="u2",
                via="passkey",
                created_at=NOW + timedelta(minutes=n),
                expires_at=NOW + timedelta(hours=hours),
                last_seen_at=NOW,
            )
        )
    assert store.sessions.get("h1").id == "s1"
    assert store.sessions.by_id("s2").token_hash == "h2"
    assert [s.id for s in store.sessions.of_user("u2")] == ["s1", "s2"]
    assert [s.id for s in store.sessions.expired(NOW)] == ["s2"]


def test_agents_by_name_keep_every_pairing():
    """A re-paired agent id lists both records, oldest first."""
    store = _store()
    for key, minutes in (("ag_new", 5), ("ag_old", 0)):
        store.agents.add(
            AgentRecord(
                key=key,
                agent_id="box",
                workspace_id="w1",
                label="Box",
                token_hash="x",
                token_issued_at=NOW,
                paired_by="u1",
                created_at=NOW + timedelta(minutes=minutes),
            )
        )
    assert [a.key for a in store.agents.named("w1", "box")] == ["ag_old", "ag_new"]
    assert store.agents.named("w2", "box") == []


def test_tasks_newest_first_counts_and_unfinished_tracking():
    """Tasks list newest first per workspace; ``unfinished`` follows saved status changes."""
    store = _store()
    store.tasks.add(_task("t1", "w1", "k1", "running", 0))
    store.tasks.add(_task("t2", "w1", "k2", "queued", 1))
    store.tasks.add(_task("t3", "w2", "k1", "completed", 2))
    assert [t.id for t in store.tasks.of_workspace("w1")] == ["t2", "t1"]
    assert store.tasks.count_of_workspace("w1") == 2
    assert [t.id for t in store.tasks.unfinished()] == ["t1", "t2"]
    assert [t.id for t in store.tasks.unfinished("k1")] == ["t1"]
    t1 = store.tasks.get("t1")
    t1.status = "completed"
    store.tasks.save(t1)
    assert [t.id for t in store.tasks.unfinished()] == ["t2"]
    store.tasks.remove(store.tasks.get("t2"))
    assert store.tasks.unfinished() == []
    assert store.tasks.count_of_workspace("w1") == 1


def test_changes_are_tracked_until_drained():
    """What was added, saved and removed since the last commit is known, then forgotten."""
    store = _store()
    store.drain()
    user = store.users.get("u2")
    user.name = "Bob"
    store.users.save(user)
    store.workspaces.remove(store.workspaces.get("w2"))
    assert list(store.users.changed) == ["u2"]
    assert store.workspaces.removed == {"w2"}
    store.drain()
    assert not store.users.changed
    assert store.workspaces.removed == set()


async def test_a_change_without_save_is_refused_at_commit():
    """The checking mode finds a record changed in place and never saved."""
    store = _store()
    await store.commit()
    store.users.get("u2").name = "Changed behind the store's back"
    with pytest.raises(UnsavedChangeError, match="users record u2"):
        await store.commit()


async def test_saved_changes_pass_the_check():
    """The same change with save() commits."""
    store = _store()
    await store.commit()
    user = store.users.get("u2")
    user.name = "Bob"
    store.users.save(user)
    await store.commit()


def test_save_of_an_unknown_record_is_a_bug():
    """Saving a record that was never added is refused, not silently inserted."""
    store = _store()
    with pytest.raises(LookupError):
        store.users.save(UserRecord(id="u9", name="Nobody", created_at=NOW))


def test_document_round_trip_is_lossless():
    """A store loaded from its own document has the same records and finders."""
    store = _store()
    store.tasks.add(_task("t1", "w1", "k1", "running", 0))
    document = store.document()
    copy = MemoryStore(document.instance_id, document.created_at)
    copy.load(document.model_copy(deep=True))
    assert copy.document().model_dump() == document.model_dump()
    assert copy.memberships.find("u2", "w1").role == Role.MEMBER
    assert [t.id for t in copy.tasks.unfinished()] == ["t1"]
