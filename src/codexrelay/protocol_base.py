"""The base of every agent <-> relay message, shared by ``protocol`` and ``protocol_threads``."""

from __future__ import annotations

from enum import StrEnum

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
