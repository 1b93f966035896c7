"""The executor's trust gate: protected tasks in, signed cancels, the audit log, the status.

``Executor`` asks :meth:`TrustGate.admit` before its own checks, calls
:meth:`TrustGate.accepted` once the task's id is in the run-once ledger and before the task
starts (the passkey counters and the audit record are durable first; if they cannot be
written the task is refused), and :meth:`TrustGate.finished` with the final report. A
cancel in a protected workspace needs a device signature of the task's submitter or of an
admin (TRUST.md §4.9); anything else is refused and recorded. An agent that pinned nothing
runs plain tasks as it always did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from codexrelay.agent.auditlog import AUDIT_FILE, AuditLog, accepted_tasks
from codexrelay.agent.ledger import TaskLedger
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.sealing import (
    OutputSealer,
    TaskKeys,
    answer_key_request,
    open_submit,
    seal_catalog,
)
from codexrelay.agent.trust import AgentKeys, TrustError, TrustStore
from codexrelay.agent.verify import SKEW_SEC, Accepted, FetchLog, StatementChecker
from codexrelay.e2e import keys
from codexrelay.e2e.audit import Outcome, canonical
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.policy import at_least
from codexrelay.e2e.sealed import reader_wraps
from codexrelay.e2e.statements import (
    MAX_STATEMENT_BYTES,
    CancelStatement,
    InterruptStatement,
    StatementError,
    check_recent,
    digest,
    parse_statement,
)
from codexrelay.e2e.tags import TagName, tag
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.protocol import (
    AgentTrust,
    ChainHead,
    RefusalReason,
    SignedStop,
    TaskCancel,
    TaskFinished,
    TaskSpec,
)

log = logging.getLogger("codexrelay.agent.trust")
CANCEL_MAX_AGE_SEC = 600
Stop = TypeVar("Stop", CancelStatement, InterruptStatement)


def _raw_statement(text: str) -> bytes | None:
    try:
        return b64u_decode(text, max_bytes=MAX_STATEMENT_BYTES)
    except WireError:
        return None


class TrustGate:
    """Everything the executor needs from the agent's trust state."""

    def __init__(
        self,
        trust: TrustStore,
        agent_keys: AgentKeys,
        *,
        agent_id: str,
        seen: Callable[[str], bool],
        fetch: FetchLog | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        task_keys: TaskKeys | None = None,
    ) -> None:
        self.trust = trust
        self.task_keys = task_keys or TaskKeys(trust.state_dir, keep_days=7, clock=clock)
        self.keys = agent_keys
        self.agent_id = agent_id
        self.checker = StatementChecker(
            trust, agent_id=agent_id, seen=seen, fetch=fetch, clock=clock
        )
        self.clock = clock
        self._on_change = on_change
        self._audit: AuditLog | None = None
        self._submitters: dict[str, str] = {}

    def restore_run_once(self, ledger: TaskLedger) -> None:
        """Signed tasks accepted before (and not expired) are known to the ledger again."""
        found = accepted_tasks(self.trust.state_dir / AUDIT_FILE, int(self.clock()), SKEW_SEC)
        ledger.remember(found)

    # --- the audit log ---

    def audit(self) -> AuditLog | None:
        """The audit log of the pinned workspace (None while nothing is pinned)."""
        pin = self.trust.pin()
        if pin is None:
            return None
        if self._audit is None or self._audit.ws != pin.workspace_id:
            self._audit = AuditLog(
                self.trust.state_dir, self.keys.signing, agent=self.agent_id, ws=pin.workspace_id
            )
        return self._audit

    def _record(self, outcome: Outcome, kind: str, **fields: Any) -> None:
        audit = self.audit()
        if audit is not None:
            audit.append(outcome=outcome, kind=kind, now=int(self.clock()), **fields)
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # --- tasks ---

    async def admit(self, spec: TaskSpec) -> Accepted | None:
        """§4.6 steps 1-8; raises ``TaskRefusedError`` (recorded) on any failure. A sealed
        task is opened first and checked as signed; its ``Accepted.sealed`` is the opened
        task, whose spec the executor runs."""
        try:
            if spec.sealed is None:
                self._plaintext_allowed()
                return await self.checker.check_task(spec)
            opened = self._open(spec)
            accepted = await self.checker.check_task(opened.spec)
            assert accepted is not None  # noqa: S101 - a pinned agent always answers
            return replace(accepted, sealed=opened)
        except TrustError as exc:
            log.error("%s", exc)  # noqa: TRY400 - the message is the whole story
            refusal = TaskRefusedError(RefusalReason.NOT_PINNED, "the pinned state is unusable")
            raise refusal from None
        except TaskRefusedError as exc:
            self.refused(spec, exc)
            raise

    def _plaintext_allowed(self) -> None:
        """Downgrade (TRUST.md §2): where the policy says sealed, plaintext is refused."""
        state = self.trust.current()
        if state is not None and state[1].policy.content == "sealed":
            raise TaskRefusedError(
                RefusalReason.E2E_REQUIRED, "this workspace's tasks must be sealed"
            )

    def _open(self, spec: TaskSpec) -> Any:
        pin = self.trust.pin()
        if pin is None:
            raise TaskRefusedError(RefusalReason.NOT_PINNED, "pin this workspace first")
        return open_submit(spec, ws=pin.workspace_id, agent_id=self.agent_id, kex=self.keys.kex)

    def output_sealer(self, accepted: Accepted) -> OutputSealer | None:
        """The sealer for an accepted sealed task (None for a plaintext one). Readers are
        the live devices of the log now; ``keep_key`` keeps the key for later ones."""
        opened = accepted.sealed
        if opened is None:
            return None
        view = self.trust.view()
        task = opened.spec.id
        wraps = reader_wraps(view, opened.task_key, ws=view.ws, task=task)
        return OutputSealer(
            opened,
            ws=view.ws,
            agent_id=self.agent_id,
            signing=self.keys.signing,
            wraps=wraps,
            view=self._reader_view,
        )

    def _reader_view(self) -> LogView | None:
        """The verified view a running task re-checks its readers against (None: unusable,
        so nothing new is wrapped to anyone)."""
        try:
            return self.trust.view()
        except TrustError:
            log.error("the pinned state is unusable; a running task's output goes to no one")  # noqa: TRY400
            return None

    def keep_key(self, accepted: Accepted) -> None:
        """Keep a sealed task's key for readers who come later (blocking: one append and
        fsync; the executor runs it off the event loop once the task is accepted)."""
        opened = accepted.sealed
        if opened is None:
            return
        self.keep_task_key(opened.spec.id, opened.task_key, after=False)

    def keep_task_key(self, task: str, key: bytes, *, after: bool = True) -> None:
        """Keep ``key`` as the task's newest key for later readers, after those kept before
        (blocking, as keep_key)."""
        pin = self.trust.pin()
        if pin is None:
            return
        try:
            self.task_keys.keep(pin.workspace_id, task, key, after=after)
        except OSError:
            log.exception("cannot keep the key of task %s for later readers", task)

    def sealed_catalog(self, sessions: list[dict[str, Any]]) -> str | None:
        """The catalog as an envelope where the policy says sealed (None: send it as is)."""
        try:
            state = self.trust.current()
        except TrustError:
            return None
        if state is None or state[1].policy.content != "sealed":
            return None
        return seal_catalog(
            state[1], agent_id=self.agent_id, signing=self.keys.signing, sessions=sessions
        )

    async def key_request(self, stmt: str, sig: str) -> tuple[str, str, str] | None:
        """A reader device's key request (§4.7): ``(task, device, envelope)`` for a live reader of
        the log (fetched first, so a new device is known and a revoked one is not), else
        None; recorded."""
        try:
            view = await self.checker.sync(self.trust.view())  # revocations count at once
            task, device, envelope = answer_key_request(
                stmt,
                sig,
                view=view,
                agent_id=self.agent_id,
                signing=self.keys.signing,
                task_keys=self.task_keys,
                now=int(self.clock()),
            )
        except (TaskRefusedError, TrustError) as exc:
            reason = getattr(exc, "reason", RefusalReason.NOT_PINNED)
            log.warning("refused a key request: %s", reason)
            self._safe_record("refused", reason=reason.value, statement=_raw_statement(stmt))
            return None
        log.info("wrapped the key of task %s to device %s", task, device)
        self._safe_record("accepted", statement=_raw_statement(stmt))
        return task, device, envelope

    def _safe_record(self, outcome: Outcome, **fields: Any) -> None:
        try:
            self._record(outcome, "key.req", **fields)
        except OSError:
            log.exception("cannot record a key request in the audit log")

    def refused(self, spec: TaskSpec, exc: TaskRefusedError) -> None:
        """Record a refused statement (a protected agent's refusals only)."""
        try:
            pinned = self.trust.pin() is not None
        except TrustError:
            return  # nothing can be recorded against a state that does not verify
        if spec.signed is None and not pinned:
            return
        statement = None if spec.signed is None else _raw_statement(spec.signed.stmt)
        auth = None if spec.signed is None else {"sigs": spec.signed.auth}
        try:
            self._record("refused", "task", reason=exc.reason.value, statement=statement, auth=auth)
        except OSError:
            log.exception("cannot record a refusal in the audit log")

    def accepted(self, spec: TaskSpec, accepted: Accepted) -> None:
        """Counters and the audit record, durable before the task starts (OSError: refuse)."""
        for credential_id, count in accepted.counts:
            self.trust.record_count(credential_id, count)
        self._record(
            "accepted",
            "task",
            statement=accepted.statement.raw,
            auth={"sigs": accepted.auth},
        )
        self._submitters[spec.id] = accepted.signers[0]

    def finished(self, report: TaskFinished) -> None:
        """The result digest of a protected task, chained after its acceptance."""
        if self._submitters.pop(report.task_id, None) is None:
            return
        body = canonical(report.model_dump(mode="json", by_alias=True, exclude_none=True))
        try:
            self._record("accepted", "task.result", result=digest(body))
        except OSError:
            log.exception("cannot record a task result in the audit log")

    # --- cancel (§4.9) and interrupt (§4.13) ---

    def allow_cancel(self, message: TaskCancel) -> bool:
        """A plain cancel for an unprotected agent; a valid device-signed one otherwise."""
        task_id = message.task_id
        return self._allow_stop(
            message.signed,
            CancelStatement,
            "cancel",
            lambda stmt: stmt.task == task_id,
            self._submitters.get(task_id),
        )

    def allow_interrupt(
        self, signed: SignedStop | None, *, thread: str, turn: str, starter: str | None
    ) -> bool:
        """The same rule for stopping a conversation turn (for the app-server runner):
        a device of the turn's starter, or of an admin, signed this exact interrupt."""
        return self.interrupt_refusal(signed, thread=thread, turn=turn, starter=starter) is None

    def interrupt_refusal(
        self, signed: SignedStop | None, *, thread: str, turn: str, starter: str | None
    ) -> RefusalReason | None:
        """Why an interrupt is refused (recorded), or None when it may stop the turn."""
        reason = self._stop(
            signed,
            InterruptStatement,
            "interrupt",
            lambda stmt: (stmt.thread, stmt.turn) == (thread, turn),
            starter,
        )
        return None if reason is None else RefusalReason(reason)

    def _allow_stop(
        self,
        signed: SignedStop | None,
        model: type[Stop],
        kind: TagName,
        names_it: Callable[[Any], bool],
        owner: str | None,
    ) -> bool:
        return self._stop(signed, model, kind, names_it, owner) is None

    def _stop(
        self,
        signed: SignedStop | None,
        model: type[Stop],
        kind: TagName,
        names_it: Callable[[Any], bool],
        owner: str | None,
    ) -> str | None:
        try:
            if self.trust.pin() is None:
                return None
        except TrustError:
            return RefusalReason.NOT_PINNED.value
        reason = self._stop_problem(signed, model, kind, names_it, owner)
        raw = None if signed is None else _raw_statement(signed.stmt)
        outcome: Outcome = "accepted" if reason is None else "refused"
        try:
            self._record(outcome, kind, reason=reason, statement=raw)
        except OSError:
            log.exception("cannot record a %s in the audit log", kind)
            return RefusalReason.AUDIT_UNAVAILABLE.value
        if reason is not None:
            log.warning("refused a %s: %s", kind, reason)
        return reason

    def _stop_problem(
        self,
        signed: SignedStop | None,
        model: type[Stop],
        kind: TagName,
        names_it: Callable[[Any], bool],
        owner: str | None,
    ) -> str | None:
        if signed is None:
            return RefusalReason.SIGNATURE_REQUIRED.value
        try:
            parsed = parse_statement(signed.stmt, model)
            check_recent(parsed.value.issued_at, now=int(self.clock()), max_age=CANCEL_MAX_AGE_SEC)
            sig = b64u_decode(signed.sig, max_bytes=64)
        except (StatementError, WireError):
            return RefusalReason.STATEMENT_INVALID.value
        stmt, pin = parsed.value, self.trust.pin()
        if pin is None or (stmt.ws, stmt.agent) != (pin.workspace_id, self.agent_id):
            return RefusalReason.STATEMENT_MISMATCH.value
        if not names_it(stmt):
            return RefusalReason.STATEMENT_MISMATCH.value
        return self._stop_signer(stmt.device, tag(kind) + parsed.raw, sig, owner)

    def _stop_signer(
        self, device_id: str, message: bytes, sig: bytes, owner: str | None
    ) -> str | None:
        """A live device of the owner of the work, or of an admin, signed this exact stop."""
        view = self.trust.view()
        device = view.devices.get(device_id)
        member = view.members.get(device.user_id) if device is not None else None
        if device is None or member is None or not device.active:
            return RefusalReason.UNKNOWN_SIGNER.value
        key = keys.load_verify_key(device.suite, device.sig_pub)
        if not keys.verify(key, sig, message):
            return RefusalReason.SIGNATURE_INVALID.value
        if member.user_id != owner and not at_least(member.role, "admin"):
            return RefusalReason.ROLE_TOO_LOW.value
        return None

    # --- conversations (TRUST.md §4.8, §4.13; checked by ``convgate``) ---

    def accepted_statement(self, kind: str, accepted: Accepted) -> None:
        """Counters and the audit record of an accepted turn or decision (OSError: refuse)."""
        for credential_id, count in accepted.counts:
            self.trust.record_count(credential_id, count)
        self._record(
            "accepted", kind, statement=accepted.statement.raw, auth={"sigs": accepted.auth}
        )

    def refused_statement(
        self,
        kind: str,
        reason: RefusalReason,
        stmt: str | None,
        auth: list[dict[str, Any]] | None,
    ) -> None:
        """Record a refused turn or decision (with the bytes it came with, if any)."""
        raw = None if stmt is None else _raw_statement(stmt)
        try:
            self._record(
                "refused",
                kind,
                reason=reason.value,
                statement=raw,
                auth=None if auth is None else {"sigs": auth},
            )
        except OSError:
            log.exception("cannot record a refused %s", kind)

    # --- what the agent reports ---

    def status(self) -> AgentTrust | None:
        """The pinned workspace, log head and audit head, for ``trust.status``."""
        try:
            pin = self.trust.pin()
            audit = self.audit()
        except TrustError:
            return None
        if pin is None or audit is None:
            return None
        view = self.trust.view()
        return AgentTrust(
            workspace_id=pin.workspace_id,
            genesis_hash=pin.genesis_hash,
            log_head=ChainHead(seq=view.head.seq, hash=view.head.hash),
            audit_head=ChainHead(seq=audit.head.seq, hash=audit.head.hash),
            sig_pub=self.keys.sig_pub,
        )
