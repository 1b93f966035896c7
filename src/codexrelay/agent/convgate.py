"""Signed conversations in a protected workspace (TRUST.md §4.8, §4.13).

A pinned agent starts a thread, sends a turn or a steer, or answers an approval only for a
passkey-signed statement that passes the §4.6 checklist (``StatementChecker``) and is bound
to exactly what the relay asks: the same thread, the same input, the same decision on the
same request bytes the agent sent. An interrupt needs a device signature of the turn's
starter or of an admin (it can only stop work). Reading threads, listing them, the models
and taking a terminal thread over run nothing, so they need no statement: a later turn on
such a thread is signed and names its id ("bound on first use").

Every refusal has a specific ``RefusalReason`` and is recorded in the agent's audit log;
every accepted statement is recorded (and its run-once id kept) before Codex sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from codexrelay.agent.gate import TrustGate
from codexrelay.agent.ledger import TaskLedger
from codexrelay.agent.runners.appserver.approvals import request_bytes
from codexrelay.agent.runners.appserver.manager import ThreadManager
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.trust import TrustError
from codexrelay.agent.verify import Accepted
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    DecisionStatement,
    StatementError,
    StatementReason,
    TurnInput,
    TurnStatement,
    check_input,
    digest,
)
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.protocol_base import RefusalReason, SignedTurn
from codexrelay.protocol_threads import (
    ApprovalDecide,
    ConversationRequest,
    ThreadInterrupt,
    ThreadStart,
    ThreadSteer,
    ThreadTurn,
)

log = logging.getLogger("codexrelay.agent.trust")
R = RefusalReason
MODE_OF = {ThreadStart: "new", ThreadTurn: "start", ThreadSteer: "steer"}
INPUT_CAP = MAX_BODY_BYTES * 4


def _refuse(reason: RefusalReason, message: str) -> TaskRefusedError:
    return TaskRefusedError(reason, message)


@dataclass(frozen=True)
class Admitted:
    """A conversation statement that passed every check; commit it before acting."""

    kind: str
    accepted: Accepted
    run_id: str
    thread: str | None


class ConversationGate:
    """The trust checks in front of the agent's conversation requests."""

    def __init__(self, gate: TrustGate, ledger: TaskLedger) -> None:
        self.gate = gate
        self.ledger = ledger
        self._drivers: dict[str, str] = {}  # thread id -> user of the last signed turn

    def protected(self) -> bool:
        """True once a workspace is pinned (an unusable pinned state refuses everything)."""
        try:
            return self.gate.trust.pin() is not None
        except TrustError:
            raise _refuse(R.NOT_PINNED, "the pinned state is unusable") from None

    async def admit(
        self, request: ConversationRequest, manager: ThreadManager | None
    ) -> Admitted | None:
        """None when nothing needs a statement; else the admitted statement. Refusals are
        recorded in the audit log and raised as ``TaskRefusedError``."""
        if not self.protected():
            return None
        try:
            if isinstance(request, ThreadStart | ThreadTurn | ThreadSteer):
                return await self._turn(request, manager)
            if isinstance(request, ApprovalDecide):
                return await self._decision(request, manager)
            if isinstance(request, ThreadInterrupt):
                self._interrupt(request, manager)
        except TaskRefusedError as exc:
            self._refused(request, exc)
            raise
        return None

    def commit(self, admitted: Admitted) -> None:
        """Run-once id and audit record, durable before the work (a refusal otherwise)."""
        if admitted.run_id in self.ledger:  # a copy admitted at the same moment
            raise _refuse(R.DUPLICATE_TASK, "this statement was accepted before")
        try:
            self.ledger.record(admitted.run_id, admitted.accepted.keep_until, sync=False)
            self.gate.accepted_statement(admitted.kind, admitted.accepted)
        except OSError:
            log.exception("cannot record a %s statement", admitted.kind)
            raise _refuse(R.AUDIT_UNAVAILABLE, "the agent cannot write its audit log") from None
        if admitted.thread is not None:
            self._drivers[admitted.thread] = admitted.accepted.signers[0]

    def started(self, admitted: Admitted, thread_id: str) -> None:
        """A new thread's Codex id: its signer drives it (interrupts, for one)."""
        self._drivers[thread_id] = admitted.accepted.signers[0]

    # --- turns, steers, new threads ---

    async def _turn(
        self, request: ThreadStart | ThreadTurn | ThreadSteer, manager: ThreadManager | None
    ) -> Admitted:
        signed = request.signed
        if signed is None:
            raise _refuse(R.SIGNATURE_REQUIRED, "this workspace's turns must be signed")
        accepted = await self.gate.checker.check_turn(signed.stmt, signed.auth)
        stmt: TurnStatement = accepted.statement.value
        given = _input(stmt, signed)
        if stmt.mode != MODE_OF[type(request)]:
            raise _refuse(R.STATEMENT_MISMATCH, f"the statement is a {stmt.mode}, not this")
        thread = None
        if isinstance(request, ThreadStart):
            _same_start(request, given, stmt)
        else:
            thread = request.thread_id
            _same_turn(request, given, stmt, _thread_writes(manager, thread))
        return Admitted("turn", accepted, stmt.turn, thread)

    # --- approval decisions ---

    async def _decision(self, request: ApprovalDecide, manager: ThreadManager | None) -> Admitted:
        signed = request.signed
        if signed is None:
            raise _refuse(R.SIGNATURE_REQUIRED, "this workspace's approvals must be signed")
        state = None if manager is None else manager.threads.get(request.thread_id)
        approval = None if state is None else state.approvals.get(request.approval_id)
        if approval is None:
            raise _refuse(R.UNKNOWN_APPROVAL, "no such approval on this thread")
        asked = digest(request_bytes(approval, self.gate.agent_id))
        accepted = await self.gate.checker.check_decision(
            signed.stmt, signed.auth, open_request=asked
        )
        stmt: DecisionStatement = accepted.statement.value
        bound = (stmt.task, stmt.request_id, stmt.decision)
        if bound != (request.thread_id, request.approval_id, request.decision):
            raise _refuse(R.STATEMENT_MISMATCH, "the relay's copy differs from the decision")
        return Admitted("decision", accepted, f"{stmt.request_id}:{stmt.req_hash}", None)

    # --- interrupts ---

    def _interrupt(self, request: ThreadInterrupt, manager: ThreadManager | None) -> None:
        state = None if manager is None else manager.threads.get(request.thread_id)
        turn = None if state is None else state.active_turn
        if turn is None:
            raise _refuse(R.NO_RUNNING_TURN, "no turn is running on this thread")
        starter = self._drivers.get(request.thread_id)
        reason = self.gate.interrupt_refusal(
            request.signed, thread=request.thread_id, turn=turn, starter=starter
        )
        if reason is not None:
            raise _refuse(reason, "the interrupt is not signed by a device allowed to stop it")

    def _refused(self, request: ConversationRequest, exc: TaskRefusedError) -> None:
        if isinstance(request, ThreadInterrupt):
            return  # allow_interrupt recorded it
        signed = getattr(request, "signed", None)
        kind = "decision" if isinstance(request, ApprovalDecide) else "turn"
        self.gate.refused_statement(
            kind,
            exc.reason,
            None if signed is None else signed.stmt,
            None if signed is None else signed.auth,
        )


