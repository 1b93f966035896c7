"""What a backend raises when its data cannot be used."""

from __future__ import annotations


class StateError(Exception):
    """The stored state cannot be used; the relay must not start (and must not overwrite it)."""
