"""The threads the agent follows, and the one way their changes are sent to the relay.

Every outbound conversation message is built here, from texts that ``Outbound`` has already
redacted and capped, so no other module can send an unredacted item by mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexrelay.agent.runners.appserver.items import TEXT_BYTES, Outbound
from codexrelay.agent.runners.appserver.origins import PhoneThreads
from codexrelay.agent.runners.appserver.state import ThreadState
from codexrelay.protocol import Message
from codexrelay.protocol_threads import (
    MAX_DELTA_CHARS,
    Approval,
    ApprovalUpdate,
    DeltaField,
    ThreadDelta,
    ThreadItem,
    ThreadItemEvent,
    ThreadSource,
    ThreadStatus,
    ThreadUpdate,
    TurnInfo,
)

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
Clock = Callable[[], datetime]
Json = dict[str, Any]
WRITE_SANDBOXES = frozenset({"workspaceWrite", "dangerFullAccess"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def _stamp(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def map_status(status: object) -> ThreadStatus:
    """The app-server's thread status as the phone's badge."""
    kind = status.get("type") if isinstance(status, dict) else None
    if kind == "active":
        flags = status.get("activeFlags") if isinstance(status, dict) else None
        waiting = isinstance(flags, list) and "waitingOnApproval" in flags
        return "waitingForApproval" if waiting else "running"
    if kind == "notLoaded":
        return "notLoaded"
    return "error" if kind == "systemError" else "idle"


def map_source(thread: Json, phone_threads: Container[str]) -> ThreadSource:
    """phone (started by this agent), exec (``codex exec``) or terminal (any other client)."""
    if thread.get("source") == "exec":
        return "exec"
    return "phone" if thread.get("id") in phone_threads else "terminal"


def writes(response: Json) -> bool:
    """Whether a thread/start or thread/resume result runs with a writable sandbox."""
    sandbox = response.get("sandbox")
    return isinstance(sandbox, dict) and sandbox.get("type") in WRITE_SANDBOXES


class Registry:
    """Thread states by id, plus the sending of every change."""

    def __init__(
        self,
        root: Path,
        outbound: Outbound,
        send: Send,
        clock: Clock = utc_now,
        *,
        phone_threads: PhoneThreads,
    ) -> None:
        self.root = root
        self.phone_threads = phone_threads
        self.outbound = outbound
        self._send = send
        self.clock = clock
        self.threads: dict[str, ThreadState] = {}

    def inside_root(self, cwd: object) -> bool:
        """A thread's recorded cwd resolves inside workspaceRoot (R13); others stay hidden."""
        if not isinstance(cwd, str) or not cwd.startswith("/") or "\x00" in cwd:
            return False
        try:
            return Path(cwd).resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):
            return False

    def state_from(self, thread: Json) -> ThreadState:
        """A new state for an app-server ``Thread`` (not yet tracked)."""
        return ThreadState(
            id=str(thread.get("id")),
            source=map_source(thread, self.phone_threads),
            cwd=self.outbound.head(str(thread.get("cwd") or ""), 4000),
            preview=self.outbound.head(str(thread.get("preview") or ""), 1900)[:2000],
            created_at=_stamp(thread.get("createdAt")),
            updated_at=_stamp(thread.get("updatedAt")),
            model=str(thread["model"])[:200] if isinstance(thread.get("model"), str) else None,
            status=map_status(thread.get("status")),
        )

    async def send(self, message: Message) -> None:
        """Send, never letting a dropped relay link break the app-server side."""
        try:
            await self._send(message)
        except Exception:  # noqa: BLE001 - the connection layer reconnects on its own
            log.warning("could not send %s to the relay", type(message).__name__)

    async def thread_changed(self, state: ThreadState, turn: TurnInfo | None = None) -> None:
        state.updated_at = self.clock()
        await self.send(ThreadUpdate(thread=state.info(), turn=turn))

    async def item_changed(self, state: ThreadState, fields: Json) -> ThreadItem:
        """Store a mapped item (redacting and capping it first) and send its new state."""
        item = state.put(self.outbound.item(fields))
        await self.send(ThreadItemEvent(thread_id=state.id, item=item))
        return item

    async def delta(
        self, state: ThreadState, item_id: str, name: DeltaField, text: str, turn_id: str | None
    ) -> None:
        """Stream redacted text; a secret split between deltas is caught by the stream."""
        stream = state.streams.get((item_id, name))
        if stream is None:
            stream = state.streams[(item_id, name)] = self.outbound.stream()
        released, _ = stream.feed(text)
        for start in range(0, len(released), MAX_DELTA_CHARS):
            piece = released[start : start + MAX_DELTA_CHARS]
            limit = self.outbound.output_bytes if name == "output" else TEXT_BYTES
            seq = state.append(item_id, name, piece, limit)
            if seq is None:
                return
            await self.send(
                ThreadDelta(
                    thread_id=state.id,
                    turn_id=turn_id,
                    item_id=item_id,
                    seq=seq,
                    field=name,
                    delta=piece,
                )
            )

    async def approval_changed(self, state: ThreadState, approval: Approval) -> None:
        state.approvals[approval.id] = approval
        await self.send(ApprovalUpdate(approval=approval))
