"""What the domain may ask of storage: one small interface per record type, and ``Store``.

Domain code reads records through these finders, changes a record's fields in place and then
calls ``save(record)`` on its repository; ``add`` and ``remove`` do what they say. Nothing
is durable until ``await store.commit()`` returns. Each backend writes only what was added,
saved or removed since the last commit, so a missing ``save`` is a lost change: the checking
mode of the in-memory store (``MemoryStore(check_saves=True)``, which the test suite turns on
everywhere) refuses a commit that carries an unsaved change.

Finders return lists in a defined order so callers never depend on a backend's iteration
order. No domain module touches a backend directly: they see only these protocols.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, TypeVar

from codexrelay.relay.storage.records import (
    AgentRecord,
    ApprovalRecord,
    InviteRecord,
    LogEntryRecord,
    MembershipRecord,
    PairingCodeRecord,
    PairRequestRecord,
    PasskeyRecord,
    PushSubscriptionRecord,
    RecoveryCodeRecord,
    SessionRecord,
    TaskRecord,
    ThreadRecord,
    TurnRecord,
    UserRecord,
    WorkspaceRecord,
)

R = TypeVar("R")


class Repository(Protocol[R]):
    """The operations every record type has."""

    def add(self, record: R, /) -> None:
        """Insert a new record (or replace one with the same key)."""

    def save(self, record: R, /) -> None:
        """Mark a record whose fields were changed in place as changed."""

    def remove(self, record: R, /) -> None:
        """Delete a record (no error if it is already gone)."""

    def all(self) -> list[R]:
        """Every record, in insertion order (sweeps and operator views only)."""

    def count(self) -> int:
        """How many records there are."""


class Users(Repository[UserRecord], Protocol):
    def get(self, user_id: str, /) -> UserRecord | None:
        """A user by id."""

    def owner(self) -> UserRecord | None:
        """The instance owner (the one user the recovery token signs in as)."""


class Workspaces(Repository[WorkspaceRecord], Protocol):
    def get(self, workspace_id: str, /) -> WorkspaceRecord | None:
        """A workspace by id."""


class Memberships(Repository[MembershipRecord], Protocol):
    def find(self, user_id: str, workspace_id: str, /) -> MembershipRecord | None:
        """The membership of a user in a workspace."""

    def of_user(self, user_id: str, /) -> list[MembershipRecord]:
        """A user's memberships, oldest first."""

    def of_workspace(self, workspace_id: str, /) -> list[MembershipRecord]:
        """A workspace's memberships, oldest first."""


class Sessions(Repository[SessionRecord], Protocol):
    def get(self, token_hash: str, /) -> SessionRecord | None:
        """A session by the SHA-256 of its cookie value."""

    def by_id(self, session_id: str, /) -> SessionRecord | None:
        """A session by its public id."""

    def of_user(self, user_id: str, /) -> list[SessionRecord]:
        """A user's sessions, oldest first."""

    def expired(self, now: datetime, /) -> list[SessionRecord]:
        """Sessions whose expiry has passed."""


class Passkeys(Repository[PasskeyRecord], Protocol):
    def get(self, credential_id: str, /) -> PasskeyRecord | None:
        """A passkey by its credential id."""

    def of_user(self, user_id: str, /) -> list[PasskeyRecord]:
        """A user's passkeys, oldest first."""


class Invites(Repository[InviteRecord], Protocol):
    def get(self, invite_id: str, /) -> InviteRecord | None:
        """An invite by id."""

    def by_code_hash(self, code_hash: str, /) -> InviteRecord | None:
        """The invite whose keyed code hash this is."""

    def of_workspace(self, workspace_id: str, /) -> list[InviteRecord]:
        """A workspace's invites, oldest first."""


class RecoveryCodes(Repository[RecoveryCodeRecord], Protocol):
    def get(self, record_id: str, /) -> RecoveryCodeRecord | None:
        """A recovery code record by id."""

    def by_code_hash(self, code_hash: str, /) -> RecoveryCodeRecord | None:
        """The recovery code whose keyed code hash this is."""

    def of_user(self, user_id: str, /) -> list[RecoveryCodeRecord]:
        """Recovery codes issued for a user, oldest first."""


class Agents(Repository[AgentRecord], Protocol):
    def get(self, key: str, /) -> AgentRecord | None:
        """An agent by the relay's own key."""

    def of_workspace(self, workspace_id: str, /) -> list[AgentRecord]:
        """Every agent record of a workspace (revoked ones too), oldest first."""

    def named(self, workspace_id: str, agent_id: str, /) -> list[AgentRecord]:
        """The records of one agent id in a workspace (re-pairings included), oldest first."""


class PairingCodes(Repository[PairingCodeRecord], Protocol):
    def get(self, pairing_id: str, /) -> PairingCodeRecord | None:
        """A pairing code record by id."""

    def by_code_hash(self, code_hash: str, /) -> PairingCodeRecord | None:
        """The pairing code whose keyed code hash this is."""


class PairRequests(Repository[PairRequestRecord], Protocol):
    def get(self, request_id: str, /) -> PairRequestRecord | None:
        """A pair request by id."""

    def of_workspace(self, workspace_id: str, /) -> list[PairRequestRecord]:
        """A workspace's pair requests, oldest first."""


