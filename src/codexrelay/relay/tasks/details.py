"""Task texts in relay memory only (R10): prompt, progress, output tail, final message, diff.

Held while a task runs and for ``taskDetailsTtlSec`` after it finishes, under a total size
cap; the oldest finished tasks' details go first. Nothing here is ever written to disk or
to a log line.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from codexrelay.protocol import SignedTask
from codexrelay.protocol_sealed import SealedTask

MAX_PROGRESS_EVENTS = 500
MAX_TEXT_CHARS = 1 << 20


@dataclass
class TaskDetails:
    """Everything about one task that must not be persisted."""

    prompt: str | None = None
    output_tail: str = ""
    final_message: str | None = None
    diff_text: str | None = None
    diff_truncated: bool = False
    error: str | None = None
    progress: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_PROGRESS_EVENTS)
    )
    finished_at: datetime | None = None
    size: int = 0
    # A protected workspace's task: the phone's statement, body and signatures, sent to the
    # agent byte for byte (they hold the prompt again, so they live here, in memory only).
    signed: SignedTask | None = None
    # A sealed task: the phone's envelope and every envelope the agent sent back, which only
    # the agent and the reader devices can open (TRUST.md §4.7).
    sealed: SealedTask | None = None
    envelopes: list[str] = field(default_factory=list)

    def measure(self) -> int:
        """Approximate memory held, in characters."""
        texts = (self.prompt, self.output_tail, self.final_message, self.diff_text, self.error)
        total = sum(len(t) for t in texts if t)
        if self.signed is not None:
            total += len(self.signed.stmt) + len(self.signed.body) + 4096 * len(self.signed.auth)
        total += sum(len(str(p.get("text", ""))) + 64 for p in self.progress)
        total += sum(len(e) for e in self.envelopes)
        total += len(self.sealed.envelope) if self.sealed is not None else 0
        self.size = total
        return total

    def fields(self) -> dict[str, Any]:
        """The texts as the task detail view names them."""
        return {
            "prompt": self.prompt,
            "output_tail": self.output_tail,
            "final_message": self.final_message,
            "diff_text": self.diff_text,
            "diff_truncated": self.diff_truncated,
            "error": self.error,
            "progress": list(self.progress),
        }


class DetailsStore:
    """Per-task details with a TTL after finishing and a total memory cap."""

    def __init__(self, *, ttl_sec: int, max_bytes: int) -> None:
        self.ttl = timedelta(seconds=ttl_sec)
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, TaskDetails] = OrderedDict()
        self._total = 0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._items

    @property
    def total(self) -> int:
        """Characters held across all tasks."""
        return self._total

    def start(
        self,
        task_id: str,
        prompt: str | None,
        signed: SignedTask | None = None,
        sealed: SealedTask | None = None,
    ) -> TaskDetails:
        """Begin holding details for a new task."""
        details = TaskDetails(
            prompt=prompt[:MAX_TEXT_CHARS] if prompt else prompt, signed=signed, sealed=sealed
        )
        self._items[task_id] = details
        self._resize(details)
        return details

    def signed(self, task_id: str) -> SignedTask | None:
        """The signed request of a protected workspace's task, while it is held."""
        details = self._items.get(task_id)
        return None if details is None else details.signed

    def sealed(self, task_id: str) -> SealedTask | None:
        """The phone's envelope of a sealed task, while it is held."""
        details = self._items.get(task_id)
        return None if details is None else details.sealed

    def add_envelope(self, task_id: str, envelope: str) -> int | None:
        """Keep one envelope the agent sent; its index in the task's stream (None if the
        task's details are gone)."""
        details = self._items.get(task_id)
        if details is None:
            return None
        details.envelopes.append(envelope)
        self._resize(details)
        return len(details.envelopes) - 1

    def get(self, task_id: str, now: datetime) -> TaskDetails | None:
        """The task's details, unless they expired or were evicted."""
        details = self._items.get(task_id)
        if details is not None and details.finished_at and details.finished_at + self.ttl <= now:
            self.drop(task_id)
            return None
        return details

    def add_progress(self, task_id: str, event: dict[str, Any]) -> None:
        """Remember one progress step (bounded per task)."""
        details = self._items.get(task_id)
        if details is None:
            return
        details.progress.append(event)
        self._resize(details)

    def finish(self, task_id: str, now: datetime, **texts: Any) -> None:
        """Store the final texts; the TTL starts now."""
        details = self._items.get(task_id)
        if details is None:
            details = self.start(task_id, None)
        for name, value in texts.items():
            setattr(details, name, value[:MAX_TEXT_CHARS] if isinstance(value, str) else value)
        details.finished_at = now
        self._items.move_to_end(task_id)
        self._resize(details)

    def mark_finished(self, task_id: str, now: datetime) -> None:
        """Start the TTL for a task that ended without texts (rejected, interrupted)."""
        details = self._items.get(task_id)
        if details is not None and details.finished_at is None:
            details.finished_at = now

    def drop(self, task_id: str) -> None:
        """Forget one task's details."""
        details = self._items.pop(task_id, None)
        if details is not None:
            self._total -= details.size

    def sweep(self, now: datetime) -> int:
        """Drop every expired entry; returns how many went."""
        expired = [
            task_id
            for task_id, d in self._items.items()
            if d.finished_at is not None and d.finished_at + self.ttl <= now
        ]
        for task_id in expired:
            self.drop(task_id)
        return len(expired)

    def _resize(self, details: TaskDetails) -> None:
        self._total -= details.size
        self._total += details.measure()
        self._evict()

    def _evict(self) -> None:
        """Over the cap: drop finished tasks oldest-first, then trim running tasks' progress."""
        if self._total <= self.max_bytes:
            return
        for task_id in [t for t, d in self._items.items() if d.finished_at is not None]:
            self.drop(task_id)
            if self._total <= self.max_bytes:
                return
        for details in self._items.values():
            while details.progress and self._total > self.max_bytes:
                details.progress.popleft()
                self._total -= details.size
                self._total += details.measure()
