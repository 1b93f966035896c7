"""Signed tasks on the relay: the first filter before forwarding (TRUST.md §4.5, §4.13).

The phone sends the statement, the body and passkey signatures; the relay checks them
against the log it holds (so it never forwards what every agent would refuse), applies the
log's policy (role, two-person rule) and, once enough people signed, records and dispatches
the task with the signed request attached unchanged. The agent then checks everything again
against the log it pinned: nothing here is a guarantee, only an early answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e import policy as rules
from codexrelay.e2e.log import HeadStatus, LogView, head_status
from codexrelay.e2e.logview import Head
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    CancelStatement,
    Signed,
    StatementError,
    TaskBody,
    TaskStatement,
    check_body,
    check_recent,
    check_window,
    parse_statement,
)
from codexrelay.e2e.tags import tag
from codexrelay.e2e.webauthn_verify import PasskeyError, parse_signature, verify_statement_signature
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import SignedTask
from codexrelay.relay.tasks import lifecycle

BODY_CAP = MAX_BODY_BYTES + 1024
CANCEL_MAX_AGE_SEC = 600


def _bad(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_SIGNATURE, message)


@dataclass(frozen=True)
class Checked:
    """A signed task that passed the relay's checks, and the policy's verdict on it.

    ``signed`` is the statement parsed once (its exact bytes and tag), reused for the
    signature checks rather than decoded and validated a second time."""

    signed: Signed[TaskStatement]
    body: TaskBody
    stmt_text: str
    body_text: str
    auth: list[dict[str, Any]]
    signers: list[str]
    verdict: rules.Verdict

    @property
    def statement(self) -> TaskStatement:
        """The parsed statement's fields."""
        return self.signed.value

    @property
    def request(self) -> SignedTask:
        """The signed request as the agent receives it (needs at least one signature)."""
        return SignedTask(stmt=self.stmt_text, body=self.body_text, auth=self.auth)

    def task_request(self) -> lifecycle.TaskRequest:
        """What the relay's task checks and records take (role already checked here)."""
        stmt = self.statement
        return lifecycle.TaskRequest(
            agent_id=stmt.agent,
            type=stmt.type,
            prompt=self.body.prompt if stmt.type == "codex_exec" else None,
            cwd=stmt.cwd,
            write_access=stmt.write_access,
            resume_session_id=stmt.resume_session_id,
            action_id=stmt.action_id,
            log_source_id=stmt.log_source_id,
            task_id=stmt.task,
            signed=self.request,
            role_checked=True,
        )


def parse_task(view: LogView, workspace_id: str, stmt: str, body: str, now: int) -> Checked:
    """The statement and body alone: shape, workspace, body hash, lifetime, log head."""
    try:
        signed = parse_statement(stmt, TaskStatement)
        raw_body = b64u_decode(body, max_bytes=BODY_CAP)
        task_body = check_body(signed.value, raw_body)
        value = signed.value
        check_window(value.issued_at, value.expires_at, now=now, max_ttl=view.policy.task_ttl_sec)
    except StatementError as exc:
        raise _bad(f"The signed task is refused: {exc.reason.value}.") from None
    except WireError as exc:
        raise _bad(f"The task body is {exc.reason.value}.") from None
    if value.ws != workspace_id:
        raise _bad("The signed task names another workspace.")
    if value.type != "codex_exec" and task_body.prompt:
        raise _bad("Only a Codex task's body carries a prompt.")
    if lifecycle.check_cwd(value.cwd) != value.cwd:
        raise AppError(ErrorCode.INVALID_CWD, "Sign the working directory in its plain form.")
    status = head_status(view, Head(value.log_head.seq, value.log_head.hash))
    if status != HeadStatus.ON_CHAIN:
        raise AppError(
            ErrorCode.STALE_LOG_HEAD,
            f"The task was signed on a log head this relay does not hold ({status.value}).",
        )
    return Checked(signed, task_body, stmt, body, [], [], rules.Verdict(allowed=False))


def approvals(
    view: LogView, statement: Signed[Any], auth: list[dict[str, Any]]
) -> list[rules.Approval]:
    """Each signature must be a live member's passkey, user-verified, over these bytes."""
    found = []
    for item in auth:
        try:
            signature = parse_signature(item)
        except PasskeyError as exc:
            raise _bad(f"A signature is {exc.reason.value}.") from None
        passkey = view.passkeys.get(signature.credential_id)
        member = view.members.get(passkey.user_id) if passkey is not None else None
        if passkey is None or member is None or not passkey.active:
            raise AppError(ErrorCode.FORBIDDEN, "A signing passkey is not live in the log.")
        try:
            verified = verify_statement_signature(
                signature,
                statement,
                rp_id=view.rp_id,
                origins=view.origins,
                cose_key=passkey.cose,
                sign_count=0,  # the agent keeps the counters that count
            )
        except PasskeyError as exc:
            raise _bad(f"A passkey signature is refused: {exc.reason.value}.") from None
        value = statement.value
        found.append(
            rules.Approval(
                user_id=member.user_id,
                role=member.role,
                issued_at=value.issued_at,
                user_verified=verified.user_verified,
                device_bound=verified.device_bound,
            )
        )
    return found


def check_signatures(
    view: LogView, checked: Checked, auth: list[dict[str, Any]], *, caller_id: str, now: int
) -> Checked:
    """Verify ``auth`` (the submitter's first), then the policy's verdict."""
    found = approvals(view, checked.signed, auth)
    if not found or found[0].user_id != caller_id:
        raise AppError(ErrorCode.FORBIDDEN, "Sign the task with your own passkey.")
    value = checked.statement
    key = rules.task_action(
        value.type,
        write_access=value.write_access,
        action_id=value.action_id,
        log_source_id=value.log_source_id,
    )
    verdict = rules.check(view.policy, key, found, now=now)
    if not verdict.allowed and verdict.reason != rules.PolicyReason.NEEDS_MORE_APPROVERS:
        reason = verdict.reason.value if verdict.reason else "refused"
        raise AppError(ErrorCode.FORBIDDEN, f"The workspace policy refuses this task ({reason}).")
    signers = [a.user_id for a in found]
    return Checked(
        checked.signed, checked.body, checked.stmt_text, checked.body_text, auth, signers, verdict
    )


def expires(checked: Checked) -> datetime:
    """When the signed statement expires (a pending task goes then)."""
    return datetime.fromtimestamp(checked.statement.expires_at, UTC)


def check_cancel(
    view: LogView, stmt: str, sig: str, *, workspace_id: str, task_id: str, now: int
) -> tuple[CancelStatement, str]:
    """A device-signed cancel (TRUST.md §4.9): its statement, and the user of its device."""
    try:
        signed = parse_statement(stmt, CancelStatement)
        check_recent(signed.value.issued_at, now=now, max_age=CANCEL_MAX_AGE_SEC)
        signature = b64u_decode(sig, max_bytes=64)
    except StatementError as exc:
        raise _bad(f"The signed cancel is refused: {exc.reason.value}.") from None
    except WireError as exc:
        raise _bad(f"The cancel signature is {exc.reason.value}.") from None
    value = signed.value
    if (value.ws, value.task) != (workspace_id, task_id):
        raise _bad("The signed cancel names another workspace or task.")
    device = view.devices.get(value.device)
    if device is None or not device.active or device.user_id not in view.members:
        raise AppError(ErrorCode.FORBIDDEN, "The cancelling device is not live in the log.")
    key = keys.load_verify_key(device.suite, device.sig_pub)
    if not keys.verify(key, signature, tag("cancel") + signed.raw):
        raise _bad("The cancel signature does not verify.")
    return value, device.user_id
