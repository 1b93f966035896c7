"""Size caps for text that leaves the agent (R18): byte-bounded, cut on UTF-8 boundaries.

Output can be arbitrarily large and arbitrarily encoded; the phone gets a tail (or a head,
for diffs) of at most a configured number of bytes that always decodes cleanly.
"""

from __future__ import annotations

CONTINUATION_MASK = 0xC0
CONTINUATION_BITS = 0x80


def _start_boundary(data: bytes | bytearray, index: int) -> int:
    """Move ``index`` forward past UTF-8 continuation bytes so a tail starts on a character."""
    limit = min(len(data), index + 3)
    while index < limit and (data[index] & CONTINUATION_MASK) == CONTINUATION_BITS:
        index += 1
    return index


def _sequence_length(lead: int) -> int:
    """How many bytes the UTF-8 character starting with ``lead`` takes (1 if not a lead)."""
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1


def _end_boundary(data: bytes | bytearray, index: int) -> int:
    """Move ``index`` back so a head does not end inside a multi-byte character."""
    lead_at = index
    while lead_at > 0 and index - lead_at < 4:
        byte = data[lead_at - 1]
        if (byte & CONTINUATION_MASK) != CONTINUATION_BITS:
            lead_at -= 1
            complete = lead_at + _sequence_length(byte) <= index
            return index if complete else lead_at
        lead_at -= 1
    return index  # not UTF-8 around here: any cut is as good as another


def tail_bytes(data: bytes | bytearray, max_bytes: int) -> tuple[bytes, bool]:
    """The last ``max_bytes`` of ``data`` starting on a character, and whether it was cut."""
    if len(data) <= max_bytes:
        return bytes(data), False
    cut = _start_boundary(data, len(data) - max_bytes)
    return bytes(data[cut:]), True


def head_bytes(data: bytes | bytearray, max_bytes: int) -> tuple[bytes, bool]:
    """The first ``max_bytes`` of ``data`` ending on a character, and whether it was cut."""
    if len(data) <= max_bytes:
        return bytes(data), False
    cut = _end_boundary(data, max_bytes)
    return bytes(data[:cut]), True


def cap_tail(text: str, max_bytes: int) -> tuple[str, bool]:
    """Keep the end of ``text`` within ``max_bytes`` of UTF-8."""
    data, cut = tail_bytes(text.encode("utf-8", "replace"), max_bytes)
    return data.decode("utf-8", "replace"), cut


def cap_head(text: str, max_bytes: int) -> tuple[str, bool]:
    """Keep the start of ``text`` within ``max_bytes`` of UTF-8."""
    data, cut = head_bytes(text.encode("utf-8", "replace"), max_bytes)
    return data.decode("utf-8", "replace"), cut


class TailBuffer:
    """The newest ``max_bytes`` of a byte stream, without ever holding much more."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data = bytearray()
        self.truncated = False

    def append(self, chunk: bytes) -> None:
        """Add output; drop the oldest bytes once the buffer is twice the cap."""
        self._data += chunk
        if len(self._data) > 2 * self.max_bytes:
            del self._data[: _start_boundary(self._data, len(self._data) - self.max_bytes)]
            self.truncated = True

    def text(self) -> str:
        """The tail as text, starting on a character boundary."""
        data, cut = tail_bytes(self._data, self.max_bytes)
        self.truncated = self.truncated or cut
        return data.decode("utf-8", "replace")


class Utf8Chunker:
    """Decode a byte stream chunk by chunk without splitting a character between chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> str:
        """Text of every complete character so far; a cut character waits for the next chunk."""
        data = self._pending + chunk
        cut = _end_boundary(data, len(data))
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", "replace")

    def flush(self) -> str:
        """Whatever is left at the end of the stream."""
        rest, self._pending = self._pending, b""
        return rest.decode("utf-8", "replace")