def _input(stmt: TurnStatement, signed: SignedTurn) -> TurnInput:
    """Step 3: the input is the one the statement committed to."""
    try:
        return check_input(stmt, b64u_decode(signed.input, max_bytes=INPUT_CAP))
    except WireError as exc:
        raise _refuse(R.STATEMENT_INVALID, f"the input is {exc.reason.value}") from None
    except StatementError as exc:
        if exc.reason == StatementReason.BODY_MISMATCH:
            raise _refuse(R.BODY_MISMATCH, "the input is not the one that was signed") from None
        raise _refuse(R.STATEMENT_INVALID, f"the input is {exc.reason.value}") from None


def _thread_writes(manager: ThreadManager | None, thread_id: str) -> bool | None:
    state = None if manager is None else manager.threads.get(thread_id)
    return None if state is None else state.write


def _differs(names: tuple[str, ...], seen: tuple[Any, ...], signed: tuple[Any, ...]) -> None:
    wrong = [n for n, a, b in zip(names, seen, signed, strict=True) if a != b]
    if wrong:
        raise _refuse(R.STATEMENT_MISMATCH, f"the relay's copy differs in {', '.join(wrong)}")


def _same_start(request: ThreadStart, given: TurnInput, stmt: TurnStatement) -> None:
    names = ("prompt", "images", "cwd", "model", "effort", "writeAccess")
    seen = (
        request.prompt,
        request.images,
        request.cwd,
        request.model,
        request.effort,
        request.write_access,
    )
    signed = (given.prompt, given.images, given.cwd, given.model, given.effort, stmt.write_access)
    _differs(names, seen, signed)


def _same_turn(
    request: ThreadTurn | ThreadSteer, given: TurnInput, stmt: TurnStatement, writes: bool | None
) -> None:
    images = request.images if isinstance(request, ThreadTurn) else None
    names = ("thread", "prompt", "images")
    _differs(
        names,
        (request.thread_id, request.prompt, images),
        (stmt.thread, given.prompt, given.images),
    )
    # A thread Codex runs with a writable sandbox takes only turns signed for write mode,
    # so a person's role is checked against what the turn can really do.
    if writes is not None and writes != stmt.write_access:
        raise _refuse(R.STATEMENT_MISMATCH, "the thread's write mode is not the one signed")
