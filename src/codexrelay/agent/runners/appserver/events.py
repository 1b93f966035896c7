"""What the app-server tells the agent, turned into conversation events and approvals.

Notifications are routed by ``threadId`` to the thread's state; those of threads the agent
does not follow are ignored. Approval requests become ``approval.update`` messages with a
deadline; the app-server's request stays parked here until a person answers, the deadline
declines it, an interrupt cancels it, or another client (the terminal) answers it. Other
server requests on the agent's own threads are refused at once (a turn would otherwise wait
forever, pitfall 2); on a terminal's threads they are left to the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from codexrelay.agent.config import ConversationSettings
from codexrelay.agent.runners.appserver.approvals import (
    APPROVAL_METHODS,
    STATUS_OF,
    PendingRequest,
    new_approval,
    offered_decisions,
    resolve,
    with_request,
)
from codexrelay.agent.runners.appserver.items import error_item, map_item
from codexrelay.agent.runners.appserver.registry import Registry, map_status
from codexrelay.agent.runners.appserver.rpc import AppServerClient
from codexrelay.agent.runners.appserver.state import ThreadState
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.protocol_base import RefusalReason
from codexrelay.protocol_threads import Approval, ApprovalStatus, Decision, DeltaField, TurnInfo

log = logging.getLogger(__name__)

Json = dict[str, Any]
DELTAS: dict[str, DeltaField] = {
    "item/agentMessage/delta": "text",
    "item/plan/delta": "text",
    "item/commandExecution/outputDelta": "output",
    "item/reasoning/summaryTextDelta": "summary",
}
TURN_STATUSES = {"inProgress", "completed", "interrupted", "failed"}


class EventRouter:
    """Handles notifications and server requests for every followed thread."""

    def __init__(
        self,
        registry: Registry,
        client: AppServerClient,
        settings: ConversationSettings,
        *,
        on_unknown_thread: Callable[[str], Awaitable[None]],
    ) -> None:
        self.registry = registry
        self.client = client
        self.settings = settings
        self._on_unknown_thread = on_unknown_thread
        self.agent_id = "agent"  # set by the manager; named in each approval's request bytes
        self.requests: dict[str, PendingRequest] = {}  # approval id -> app-server request
        self._timers: dict[str, asyncio.Task[None]] = {}

    # ---- notifications ------------------------------------------------------------------

    async def notification(self, method: str, params: Json) -> None:
        thread_id = params.get("threadId")
        if method == "thread/started":
            thread = params.get("thread")
            thread_id = thread.get("id") if isinstance(thread, dict) else None
        state = self.registry.threads.get(str(thread_id))
        if state is None:
            if method == "thread/started" and isinstance(thread_id, str):
                await self._on_unknown_thread(thread_id)
            return
        await self._route(state, method, params)

    async def _route(self, state: ThreadState, method: str, params: Json) -> None:
        if method in DELTAS:
            await self._delta(state, DELTAS[method], params)
        elif method in {"item/started", "item/completed"}:
            await self._item(state, params, done=method == "item/completed")
        elif method == "thread/status/changed":
            state.status = map_status(params.get("status"))
            await self.registry.thread_changed(state)
        elif method in {"turn/started", "turn/completed"}:
            await self._turn(state, params)
        elif method == "serverRequest/resolved":
            await self._resolved_elsewhere(state, params.get("requestId"))
        elif method == "error" and not params.get("willRetry"):
            await self._error(state, params)

    async def _delta(self, state: ThreadState, name: DeltaField, params: Json) -> None:
        item_id, delta = params.get("itemId"), params.get("delta")
        if isinstance(item_id, str) and isinstance(delta, str) and delta:
            turn = params.get("turnId") if isinstance(params.get("turnId"), str) else None
            await self.registry.delta(state, item_id, name, delta, turn)

    async def _item(self, state: ThreadState, params: Json, *, done: bool) -> None:
        raw = params.get("item")
        if not isinstance(raw, dict) or not raw.get("id"):
            return
        turn = params.get("turnId") if isinstance(params.get("turnId"), str) else None
        fields = map_item(raw, turn_id=turn, done=done)
        state.raw_items[fields["id"]] = fields
        for key in [k for k in state.streams if k[0] == fields["id"]] if done else []:
            state.streams.pop(key)  # the full text replaces what was streamed
        await self.registry.item_changed(state, fields)

    async def _turn(self, state: ThreadState, params: Json) -> None:
        raw = params.get("turn")
        turn: Json = raw if isinstance(raw, dict) else {}
        turn_id = str(turn.get("id") or "")
        status = str(turn.get("status")) if turn.get("status") in TURN_STATUSES else "inProgress"
        error = turn.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        if status == "inProgress":
            state.active_turn = turn_id
        else:
            if state.active_turn == turn_id:
                state.active_turn = None
            await self.close_turn(state, turn_id, status)
        info = TurnInfo(
            id=turn_id or "unknown",
            thread_id=state.id,
            status=status,
            error=None if message is None else self.registry.outbound.head(str(message), 3900),
        )
        await self.registry.thread_changed(state, info)

    async def close_turn(self, state: ThreadState, turn_id: str | None, status: str) -> None:
        """A turn ended: its open items and approvals end with it (section 6.5)."""
        if status in {"interrupted", "failed"}:
            for item in list(state.items.values()):
                if item.status == "inProgress" and (turn_id is None or item.turn_id == turn_id):
                    fields = item.model_dump(exclude={"seq"}) | {"status": "interrupted"}
                    await self.registry.item_changed(state, fields)
        for approval in state.pending_approvals():
            if turn_id is None or approval.turn_id == turn_id:
                await self.finish(state, approval, "cancelled")

    async def _error(self, state: ThreadState, params: Json) -> None:
        error = params.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        turn = params.get("turnId") if isinstance(params.get("turnId"), str) else None
        item_id = f"error-{uuid.uuid4().hex[:12]}"
        await self.registry.item_changed(state, error_item(item_id, turn, str(message or "error")))

    # ---- server requests (approvals) ----------------------------------------------------

    async def server_request(
        self, connection: int, request_id: int | str, method: str, params: Json
    ) -> None:
        state = self.registry.threads.get(str(params.get("threadId")))
        kind = APPROVAL_METHODS.get(method)
        if state is None:
            return  # not a thread we follow: its own client answers
        if kind is None:
            if state.source == "phone":
                await self.client.respond_error(
                    connection, request_id, f"{method} is not supported by codexrelay"
                )
            return
        where = PendingRequest(connection, request_id)
        replayed = next(
            (a for a in state.pending_approvals() if a.item_id == params.get("itemId")), None
        )
        if replayed is not None:  # the same question again after a reconnect: same card
            self.requests[replayed.id] = where
            await self.registry.approval_changed(state, replayed)
            return
        await self._ask(state, kind, params, where)

    async def _ask(
        self, state: ThreadState, kind: Any, params: Json, where: PendingRequest
    ) -> None:
        now = self.registry.clock()
        fields = new_approval(
            f"apr_{uuid.uuid4().hex}",
            kind=kind,
            params=params,
            item=state.raw_items.get(str(params.get("itemId"))),
            offered=offered_decisions(self.settings, write=state.write),
            now=now,
            timeout_sec=self.settings.approval_timeout_sec,
        )
        outbound = self.registry.outbound
        for key in ("command", "cwd", "reason"):
            if isinstance(fields.get(key), str):
                fields[key] = outbound.head(fields[key], 3900 if key != "command" else 16000)
        if "changes" in fields:
            fields["changes"] = outbound.changes(fields["changes"])
        approval = with_request(Approval(**fields), self.agent_id)
        self.requests[approval.id] = where
        self._timers[approval.id] = asyncio.create_task(self._expire_later(state, approval.id))
        await self.registry.approval_changed(state, approval)

    async def _expire_later(self, state: ThreadState, approval_id: str) -> None:
        await asyncio.sleep(self.settings.approval_timeout_sec)
        approval = state.approvals.get(approval_id)
        if approval is None or approval.status != "pending":
            return
        # Nobody answered: decline, as a person pressing Decline would (section 6.4).
        await self.answer(approval_id, "decline")
        await self.finish(state, approval, "expired", decision="decline")

    async def answer(self, approval_id: str, decision: str) -> bool:
        """Pass a decision to the app-server request; False if it could not be delivered.

        The request is taken off the book before the answer goes out, so the server's
        ``serverRequest/resolved`` that follows is not mistaken for another client's answer.
        """
        where = self.requests.pop(approval_id, None)
        if where is None:
            return False
        delivered = await self.client.respond(
            where.connection, where.request_id, {"decision": decision}
        )
        if not delivered:
            self.requests[approval_id] = where  # the server replays it on the next link
        return delivered

    async def decide(
        self, state: ThreadState, approval: Approval, decision: Decision, decided_by: str | None
    ) -> Approval:
        """A person's checked decision, delivered to Codex as received, then recorded."""
        status = STATUS_OF[decision]
        # Claimed before the first await: a second answer racing this one finds it resolved.
        state.approvals[approval.id] = approval.model_copy(update={"status": status})
        if not await self.answer(approval.id, decision):
            state.approvals[approval.id] = approval
            raise TaskRefusedError(
                RefusalReason.CODEX_UNAVAILABLE,
                "Codex is restarting; the approval will be asked again",
            )
        return await self.finish(state, approval, status, decision=decision, decided_by=decided_by)

    async def finish(
        self,
        state: ThreadState,
        approval: Approval,
        status: ApprovalStatus,
        *,
        decision: Any = None,
        decided_by: str | None = None,
    ) -> Approval:
        """Record the final state of an approval and stop its deadline."""
        self.requests.pop(approval.id, None)
        timer = self._timers.pop(approval.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        done = resolve(
            approval, status, now=self.registry.clock(), decision=decision, decided_by=decided_by
        )
        await self.registry.approval_changed(state, done)
        return done

    async def _resolved_elsewhere(self, state: ThreadState, request_id: object) -> None:
        for approval in state.pending_approvals():
            where = self.requests.get(approval.id)
            if (
                where is not None
                and where.request_id == request_id
                and where.connection == self.client.connection
            ):
                await self.finish(state, approval, "answeredElsewhere")

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        with contextlib.suppress(Exception):
            self.requests.clear()
