"""Sealed threads' envelopes, held in relay memory only (R10, TRUST.md §6).

The relay cannot open them: it keeps each thread's agent stream in arrival order, numbered
from 0, so a phone reads them from any index and follows the live ``envelope`` events. The
whole is capped; the threads heard from least recently give way first, and a phone is told
their envelopes expired (it then asks the agent to wrap the key again and reads what the
relay still holds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class _Held:
    base: int = 0  # the index of the first envelope still held
    envelopes: list[str] = field(default_factory=list)
    size: int = 0


class ThreadEnvelopes:
    """Every sealed thread's envelopes, by thread key, under one memory cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._threads: OrderedDict[str, _Held] = OrderedDict()
        self._size = 0

    def add(self, key: str, envelope: str) -> int:
        """Keep an envelope; its index in the thread's stream."""
        held = self._threads.get(key)
        if held is None:
            held = self._threads[key] = _Held()
        self._threads.move_to_end(key)
        held.envelopes.append(envelope)
        held.size += len(envelope)
        self._size += len(envelope)
        self._trim()
        return held.base + len(held.envelopes) - 1

    def after(self, key: str, after: int) -> tuple[list[tuple[int, str]], bool]:
        """Envelopes with an index above ``after``, and whether earlier ones were let go."""
        held = self._threads.get(key)
        if held is None:
            return [], False
        found = [(held.base + i, e) for i, e in enumerate(held.envelopes) if held.base + i > after]
        return found, held.base > after + 1

    def drop(self, key: str) -> None:
        held = self._threads.pop(key, None)
        if held is not None:
            self._size -= held.size

    def total(self) -> int:
        return self._size

    def _trim(self) -> None:
        for held in list(self._threads.values()):
            if self._size <= self.max_bytes:
                return
            self._size -= held.size
            held.base += len(held.envelopes)
            held.envelopes, held.size = [], 0
