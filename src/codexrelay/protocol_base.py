"""The base of every agent <-> relay message, shared by ``protocol`` and ``protocol_threads``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from codexrelay.settings import CamelModel

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ProtocolError(Exception):
    """A message that does not parse or does not fit the protocol."""


class Message(CamelModel):
    """Base of every message."""


class RefusalReason(StrEnum):
    """Why an agent will not do what the relay asked (a task, or a conversation request):
    stable codes the phone turns into sentences."""

    DUPLICATE_TASK = "duplicate-task"
    AGENT_BUSY = "agent-busy"
    FEATURE_DISABLED = "feature-disabled"
    INVALID_TASK = "invalid-task"
    WRITE_MODE_DISABLED = "write-mode-disabled"
    WRITE_ON_RESUME_DISABLED = "write-on-resume-disabled"
    UNKNOWN_SESSION = "unknown-session"
    CWD_OUTSIDE_WORKSPACE = "cwd-outside-workspace"
    CWD_NOT_FOUND = "cwd-not-found"
    UNKNOWN_ACTION = "unknown-action"
    UNKNOWN_LOG_SOURCE = "unknown-log-source"
    LEDGER_UNAVAILABLE = "ledger-unavailable"
    # conversations
    INVALID_REQUEST = "invalid-request"
    UNKNOWN_THREAD = "unknown-thread"
    TURN_RUNNING = "turn-running"
    NO_RUNNING_TURN = "no-running-turn"
    UNKNOWN_APPROVAL = "unknown-approval"
    APPROVAL_RESOLVED = "approval-resolved"
    DECISION_NOT_OFFERED = "decision-not-offered"
    CODEX_UNAVAILABLE = "codex-unavailable"
    CODEX_ERROR = "codex-error"
    AGENT_ERROR = "agent-error"
    # A protected workspace (TRUST.md §4.6): the statement and its signatures, in the
    # order the agent checks them.
    SIGNATURE_REQUIRED = "signature-required"
    NOT_PINNED = "workspace-not-pinned"
    STATEMENT_INVALID = "statement-invalid"
    WRONG_WORKSPACE = "wrong-workspace"
    WRONG_AGENT = "wrong-agent"
    BODY_MISMATCH = "body-mismatch"
    STATEMENT_MISMATCH = "statement-mismatch"
    STATEMENT_TTL_TOO_LONG = "statement-ttl-too-long"
    STATEMENT_NOT_YET_VALID = "statement-not-yet-valid"
    STATEMENT_EXPIRED = "statement-expired"
    LOG_HEAD_UNKNOWN = "log-head-unknown"
    LOG_FORK = "log-fork"
    UNKNOWN_SIGNER = "unknown-signer"
    REVOKED_SIGNER = "revoked-signer"
    ROLE_TOO_LOW = "role-too-low"
    DEVICE_BOUND_REQUIRED = "device-bound-required"
    NEEDS_MORE_APPROVERS = "needs-more-approvers"
    USER_NOT_VERIFIED = "user-not-verified"
    COUNTER_REGRESSED = "counter-regressed"
    SIGNATURE_INVALID = "signature-invalid"
    AUDIT_UNAVAILABLE = "audit-unavailable"
    # Sealed tasks (TRUST.md §4.6 steps 1-2): a plaintext task where sealing is required,
    # or an envelope that does not open for this agent.
    E2E_REQUIRED = "e2e-required"
    SEALED_INVALID = "sealed-invalid"
    TASK_KEY_GONE = "task-key-gone"


class SignedTask(Message):
    """The phone's signed request, forwarded byte for byte (TRUST.md §4.5): the statement
    and body as ``b64u`` of their exact bytes, and one passkey signature per approver
    (``{credentialId, assertion}``, parsed strictly by the agent)."""

    stmt: Annotated[str, Field(min_length=1, max_length=11_000)]
    body: Annotated[str, Field(min_length=1, max_length=352_000)]
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=5)]


class SignedStop(Message):
    """A device-key signed cancel or interrupt statement (TRUST.md §4.9)."""

    stmt: Annotated[str, Field(min_length=1, max_length=2_000)]
    sig: Annotated[str, Field(min_length=1, max_length=200)]


class SignedDecision(Message):
    """A passkey-signed approval decision (TRUST.md §4.8), forwarded byte for byte."""

    stmt: Annotated[str, Field(min_length=1, max_length=11_000)]
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=5)]


class SignedTurn(Message):
    """A passkey-signed turn, steer or thread start (TRUST.md §4.13): the statement and the
    input (prompt, photos, and for a new thread its directory and model) as ``b64u`` of
    their exact bytes. The relay's plain copy of the input must equal it."""

    stmt: Annotated[str, Field(min_length=1, max_length=11_000)]
    input: Annotated[str, Field(min_length=1, max_length=700_000)]
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1)]
