"""Bursts become one notification per task or thread per device per window.

The first notification about a thing goes at once; anything more about it within the
window is held, the latest replacing the earlier, and goes when the window closes. The
phone shows it under the same ``tag``, so it replaces the earlier one in place. Pure
bookkeeping over a time the caller passes in (the sender uses the event loop's clock).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

M = TypeVar("M")


@dataclass
class _Slot(Generic[M]):
    last_sent: float
    pending: M | None = None


@dataclass(frozen=True)
class Hold:
    """Held until ``due``; ``schedule`` is True for the first one held in this window (the
    caller sets one timer per window, later ones just replace the held message)."""

    due: float
    schedule: bool


SEND_NOW = None


class Coalescer(Generic[M]):
    """Per-key windows of ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._slots: dict[Hashable, _Slot[M]] = {}

    def offer(self, key: Hashable, message: M, now: float) -> Hold | None:
        """``SEND_NOW`` (None) to send ``message`` now, or a ``Hold`` until the window ends."""
        slot = self._slots.get(key)
        if slot is None or now - slot.last_sent >= self.window:
            self._slots[key] = _Slot(last_sent=now)
            return SEND_NOW
        schedule = slot.pending is None
        slot.pending = message
        return Hold(due=slot.last_sent + self.window, schedule=schedule)

    def release(self, key: Hashable, now: float) -> M | None:
        """The held message whose window closed (it counts as sent now), or None."""
        slot = self._slots.get(key)
        if slot is None or slot.pending is None:
            return None
        message, slot.pending = slot.pending, None
        slot.last_sent = now
        return message

    def forget(self, now: float) -> int:
        """Drop windows that closed with nothing held; returns how many went."""
        stale = [
            key
            for key, slot in self._slots.items()
            if slot.pending is None and now - slot.last_sent >= self.window
        ]
        for key in stale:
            del self._slots[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._slots)
