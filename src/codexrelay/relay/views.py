"""What leaves the relay about a record: one out-model per shape, built one way.

A view lists exactly the fields that may leave (a field a record gains later stays inside
until a view names it) and is built with ``View.of(record, **computed)``: fields are read
from the record's attributes, and the few values that are not stored (``online``, a status
derived from the clock, ``current``) are passed by name. The HTTP routes answer with these
models and the phone's event stream sends the same JSON, so a screen never sees two shapes
of one thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field

from codexrelay.protocol import SessionPreview, TaskKind
from codexrelay.relay.storage.records import (
    ApprovalRecordStatus,
    InviteStatus,
    PairStatus,
    PushKind,
    Role,
    SessionVia,
    TaskStatus,
    ThreadRecordSource,
    ThreadRecordStatus,
    TurnRecordStatus,
    UserStatus,
)
from codexrelay.settings import CamelModel


class _WithComputed:
    """Attribute access to a record, with some attributes supplied beside it."""

    def __init__(self, record: object, computed: dict[str, Any]) -> None:
        self._record = record
        self._computed = computed

    def __getattr__(self, name: str) -> Any:
        if name in self._computed:
            return self._computed[name]
        return getattr(self._record, name)


class View(CamelModel):
    """Base of every out-model."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: object, **computed: Any) -> Self:
        """The view of ``record``; ``computed`` supplies fields the record does not store."""
        return cls.model_validate(_WithComputed(record, computed) if computed else record)

    def json_data(self) -> dict[str, Any]:
        """The JSON-ready dict (camelCase), as the event stream sends it."""
        return self.model_dump(mode="json", by_alias=True)


class UserOut(View):
    id: str
    name: str
    status: UserStatus
    is_owner: bool


class MeUserOut(UserOut):
    """The signed-in user; ``has_passkey`` lets the app warn after a recovery login (O4)."""

    has_passkey: bool


class WorkspaceOut(View):
    """A workspace with the caller's role in it (computed)."""

    id: str
    name: str
    role: Role


class MemberOut(View):
    """A member of a workspace: the user and the role held there."""

    user_id: str
    name: str
    role: Role
    status: UserStatus


class UserMembershipOut(CamelModel):
    workspace_id: str
    workspace_name: str
    role: Role


class UserAdminOut(View):
    """One row of the relay owner's user list (counts and memberships are computed)."""

    id: str
    name: str
    status: UserStatus
    is_owner: bool
    created_at: datetime
    passkey_count: int
    session_count: int
    memberships: list[UserMembershipOut]


class SessionOut(View):
    """A session as its owner sees it (never its hash); ``current`` is computed."""

    id: str
    via: SessionVia
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    current: bool


class PasskeyOut(View):
    """The management view of a passkey (never its public key)."""

    credential_id: str
    label: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


class InviteOut(View):
    """An invite (never its code hash); ``status`` is computed from the clock."""

    id: str
    role: Role
    note: str
    status: InviteStatus
    created_by: str
    created_at: datetime
    expires_at: datetime
    accepted_by: str | None
    accepted_at: datetime | None


class RecoveryCodeOut(View):
    id: str
    user_id: str
    expires_at: datetime


class PairRequestOut(View):
    id: str
    # Which code was claimed, so the phone that shows it stops offering a used code.
    pairing_id: str
    agent_id: str
    label: str
    hostname: str
    workspace_root_name: str
    status: PairStatus
    replaces_agent: bool
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    # TRUST.md §4.2: ``pin`` requests come from paired agents pinning a protected
    # workspace; the key claim and its MAC are for the approving phone to check.
    kind: Literal["pair", "pin"] = "pair"
    key_claim: str | None = None
    key_claim_mac: str | None = None


class CatalogItemOut(View):
    id: str
    label: str


class PairingOut(View):
    """A pairing code record (never its code or hash)."""

    id: str
    expires_at: datetime


class CodexSessionOut(View):
    """A Codex session from the agent's catalog (memory only, R12)."""

    session_id: str
    title: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    cwd: str
    preview: list[SessionPreview] = Field(default_factory=list)