class Tasks(Repository[TaskRecord], Protocol):
    """Tasks are the one record type that grows with use: backends need not hold them all in
    memory, so finders over history take a ``limit`` and a ``before`` cursor."""

    def get(self, task_id: str, /) -> TaskRecord | None:
        """A task by id."""

    def of_workspace(
        self, workspace_id: str, /, *, limit: int | None = None, before: TaskRecord | None = None
    ) -> list[TaskRecord]:
        """A workspace's tasks, newest first (by creation time, then id): at most ``limit``,
        and only those older than ``before`` if given."""

    def oldest_finished(self, workspace_id: str, limit: int, /) -> list[TaskRecord]:
        """Up to ``limit`` of a workspace's finished tasks, oldest first."""

    def finished_before(self, cutoff: datetime, limit: int, /) -> list[TaskRecord]:
        """Up to ``limit`` finished tasks of any workspace that finished before ``cutoff``,
        oldest first (retention)."""

    def count_of_workspace(self, workspace_id: str, /) -> int:
        """How many tasks a workspace has."""

    def unfinished(self, agent_key: str | None = None, /) -> list[TaskRecord]:
        """Tasks not yet in a terminal status (of one agent, if given), oldest first."""


class LogEntries(Repository[LogEntryRecord], Protocol):
    def of_workspace(self, workspace_id: str, /, start: int = 0) -> list[LogEntryRecord]:
        """A workspace's membership log from ``seq`` ``start`` on, in chain order."""

    def head(self, workspace_id: str, /) -> LogEntryRecord | None:
        """The last entry of a workspace's log (None: the workspace is not protected)."""


class PushSubscriptions(Repository[PushSubscriptionRecord], Protocol):
    def get(self, subscription_id: str, /) -> PushSubscriptionRecord | None:
        """A push subscription by id."""

    def of_user(self, user_id: str, /) -> list[PushSubscriptionRecord]:
        """A user's push subscriptions, oldest first."""

    def of_session(self, session_id: str, /) -> list[PushSubscriptionRecord]:
        """The push subscriptions of one device session (at most one in practice)."""

    def by_endpoint(self, endpoint: str, /) -> PushSubscriptionRecord | None:
        """The subscription with this push endpoint URL."""


class Threads(Repository[ThreadRecord], Protocol):
    def get(self, key: str, /) -> ThreadRecord | None:
        """A thread by its relay key (``<agentKey>/<threadId>``)."""

    def find(self, workspace_id: str, thread_id: str, /) -> list[ThreadRecord]:
        """The records of a Codex thread id in a workspace (one per agent), newest first."""

    def of_workspace(self, workspace_id: str, /) -> list[ThreadRecord]:
        """A workspace's threads, most recently active first."""

    def of_agent(self, agent_key: str, /) -> list[ThreadRecord]:
        """An agent's threads, most recently active first."""


class Turns(Repository[TurnRecord], Protocol):
    def get(self, key: str, /) -> TurnRecord | None:
        """A turn by its relay key (``<agentKey>/<turnId>``)."""

    def of_thread(self, thread_key: str, /) -> list[TurnRecord]:
        """A thread's turns, oldest first."""


class Approvals(Repository[ApprovalRecord], Protocol):
    def get(self, key: str, /) -> ApprovalRecord | None:
        """An approval by its relay key (``<agentKey>/<approvalId>``)."""

    def of_thread(self, thread_key: str, /) -> list[ApprovalRecord]:
        """A thread's approvals, oldest first."""

    def pending(self) -> list[ApprovalRecord]:
        """Approvals still waiting for an answer, oldest first."""


class Store(Protocol):
    """Every repository of one relay, and the unit of work that makes changes durable."""

    @property
    def instance_id(self) -> str: ...
    @property
    def users(self) -> Users: ...
    @property
    def workspaces(self) -> Workspaces: ...
    @property
    def memberships(self) -> Memberships: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def passkeys(self) -> Passkeys: ...
    @property
    def invites(self) -> Invites: ...
    @property
    def recovery_codes(self) -> RecoveryCodes: ...
    @property
    def agents(self) -> Agents: ...
    @property
    def pairing_codes(self) -> PairingCodes: ...
    @property
    def pair_requests(self) -> PairRequests: ...
    @property
    def tasks(self) -> Tasks: ...
    @property
    def log_entries(self) -> LogEntries: ...
    @property
    def push_subscriptions(self) -> PushSubscriptions: ...
    @property
    def threads(self) -> Threads: ...
    @property
    def turns(self) -> Turns: ...
    @property
    def approvals(self) -> Approvals: ...

    async def commit(self) -> None:
        """Return once every change made so far is durable."""

    def spend_once(self, kind: str, key: str) -> bool:
        """Record that the one-time code ``key`` of ``kind`` is spent; False if it already
        was (by this process or, with several relay instances, by any of them)."""

    def touch(self) -> None:
        """Schedule a write of low-value changes (e.g. last-seen times) without waiting."""

    async def close(self) -> None:
        """Flush what is pending and release the backend."""
