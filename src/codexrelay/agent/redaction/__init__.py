"""Secret scanning and redaction of everything the agent sends towards the relay (B3).

Build one ``Redactor`` from the agent's ``RedactionSettings`` at start-up; pass every outbound
text through ``Redactor.redact`` and every chunked stream through a ``Redactor.stream()``.
Print ``startup_warning(settings)`` when it is not ``None``.
"""

from codexrelay.agent.redaction.redactor import Redactor
from codexrelay.agent.redaction.settings import (
    DISABLED_WARNING,
    RedactionSettings,
    startup_warning,
)
from codexrelay.agent.redaction.stream import StreamRedactor

__all__ = [
    "DISABLED_WARNING",
    "RedactionSettings",
    "Redactor",
    "StreamRedactor",
    "startup_warning",
]
