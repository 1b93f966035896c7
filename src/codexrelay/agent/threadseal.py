"""Sealed conversations on the agent (TRUST.md §4.7, §4.8, §4.13; format in
``e2e/sealedthreads.py``).

Where the pinned log's policy says ``content: sealed``, every conversation message the agent
sends passes :meth:`ThreadSealing.outgoing`: items, streamed text, thread states and
approval requests go out as signed envelopes of the thread's own stream, under a per-thread
key wrapped to every live reader device of the agent's verified log; the relay hears only
ids, states, counters and sizes (thread states and approvals with their texts blanked). A
reader device added later is wrapped to on the next envelope; when a reader leaves the log
the thread gets a fresh key, so a removed device gets nothing new. The newest key of each
thread is kept with the task keys for readers who ask later.

Phone input comes sealed as well (:meth:`open_input`, :meth:`open_decision`): the envelope
is opened with the agent's kex key and turned into the signed request the usual checks
(``convgate.py``) run on; a plaintext start, turn, steer or decision is refused.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from codexrelay.agent.gate import TrustGate
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.trust import TrustError
from codexrelay.e2e.envelope import (
    EnvelopeError,
    Header,
    KeyWrap,
    Kind,
    Receiver,
    Sealer,
    new_task_key,
    parse_wire,
    unwrap_task_key,
)
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import check_wraps, reader_wraps, seal_record
from codexrelay.e2e.sealedthreads import DecisionInner, TurnInner
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    DecisionStatement,
    StatementError,
    StatementReason,
    Strict,
    TurnStatement,
    check_input,
    decode_object,
    parse_statement,
)
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.protocol import Message
from codexrelay.protocol_base import RefusalReason, SignedDecision, SignedTurn
from codexrelay.protocol_sealed import SealedThreadEnvelope
from codexrelay.protocol_threads import (
    Approval,
    ApprovalDecide,
    ApprovalUpdate,
    SealedDecide,
    SealedThreadInput,
    ThreadDelta,
    ThreadInfo,
    ThreadItem,
    ThreadItemEvent,
    ThreadRefused,
    ThreadReply,
    ThreadStart,
    ThreadSteer,
    ThreadsUpdate,
    ThreadTurn,
    ThreadUpdate,
    TurnInfo,
)

log = logging.getLogger("codexrelay.agent.trust")
R = RefusalReason
PlainInput = ThreadStart | ThreadTurn | ThreadSteer
InnerT = TypeVar("InnerT", bound=Strict)


def _refuse(reason: RefusalReason, message: str) -> TaskRefusedError:
    return TaskRefusedError(reason, message)


def _dump(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def bare_info(info: ThreadInfo) -> ThreadInfo:
    """A thread as the relay may see it: no folder, no preview."""
    return info.model_copy(update={"cwd": "", "preview": ""})


def bare_turn(turn: TurnInfo | None) -> TurnInfo | None:
    return None if turn is None else turn.model_copy(update={"error": None})


def bare_approval(approval: Approval) -> Approval:
    """An approval as the relay may see it: ids, kind, status, decisions offered, times."""
    blank = {"command": None, "cwd": None, "changes": None, "reason": None, "request": None}
    return approval.model_copy(update=blank)


def bare_reply(reply: ThreadReply) -> ThreadReply:
    """An answer with every text left out (the readers have it in the thread's stream)."""
    return reply.model_copy(
        update={
            "thread": None if reply.thread is None else bare_info(reply.thread),
            "turn": bare_turn(reply.turn),
            # Only ids and seq numbers (the relay pages by them): type "sealed", no text.
            "items": None
            if reply.items is None
            else [ThreadItem(id=i.id, seq=i.seq, type="sealed") for i in reply.items],
            "approvals": None
            if reply.approvals is None
            else [bare_approval(a) for a in reply.approvals],
            "approval": None if reply.approval is None else bare_approval(reply.approval),
            "threads": None if reply.threads is None else [bare_info(t) for t in reply.threads],
        }
    )


def _content(message: Message) -> tuple[str, Kind, dict[str, Any], Message | None] | None:
    """For a message with content: its thread, the envelope's kind and record, and what
    the relay hears beside it (None: nothing)."""
    if isinstance(message, ThreadItemEvent):
        return message.thread_id, "task.out", {"item": _dump(message.item)}, None
    if isinstance(message, ThreadDelta):
        return message.thread_id, "task.out", {"delta": _dump(message)}, None
    if isinstance(message, ThreadUpdate):
        record = {"thread": _dump(message.thread)}
        if message.turn is not None:
            record["turn"] = _dump(message.turn)
        bare = ThreadUpdate(thread=bare_info(message.thread), turn=bare_turn(message.turn))
        return message.thread.id, "task.out", record, bare
    if isinstance(message, ApprovalUpdate):
        approval = message.approval
        bare_update = ApprovalUpdate(approval=bare_approval(approval))
        return approval.thread_id, "approval.req", {"approval": _dump(approval)}, bare_update
    return None


def _bare(message: Message) -> Message:
    """A message without content as the relay may hear it (replies and lists blanked)."""
    if isinstance(message, ThreadReply):
        return bare_reply(message)
    if isinstance(message, ThreadsUpdate):
        return ThreadsUpdate(threads=[bare_info(t) for t in message.threads])
    if isinstance(message, ThreadRefused) and message.reason is RefusalReason.CODEX_ERROR:
        return message.model_copy(update={"message": "Codex refused the request."})
    return message


def _anyone_left(view: LogView) -> bool:
    """Whether any device of the log is revoked or belongs to someone no longer a member."""
    return any(not d.active or d.user_id not in view.members for d in view.devices.values())


@dataclass
class _Stream:
    """The agent's sender stream for one thread under one key."""

    sealer: Sealer
    wrapped: set[str]


class ThreadSealing:
    """Seals what the agent says about threads, and opens what phones send sealed."""

    def __init__(self, gate: TrustGate) -> None:
        self.gate = gate
        self._streams: dict[str, _Stream] = {}
        # Devices given a thread's key on request, before its stream was set up here.
        self._handed: dict[str, set[str]] = {}

    # --- policy ---

    def sealed_view(self) -> LogView | None:
        """The verified log view when its policy seals content, else None."""
        state = self.gate.trust.current()
        if state is None or state[1].policy.content != "sealed":
            return None
        return state[1]

    def required(self) -> bool:
        """Whether plaintext input is refused (fail closed on an unusable pinned state)."""
        try:
            return self.sealed_view() is not None
        except TrustError:
            return True

    # --- agent -> readers ---

    async def outgoing(self, message: Message) -> list[Message]:
        """What goes to the relay for ``message``: as is, or blanked plus envelopes."""
        try:
            view = self.sealed_view()
        except TrustError:
            log.error("the pinned state is unusable; nothing is sent about conversations")  # noqa: TRY400
            return []
        if view is None:
            return [message]
        if isinstance(message, ThreadReply) and message.thread is not None:
            return [*await self._history(view, message), bare_reply(message)]
        content = _content(message)
        if content is None:
            return [_bare(message)]
        thread, kind, record, bare = content
        envelope = await self._seal(view, thread, kind, record)
        # The relay learns of a thread from its state first, then takes its envelopes.
        return [envelope] if bare is None else [bare, envelope]

    async def _history(self, view: LogView, reply: ThreadReply) -> list[Message]:
        """A read's items and pending approvals, sealed again into the thread's stream: a
        reader who comes late, or after the relay forgot the envelopes, gets the history the
        agent holds (a reader applies them by the ``seq`` rule, so repeats change nothing)."""
        assert reply.thread is not None  # noqa: S101 - the caller checked
        thread = reply.thread.id
        out: list[Message] = []
        if reply.items is None:
            return out
        # A new epoch under the same key, its first envelope wrapped to every reader (the
        # relay may have lost the start of the one before). The key check comes first, so
        # every device that holds the key is still a reader.
        held = await self._stream(view, thread)
        old = held.sealer
        agent = self.gate.agent_id
        sealer = Sealer(old.task_key, old.ws, agent, thread, agent, self.gate.keys.signing)
        self._streams[thread] = _Stream(sealer, set())
        for item in reply.items or []:
            out.append(await self._seal(view, thread, "task.out", {"item": _dump(item)}))
        for approval in reply.approvals or []:
            record = {"approval": _dump(approval)}
            out.append(await self._seal(view, thread, "approval.req", record))
        out.append(await self._seal(view, thread, "task.out", {"thread": _dump(reply.thread)}))
        return out

    async def _seal(
        self, view: LogView, thread: str, kind: Kind, record: dict[str, Any]
    ) -> SealedThreadEnvelope:
        stream = await self._stream(view, thread)
        readers = {d.device_id for d in view.reader_devices()}
        wraps: list[KeyWrap] = []
        if readers - stream.wrapped:
            sealer = stream.sealer
            wraps = reader_wraps(
                view, sealer.task_key, ws=view.ws, task=thread, skip=stream.wrapped
            )
            stream.wrapped |= readers
        data = seal_record(stream.sealer, kind, record, wraps)
        return SealedThreadEnvelope(thread_id=thread, envelope=data.decode("ascii"))

    async def _stream(self, view: LogView, thread: str) -> _Stream:
        """The thread's stream; a new key when a device that holds the current one is no
        longer a reader (removed, revoked), so it gets nothing new."""
        readers = {d.device_id for d in view.reader_devices()}
        stream = self._streams.get(thread)
        if stream is not None and stream.wrapped <= readers:
            return stream
        # A key kept before a restart is taken up again unless the log has ever let a
        # reader go: who holds that key is then unknown, so the thread starts a new one.
        kept = None
        if stream is None and not _anyone_left(view):
            kept = self.gate.task_keys.get(view.ws, thread)
        key = kept or new_task_key()
        if kept is None:
            await asyncio.to_thread(self._keep, view.ws, thread, key)
        agent = self.gate.agent_id
        sealer = Sealer(key, view.ws, agent, thread, agent, self.gate.keys.signing)
        handed = self._handed.pop(thread, set())
        self._streams[thread] = _Stream(sealer, handed & readers if kept is not None else set())
        return self._streams[thread]

    def handed_out(self, thread: str, device: str) -> None:
        """The thread's key was wrapped to ``device`` on its request."""
        stream = self._streams.get(thread)
        if stream is not None:
            stream.wrapped.add(device)
        else:
            self._handed.setdefault(thread, set()).add(device)

    def _keep(self, ws: str, thread: str, key: bytes) -> None:
        try:
            self.gate.task_keys.keep(ws, thread, key)
        except OSError:
            log.exception("cannot keep the key of thread %s for later readers", thread)

    # --- phones -> agent ---

    def open_input(self, request: SealedThreadInput) -> PlainInput:
        """A sealed start, turn or steer as the signed request inside it."""
        header, inner = self._open(request.envelope, "task.submit", TurnInner)
        try:
            stmt = parse_statement(inner.stmt, TurnStatement).value
            given = check_input(stmt, b64u_decode(inner.input, max_bytes=MAX_BODY_BYTES * 4))
        except WireError as exc:
            raise _refuse(R.STATEMENT_INVALID, f"the input is {exc.reason.value}") from None
        except StatementError as exc:
            body = exc.reason == StatementReason.BODY_MISMATCH
            raise _refuse(R.BODY_MISMATCH if body else R.STATEMENT_INVALID, str(exc)) from None
        if (header.task, header.sender) != (stmt.turn, stmt.device):
            raise _refuse(R.STATEMENT_MISMATCH, "the envelope is not the statement's turn")
        thread = None if stmt.mode == "new" else stmt.thread
        seen = (request.mode, request.thread_id, request.write_access)
        if seen != (stmt.mode, thread, stmt.write_access):
            raise _refuse(R.STATEMENT_MISMATCH, "the relay's copy differs from the statement")
        signed = SignedTurn(stmt=inner.stmt, input=inner.input, auth=inner.auth)
        rid = request.request_id
        try:
            if stmt.mode == "new":
                return ThreadStart(
                    request_id=rid,
                    prompt=given.prompt,
                    cwd=given.cwd,
                    write_access=stmt.write_access,
                    model=given.model,
                    effort=given.effort,
                    images=given.images,
                    signed=signed,
                )
            if stmt.mode == "start":
                return ThreadTurn(
                    request_id=rid,
                    thread_id=stmt.thread,
                    prompt=given.prompt,
                    images=given.images,
                    signed=signed,
                )
            return ThreadSteer(
                request_id=rid, thread_id=stmt.thread, prompt=given.prompt, signed=signed
            )
        except ValidationError:
            raise _refuse(R.STATEMENT_INVALID, "the sealed input does not fit a turn") from None

    def open_decision(self, request: SealedDecide) -> ApprovalDecide:
        """A sealed approval answer as the signed decision inside it."""
        header, inner = self._open(request.envelope, "approval.decision", DecisionInner)
        try:
            stmt = parse_statement(inner.stmt, DecisionStatement).value
        except StatementError as exc:
            raise _refuse(R.STATEMENT_INVALID, f"the decision is {exc}") from None
        bound = (header.task, header.sender, stmt.task, stmt.request_id)
        if bound != (stmt.request_id, stmt.device, request.thread_id, request.approval_id):
            raise _refuse(R.STATEMENT_MISMATCH, "the envelope is not this approval's decision")
        return ApprovalDecide(
            request_id=request.request_id,
            thread_id=request.thread_id,
            approval_id=request.approval_id,
            decision=stmt.decision,
            signed=SignedDecision(stmt=inner.stmt, auth=inner.auth),
        )

    def _open(self, envelope: str, kind: Kind, model: type[InnerT]) -> tuple[Header, InnerT]:
        """§4.6 steps 1-2 for a phone's envelope addressed to this agent."""
        pin = self.gate.trust.pin()
        if pin is None:
            raise _refuse(R.NOT_PINNED, "pin this workspace first")
        data = envelope.encode("utf-8")
        try:
            wire, header, _, _ = parse_wire(data)
        except EnvelopeError as exc:
            raise _refuse(R.SEALED_INVALID, f"the envelope is {exc.reason.value}") from None
        if header.kind != kind or header.seq != 0:
            raise _refuse(R.SEALED_INVALID, f"the envelope is not a {kind}")
        if header.ws != pin.workspace_id:
            raise _refuse(R.WRONG_WORKSPACE, "the envelope names another workspace")
        agent = self.gate.agent_id
        if header.agent != agent:
            raise _refuse(R.WRONG_AGENT, "the envelope names another agent")
        wrap = next((w for w in wire.keys or () if w.to == agent), None)
        if wrap is None:
            raise _refuse(R.SEALED_INVALID, "the key is not wrapped to this agent")
        try:
            key = unwrap_task_key(wrap, self.gate.keys.kex, ws=header.ws, task=header.task)
            receiver = Receiver(task_key=key, ws=header.ws, agent=agent, task=header.task)
            plaintext = receiver.open(data, sender_key=None).plaintext
            inner = decode_object(plaintext, model, max_bytes=1 << 20)
            check_wraps(data, inner.model_dump(exclude_none=True))
        except (EnvelopeError, StatementError) as exc:
            raise _refuse(R.SEALED_INVALID, f"the envelope does not open: {exc}") from None
        return header, inner