class AgentOut(View):
    """An agent: ids, labels and flags it advertised; ``online`` is computed."""

    agent_id: str
    label: str
    hostname: str
    online: bool
    last_seen_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    features: dict[str, bool]
    actions: list[CatalogItemOut]
    log_sources: list[CatalogItemOut]
    workspace_root_name: str
    version: str
    trust: dict[str, Any] | None = None


class LogEntryOut(View):
    """One membership log entry exactly as it was signed (TRUST.md §5)."""

    seq: int
    hash: str
    op: str
    entry: str
    sigs: list[dict[str, Any]]
    created_at: datetime


class LogHeadOut(View):
    seq: int
    hash: str


class TaskOut(View):
    """Task metadata (API.md "Task metadata fields"): never a prompt or result text."""

    id: str
    workspace_id: str
    agent_id: str
    type: TaskKind
    status: TaskStatus
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    write_access: bool
    resume_session_id: str | None
    action_id: str | None
    log_source_id: str | None
    cwd: str | None
    exit_code: int | None
    codex_session_id: str | None
    reason: str | None
    redactions: int
    cancel_requested: bool
    cancelled_by: str | None
    queued_until: datetime | None
    sealed: bool = False


ProgressKind = Literal[
    "message", "reasoning", "command", "file_change", "web_search", "error", "output"
]


class ProgressOut(CamelModel):
    seq: int
    kind: ProgressKind
    text: str = ""
    command: str | None = None
    exit_code: int | None = None
    status: str | None = None
    changes: list[dict[str, str]] = Field(default_factory=list)


class TaskDetailOut(TaskOut):
    """Metadata plus the texts the relay holds in memory for a while (R10, R11)."""

    prompt: str | None = None
    output_tail: str | None = None
    final_message: str | None = None
    diff_text: str | None = None
    diff_truncated: bool = False
    error: str | None = None
    progress: list[ProgressOut] = Field(default_factory=list)
    details_expired: bool


class PushSubscriptionOut(View):
    """A device's push subscription as its owner sees it: never the endpoint URL (a
    capability to reach the device) or its keys. ``service`` (the push service's host),
    ``current`` (this session's own) and ``last_success_at`` (since the relay started) are
    computed."""

    id: str
    kinds: list[PushKind]
    created_at: datetime
    user_agent: str
    last_success_at: datetime | None
    service: str
    current: bool


class ThreadOut(View):
    """A live conversation (API.md "Conversations"): metadata from the record, and ``cwd``,
    ``preview`` and ``model`` from relay memory (computed; empty when not held)."""

    id: str
    workspace_id: str
    agent_id: str
    source: ThreadRecordSource
    status: ThreadRecordStatus
    cwd: str
    write_access: bool
    preview: str
    model: str | None
    created_by: str | None
    taken_over_by: str | None
    created_at: datetime
    updated_at: datetime
    active_turn_id: str | None
    agent_online: bool
    pending_approvals: int
    # Its content travels sealed (the workspace's policy): cwd and preview stay empty here.
    sealed: bool = False


class TurnOut(View):
    """A turn: who started it (None: in the terminal) and how it ended."""

    id: str
    thread_id: str
    status: TurnRecordStatus
    started_by: str | None
    started_at: datetime
    finished_at: datetime | None
    error: str | None = None


class FileChangeOut(CamelModel):
    path: str
    kind: str
    diff: str = ""


class ApprovalOut(View):
    """An approval: state from the record; what it asks (command, diff, reason, the
    decisions offered) from relay memory (computed)."""

    id: str
    thread_id: str
    turn_id: str
    item_id: str
    kind: Literal["command", "fileChange"]
    command: str | None = None
    cwd: str | None = None
    changes: list[FileChangeOut] | None = None
    reason: str | None = None
    available_decisions: list[str]
    status: ApprovalRecordStatus
    resolved_elsewhere: bool
    requested_at: datetime
    expires_at: datetime
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    # b64u of the agent's exact request bytes; a signed decision answers H(these bytes)
    request: str | None = None
