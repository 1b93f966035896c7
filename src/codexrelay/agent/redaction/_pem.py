"""Private key blocks: the BEGIN marker, each body line after it, and the END marker (B3).

A block is redacted line by line so the text keeps its lines: in a diff every `+` stays in
front of its `[REDACTED:private_key]`. A block still open when a chunk of stream ends is
carried into the next chunk (``open_block``), so a key is never held back whole and never
leaks because its END line arrives later. The block is counted once, at its BEGIN marker.
"""

from __future__ import annotations

import re

from codexrelay.agent.redaction._hits import Hit

KIND = "private_key"
PRIORITY = 4

# One line: `-----BEGIN RSA PRIVATE KEY-----` (also EC, DSA, OPENSSH, ENCRYPTED, PGP ...
# BLOCK and the four-dash SSH2 form), then either the rest of the block up to its END marker
# on the same line (a JSON string with `\n` escapes) or the rest of the line up to a quote.
_BEGIN = re.compile(
    r"----[- ]BEGIN (?P<label>[A-Z0-9 ]*?PRIVATE KEY(?: BLOCK)?) ?-{4,5}"
    r"(?:(?P<inline>[^\n]*?-{4,5} ?END (?P=label) ?-{4,5})|[^\n\"'`]*)"
)
_END = re.compile(r"-{4,5} ?END [A-Z0-9 ]*?PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# A body line: a prefix (a diff marker, indent, quote, comment leader, or the same log
# prefix as the BEGIN line), then base64 or an armour header, then string closers or `\n`.
# A leading `+` is read as a diff marker and kept, though base64 may start with one.
_HEADER = re.compile(
    r"(?P<pre>[ \t+\-\"'#/*>|;,]*)"
    r"(?P<body>(?:Proc-Type|DEK-Info|Comment|Version|Hash|Charset):[^\n]*)"
)
_BODY = re.compile(
    r"(?P<pre>[^\n]*?)(?<![A-Za-z0-9/=])"
    r"(?P<body>[A-Za-z0-9/][A-Za-z0-9+/]+={0,2}|=[A-Za-z0-9+/]{4})?"
    r"(?:\\[nr]|[ \t\"',;+\r])*"
)
_JUNK = " \t+-\"'#/*>|;,"
_DIGITS = re.compile(r"[0-9]")
_MAX_LINE = 512
_TRAILER = re.compile(r"(?:\\[nr]|[ \t\"',;+)\r])*")


def _shape(prefix: str) -> str:
    """A line prefix with its digits blanked, so log timestamps still match each other."""
    return _DIGITS.sub("0", prefix)


def _body_line(text: str, pos: int, line_end: int, shape: str) -> re.Match[str] | None:
    """The body of one line of a key block, or None when the line ends the block."""
    if line_end - pos > _MAX_LINE:
        return None  # key lines are short; a long line is something else (and slow to try)
    header = _HEADER.fullmatch(text, pos, line_end)
    if header is not None:
        return header
    body = _BODY.fullmatch(text, pos, line_end)
    if body is None or not shape.startswith(_shape(body.group("pre").rstrip(_JUNK))):
        return None
    return body


def _continue_block(text: str, pos: int, hits: list[Hit], shape: str) -> tuple[int, bool]:
    """Redact body lines from line start ``pos``; return where the block ends and if open."""
    size = len(text)
    while True:
        newline = text.find("\n", pos)
        line_end = size if newline < 0 else newline
        if pos >= size:
            return size, True
        end = _END.search(text, pos, line_end)
        if end:
            hits.append(Hit(end.start(), end.end(), KIND, PRIORITY, counted=False))
            return line_end, False
        body = _body_line(text, pos, line_end, shape)
        if body is None:
            return pos, False
        if body.group("body"):
            hits.append(Hit(body.start("body"), body.end("body"), KIND, PRIORITY, counted=False))
        if newline < 0:
            return size, True
        pos = newline + 1


def find_blocks(text: str, *, open_block: str | None) -> tuple[list[Hit], str | None]:
    """Hits for every private key block in ``text``, and the block still open at its end.

    An open block is named by the shape of its BEGIN line's prefix (``""`` for none), which
    its body lines may repeat; ``open_block`` is that of a block begun in an earlier chunk.
    """
    hits: list[Hit] = []
    pos = 0
    still_open: str | None = None
    if open_block is not None:
        pos, is_open = _continue_block(text, 0, hits, open_block)
        if is_open:
            return hits, open_block
    for match in _BEGIN.finditer(text, pos):
        hits.append(Hit(match.start(), match.end(), KIND, PRIORITY))
        still_open = None
        newline = text.find("\n", match.end())
        line_end = len(text) if newline < 0 else newline
        if match.group("inline") is not None or not _TRAILER.fullmatch(text, match.end(), line_end):
            continue
        shape = _shape(text[text.rfind("\n", 0, match.start()) + 1 : match.start()])
        if newline < 0:
            return hits, shape
        _, is_open = _continue_block(text, newline + 1, hits, shape)
        if is_open:
            return hits, shape
    return hits, still_open
