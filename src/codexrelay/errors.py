"""The one error model: stable codes from API.md, their HTTP status, and ``AppError``.

Every failure a client can see is an ``AppError``; third-party exceptions are translated
at the boundary so the JSON error shape ``{"error", "message"}`` stays a contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable, kebab-case error codes. Clients match on these, so never rename one."""

    UNAUTHENTICATED = "unauthenticated"
    INVALID_BOOTSTRAP_TOKEN = "invalid-bootstrap-token"  # noqa: S105 - a code, not a secret
    ENROLLMENT_REQUIRED = "enrollment-required"
    FORBIDDEN = "forbidden"
    FEATURE_DISABLED = "feature-disabled"
    WRITE_MODE_DISABLED = "write-mode-disabled"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    INVALID_OR_EXPIRED_CODE = "invalid-or-expired-code"
    AGENT_OFFLINE = "agent-offline"
    AGENT_NOT_AVAILABLE = "agent-not-available"
    RATE_LIMITED = "rate-limited"
    INVALID_REQUEST = "invalid-request"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    CONFLICT = "conflict"
    UNKNOWN_ACTION = "unknown-action"
    UNKNOWN_LOG_SOURCE = "unknown-log-source"
    INVALID_CWD = "invalid-cwd"
    INVALID_PASSKEY = "invalid-passkey"
    LAST_PASSKEY = "last-passkey"
    LAST_OWNER = "last-owner"
    TASK_FINISHED = "task-finished"
    QUEUE_FULL = "queue-full"
    PUSH_ENDPOINT_NOT_ALLOWED = "push-endpoint-not-allowed"
    STORAGE_UNAVAILABLE = "storage-unavailable"
    INTERNAL_ERROR = "internal-error"
    # Protected workspaces (TRUST.md; docs/API-ADDITIONS.md "Protected workspaces").
    SIGNATURE_REQUIRED = "signature-required"
    NOT_PROTECTED = "not-protected"
    STALE_LOG_HEAD = "stale-log-head"
    INVALID_LOG_ENTRY = "invalid-log-entry"
    INVALID_SIGNATURE = "invalid-signature"
    REAUTH_REQUIRED = "reauth-required"
    STATEMENT_REFUSED = "statement-refused"
    E2E_REQUIRED = "e2e-required"
    # Live conversations (API.md "Conversations", docs/API-ADDITIONS.md).
    TURN_RUNNING = "turn-running"
    NO_RUNNING_TURN = "no-running-turn"
    APPROVAL_RESOLVED = "approval-resolved"
    DECISION_NOT_OFFERED = "decision-not-offered"
    CWD_OUTSIDE_WORKSPACE = "cwd-outside-workspace"
    CWD_NOT_FOUND = "cwd-not-found"
    WRITE_ON_RESUME_DISABLED = "write-on-resume-disabled"
    CODEX_UNAVAILABLE = "codex-unavailable"
    CODEX_ERROR = "codex-error"
    AGENT_BUSY = "agent-busy"
    AGENT_ERROR = "agent-error"
    AGENT_TIMEOUT = "agent-timeout"


STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.INVALID_BOOTSTRAP_TOKEN: 401,
    ErrorCode.ENROLLMENT_REQUIRED: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.FEATURE_DISABLED: 403,
    ErrorCode.WRITE_MODE_DISABLED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INVALID_OR_EXPIRED_CODE: 400,
    ErrorCode.AGENT_OFFLINE: 409,
    ErrorCode.AGENT_NOT_AVAILABLE: 409,
    ErrorCode.QUEUE_FULL: 409,
    ErrorCode.PUSH_ENDPOINT_NOT_ALLOWED: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNKNOWN_ACTION: 400,
    ErrorCode.UNKNOWN_LOG_SOURCE: 400,
    ErrorCode.INVALID_CWD: 400,
    ErrorCode.INVALID_PASSKEY: 400,
    ErrorCode.LAST_PASSKEY: 409,
    ErrorCode.LAST_OWNER: 409,
    ErrorCode.TASK_FINISHED: 409,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.SIGNATURE_REQUIRED: 409,
    ErrorCode.NOT_PROTECTED: 409,
    ErrorCode.STALE_LOG_HEAD: 409,
    ErrorCode.INVALID_LOG_ENTRY: 400,
    ErrorCode.INVALID_SIGNATURE: 400,
    ErrorCode.REAUTH_REQUIRED: 403,
    ErrorCode.STATEMENT_REFUSED: 403,
    ErrorCode.E2E_REQUIRED: 409,
    ErrorCode.TURN_RUNNING: 409,
    ErrorCode.NO_RUNNING_TURN: 409,
    ErrorCode.APPROVAL_RESOLVED: 409,
    ErrorCode.DECISION_NOT_OFFERED: 422,
    ErrorCode.CWD_OUTSIDE_WORKSPACE: 400,
    ErrorCode.CWD_NOT_FOUND: 400,
    ErrorCode.WRITE_ON_RESUME_DISABLED: 403,
    ErrorCode.CODEX_UNAVAILABLE: 409,
    ErrorCode.CODEX_ERROR: 502,
    ErrorCode.AGENT_BUSY: 503,
    ErrorCode.AGENT_ERROR: 502,
    ErrorCode.AGENT_TIMEOUT: 504,
}


class AppError(Exception):
    """A failure with a stable code and one human sentence, safe to show to any client.

    ``status`` overrides the code's usual status where API.md pairs one code with two
    statuses (``invalid-request`` is 400, 415 or 422).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS[code]
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": self.code.value, "message": self.message}
