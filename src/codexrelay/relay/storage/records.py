"""The relay's persisted records: metadata only (R10).

Nothing here may ever hold a prompt, output, diff, log text, session preview, token or
cookie value; credentials appear only as hashes. ``SCHEMA_VERSION`` changes with any
incompatible change, and the store refuses files of a version it does not know.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from codexrelay.settings import CamelModel

SCHEMA_VERSION = 1


class Role(StrEnum):
    """Workspace roles, lowest to highest."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        """Position in the order viewer < member < admin < owner."""
        return ROLE_ORDER.index(self)

    def at_least(self, other: Role) -> bool:
        """Whether this role includes everything ``other`` may do."""
        return self.rank >= other.rank


ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)

UserStatus = Literal["active", "enrollment-locked", "disabled"]
SessionVia = Literal["bootstrap", "passkey", "invite", "recovery-code"]


class Record(CamelModel):
    """Base of every persisted record (unknown keys refused, so typos in files are caught)."""


class UserRecord(Record):
    id: str
    name: str
    status: UserStatus = "active"
    is_owner: bool = False
    created_at: datetime


class WorkspaceRecord(Record):
    id: str
    name: str
    created_at: datetime


class MembershipRecord(Record):
    user_id: str
    workspace_id: str
    role: Role
    created_at: datetime


class SessionRecord(Record):
    """A phone session. Keyed in state by the SHA-256 of its cookie value, never the value."""

    id: str
    token_hash: str
    user_id: str
    via: SessionVia
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    # A recovery-code or invite session may only enroll a passkey until one is registered.
    enrollment_only: bool = False
    # Invite sessions remember the invite so the membership is granted at first passkey.
    invite_id: str | None = None
    # Sudo mode: when this session last passed a user-verified passkey ceremony.
    reauth_at: datetime | None = None


class PasskeyRecord(Record):
    """R08: public key, credential id, transports, counter, owner; label and times only."""

    credential_id: str
    public_key: str
    transports: list[str] = Field(default_factory=list)
    sign_count: int = 0
    user_id: str
    label: str = ""
    created_at: datetime
    last_used_at: datetime | None = None


InviteStatus = Literal["pending", "accepted", "expired", "cancelled"]


class InviteRecord(Record):
    id: str
    code_hash: str
    workspace_id: str
    role: Role
    note: str = ""
    created_by: str
    created_at: datetime
    expires_at: datetime
    accepted_by: str | None = None
    accepted_at: datetime | None = None
    cancelled_at: datetime | None = None


class RecoveryCodeRecord(Record):
    id: str
    code_hash: str
    user_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class CatalogEntry(Record):
    """An id and label the agent advertises (an action or log source); never argv or paths."""

    id: str
    label: str


class AgentRecord(Record):
    """A paired agent. ``key`` is the relay's own id; ``agentId`` is unique per workspace."""

    key: str
    agent_id: str
    workspace_id: str
    label: str
    hostname: str = ""
    workspace_root_name: str = ""
    token_hash: str
    token_issued_at: datetime
    token_expires_at: datetime | None = None
    paired_by: str
    created_at: datetime
    last_seen_at: datetime | None = None
    revoked_at: datetime | None = None
    features: dict[str, bool] = Field(default_factory=dict)
    actions: list[CatalogEntry] = Field(default_factory=list)
    log_sources: list[CatalogEntry] = Field(default_factory=list)
    version: str = ""
    # What a protected agent last reported (``trust.status``): heads and its signing key.
    trust: dict[str, Any] | None = None


class LogEntryRecord(Record):
    """One entry of a workspace's membership log exactly as signed (TRUST.md §4.1, §5).

    Roles, names, public keys and passkey assertions: metadata the relay needs to filter
    requests, never task content (R10). ``entry`` is ``b64u`` of the signed bytes, ``sigs``
    the signatures as they arrived; the relay never re-serialises either.
    """

    key: str
    workspace_id: str
    seq: int
    hash: str
    op: str
    entry: str
    sigs: list[dict[str, Any]]
    created_at: datetime


class PairingCodeRecord(Record):
    id: str
    code_hash: str
    workspace_id: str
    note: str = ""
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


PairStatus = Literal["pending", "approved", "rejected", "expired", "completed"]


class PairRequestRecord(Record):
    id: str
    pairing_id: str
    workspace_id: str
    agent_id: str
    label: str
    hostname: str = ""
    workspace_root_name: str = ""
    poll_secret_hash: str
    status: PairStatus = "pending"
    replaces_agent: bool = False
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    agent_key: str | None = None
    # TRUST.md §4.2: the agent's key claim and its MAC (the relay cannot check the MAC), and
    # the phone's MAC'd grant, handed to the agent with its token. ``pin`` requests come
    # from an agent that is already paired and only pins the workspace (no new token).
    kind: Literal["pair", "pin"] = "pair"
    key_claim: str | None = None
    key_claim_mac: str | None = None
    grant: str | None = None
    grant_mac: str | None = None


TaskType = Literal["codex_exec", "run_action", "read_log"]
TaskStatus = Literal[
    "queued",
    "expired",
    "dispatched",
    "running",
    "completed",
    "failed",
    "cancelled",
    "rejected",
    "interrupted",
]
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "failed", "cancelled", "rejected", "interrupted", "expired"}
)


