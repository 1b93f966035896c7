"""Redaction of output that arrives in chunks, catching secrets split between chunks (B3).

Only whole lines are redacted and released; the unfinished last line is held back until its
newline arrives. A line longer than ``max_line_chars`` (a minified bundle, a progress bar
without newlines) is released in pieces cut at whitespace, never inside a secret or between
it and its key, keeping the last 4 KB (longer than any secret we detect but a private key
inside one JSON line) held back.
A private key block is never held: its lines are redacted as they arrive and the open block
is remembered across chunks.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codexrelay.agent.redaction.redactor import Redactor

# Text ending like this must not be cut after: the value that follows belongs to it.
_OPEN_END = re.compile(
    r"(?:[=:>]|bearer|basic|token|authorization|(?:^|\s)--?[\w-]+)[ \t\"']*$", re.IGNORECASE
)


class StreamRedactor:
    """Feeds chunks of one stream through a ``Redactor``; use one per stream."""

    def __init__(self, redactor: Redactor, *, max_line_chars: int = 8192) -> None:
        self._redactor = redactor
        self._max_line = max(max_line_chars, 256)
        self._keep = min(4096, self._max_line // 2)
        self._pending = ""
        self._open_block: str | None = None

    @property
    def held(self) -> int:
        """How many characters are held back waiting for the rest of their line."""
        return len(self._pending)

    def feed(self, chunk: str) -> tuple[str, int]:
        """Redact what can safely be released now; the rest waits for the next chunk."""
        if not self._redactor.enabled:
            return chunk, 0
        text = self._pending + chunk
        cut = text.rfind("\n") + 1
        if len(text) - cut > self._max_line:
            cut = self._long_line_cut(text, cut)
        self._pending = text[cut:]
        return self._release(text[:cut])

    def flush(self) -> tuple[str, int]:
        """Release everything held back: call at the end of the stream (or when it idles)."""
        text, self._pending = self._pending, ""
        return self._release(text)

    def _release(self, text: str) -> tuple[str, int]:
        """Redact ``text``, carrying an open private key block on to the next call."""
        if not text:
            return "", 0
        redacted, count, self._open_block = self._redactor.redact_block(
            text, open_block=self._open_block
        )
        return redacted, count

    def _long_line_cut(self, text: str, line_start: int) -> int:
        """Where to cut an over-long unfinished line so that no secret is split.

        Prefer whitespace not right after `=`, `:` or `Bearer`, within the last
        ``max_line_chars``; never inside a secret found in the whole held text, nor between
        a secret and the key or flag that marks it (the last 4 KB stay held, so any secret
        that starts before the cut is complete in that text).
        """
        limit = len(text) - self._keep
        floor = max(line_start, len(text) - self._max_line)
        cut = limit
        pos = limit
        while pos > floor:
            space = max(text.rfind(" ", floor, pos), text.rfind("\t", floor, pos))
            if space <= floor:
                break
            if not _OPEN_END.search(text, max(floor, space - 32), space):
                cut = space + 1
                break
            pos = space
        hits, _ = self._redactor.scan(text, open_block=self._open_block)
        for hit in reversed(hits):
            if hit.anchor < cut < hit.end:
                cut = hit.anchor
        return cut if cut > line_start else limit  # a secret longer than 4 KB may be split
