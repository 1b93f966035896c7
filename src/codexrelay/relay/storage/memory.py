"""Repositories held in memory, with indexes: the test double, and the core of the JSON store.

Every table keeps its records by primary key plus secondary indexes on fields that never
change after a record is made (owner ids, workspace ids, code hashes), so finders are dict
lookups, not scans. Each table remembers which keys were added, saved or removed since the
last commit: a backend that writes rows uses that; the JSON document store writes all.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from codexrelay.relay.storage.memory_threads import MemoryApprovals, MemoryThreads, MemoryTurns
from codexrelay.relay.storage.records import (
    TERMINAL_STATUSES,
    AgentRecord,
    InviteRecord,
    LogEntryRecord,
    MembershipRecord,
    PairingCodeRecord,
    PairRequestRecord,
    PasskeyRecord,
    PushSubscriptionRecord,
    Record,
    RecoveryCodeRecord,
    SessionRecord,
    State,
    TaskRecord,
    UserRecord,
    WorkspaceRecord,
)
from codexrelay.relay.storage.table import Table, UnsavedChangeError
from codexrelay.relay.storage.table import oldest_first as _oldest_first

if TYPE_CHECKING:
    from codexrelay.relay.storage.repositories import Tasks

__all__ = ["MemoryStore", "Table", "UnsavedChangeError"]

log = logging.getLogger("codexrelay.store")


def task_order(task: TaskRecord) -> tuple[datetime, str]:
    """The order of a workspace's task list: creation time, then id."""
    return (task.created_at, task.id)


class MemoryUsers(Table[UserRecord]):
    def __init__(self) -> None:
        super().__init__(lambda u: u.id)

    def owner(self) -> UserRecord | None:
        """The instance owner."""
        return next((u for u in self._rows.values() if u.is_owner), None)


class MemoryWorkspaces(Table[WorkspaceRecord]):
    def __init__(self) -> None:
        super().__init__(lambda w: w.id)


def membership_key(user_id: str, workspace_id: str) -> str:
    """The primary key of a membership."""
    return f"{user_id}/{workspace_id}"


