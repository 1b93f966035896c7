"""What the agent knows about one thread: its items, each stamped with a growing ``seq``.

Every change the phone can see (an item appearing or changing state, a streamed delta)
takes the thread's next ``seq``, and a stored item carries the ``seq`` of its latest change
(a delta counts: the stored text already includes it). So a reader keeps, per item id, the
state with the highest ``seq``, skips a delta whose ``seq`` is not above its item's, and
appends the others: a snapshot (``page``) plus the live events is the whole thread, with
nothing missing and nothing twice, whatever order the two arrive in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from codexrelay.agent.redaction import StreamRedactor
from codexrelay.protocol_threads import (
    Approval,
    DeltaField,
    ThreadInfo,
    ThreadItem,
    ThreadSource,
    ThreadStatus,
)

MAX_ITEMS = 2000  # per thread in agent memory; older ones drop out of snapshots
PAGE_BYTES = 600 << 10  # a thread.read page stays well under the 1 MiB frame


@dataclass
class ThreadState:
    """One thread the agent follows (started from the phone, resumed, or adopted)."""

    id: str
    source: ThreadSource
    cwd: str
    write: bool = False
    preview: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    model: str | None = None
    status: ThreadStatus = "notLoaded"
    active_turn: str | None = None
    seq: int = 0
    items: OrderedDict[str, ThreadItem] = field(default_factory=OrderedDict)
    approvals: dict[str, Approval] = field(default_factory=dict)
    streams: dict[tuple[str, DeltaField], StreamRedactor] = field(default_factory=dict)
    raw_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaded: bool = False  # subscribed on the current app-server connection

    def info(self) -> ThreadInfo:
        """The thread as the phone lists it."""
        return ThreadInfo(
            id=self.id,
            source=self.source,
            status=self.status,
            cwd=self.cwd,
            write_access=self.write,
            preview=self.preview,
            created_at=self.created_at,
            updated_at=self.updated_at,
            active_turn_id=self.active_turn,
            model=self.model,
        )

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def put(self, fields: dict[str, Any]) -> ThreadItem:
        """Store an item's new state under a new ``seq`` (replacing the old state)."""
        item = ThreadItem(seq=self.next_seq(), **fields)
        self.items.pop(item.id, None)
        self.items[item.id] = item
        while len(self.items) > MAX_ITEMS:
            dropped, _ = self.items.popitem(last=False)
            self.raw_items.pop(dropped, None)
        return item

    def append(self, item_id: str, name: DeltaField, text: str, limit: int) -> int | None:
        """Add streamed text to an item's field; the delta's ``seq`` (None: unknown item).

        The stored text keeps its latest ``limit`` characters, as the item itself would.
        """
        item = self.items.get(item_id)
        if item is None:
            return None
        seq = self.next_seq()
        current = getattr(item, name) or ""
        joined = (current + text)[-limit:]
        self.items[item_id] = item.model_copy(update={name: joined, "seq": seq})
        return seq

    def page(self, after_seq: int, limit: int) -> tuple[list[ThreadItem], bool]:
        """Items changed after ``after_seq``, oldest change first, and whether more follow."""
        changed = sorted((i for i in self.items.values() if i.seq > after_seq), key=lambda i: i.seq)
        out: list[ThreadItem] = []
        size = 0
        for item in changed:
            size += len(item.model_dump_json())
            if out and (len(out) >= limit or size > PAGE_BYTES):
                return out, True
            out.append(item)
        return out, False

    def pending_approvals(self) -> list[Approval]:
        return [a for a in self.approvals.values() if a.status == "pending"]
