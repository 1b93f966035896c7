"""Live agent connections: who is online, and how to reach or drop them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketState

from codexrelay.protocol import LinkCounter, Message, TaskDispatch, dump_message

log = logging.getLogger("codexrelay.hub")


@dataclass(eq=False)
class LiveAgent:
    """One accepted agent WebSocket."""

    key: str
    workspace_id: str
    websocket: WebSocket
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    # B4: on a numbered connection each message carries the next ``linkSeq``, per direction.
    numbered: bool = False
    outbound: LinkCounter = field(default_factory=LinkCounter)
    inbound: LinkCounter = field(default_factory=LinkCounter)
    # Task ids this agent holds by this connection: the ones its hello named and those
    # handed over on it since (several instances tell a lost hand-over from these).
    holds: set[str] = field(default_factory=set)

    async def send(self, message: Message) -> bool:
        """Send one message (numbered under the send lock); False if the connection is gone."""
        if self.closed.is_set():
            return False
        try:
            async with self.send_lock:
                seq = self.outbound.next() if self.numbered else None
                await self.websocket.send_text(dump_message(message, seq))
        except Exception:  # noqa: BLE001 - any send failure means this socket is finished
            self.closed.set()
            return False
        if isinstance(message, TaskDispatch):
            self.holds.add(message.task.id)
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Close the socket with an application close code (idempotent)."""
        if self.closed.is_set():
            return
        self.closed.set()
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason[:120])


class AgentHub:
    """At most one live connection per agent key."""

    def __init__(self) -> None:
        self._live: dict[str, LiveAgent] = {}

    def is_online(self, key: str) -> bool:
        """Whether the agent with this relay key has a live connection."""
        live = self._live.get(key)
        return live is not None and not live.closed.is_set()

    def get(self, key: str) -> LiveAgent | None:
        """The live connection of an agent, if any."""
        live = self._live.get(key)
        return live if live is not None and not live.closed.is_set() else None

    def attach(self, live: LiveAgent) -> LiveAgent | None:
        """Register a connection; returns the older one it replaces (to be closed)."""
        previous = self._live.get(live.key)
        self._live[live.key] = live
        return previous

    def moved_from_lost_instance(self, key: str) -> bool:
        """Whether the agent's previous connection was on a relay instance that has since
        stopped (one instance: never)."""
        del key
        return False

    def detach(self, live: LiveAgent) -> bool:
        """Forget a connection if it is still the current one for its agent."""
        if self._live.get(live.key) is live:
            del self._live[live.key]
            return True
        return False

    async def disconnect(self, key: str, code: int, reason: str = "") -> None:
        """Close an agent's connection now (revocation, shutdown)."""
        live = self._live.pop(key, None)
        if live is not None:
            await live.close(code, reason)

    async def disconnect_all(self, code: int, reason: str = "") -> None:
        """Close every connection (relay shutdown)."""
        for key in list(self._live):
            await self.disconnect(key, code, reason)

    def online_count(self) -> int:
        """How many agents are connected."""
        return sum(1 for live in self._live.values() if not live.closed.is_set())
