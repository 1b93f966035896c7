"""Workspace event fan-out for the phone's Server-Sent Events stream.

Each workspace has a bounded ring buffer of recent events so a client that reconnects with
``Last-Event-ID`` gets what it missed. Event ids carry this process's boot id: after a relay
restart old ids match nothing and the client simply refetches.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SUBSCRIBER_QUEUE = 1000


@dataclass(frozen=True)
class Event:
    """One SSE frame: ``id``, ``event`` type and JSON ``data``."""

    id: str
    type: str
    data: str

    def frame(self) -> str:
        """The text/event-stream encoding of this event."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n"


class EventBus:
    """Publishes events to live subscribers and remembers the last few per workspace."""

    def __init__(self, buffer_size: int = 500) -> None:
        self.boot_id = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._buffer_size = buffer_size
        self._recent: dict[str, deque[Event]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[Event | None]]] = {}
        self.queue_limit = SUBSCRIBER_QUEUE

    def publish(self, workspace_id: str, event_type: str, payload: dict[str, Any]) -> Event:
        """Send an event to everyone watching ``workspace_id`` and keep it for replays."""
        event = Event(
            id=self.new_id(),
            type=event_type,
            data=json.dumps(payload, separators=(",", ":"), default=str),
        )
        self.deliver(workspace_id, event)
        return event

    def new_id(self) -> str:
        """The next event id: this process's boot id and a counter."""
        return f"{self.boot_id}-{next(self._counter)}"

    def deliver(self, workspace_id: str, event: Event) -> None:
        """Keep an event for replays and hand it to the live subscribers (an event made
        here, or by another relay instance of a cluster)."""
        recent = self._recent.setdefault(workspace_id, deque(maxlen=self._buffer_size))
        recent.append(event)
        subscribers = self._subscribers.get(workspace_id, set())
        for queue in list(subscribers):
            if queue.qsize() >= self.queue_limit:
                # A subscriber that cannot keep up is cut off (None = "reconnect"); its
                # client comes back with Last-Event-ID and catches up from the buffer.
                subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def missed(self, workspace_id: str, last_event_id: str | None) -> list[Event]:
        """Buffered events after ``last_event_id`` (none if the id is unknown or absent)."""
        if not last_event_id:
            return []
        recent = list(self._recent.get(workspace_id, ()))
        for index, event in enumerate(recent):
            if event.id == last_event_id:
                return recent[index + 1 :]
        return []

    def recent(self, workspace_id: str) -> list[Event]:
        """The buffered events of a workspace, oldest first."""
        return list(self._recent.get(workspace_id, ()))

    @contextmanager
    def subscribe(self, workspace_id: str) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of new events for ``workspace_id``; ``None`` means "reconnect"."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.setdefault(workspace_id, set()).add(queue)
        try:
            yield queue
        finally:
            self._subscribers.get(workspace_id, set()).discard(queue)

    def close_workspace(self, workspace_id: str) -> None:
        """Tell every subscriber of a workspace to go (e.g. when it is deleted)."""
        for queue in self._subscribers.pop(workspace_id, set()):
            queue.put_nowait(None)
