"""The base of every agent <-> relay message, shared by ``protocol`` and ``protocol_threads``."""

from __future__ import annotations

from codexrelay.settings import CamelModel

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ProtocolError(Exception):
    """A message that does not parse or does not fit the protocol."""


class Message(CamelModel):
    """Base of every message."""
