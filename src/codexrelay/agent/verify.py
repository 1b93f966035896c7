"""The agent's checklist for a task in a protected workspace (TRUST.md §4.6, in order).

It fails closed: every refusal is a ``TaskRefusedError`` with a specific
``RefusalReason``. The checks read only what the agent holds itself: the workspace it
pinned, the log it verified from that genesis, its own passkey counters and run-once
ledger. The relay's word counts for nothing: its copy of the task (the ``TaskSpec``) must
equal what was signed, or the task is refused as a lie.

Turn statements (conversations) and approval decisions go through the same steps with
:meth:`StatementChecker.check_turn` and :meth:`StatementChecker.check_decision`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.trust import Pin, TrustStore
from codexrelay.e2e import policy as rules
from codexrelay.e2e.log import HeadStatus, LogError, LogView, head_status, parse_signed
from codexrelay.e2e.logview import Head, Passkey
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    DecisionStatement,
    LogHead,
    Signed,
    StatementError,
    StatementReason,
    Strict,
    TaskBody,
    TaskStatement,
    TurnStatement,
    check_body,
    check_window,
    parse_statement,
)
from codexrelay.e2e.webauthn_verify import (
    PasskeyError,
    PasskeyReason,
    PasskeySignature,
    parse_signature,
    verify_statement_signature,
)
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.protocol import RefusalReason, SignedTask, TaskSpec

R = RefusalReason
S = TypeVar("S", bound=Strict)
FetchLog = Callable[[int], Awaitable[list[dict[str, Any]]]]
_WINDOW = {
    StatementReason.TTL_TOO_LONG: R.STATEMENT_TTL_TOO_LONG,
    StatementReason.NOT_YET_VALID: R.STATEMENT_NOT_YET_VALID,
    StatementReason.EXPIRED: R.STATEMENT_EXPIRED,
}
_PASSKEY = {
    PasskeyReason.USER_NOT_VERIFIED: R.USER_NOT_VERIFIED,
    PasskeyReason.COUNTER_REGRESSED: R.COUNTER_REGRESSED,
}
_POLICY = {
    rules.PolicyReason.ROLE_TOO_LOW: R.ROLE_TOO_LOW,
    rules.PolicyReason.UV_REQUIRED: R.USER_NOT_VERIFIED,
    rules.PolicyReason.DEVICE_BOUND_REQUIRED: R.DEVICE_BOUND_REQUIRED,
    rules.PolicyReason.NEEDS_MORE_APPROVERS: R.NEEDS_MORE_APPROVERS,
}
SKEW_SEC = 300


def refuse(reason: RefusalReason, message: str) -> TaskRefusedError:
    """A refusal with its stable reason and one sentence."""
    return TaskRefusedError(reason, message)


@dataclass(frozen=True)
class Accepted:
    """A statement that passed every check, and what to keep before its work starts."""

    statement: Signed[Any]
    auth: list[dict[str, Any]]
    signers: tuple[str, ...]
    counts: tuple[tuple[str, int], ...]
    keep_until: int
    head: Head
    sealed: Any = None  # the OpenedTask of a sealed task (codexrelay.agent.sealing)


class StatementChecker:
    """Checks statements against the pinned log; fetches the log when one is ahead."""

    def __init__(
        self,
        trust: TrustStore,
        *,
        agent_id: str,
        seen: Callable[[str], bool],
        fetch: FetchLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self.agent_id = agent_id
        self.seen = seen
        self.fetch = fetch
        self.clock = clock

    # --- tasks ---

    async def check_task(self, spec: TaskSpec) -> Accepted | None:
        """None for an unprotected agent's plain task; else the accepted statement."""
        state = self.trust.current()
        if state is None:
            if spec.signed is not None:
                raise refuse(R.NOT_PINNED, "pin this workspace first (codexrelay agent trust pin)")
            return None
        if spec.signed is None:
            raise refuse(R.SIGNATURE_REQUIRED, "this workspace's tasks must be signed")
        signed = self._parse(spec.signed.stmt, TaskStatement)
        stmt = signed.value
        view = self._addressed(stmt.ws, stmt.agent, state)
        body = self._body(stmt, spec.signed)
        _same_as_signed(spec, stmt, body)
        return await self._authorise(
            view,
            signed,
            spec.signed.auth,
            run_id=stmt.task,
            head=stmt.log_head,
            device=stmt.device,
            action=rules.task_action(
                stmt.type,
                write_access=stmt.write_access,
                action_id=stmt.action_id,
                log_source_id=stmt.log_source_id,
            ),
        )

    async def check_turn(self, stmt_text: str, auth: list[dict[str, Any]]) -> Accepted:
        """A follow-up turn or steer (§4.13): the same steps, run-once on ``turn``."""
        signed = self._parse(stmt_text, TurnStatement)
        stmt = signed.value
        view = self._addressed(stmt.ws, stmt.agent, self.trust.current())
        key = rules.ActionKey("codex.write" if stmt.write_access else "codex.read")
        return await self._authorise(
            view, signed, auth, run_id=stmt.turn, head=stmt.log_head, device=stmt.device, action=key
        )

    async def check_decision(
        self, stmt_text: str, auth: list[dict[str, Any]], *, open_request: str
    ) -> Accepted:
        """An approval decision (§4.8): ``reqHash`` must be the open request the agent sent."""
        signed = self._parse(stmt_text, DecisionStatement)
        stmt = signed.value
        view = self._addressed(stmt.ws, stmt.agent, self.trust.current())
        if stmt.req_hash != open_request:
            raise refuse(R.STATEMENT_MISMATCH, "the decision answers another request")
        return await self._authorise(
            view,
            signed,
            auth,
            run_id=f"{stmt.request_id}:{stmt.req_hash}",
            head=stmt.log_head,
            device=stmt.device,
            action=rules.ActionKey("approval"),
        )

    # --- the steps ---

    def _parse(self, text: str, model: type[S]) -> Signed[S]:
        try:
            return parse_statement(text, model)
        except StatementError as exc:
            raise refuse(R.STATEMENT_INVALID, f"the statement is {exc.reason.value}") from None

    def _addressed(self, ws: str, agent: str, state: tuple[Pin, LogView] | None) -> LogView:
        """Step 1: for the workspace this agent pinned, and for this agent."""
        if state is None or ws != state[0].workspace_id:
            raise refuse(R.WRONG_WORKSPACE, "the statement names another workspace")
        if agent != self.agent_id:
            raise refuse(R.WRONG_AGENT, "the statement names another agent")
        view = state[1]
        me = view.agents.get(self.agent_id)
        if me is None or not me.active:
            raise refuse(R.WRONG_AGENT, "this agent is not (or no longer) in the workspace's log")
        return view

    def _body(self, stmt: TaskStatement, request: SignedTask) -> TaskBody:
        """Step 3: the body is the one the statement committed to."""
        try:
            return check_body(stmt, b64u_decode(request.body, max_bytes=MAX_BODY_BYTES + 1024))
        except WireError as exc:
            raise refuse(R.STATEMENT_INVALID, f"the body is {exc.reason.value}") from None
        except StatementError as exc:
            if exc.reason == StatementReason.BODY_MISMATCH:
                raise refuse(R.BODY_MISMATCH, "the body is not the one that was signed") from None
            raise refuse(R.STATEMENT_INVALID, f"the body is {exc.reason.value}") from None

    async def _authorise(
        self,
        view: LogView,
        signed: Signed[Any],
        auth: list[dict[str, Any]],
        *,
        run_id: str,
        head: LogHead,
        device: str,
        action: rules.ActionKey,
    ) -> Accepted:
        now = int(self.clock())
        stmt = signed.value
        self._fresh(stmt.issued_at, stmt.expires_at, now, view)  # step 4
        if self.seen(run_id):  # step 5 (written durably by the caller before start)
            raise refuse(R.DUPLICATE_TASK, "this statement was accepted before")
        view = await self._reach(view, Head(head.seq, head.hash))  # step 6
        signatures = [self._signature(item) for item in auth]
        passkeys = [self._live_passkey(view, s) for s in signatures]  # step 7
        self._device(view, device, passkeys[0].user_id)
        approvals, counts = self._verify(view, signed, signatures, passkeys, now)  # step 8
        verdict = rules.check(view.policy, action, approvals, now=now)
        if not verdict.allowed:
            reason = _POLICY.get(verdict.reason or rules.PolicyReason.ROLE_TOO_LOW, R.ROLE_TOO_LOW)
            raise refuse(reason, f"the workspace policy refuses {action}: {verdict.reason}")
        return Accepted(
            statement=signed,
            auth=list(auth),
            signers=verdict.approvers,
            counts=tuple(counts),
            keep_until=stmt.expires_at + SKEW_SEC,
            head=view.head,
        )

    def _fresh(self, issued_at: int, expires_at: int, now: int, view: LogView) -> None:
        try:
            check_window(issued_at, expires_at, now=now, max_ttl=view.policy.task_ttl_sec)
        except StatementError as exc:
            raise refuse(_WINDOW[exc.reason], f"the statement is {exc.reason.value}") from None

    async def _reach(self, view: LogView, head: Head) -> LogView:
        """Step 6: the signer's log head is on our chain (fetch and verify if ahead)."""
        status = head_status(view, head)
        if status == HeadStatus.AHEAD and self.fetch is not None:
            view = await self._sync(view)
            status = head_status(view, head)
        if status == HeadStatus.FORKED:
            self.trust.mark_fork(
                f"a statement named head {head}, not on the pinned chain", int(self.clock())
            )
            raise refuse(R.LOG_FORK, f"log head {head} is not on the pinned chain")
        if status == HeadStatus.AHEAD:
            raise refuse(R.LOG_HEAD_UNKNOWN, f"log head {head} is past what this agent verified")
        return view

    async def sync(self, view: LogView) -> LogView:
        """Fetch and verify entries past ``view`` (no fetcher: ``view`` as it is)."""
        return view if self.fetch is None else await self._sync(view)

    async def _sync(self, view: LogView) -> LogView:
        assert self.fetch is not None  # noqa: S101 - checked by the caller
        try:
            found = await self.fetch(view.head.seq + 1)
            entries = [parse_signed(e, view.head.seq + 1 + i) for i, e in enumerate(found)]
            return self.trust.adopt(entries) if entries else view
        except LogError as exc:
            raise refuse(
                R.LOG_FORK, f"the relay's log does not extend the pinned one: {exc}"
            ) from None
        except (OSError, ValueError) as exc:
            raise refuse(
                R.LOG_HEAD_UNKNOWN, f"cannot fetch the log ({type(exc).__name__})"
            ) from None

    def _signature(self, item: dict[str, Any]) -> PasskeySignature:
        try:
            return parse_signature(item)
        except PasskeyError as exc:
            raise refuse(R.SIGNATURE_INVALID, f"a signature is {exc.reason.value}") from None

    def _live_passkey(self, view: LogView, signature: PasskeySignature) -> Passkey:
        passkey = view.passkeys.get(signature.credential_id)
        if passkey is None:
            raise refuse(R.UNKNOWN_SIGNER, "the signing passkey is not in the log")
        if not passkey.active or passkey.user_id not in view.members:
            raise refuse(R.REVOKED_SIGNER, "the signing passkey was revoked or its owner left")
        return passkey

    def _device(self, view: LogView, device_id: str, user_id: str) -> None:
        device = view.devices.get(device_id)
        if device is None or device.user_id != user_id:
            raise refuse(R.UNKNOWN_SIGNER, "the statement names a device the signer does not hold")
        if not device.active:
            raise refuse(R.REVOKED_SIGNER, "the statement names a revoked device")

    def _verify(
        self,
        view: LogView,
        signed: Signed[Any],
        signatures: list[PasskeySignature],
        passkeys: list[Passkey],
        now: int,
    ) -> tuple[list[rules.Approval], list[tuple[str, int]]]:
        approvals, counts = [], []
        for signature, passkey in zip(signatures, passkeys, strict=True):
            try:
                verified = verify_statement_signature(
                    signature,
                    signed,
                    rp_id=view.rp_id,
                    origins=view.origins,
                    cose_key=passkey.cose,
                    sign_count=self.trust.count(passkey.cred_id),
                )
            except PasskeyError as exc:
                reason = _PASSKEY.get(exc.reason, R.SIGNATURE_INVALID)
                raise refuse(
                    reason, f"a passkey signature is refused: {exc.reason.value}"
                ) from None
            member = view.members[passkey.user_id]
            approvals.append(
                rules.Approval(
                    user_id=member.user_id,
                    role=member.role,
                    issued_at=signed.value.issued_at,
                    user_verified=verified.user_verified,
                    device_bound=verified.device_bound,
                )
            )
            counts.append((passkey.cred_id, verified.new_sign_count))
        del now
        return approvals, counts


def _same_as_signed(spec: TaskSpec, stmt: TaskStatement, body: TaskBody) -> None:
    """Step 3: the relay's copy must equal the signed statement, field by field."""
    prompt = body.prompt if stmt.type == "codex_exec" else None
    if stmt.type != "codex_exec" and body.prompt:
        raise refuse(R.STATEMENT_MISMATCH, "only a Codex task's body carries a prompt")
    seen = (
        spec.id,
        spec.type,
        spec.write_access,
        spec.cwd,
        spec.resume_session_id,
        spec.action_id,
        spec.log_source_id,
        spec.prompt,
    )
    signed = (
        stmt.task,
        stmt.type,
        stmt.write_access,
        stmt.cwd,
        stmt.resume_session_id,
        stmt.action_id,
        stmt.log_source_id,
        prompt,
    )
    if seen != signed:
        fields = ("id", "type", "writeAccess", "cwd", "resumeSessionId", "actionId")
        names = (*fields, "logSourceId", "prompt")
        wrong = [n for n, a, b in zip(names, seen, signed, strict=True) if a != b]
        raise refuse(R.STATEMENT_MISMATCH, f"the relay's copy differs in {', '.join(wrong)}")
