"""The ``redaction`` section of the agent config, and the warning printed when it is off (B3).

Extra patterns are compiled while the config loads, so a typo in a regex stops the agent at
start-up with the key that is wrong instead of silently letting secrets through later.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from codexrelay.settings import CamelModel


def _check_pattern(pattern: str) -> str:
    """Refuse a regex that does not compile or that can match the empty string."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        msg = f"not a valid regular expression: {exc}"
        raise ValueError(msg) from None
    if compiled.fullmatch("") is not None:
        msg = "the pattern matches the empty string; make it match at least one character"
        raise ValueError(msg)
    return pattern


def _check_allowed(value: str) -> str:
    """Refuse an empty allowlist entry: it would say nothing about what may be shown."""
    if not value:
        msg = "an allowlist entry must not be empty"
        raise ValueError(msg)
    return value


ExtraPattern = Annotated[str, AfterValidator(_check_pattern)]
AllowedValue = Annotated[str, AfterValidator(_check_allowed)]


class RedactionSettings(CamelModel):
    """How the agent scrubs secrets from every text it sends towards the relay."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(
        default=True,
        description="true to redact secrets from output, diffs, logs and previews (keep it on)",
    )
    extra_patterns: list[ExtraPattern] = Field(
        default_factory=list,
        description=(
            "Python regular expressions; each match is redacted as kind 'custom' (only the "
            "group named 'secret' when the pattern has one)"
        ),
    )
    allowlist: list[AllowedValue] = Field(
        default_factory=list,
        description="literal values that are never redacted, e.g. a published test key",
    )


DISABLED_WARNING = "\n".join(
    [
        "!" * 78,
        "!! WARNING: secret redaction is DISABLED (redaction.enabled = false).",
        "!! Passwords, API keys, tokens and private keys printed by Codex, actions or logs",
        "!! will be sent unredacted to the relay and shown on the phone.",
        "!! Set redaction.enabled to true in the agent config unless you mean this.",
        "!" * 78,
    ]
)


def startup_warning(settings: RedactionSettings) -> str | None:
    """The loud warning the agent must print at start when redaction is off, else ``None``."""
    return None if settings.enabled else DISABLED_WARNING
