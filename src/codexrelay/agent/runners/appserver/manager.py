"""Threads on the agent's app-server: start, follow up, steer, interrupt, list, read, resume.

The caller (``agent/conversations.py``) has already checked features, write mode and the
working directory against the agent's config; this layer still hides every thread whose
recorded cwd is outside workspaceRoot (R13) and refuses with a stable reason code
(``TaskRefusedError``) when a request does not fit the thread's state.

Restarts: when the app-server dies mid-turn, Codex aborts the turn and forgets its pending
approvals (section 6.6), so the agent closes that turn as ``interrupted``, marks its
approvals ``cancelled`` (a late answer is refused, nothing runs), and resumes every thread
it followed on the new server: the thread comes back ``idle`` and takes new turns. When
only the link dropped, resuming makes the server replay a pending approval, which keeps its
id and deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.redaction import Redactor
from codexrelay.agent.runners.appserver.approvals import check_decision
from codexrelay.agent.runners.appserver.events import EventRouter
from codexrelay.agent.runners.appserver.history import idle_threads, load_history
from codexrelay.agent.runners.appserver.items import Outbound
from codexrelay.agent.runners.appserver.models import model_option
from codexrelay.agent.runners.appserver.origins import PhoneThreads
from codexrelay.agent.runners.appserver.registry import (
    Clock,
    Registry,
    Send,
    map_status,
    utc_now,
    writes,
)
from codexrelay.agent.runners.appserver.rpc import (
    AppServerClient,
    AppServerUnavailableError,
    RpcError,
)
from codexrelay.agent.runners.appserver.state import ThreadState
from codexrelay.agent.runners.appserver.supervisor import AppServerSupervisor
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.protocol import UUID_PATTERN
from codexrelay.protocol_base import RefusalReason
from codexrelay.protocol_threads import (
    Approval,
    Decision,
    ModelOption,
    ThreadInfo,
    ThreadItem,
    TurnInfo,
)

log = logging.getLogger(__name__)
UUID_RE = re.compile(UUID_PATTERN)

Json = dict[str, Any]
LIST_SOURCES = ["cli", "vscode", "exec", "appServer"]  # section 3: the default hides exec
ADOPT_INTERVAL_SEC = 2.0
CONNECT_WAIT_SEC = 20.0
UNKNOWN_THREAD = ("thread not loaded", "no rollout found", "invalid thread id", "not found")


def text_input(prompt: str, images: list[str] | None) -> list[Json]:
    """A turn's input: the prompt, then any images as data URLs."""
    parts: list[Json] = [{"type": "text", "text": prompt, "text_elements": []}]
    return parts + [{"type": "image", "url": url} for url in images or []]