class TaskRecord(Record):
    """Task metadata only (R10): no prompt, output, diff, result or error text."""

    id: str
    workspace_id: str
    agent_id: str
    agent_key: str
    type: TaskType
    status: TaskStatus = "queued"
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    write_access: bool = False
    resume_session_id: str | None = None
    action_id: str | None = None
    log_source_id: str | None = None
    cwd: str | None = None
    exit_code: int | None = None
    codex_session_id: str | None = None
    reason: str | None = None
    redactions: int = 0
    cancel_requested: bool = False
    # Who asked to stop it (a user id), so the phone can say "Cancelled by Ada".
    cancelled_by: str | None = None
    # A task for an offline agent may wait for it until then; it is sent when the agent
    # connects, or expires.
    queued_until: datetime | None = None
    # A protected workspace's sealed task (TRUST.md §6): its content fields stay null here.
    sealed: bool = False


PushKind = Literal["approval-needed", "finished", "failed", "pair-request", "new-device"]
PUSH_KINDS: tuple[PushKind, ...] = (
    "approval-needed",
    "finished",
    "failed",
    "pair-request",
    "new-device",
)


class PushSubscriptionRecord(Record):
    """One device session's Web Push subscription (RFC 8030): where to send and the keys to
    encrypt for (RFC 8291). Never a notification's content; the endpoint never leaves."""

    id: str
    user_id: str
    session_id: str
    endpoint: str
    p256dh: str
    auth: str
    kinds: list[PushKind]
    user_agent: str = ""
    # The VAPID key the subscription was made for: after a rotation it is dropped.
    vapid_key_id: str
    created_at: datetime


ThreadRecordSource = Literal["phone", "terminal", "exec"]
ThreadRecordStatus = Literal["idle", "running", "waitingForApproval", "notLoaded", "error"]
TurnRecordStatus = Literal["inProgress", "completed", "interrupted", "failed"]
ApprovalRecordStatus = Literal[
    "pending", "accepted", "acceptedForSession", "declined", "cancelled", "expired"
]


class ThreadRecord(Record):
    """A live Codex conversation's metadata (R10): never its cwd, preview, items or model
    output. ``key`` is ``<agentKey>/<threadId>``: an agent speaks only for its own threads."""

    key: str
    id: str
    workspace_id: str
    agent_id: str
    agent_key: str
    source: ThreadRecordSource = "phone"
    status: ThreadRecordStatus = "notLoaded"
    write_access: bool = False
    created_by: str | None = None  # who started it from a phone (None: terminal or exec)
    taken_over_by: str | None = None  # who first resumed a terminal or exec thread
    created_at: datetime
    updated_at: datetime
    active_turn_id: str | None = None


class TurnRecord(Record):
    """One turn of a thread: who started it and how it ended (no input, no output)."""

    key: str  # <agentKey>/<turnId>
    id: str
    thread_key: str
    thread_id: str
    workspace_id: str
    status: TurnRecordStatus = "inProgress"
    started_by: str | None = None  # None: started in the terminal
    started_at: datetime
    finished_at: datetime | None = None


class ApprovalRecord(Record):
    """An approval Codex asked for: kind, state and who answered (never the command,
    diff or reason, which live in relay memory only)."""

    key: str  # <agentKey>/<approvalId>
    id: str
    thread_key: str
    thread_id: str
    workspace_id: str
    turn_id: str
    item_id: str
    kind: Literal["command", "fileChange"]
    status: ApprovalRecordStatus = "pending"
    resolved_elsewhere: bool = False  # answered in the terminal
    requested_at: datetime
    expires_at: datetime
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None


class State(Record):
    """Everything the relay persists, as one versioned document."""

    schema_version: int = SCHEMA_VERSION
    instance_id: str
    created_at: datetime
    users: dict[str, UserRecord] = Field(default_factory=dict)
    workspaces: dict[str, WorkspaceRecord] = Field(default_factory=dict)
    memberships: list[MembershipRecord] = Field(default_factory=list)
    sessions: dict[str, SessionRecord] = Field(default_factory=dict)
    passkeys: dict[str, PasskeyRecord] = Field(default_factory=dict)
    invites: dict[str, InviteRecord] = Field(default_factory=dict)
    recovery_codes: dict[str, RecoveryCodeRecord] = Field(default_factory=dict)
    agents: dict[str, AgentRecord] = Field(default_factory=dict)
    pairing_codes: dict[str, PairingCodeRecord] = Field(default_factory=dict)
    pair_requests: dict[str, PairRequestRecord] = Field(default_factory=dict)
    tasks: dict[str, TaskRecord] = Field(default_factory=dict)
    log_entries: dict[str, LogEntryRecord] = Field(default_factory=dict)
    push_subscriptions: dict[str, PushSubscriptionRecord] = Field(default_factory=dict)
    threads: dict[str, ThreadRecord] = Field(default_factory=dict)
    turns: dict[str, TurnRecord] = Field(default_factory=dict)
    approvals: dict[str, ApprovalRecord] = Field(default_factory=dict)
