"""Signed conversation requests on the relay: the first filter (TRUST.md §4.8, §4.13).

In a protected workspace the phone sends, with each thread start, turn, steer and approval
answer, a passkey-signed statement over the exact bytes, and with each interrupt a device
signature. The relay checks them against the log it holds, so it never forwards what every
agent would refuse, and forwards them unchanged with its plain copy of the request. The
agent checks everything again against the log it pinned: nothing here is a guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e import policy as rules
from codexrelay.e2e.log import HeadStatus, LogView, head_status
from codexrelay.e2e.logview import Head
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    DecisionStatement,
    InterruptStatement,
    Signed,
    StatementError,
    Strict,
    TurnInput,
    TurnStatement,
    check_input,
    check_recent,
    check_window,
    digest,
    parse_statement,
)
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import SignedDecision, SignedStop, SignedTurn
from codexrelay.relay.trust.signed import CANCEL_MAX_AGE_SEC, approvals


def _bad(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_SIGNATURE, message)


@dataclass(frozen=True)
class Plain:
    """The relay's plain copy of a turn, which must equal the signed input."""

    agent_id: str
    mode: str
    thread_id: str | None
    prompt: str
    images: list[str] | None = None
    cwd: str | None = None
    model: str | None = None
    effort: str | None = None
    write_access: bool | None = None


def check_turn(
    view: LogView, ws: str, signed: SignedTurn, plain: Plain, *, caller: str, now: int
) -> None:
    """A signed thread start, turn or steer: statement, input, binding, signer, policy."""
    parsed = _parse(signed.stmt, TurnStatement)
    stmt = parsed.value
    try:
        given = check_input(stmt, b64u_decode(signed.input, max_bytes=MAX_BODY_BYTES * 4))
    except (StatementError, WireError) as exc:
        raise _bad(f"The signed input is refused: {exc.reason.value}.") from None
    _addressed(view, ws, plain.agent_id, stmt, now)
    if (stmt.mode, stmt.thread if plain.thread_id else None) != (plain.mode, plain.thread_id):
        raise _bad("The signed turn is for another thread or kind of turn.")
    if plain.write_access is not None and plain.write_access != stmt.write_access:
        raise _bad("The signed turn's write mode differs.")
    if not _same_input(given, plain):
        raise _bad("The signed input differs from the request.")
    action = rules.ActionKey("codex.write" if stmt.write_access else "codex.read")
    _signers(view, parsed, signed.auth, caller=caller, action=action, now=now)


def check_decision(
    view: LogView,
    ws: str,
    signed: SignedDecision,
    *,
    agent_id: str,
    thread_id: str,
    approval_id: str,
    decision: str,
    request: str | None,
    caller: str,
    now: int,
) -> None:
    """A signed approval answer: for this approval's exact request bytes and this answer."""
    parsed = _parse(signed.stmt, DecisionStatement)
    stmt = parsed.value
    _addressed(view, ws, agent_id, stmt, now)
    if (stmt.task, stmt.request_id, stmt.decision) != (thread_id, approval_id, decision):
        raise _bad("The signed decision answers another approval, or differently.")
    if request is not None and digest(b64u_decode(request, max_bytes=1 << 21)) != stmt.req_hash:
        raise _bad("The signed decision answers another request.")
    _signers(view, parsed, signed.auth, caller=caller, action=rules.ActionKey("approval"), now=now)


def check_interrupt(
    view: LogView, ws: str, signed: SignedStop, *, agent_id: str, thread_id: str, now: int
) -> str:
    """A device-signed interrupt (it can only stop work); the user of its device."""
    try:
        parsed = parse_statement(signed.stmt, InterruptStatement)
        check_recent(parsed.value.issued_at, now=now, max_age=CANCEL_MAX_AGE_SEC)
        signature = b64u_decode(signed.sig, max_bytes=64)
    except StatementError as exc:
        raise _bad(f"The signed interrupt is refused: {exc.reason.value}.") from None
    except WireError as exc:
        raise _bad(f"The interrupt signature is {exc.reason.value}.") from None
    stmt = parsed.value
    if (stmt.ws, stmt.agent, stmt.thread) != (ws, agent_id, thread_id):
        raise _bad("The signed interrupt names another workspace, agent or thread.")
    device = view.devices.get(stmt.device)
    if device is None or not device.active or device.user_id not in view.members:
        raise AppError(ErrorCode.FORBIDDEN, "The interrupting device is not live in the log.")
    key = keys.load_verify_key(device.suite, device.sig_pub)
    if not keys.verify(key, signature, tag("interrupt") + parsed.raw):
        raise _bad("The interrupt signature does not verify.")
    return device.user_id


def _parse(text: str, model: type[Strict]) -> Signed[Any]:
    try:
        return parse_statement(text, model)
    except StatementError as exc:
        raise _bad(f"The signed statement is refused: {exc.reason.value}.") from None


def _addressed(
    view: LogView, ws: str, agent_id: str, stmt: TurnStatement | DecisionStatement, now: int
) -> None:
    """For this workspace and agent, fresh, and signed on a log head this relay holds."""
    if (stmt.ws, stmt.agent) != (ws, agent_id) or ws != view.ws or agent_id not in view.agents:
        raise _bad("The statement names another workspace or agent.")
    log_head = stmt.log_head
    try:
        check_window(stmt.issued_at, stmt.expires_at, now=now, max_ttl=view.policy.task_ttl_sec)
    except StatementError as exc:
        raise _bad(f"The statement is {exc.reason.value}.") from None
    status = head_status(view, Head(log_head.seq, log_head.hash))
    if status != HeadStatus.ON_CHAIN:
        raise AppError(
            ErrorCode.STALE_LOG_HEAD,
            f"Signed on a log head this relay does not hold ({status.value}).",
        )


def _same_input(given: TurnInput, plain: Plain) -> bool:
    signed = (given.prompt, given.images, given.cwd, given.model, given.effort)
    return signed == (plain.prompt, plain.images, plain.cwd, plain.model, plain.effort)


def _signers(
    view: LogView,
    parsed: Signed[Any],
    auth: list[dict[str, Any]],
    *,
    caller: str,
    action: rules.ActionKey,
    now: int,
) -> None:
    found = approvals(view, parsed, auth)
    if not found or found[0].user_id != caller:
        raise AppError(ErrorCode.FORBIDDEN, "Sign with your own passkey.")
    device = view.devices.get(parsed.value.device)
    if device is None or device.user_id != caller or not device.active:
        raise AppError(ErrorCode.FORBIDDEN, "The statement names a device that is not yours.")
    verdict = rules.check(view.policy, action, found, now=now)
    if not verdict.allowed:
        reason = verdict.reason.value if verdict.reason else "refused"
        raise AppError(ErrorCode.FORBIDDEN, f"The workspace policy refuses this ({reason}).")
