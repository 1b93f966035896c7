"""Hits (spans to redact), how overlapping ones merge, and how a text is rewritten (B3)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from detect_secrets.filters.heuristic import is_templated_secret

MARKER = "[REDACTED:{kind}]"

# Values that stand for a secret without being one: `${DB_PASSWORD}`, `$TOKEN`, `{{ x }}`,
# `%(password)s`, `<your-password>`, `****`, `xxxx`, `...`, or our own marker. A shell default
# such as `${DB_PASSWORD:-hunter2}` is not a placeholder: it carries a literal.
_PLACEHOLDER = re.compile(
    r"""
    \$\{?[A-Za-z_][A-Za-z0-9_]*\}?
  | \$\{\{[^}]*\}\}
  | \{\{[^}]*\}\}
  | \{[A-Za-z_][\w.\[\]'"]*\}
  | %(?:\(\w+\))?[sdr]
  | <[^<>]*>
  | [*xX.•_\-]+
  | \[REDACTED:?[a-z_]*\]?
  | REDACTED
  | (?:your|my)[-_][\w-]*
  | change[-_]?me
  | (?i:password|passwd|pass|pwd|secret|token|api[-_]?key|none|null|nil|undefined)
  | \?\?\?+
  """,
    re.VERBOSE,
)


def is_placeholder(value: str) -> bool:
    """True when ``value`` is a reference to or mask of a secret, not the secret itself."""
    if not value:
        return True
    if _PLACEHOLDER.fullmatch(value):
        return True
    if len(value) > 1 and is_templated_secret(value):
        return True
    return value.startswith("[REDACTED")


@dataclass(frozen=True, slots=True)
class Hit:
    """``text[start:end]`` is (part of) a secret of ``kind``.

    ``counted`` is false for the continuation lines of a private key that began in an earlier
    chunk, so a key is counted once. ``priority`` picks the kind when hits overlap. ``anchor``
    is where the evidence begins (the `password =` before a value), which a stream must not
    cut between; it defaults to ``start``.
    """

    start: int
    end: int
    kind: str
    priority: int = 2
    counted: bool = True
    anchor: int = -1

    def __post_init__(self) -> None:
        if self.anchor < 0 or self.anchor > self.start:
            object.__setattr__(self, "anchor", self.start)


def merge_hits(hits: list[Hit]) -> list[Hit]:
    """Sorted, non-overlapping hits; overlapping ones fuse and keep the most specific kind."""
    hits.sort(key=lambda hit: (hit.start, -hit.end))
    merged: list[Hit] = []
    for hit in hits:
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            top = last if last.priority >= hit.priority else hit
            merged[-1] = Hit(
                last.start,
                max(last.end, hit.end),
                top.kind,
                top.priority,
                last.counted or hit.counted,
                min(last.anchor, hit.anchor),
            )
        else:
            merged.append(hit)
    return merged


def _mask(secret: str, marker: str) -> str:
    """The marker in place of ``secret``, once per line it spans, so no line is lost."""
    if "\n" not in secret:
        return marker
    pieces = []
    for piece in secret.split("\n"):
        if not piece.strip():
            pieces.append(piece)
        else:
            pieces.append(marker + ("\r" if piece.endswith("\r") else ""))
    return "\n".join(pieces)


def render(text: str, hits: list[Hit]) -> str:
    """``text`` with every merged hit replaced by its ``[REDACTED:<kind>]`` marker."""
    out: list[str] = []
    pos = 0
    for hit in hits:
        out.append(text[pos : hit.start])
        out.append(_mask(text[hit.start : hit.end], MARKER.format(kind=hit.kind)))
        pos = hit.end
    out.append(text[pos:])
    return "".join(out)
