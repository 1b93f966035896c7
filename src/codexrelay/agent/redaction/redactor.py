"""The redaction stage every outbound text passes through on the agent (B3).

``Redactor.redact`` scrubs one whole text; ``Redactor.stream`` returns a ``StreamRedactor``
for output that arrives in chunks. Speed comes from the regexes themselves: each starts with
a literal (`ghp_`, `sk-`, `eyJ`, `://`, `password`...), which Python's engine finds with a
memchr-style scan, so a rule costs a few tens of microseconds per 100 KB of text that holds
no candidate; case-insensitive rules run on one lower-cased copy of the text.
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

from codexrelay.agent.redaction import _assignments, _pem
from codexrelay.agent.redaction._hits import Hit, merge_hits, render
from codexrelay.agent.redaction._rules import FORMAT_RULES, PatternRule, RuleFamily
from codexrelay.agent.redaction.settings import RedactionSettings

if TYPE_CHECKING:
    from codexrelay.agent.redaction.stream import StreamRedactor


def _custom_rule(pattern: str) -> RuleFamily:
    """A user's extra pattern; only its group named ``secret`` is hidden when it has one."""
    compiled = re.compile(pattern)
    group: int | str = "secret" if "secret" in compiled.groupindex else 0
    return RuleFamily(None, (PatternRule("custom", compiled, group=group, priority=0),))


class Redactor:
    """Finds secrets in text and replaces each with ``[REDACTED:<kind>]``, keeping lines."""

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        settings = settings or RedactionSettings()
        self.enabled = settings.enabled
        self._allowed = frozenset(settings.allowlist)
        self._rules = (*FORMAT_RULES, *(_custom_rule(p) for p in settings.extra_patterns))

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with its secrets replaced, and how many secrets were replaced."""
        redacted, count, _ = self.redact_block(text, open_block=None)
        return redacted, count

    def stream(self, *, max_line_chars: int = 8192) -> StreamRedactor:
        """A redactor for one chunked output stream (a task's stdout, a followed log)."""
        from codexrelay.agent.redaction.stream import StreamRedactor  # noqa: PLC0415

        return StreamRedactor(self, max_line_chars=max_line_chars)

    def redact_block(self, text: str, *, open_block: str | None) -> tuple[str, int, str | None]:
        """Redact ``text``, which may start inside a private key block from an earlier chunk.

        Returns the text, the count and the private key block still open at its end (an
        opaque value to pass back as ``open_block`` with the next chunk; None when closed).
        """
        hits, still_open = self.scan(text, open_block=open_block)
        if not hits:
            return text, 0, still_open
        return render(text, hits), sum(1 for h in hits if h.counted), still_open

    def scan(self, text: str, *, open_block: str | None) -> tuple[list[Hit], str | None]:
        """The merged hits in ``text`` and the private key block open at its end."""
        if not self.enabled or not text:
            return [], None
        hits, still_open = self._find(text, open_block=open_block)
        if self._allowed:
            hits = [h for h in hits if text[h.start : h.end] not in self._allowed]
        return (merge_hits(hits) if hits else hits), still_open

    def _find(self, text: str, *, open_block: str | None) -> tuple[list[Hit], str | None]:
        """Every hit of every rule in ``text``."""
        folded = _fold(text)
        hits, still_open = _pem.find_blocks(text, open_block=open_block)
        for rule in self._rules:
            hits.extend(rule.find(text, folded))
        hits.extend(_assignments.find_assignments(text, folded))
        return hits, still_open


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(text: str) -> str:
    """``text`` in lower case, each character still at its own index."""
    folded = text.lower()
    if len(folded) != len(text):  # a rare character (`İ`) lower-cases to two
        folded = text.translate(_ASCII_LOWER)
    return folded