class MemoryMemberships(Table[MembershipRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda m: membership_key(m.user_id, m.workspace_id),
            {"user": lambda m: m.user_id, "workspace": lambda m: m.workspace_id},
        )

    def find(self, user_id: str, workspace_id: str) -> MembershipRecord | None:
        """The membership of a user in a workspace."""
        return self.get(membership_key(user_id, workspace_id))

    def of_user(self, user_id: str) -> list[MembershipRecord]:
        """A user's memberships, oldest first."""
        return self.where("user", user_id)

    def of_workspace(self, workspace_id: str) -> list[MembershipRecord]:
        """A workspace's memberships, oldest first."""
        return self.where("workspace", workspace_id)


class MemorySessions(Table[SessionRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda s: s.token_hash, {"id": lambda s: s.id, "user": lambda s: s.user_id}
        )

    def by_id(self, session_id: str) -> SessionRecord | None:
        """A session by its public id."""
        return self.first("id", session_id)

    def of_user(self, user_id: str) -> list[SessionRecord]:
        """A user's sessions, oldest first."""
        return _oldest_first(self.where("user", user_id), lambda s: s.created_at)

    def expired(self, now: datetime) -> list[SessionRecord]:
        """Sessions whose expiry has passed."""
        return [s for s in self._rows.values() if s.expires_at <= now]


class MemoryPasskeys(Table[PasskeyRecord]):
    def __init__(self) -> None:
        super().__init__(lambda p: p.credential_id, {"user": lambda p: p.user_id})

    def of_user(self, user_id: str) -> list[PasskeyRecord]:
        """A user's passkeys, oldest first."""
        return _oldest_first(self.where("user", user_id), lambda p: p.created_at)


class MemoryInvites(Table[InviteRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda i: i.id, {"code": lambda i: i.code_hash, "workspace": lambda i: i.workspace_id}
        )

    def by_code_hash(self, code_hash: str) -> InviteRecord | None:
        """The invite whose keyed code hash this is."""
        return self.first("code", code_hash)

    def of_workspace(self, workspace_id: str) -> list[InviteRecord]:
        """A workspace's invites, oldest first."""
        return _oldest_first(self.where("workspace", workspace_id), lambda i: i.created_at)


class MemoryRecoveryCodes(Table[RecoveryCodeRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda r: r.id, {"code": lambda r: r.code_hash, "user": lambda r: r.user_id}
        )

    def by_code_hash(self, code_hash: str) -> RecoveryCodeRecord | None:
        """The recovery code whose keyed code hash this is."""
        return self.first("code", code_hash)

    def of_user(self, user_id: str) -> list[RecoveryCodeRecord]:
        """Recovery codes issued for a user, oldest first."""
        return _oldest_first(self.where("user", user_id), lambda r: r.created_at)


class MemoryAgents(Table[AgentRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda a: a.key,
            {
                "workspace": lambda a: a.workspace_id,
                "name": lambda a: f"{a.workspace_id}/{a.agent_id}",
            },
        )

    def of_workspace(self, workspace_id: str) -> list[AgentRecord]:
        """Every agent record of a workspace, oldest first."""
        return _oldest_first(self.where("workspace", workspace_id), lambda a: a.created_at)

    def named(self, workspace_id: str, agent_id: str) -> list[AgentRecord]:
        """The records of one agent id in a workspace, oldest first."""
        return _oldest_first(
            self.where("name", f"{workspace_id}/{agent_id}"), lambda a: a.created_at
        )


class MemoryPairingCodes(Table[PairingCodeRecord]):
    def __init__(self) -> None:
        super().__init__(lambda p: p.id, {"code": lambda p: p.code_hash})

    def by_code_hash(self, code_hash: str) -> PairingCodeRecord | None:
        """The pairing code whose keyed code hash this is."""
        return self.first("code", code_hash)


class MemoryPairRequests(Table[PairRequestRecord]):
    def __init__(self) -> None:
        super().__init__(lambda r: r.id, {"workspace": lambda r: r.workspace_id})

    def of_workspace(self, workspace_id: str) -> list[PairRequestRecord]:
        """A workspace's pair requests, oldest first."""
        return _oldest_first(self.where("workspace", workspace_id), lambda r: r.created_at)


class MemoryTasks(Table[TaskRecord]):
    def __init__(self) -> None:
        super().__init__(lambda t: t.id, {"workspace": lambda t: t.workspace_id})
        # Unfinished tasks are few and read on every agent (re)connection: kept apart.
        self._unfinished: dict[str, TaskRecord] = {}

    def add(self, record: TaskRecord) -> None:
        """Insert or replace a task."""
        super().add(record)
        self._track(record)

    def save(self, record: TaskRecord) -> None:
        """Mark a task as changed."""
        super().save(record)
        self._track(record)

    def remove(self, record: TaskRecord) -> None:
        """Delete a task."""
        super().remove(record)
        self._unfinished.pop(record.id, None)

    def _track(self, task: TaskRecord) -> None:
        if task.status in TERMINAL_STATUSES:
            self._unfinished.pop(task.id, None)
        else:
            self._unfinished[task.id] = task

    def of_workspace(
        self, workspace_id: str, *, limit: int | None = None, before: TaskRecord | None = None
    ) -> list[TaskRecord]:
        """A workspace's tasks, newest first, at most ``limit``, older than ``before``."""
        found = self.where("workspace", workspace_id)
        if before is not None:
            cursor = task_order(before)
            found = [t for t in found if task_order(t) < cursor]
        return sorted(found, key=task_order, reverse=True)[:limit]

    def oldest_finished(self, workspace_id: str, limit: int) -> list[TaskRecord]:
        """Up to ``limit`` finished tasks of a workspace, oldest first."""
        found = self.where("workspace", workspace_id)
        done = sorted((t for t in found if t.status in TERMINAL_STATUSES), key=task_order)
        return done[:limit]

    def finished_before(self, cutoff: datetime, limit: int) -> list[TaskRecord]:
        """Up to ``limit`` tasks that finished before ``cutoff``, oldest first."""
        done = [
            (t.finished_at, t.id, t)
            for t in self._rows.values()
            if t.status in TERMINAL_STATUSES
            and t.finished_at is not None
            and t.finished_at < cutoff
        ]
        return [t for _, _, t in sorted(done, key=lambda row: row[:2])][:limit]

    def count_of_workspace(self, workspace_id: str) -> int:
        """How many tasks a workspace has."""
        return len(self._index["workspace"].get(workspace_id, {}))

    def unfinished(self, agent_key: str | None = None) -> list[TaskRecord]:
        """Tasks not in a terminal status (of one agent, if given), oldest first."""
        found = [
            t
            for t in self._unfinished.values()
            if t.status not in TERMINAL_STATUSES and (agent_key is None or t.agent_key == agent_key)
        ]
        return sorted(found, key=lambda t: (t.created_at, t.id))


def log_key(workspace_id: str, seq: int) -> str:
    """The primary key of a log entry: its workspace and zero-padded seq."""
    return f"{workspace_id}/{seq:010d}"


class MemoryLogEntries(Table[LogEntryRecord]):
    def __init__(self) -> None:
        super().__init__(lambda e: e.key, {"workspace": lambda e: e.workspace_id})

    def of_workspace(self, workspace_id: str, start: int = 0) -> list[LogEntryRecord]:
        """A workspace's log from ``start`` on, in chain order."""
        found = [e for e in self.where("workspace", workspace_id) if e.seq >= start]
        return sorted(found, key=lambda e: e.seq)

    def head(self, workspace_id: str) -> LogEntryRecord | None:
        """The last entry of a workspace's log."""
        return max(self.where("workspace", workspace_id), key=lambda e: e.seq, default=None)


class MemoryPushSubscriptions(Table[PushSubscriptionRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda p: p.id,
            {
                "user": lambda p: p.user_id,
                "session": lambda p: p.session_id,
                "endpoint": lambda p: p.endpoint,
            },
        )

    def of_user(self, user_id: str) -> list[PushSubscriptionRecord]:
        """A user's push subscriptions, oldest first."""
        return _oldest_first(self.where("user", user_id), lambda p: p.created_at)

    def of_session(self, session_id: str) -> list[PushSubscriptionRecord]:
        """The push subscriptions of one device session."""
        return self.where("session", session_id)

    def by_endpoint(self, endpoint: str) -> PushSubscriptionRecord | None:
        """The subscription with this push endpoint URL."""
        return self.first("endpoint", endpoint)


class MemoryStore:
    """Every repository in memory. ``commit`` makes nothing durable: for tests, and the base
    of ``JsonFileStore``.

    With ``check_saves`` each commit compares every record with what it was at the previous
    commit and raises ``UnsavedChangeError`` for one that changed without ``save()``.
    """

    def __init__(
        self, instance_id: str, created_at: datetime, *, check_saves: bool = False
    ) -> None:
        self.instance_id = instance_id
        self.created_at = created_at
        self.users = MemoryUsers()
        self.workspaces = MemoryWorkspaces()
        self.memberships = MemoryMemberships()
        self.sessions = MemorySessions()
        self.passkeys = MemoryPasskeys()
        self.invites = MemoryInvites()
        self.recovery_codes = MemoryRecoveryCodes()
        self.agents = MemoryAgents()
        self.pairing_codes = MemoryPairingCodes()
        self.pair_requests = MemoryPairRequests()
        # Typed as the interface: the SQLite backend puts its own task repository here.
        self.tasks: Tasks = MemoryTasks()
        self.log_entries = MemoryLogEntries()
        self.push_subscriptions = MemoryPushSubscriptions()
        self.threads = MemoryThreads()
        self.turns = MemoryTurns()
        self.approvals = MemoryApprovals()
        self.check_saves = check_saves
        self._snapshots: dict[str, dict[str, str]] = {}

    def tables(self) -> dict[str, Table[Record]]:
        """The tables by their name in the state document."""
        tables: dict[str, Any] = {
            "users": self.users,
            "workspaces": self.workspaces,
            "memberships": self.memberships,
            "sessions": self.sessions,
            "passkeys": self.passkeys,
            "invites": self.invites,
            "recovery_codes": self.recovery_codes,
            "agents": self.agents,
            "pairing_codes": self.pairing_codes,
            "pair_requests": self.pair_requests,
            "tasks": self.tasks,
            "log_entries": self.log_entries,
            "push_subscriptions": self.push_subscriptions,
            "threads": self.threads,
            "turns": self.turns,
            "approvals": self.approvals,
        }
        return tables  # each Table[X] is used only through Table[Record]'s methods

    def load(self, state: State) -> None:
        """Replace every table's records with a state document's (start-up, snapshots)."""
        for name, table in self.tables().items():
            for record in table.all():
                table.remove(record)
            records = getattr(state, name)
            for record in records.values() if isinstance(records, dict) else records:
                table.add(record)
            table.drain()
        self.reset_check()

    def reset_check(self) -> None:
        """What is loaded now is the baseline the unsaved-change check compares with."""
        if self.check_saves:
            self._snapshots = self._dump_all()

    def document(self) -> State:
        """The whole state as one document (what ``state.json`` holds)."""
        tables = self.tables()
        fields: dict[str, Any] = {
            name: {table.key(r): r for r in table.all()} for name, table in tables.items()
        }
        fields["memberships"] = self.memberships.all()
        fields.update(instance_id=self.instance_id, created_at=self.created_at)
        return State.model_construct(**fields)

    def check_unsaved(self) -> None:
        """Raise ``UnsavedChangeError`` for a record changed since the last check without a
        ``save()``, ``add()`` or ``remove()`` (checking mode only)."""
        if not self.check_saves:
            return
        current = self._dump_all()
        tables = self.tables()
        for name, rows in current.items():
            before = self._snapshots.get(name, {})
            touched = tables[name].changed
            for key, dumped in rows.items():
                if before.get(key, dumped) != dumped and key not in touched:
                    self._snapshots = current
                    msg = f"{name} record {key} changed without save()"
                    log.error("%s", msg)
                    raise UnsavedChangeError(msg)
        self._snapshots = current

    def _dump_all(self) -> dict[str, dict[str, str]]:
        return {
            name: {key: record.model_dump_json() for key, record in table.items()}
            for name, table in self.tables().items()
        }

    def drain(self) -> None:
        """Forget which keys changed (a write that covers all of them is done)."""
        for table in self.tables().values():
            table.drain()

    def spend_once(self, kind: str, key: str) -> bool:
        """One process: the caller's check and its change happen with no await between
        them, so a code can only be spent once anyway."""
        del kind, key
        return True

    async def commit(self) -> None:
        """Nothing to make durable; check saves in checking mode."""
        self.check_unsaved()
        self.drain()

    def touch(self) -> None:
        """Nothing to schedule."""

    async def close(self) -> None:
        """Nothing to release."""
