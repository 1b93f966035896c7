"""Relay requests for live Codex conversations, checked against this agent's own config.

The relay is not trusted to have checked anything (R09, R15, A4): each request is checked
here again, as tasks are — the ``conversations`` feature flag, the working directory after
resolving symlinks, write mode (``codexExecWrite`` here, and ``codex.allowWriteOnResume``
for a resumed thread, R14, R17) — and answered with exactly one ``thread.reply`` or
``thread.refused`` carrying a stable reason. Each request runs in its own task, so a slow
thread start never holds up the answer to an approval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.convgate import ConversationGate
from codexrelay.agent.executor import check_cwd
from codexrelay.agent.redaction import Redactor
from codexrelay.agent.runners.appserver.manager import ThreadManager
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.threadseal import ThreadSealing
from codexrelay.protocol import Message
from codexrelay.protocol_base import RefusalReason
from codexrelay.protocol_threads import (
    ApprovalDecide,
    ConversationRequest,
    ModelsList,
    SealedDecide,
    SealedThreadInput,
    ThreadInterrupt,
    ThreadList,
    ThreadRead,
    ThreadRefused,
    ThreadReply,
    ThreadResume,
    ThreadStart,
    ThreadSteer,
    ThreadsUpdate,
    ThreadTurn,
)

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
REQUEST_TYPES = (
    ThreadStart,
    ThreadTurn,
    ThreadSteer,
    ThreadInterrupt,
    ThreadResume,
    ThreadRead,
    ThreadList,
    ApprovalDecide,
    ModelsList,
    SealedThreadInput,
    SealedDecide,
)
PLAIN_INPUT = (ThreadStart, ThreadTurn, ThreadSteer, ApprovalDecide)
MAX_IN_FLIGHT = 64


def _refuse(reason: RefusalReason, message: str) -> TaskRefusedError:
    return TaskRefusedError(reason, message)


class Conversations:
    """The agent's end of the conversation messages; ``manager`` is None when disabled."""

    def __init__(
        self,
        config: AgentConfig,
        send: Send,
        *,
        redactor: Redactor,
        manager: ThreadManager | None = None,
    ) -> None:
        self.config = config
        self._send_raw = send
        # Whether the relay speaks conversations (its welcome says so): until it does, no
        # conversation message is sent, so an older relay never sees a type it would refuse.
        self.relay_accepts = False
        enabled = config.features.conversations
        self.manager = manager or (
            ThreadManager(config, self._send, redactor=redactor) if enabled else None
        )
        self._jobs: set[asyncio.Task[None]] = set()
        self.trust: ConversationGate | None = None  # set when the agent can pin (TRUST.md)
        self.sealing: ThreadSealing | None = None  # seals where the policy says so
        self._seal_lock = asyncio.Lock()

    async def _send(self, message: Message) -> None:
        if not self.relay_accepts:
            return
        if self.sealing is None:
            await self._send_raw(message)
            return
        # One at a time: a thread's envelopes leave in the order of their seq.
        async with self._seal_lock:
            for out in await self.sealing.outgoing(message):
                await self._send_raw(out)

    def start(self) -> None:
        """Start the app-server (only when the feature is on)."""
        if self.manager is not None:
            self.manager.start()

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        if self.manager is not None:
            await self.manager.stop()

    async def handle(self, request: ConversationRequest) -> None:
        """Answer ``request`` in the background (exactly one reply or refusal)."""
        if len(self._jobs) >= MAX_IN_FLIGHT:
            await self._send(
                ThreadRefused(
                    request_id=request.request_id,
                    reason=RefusalReason.AGENT_BUSY,
                    message="too many requests at once",
                )
            )
            return
        job = asyncio.create_task(self._answer(request))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def announce(self) -> None:
        """After connecting: the newest threads, so the relay's list is right at once."""
        if self.manager is None or not self.relay_accepts:
            return
        try:
            await self.manager.wait_ready()
            threads, _ = await self.manager.list_threads(None, 100)
        except (TaskRefusedError, TimeoutError):
            return
        await self._send(ThreadsUpdate(threads=threads))

    async def _answer(self, request: ConversationRequest) -> None:
        try:
            reply: Message = await self._checked(request)
        except TaskRefusedError as exc:
            log.info("refused %s: %s", request.type, exc.reason)
            reply = ThreadRefused(
                request_id=request.request_id, reason=exc.reason, message=exc.message[:500]
            )
        except Exception:
            log.exception("conversation request %s failed inside the agent", request.type)
            reply = ThreadRefused(
                request_id=request.request_id,
                reason=RefusalReason.AGENT_ERROR,
                message="the agent failed to handle this request",
            )
        try:
            await self._send(reply)
        except Exception:  # noqa: BLE001 - the link is down; the relay times the request out
            log.warning("could not send the answer to %s", request.type)

    async def _checked(self, request: ConversationRequest) -> ThreadReply:
        """A protected workspace's statement first (TRUST.md §4.13), durable before Codex
        sees anything; then the request itself."""
        request = self._unsealed(request)
        admitted = None
        if self.trust is not None:
            admitted = await self.trust.admit(request, self.manager)
            if admitted is not None:
                self.trust.commit(admitted)
                if isinstance(request, ApprovalDecide):  # the signer, not the relay's word
                    request = request.model_copy(
                        update={"decided_by": admitted.accepted.signers[0]}
                    )
        reply = await self._carry_out(request)
        if admitted is not None and self.trust is not None and reply.thread is not None:
            self.trust.started(admitted, reply.thread.id)
        return reply

    def handed_out(self, thread: str, device: str) -> None:
        """A key request was answered: that device holds the key (if it is a thread's)."""
        if self.sealing is not None:
            self.sealing.handed_out(thread, device)

    def _unsealed(self, request: ConversationRequest) -> ConversationRequest:
        """A sealed request opened into the signed one inside it; plaintext input refused
        where the policy seals content (a relay cannot downgrade a conversation)."""
        if self.sealing is None:
            if isinstance(request, SealedThreadInput | SealedDecide):
                raise _refuse(RefusalReason.NOT_PINNED, "this agent has no sealed workspace")
            return request
        kind = "decision" if isinstance(request, ApprovalDecide | SealedDecide) else "turn"
        try:
            if isinstance(request, SealedThreadInput):
                return self.sealing.open_input(request)
            if isinstance(request, SealedDecide):
                return self.sealing.open_decision(request)
            if isinstance(request, PLAIN_INPUT) and self.sealing.required():
                raise _refuse(
                    RefusalReason.E2E_REQUIRED, "this workspace's conversations must be sealed"
                )
        except TaskRefusedError as exc:
            self.sealing.gate.refused_statement(kind, exc.reason, None, None)
            raise
        return request

    def _manager(self) -> ThreadManager:
        if self.manager is None:
            raise _refuse(
                RefusalReason.FEATURE_DISABLED, "conversations are disabled on this agent"
            )
        return self.manager

    def _check_write(self, write: bool) -> None:
        if write and not self.config.features.codex_exec_write:  # R17, A4
            raise _refuse(RefusalReason.WRITE_MODE_DISABLED, "write mode is off on this agent")

    async def _carry_out(self, request: ConversationRequest) -> ThreadReply:  # noqa: PLR0911 - a flat dispatch
        manager = self._manager()
        rid = request.request_id
        if isinstance(request, ThreadStart):
            return await self._start(manager, request)
        if isinstance(request, ThreadTurn | ThreadSteer):
            return await self._send_input(manager, request)
        if isinstance(request, ThreadInterrupt):
            return ThreadReply(request_id=rid, turn=await manager.interrupt(request.thread_id))
        if isinstance(request, ThreadResume):
            self._check_write(request.write_access)
            if request.write_access and not self.config.codex.allow_write_on_resume:  # R14
                raise _refuse(
                    RefusalReason.WRITE_ON_RESUME_DISABLED,
                    "this agent does not allow write mode on resume",
                )
            thread = await manager.resume(request.thread_id, write=request.write_access)
            return ThreadReply(request_id=rid, thread=thread)
        if isinstance(request, ThreadRead):
            state, items, more = await manager.read(
                request.thread_id, request.after_seq, request.limit
            )
            approvals = state.pending_approvals()
            return ThreadReply(
                request_id=rid,
                thread=state.info(),
                items=items,
                approvals=approvals,
                seq=state.seq,
                more=more,
            )
        if isinstance(request, ThreadList):
            threads, cursor = await manager.list_threads(request.cursor, request.limit)
            return ThreadReply(request_id=rid, threads=threads, next_cursor=cursor)
        if isinstance(request, ModelsList):
            return ThreadReply(request_id=rid, models=await manager.list_models())
        if not isinstance(request, ApprovalDecide):  # a sealed request is opened before
            raise _refuse(RefusalReason.INVALID_REQUEST, "this request was not opened")
        approval = await manager.decide(
            request.thread_id, request.approval_id, request.decision, request.decided_by
        )
        return ThreadReply(request_id=rid, approval=approval)

    async def _start(self, manager: ThreadManager, request: ThreadStart) -> ThreadReply:
        if not request.prompt.strip():
            raise _refuse(RefusalReason.INVALID_REQUEST, "a thread needs a prompt")
        cwd = check_cwd(self.config.root, request.cwd)  # symlinks resolved (R15)
        self._check_write(request.write_access)
        thread, turn = await manager.start_thread(
            cwd,
            request.prompt,
            write=request.write_access,
            model=request.model,
            effort=request.effort,
            images=request.images,
        )
        return ThreadReply(request_id=request.request_id, thread=thread, turn=turn)

    async def _send_input(
        self, manager: ThreadManager, request: ThreadTurn | ThreadSteer
    ) -> ThreadReply:
        if not request.prompt.strip():
            raise _refuse(RefusalReason.INVALID_REQUEST, "a turn needs a prompt")
        state = manager.threads.get(request.thread_id)
        # A thread running with a writable sandbox (a terminal may have started it so) takes
        # no input from the phone unless this agent allows write mode (R17).
        self._check_write(state is not None and state.write)
        if isinstance(request, ThreadSteer):
            turn = await manager.steer(request.thread_id, request.prompt)
        else:
            turn = await manager.follow_up(request.thread_id, request.prompt, request.images)
        return ThreadReply(request_id=request.request_id, turn=turn)