class ThreadManager:
    """Owns the app-server (supervisor and client) and every thread the agent follows."""

    def __init__(
        self,
        config: AgentConfig,
        send: Send,
        *,
        redactor: Redactor,
        clock: Clock = utc_now,
        supervisor: AppServerSupervisor | None = None,
        trace: Callable[[Json], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = config.conversations
        self.supervisor = supervisor or AppServerSupervisor(config)
        outbound = Outbound(
            redactor, output_bytes=config.max_task_log_bytes, diff_bytes=config.max_diff_bytes
        )
        phone_threads = PhoneThreads(config.state_path)
        self.registry = Registry(config.root, outbound, send, clock, phone_threads=phone_threads)
        self.client = AppServerClient(
            self.supervisor,
            on_notification=self._notification,
            on_server_request=self._server_request,
            on_connected=self._connected,
            trace=trace,
        )
        self.events = EventRouter(
            self.registry, self.client, self.settings, on_unknown_thread=self._adopt_soon
        )
        self.events.agent_id = config.agent_id
        self._generation = 0
        self._jobs: set[asyncio.Task[None]] = set()
        # Held while a thread is being started, so its own thread/started notification is
        # not mistaken for a terminal's thread to adopt.
        self._starting = asyncio.Lock()

    @property
    def threads(self) -> dict[str, ThreadState]:
        return self.registry.threads

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the app-server and the client in the background."""
        self.supervisor.start()
        self._spawn(self.client.run())
        self._spawn(self._adopt_loop())

    async def stop(self) -> None:
        """Stop following threads and stop the app-server (its commands with it)."""
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        self.events.cancel_timers()
        await self.client.close()
        await self.supervisor.stop()

    async def wait_ready(self, timeout: float = 60) -> None:  # noqa: ASYNC109 - a plain deadline
        await asyncio.wait_for(self.client.connected.wait(), timeout)

    def _spawn(self, job: Any) -> None:
        task = asyncio.create_task(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _notification(self, method: str, params: Json) -> None:
        await self.events.notification(method, params)

    async def _server_request(
        self, connection: int, request_id: int | str, method: str, params: Json
    ) -> None:
        await self.events.server_request(connection, request_id, method, params)

    # ---- app-server calls ---------------------------------------------------------------

    async def call(self, method: str, params: Json) -> Json:
        """One request, with the app-server's failures as refusals the relay understands.

        While the app-server is starting or restarting, a request waits a little for it.
        """
        if not self.client.connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.connected.wait(), CONNECT_WAIT_SEC)
        try:
            return await self.client.request(method, params)
        except AppServerUnavailableError as exc:
            raise TaskRefusedError(RefusalReason.CODEX_UNAVAILABLE, str(exc)) from None
        except RpcError as exc:
            if any(marker in exc.message for marker in UNKNOWN_THREAD):
                raise TaskRefusedError(
                    RefusalReason.UNKNOWN_THREAD, "no such thread on this agent"
                ) from None
            message = self.registry.outbound.head(exc.message, 400)
            raise TaskRefusedError(RefusalReason.CODEX_ERROR, f"Codex refused: {message}") from None

    def _policy(self, write: bool) -> Json:
        return {
            "approvalPolicy": self.settings.approval_policy,
            "sandbox": "workspace-write" if write else "read-only",
        }

    # ---- operations ---------------------------------------------------------------------

    async def start_thread(
        self,
        cwd: Path,
        prompt: str,
        *,
        write: bool,
        model: str | None = None,
        effort: str | None = None,
        images: list[str] | None = None,
    ) -> tuple[ThreadInfo, TurnInfo]:
        """A new thread in ``cwd`` (already checked) running its first turn."""
        if len(self.threads) >= self.settings.max_threads:
            self._forget_idle()
        params = {"cwd": str(cwd), **self._policy(write)}
        if model or self.config.codex.model:
            params["model"] = model or self.config.codex.model
        async with self._starting:
            result = await self.call("thread/start", params)
            thread = result.get("thread") or {}
            state = self.registry.state_from(thread)
            state.source, state.write, state.loaded = "phone", writes(result), True
            self.registry.phone_threads.add(state.id)
            state.preview = self.registry.outbound.head(prompt, 1900)
            self.threads[state.id] = state
        await self.registry.thread_changed(state)
        turn = await self._turn_start(state, prompt, images, effort)
        return state.info(), turn

    async def follow_up(
        self, thread_id: str, prompt: str, images: list[str] | None = None
    ) -> TurnInfo:
        """A new turn on an idle thread (a thread not loaded is resumed read-only first)."""
        state = await self.loaded(thread_id)
        if state.active_turn is not None:
            raise TaskRefusedError(
                RefusalReason.TURN_RUNNING, "a turn is running; steer or interrupt it"
            )
        return await self._turn_start(state, prompt, images, None)

    async def _turn_start(
        self, state: ThreadState, prompt: str, images: list[str] | None, effort: str | None
    ) -> TurnInfo:
        params: Json = {"threadId": state.id, "input": text_input(prompt, images)}
        if effort:
            params["effort"] = effort
        turn = (await self.call("turn/start", params)).get("turn") or {}
        state.active_turn = str(turn.get("id") or "") or state.active_turn
        return TurnInfo(
            id=str(turn.get("id") or "unknown"), thread_id=state.id, status="inProgress"
        )

    async def steer(self, thread_id: str, prompt: str) -> TurnInfo:
        """More input for the running turn."""
        state = self.known(thread_id)
        if state.active_turn is None:
            raise TaskRefusedError(
                RefusalReason.NO_RUNNING_TURN, "no turn is running on this thread"
            )
        params = {
            "threadId": thread_id,
            "expectedTurnId": state.active_turn,
            "input": text_input(prompt, None),
        }
        result = await self.call("turn/steer", params)
        return TurnInfo(
            id=str(result.get("turnId") or state.active_turn),
            thread_id=thread_id,
            status="inProgress",
        )

    async def interrupt(self, thread_id: str) -> TurnInfo:
        """Stop the running turn; a pending approval is cancelled first, so it never runs."""
        state = self.known(thread_id)
        turn_id = state.active_turn
        if turn_id is None:
            raise TaskRefusedError(
                RefusalReason.NO_RUNNING_TURN, "no turn is running on this thread"
            )
        for approval in state.pending_approvals():
            await self.events.answer(approval.id, "cancel")
            await self.events.finish(state, approval, "cancelled", decision="cancel")
        with contextlib.suppress(TaskRefusedError):  # the cancel may have ended it already
            await self.call("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
        return TurnInfo(id=turn_id, thread_id=thread_id, status="interrupted")

    async def decide(
        self, thread_id: str, approval_id: str, decision: str, decided_by: str | None
    ) -> Approval:
        """Pass a person's answer to Codex, if it is among the offered decisions."""
        state = self.threads.get(thread_id)
        approval = None if state is None else state.approvals.get(approval_id)
        if state is None or approval is None:
            raise TaskRefusedError(
                RefusalReason.UNKNOWN_APPROVAL, "no such approval on this thread"
            )
        checked: Decision = check_decision(approval, decision)
        return await self.events.decide(state, approval, checked, decided_by)

    async def resume(self, thread_id: str, *, write: bool) -> ThreadInfo:
        """Load a listed thread (terminal or exec source) so the phone can drive it."""
        state = self.threads.get(thread_id)
        if state is None or not state.loaded:
            state = await self._load(thread_id, write=write, keep_policy=False)
        return state.info()

    async def loaded(self, thread_id: str) -> ThreadState:
        """The thread, resumed read-only first if it is listed but not loaded."""
        state = self.threads.get(thread_id)
        if state is not None and state.loaded:
            return state
        return await self._load(thread_id, write=False, keep_policy=False)

    def known(self, thread_id: str) -> ThreadState:
        state = self.threads.get(thread_id)
        if state is None or not state.loaded:
            raise TaskRefusedError(
                RefusalReason.UNKNOWN_THREAD, "this thread is not loaded on this agent"
            )
        return state

    async def read(
        self, thread_id: str, after_seq: int, limit: int
    ) -> tuple[ThreadState, list[ThreadItem], bool]:
        """A page of items changed after ``after_seq``; history is fetched once if needed."""
        state = self.threads.get(thread_id)
        if state is None:
            state = await self._describe(thread_id)
            self.threads[thread_id] = state
            await self._hydrate(state)
        items, more = state.page(after_seq, limit)
        return state, items, more

    async def list_threads(
        self, cursor: str | None, limit: int
    ) -> tuple[list[ThreadInfo], str | None]:
        """Threads under workspaceRoot from every source, most recently active first."""
        params: Json = {"sourceKinds": LIST_SOURCES, "limit": limit, "sortKey": "updated_at"}
        if cursor:
            params["cursor"] = cursor
        result = await self.call("thread/list", params)
        out = []
        for thread in result.get("data") or []:
            listable = isinstance(thread, dict) and UUID_RE.match(str(thread.get("id")))
            if listable and self.registry.inside_root(thread.get("cwd")):
                known = self.threads.get(str(thread.get("id")))
                out.append(
                    known.info() if known is not None else self.registry.state_from(thread).info()
                )
        next_cursor = result.get("nextCursor")
        return out, next_cursor if isinstance(next_cursor, str) else None

    async def list_models(self) -> list[ModelOption]:
        """The models this Codex offers (hidden ones left out) and their reasoning efforts."""
        result = await self.call("model/list", {"limit": 100})
        return [m for raw in result.get("data") or [] if (m := model_option(raw)) is not None]

    # ---- loading, hydrating, adopting ---------------------------------------------------

    async def _describe(self, thread_id: str) -> ThreadState:
        """A thread's state from its rollout, if its cwd is inside workspaceRoot (R13)."""
        thread = (await self.call("thread/read", {"threadId": thread_id})).get("thread") or {}
        if not self.registry.inside_root(thread.get("cwd")):
            raise TaskRefusedError(
                RefusalReason.UNKNOWN_THREAD, "no such thread under this workspace"
            )
        return self.registry.state_from(thread)

    async def _load(self, thread_id: str, *, write: bool, keep_policy: bool) -> ThreadState:
        known = self.threads.get(thread_id)
        state = known or await self._describe(thread_id)
        params: Json = {"threadId": thread_id, "excludeTurns": True}
        if not keep_policy:
            params |= self._policy(write)
        # Known before the call: resuming makes the server replay a pending approval, and
        # that request may arrive before the call's own answer.
        self.threads[thread_id] = state
        result = await self.call("thread/resume", params)
        state.write, state.loaded = writes(result), True
        thread = result.get("thread")
        status = map_status(thread.get("status") if isinstance(thread, dict) else None)
        state.status = "idle" if status == "notLoaded" else status
        if not state.items:
            await self._hydrate(state)
        await self.registry.thread_changed(state)
        return state

    async def _hydrate(self, state: ThreadState) -> None:
        await load_history(self.call, self.registry.outbound, state)

    async def _adopt_soon(self, thread_id: str) -> None:
        self._spawn(self._adopt(thread_id))

    async def _adopt(self, thread_id: str) -> None:
        """Follow a thread another client (the terminal) runs on this server."""
        async with self._starting:
            pass
        if thread_id in self.threads and self.threads[thread_id].loaded:
            return
        try:
            await self._load(thread_id, write=False, keep_policy=True)
        except TaskRefusedError as exc:
            log.debug("not following thread %s: %s", thread_id, exc.reason)

    async def _adopt_loop(self) -> None:
        """Find threads started by other clients (``thread/loaded/list``) and follow them."""
        while True:
            await asyncio.sleep(ADOPT_INTERVAL_SEC)
            if not self.client.connected.is_set():
                continue
            with contextlib.suppress(TaskRefusedError):
                loaded = (await self.call("thread/loaded/list", {})).get("data") or []
                for thread_id in loaded:
                    state = self.threads.get(str(thread_id))
                    if state is None or not state.loaded:
                        await self._adopt(str(thread_id))

    async def _connected(self, connection: int) -> None:
        """A new link: after a server restart, close what died; then resubscribe."""
        restarted = self.supervisor.generation != self._generation
        self._generation = self.supervisor.generation
        followed = [s for s in self.threads.values() if s.loaded]
        for state in followed:
            state.loaded = False
            if restarted:
                await self._close_after_crash(state)
        self._spawn(self._resubscribe(followed, keep_policy=not restarted))
        log.info("app-server link %d up (restarted: %s)", connection, restarted)

    async def _close_after_crash(self, state: ThreadState) -> None:
        turn_id, state.active_turn = state.active_turn, None
        await self.events.close_turn(state, turn_id, "interrupted")
        state.status = "notLoaded"
        if turn_id is not None:
            turn = TurnInfo(
                id=turn_id, thread_id=state.id, status="interrupted", error="Codex restarted"
            )
            await self.registry.thread_changed(state, turn)

    async def _resubscribe(self, states: list[ThreadState], *, keep_policy: bool) -> None:
        for state in states:
            try:
                await self._load(state.id, write=state.write, keep_policy=keep_policy)
            except TaskRefusedError as exc:
                log.warning("could not resume thread %s: %s", state.id, exc.reason)

    def _forget_idle(self) -> None:
        """Make room: stop following the least recently updated idle threads."""
        for state in idle_threads(self.threads, self.settings.max_threads):
            self.threads.pop(state.id, None)
