"""Conversation content, held in relay memory only (R10): items, streamed text, what an
approval asks, a thread's cwd and preview.

Per thread the relay keeps the newest state of every item and the thread's sequence
number. Items and deltas are applied by the rule of docs/PROTOCOL.md: an item change
replaces the held item if its ``seq`` is higher; a delta is appended only if its ``seq``
is above its item's. Applying a ``thread.read`` snapshot and the live stream in any order
thus ends in the same state: no gap, no duplicate. Memory is capped as a whole; the
threads read least recently give way first and are read again from the agent when opened.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
APPROVAL_CONTENT = ("command", "cwd", "changes", "reason", "availableDecisions", "request")


def _size(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    return 8


@dataclass(eq=False)
class ThreadContent:
    """One thread's items (by id, newest state) and what its approvals ask."""

    info: Json = field(default_factory=dict)  # cwd, preview, model
    items: dict[str, Json] = field(default_factory=dict)
    approvals: dict[str, Json] = field(default_factory=dict)
    seq: int = 0
    # True once a full thread.read was merged while the agent link stayed up: the held
    # items are then the whole thread and a late reader is served from here.
    synced: bool = False
    size: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def apply_item(self, item: Json) -> bool:
        """Keep ``item`` if it is newer than the held state of its id."""
        held = self.items.get(item["id"])
        if held is not None and held["seq"] >= item["seq"]:
            return False
        self.size += _size(item) - (_size(held) if held is not None else 0)
        self.items[item["id"]] = item
        self.seq = max(self.seq, item["seq"])
        return True

    def apply_delta(self, item_id: str, seq: int, name: str, delta: str) -> bool:
        """Append streamed text to an item held with a lower ``seq``."""
        held = self.items.get(item_id)
        self.seq = max(self.seq, seq)
        if held is None or held["seq"] >= seq:
            return False
        held[name] = (held.get(name) or "") + delta
        held["seq"] = seq
        self.size += len(delta)
        return True

    def page(self, after: int = 0) -> list[Json]:
        """Items changed after ``after``, oldest change first."""
        return sorted((i for i in self.items.values() if i["seq"] > after), key=lambda i: i["seq"])

    def keep_approval(self, approval_id: str, fields: Json) -> None:
        """What an approval asks (command, diff, reason, the decisions offered)."""
        kept = {k: fields[k] for k in APPROVAL_CONTENT if fields.get(k) is not None}
        self.size += _size(kept) - _size(self.approvals.get(approval_id, {}))
        self.approvals[approval_id] = kept

    def reset(self) -> None:
        """Forget the items (the link dropped or the memory cap was hit): read again."""
        self.items.clear()
        self.seq, self.synced = 0, False
        self.size = _size(self.approvals) + _size(self.info)


class ContentStore:
    """Every thread's content, by thread key, under one memory cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._threads: OrderedDict[str, ThreadContent] = OrderedDict()

    def get(self, key: str) -> ThreadContent:
        """A thread's content (created empty), marked as the most recently used."""
        content = self._threads.get(key)
        if content is None:
            content = self._threads[key] = ThreadContent()
        self._threads.move_to_end(key)
        return content

    def peek(self, key: str) -> ThreadContent | None:
        """A thread's content if held, without changing its place."""
        return self._threads.get(key)

    def drop(self, key: str) -> None:
        """Forget a thread entirely (its record was pruned)."""
        self._threads.pop(key, None)

    def unsync(self, prefix: str) -> None:
        """An agent's link dropped: what it sent next may have been lost, so every thread
        of that agent is read again (from seq 0) when next opened."""
        for key, content in self._threads.items():
            if key.startswith(prefix):
                content.reset()

    def total(self) -> int:
        """Bytes (roughly, characters) held."""
        return sum(c.size for c in self._threads.values())

    def trim(self) -> None:
        """Stay under the cap: the least recently used threads give up their items."""
        total = self.total()
        for content in list(self._threads.values()):
            if total <= self.max_bytes:
                return
            if content.lock.locked():
                continue
            before = content.size
            content.reset()
            total -= before - content.size
