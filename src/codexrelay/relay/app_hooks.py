"""Start-up, periodic and shutdown hooks that subsystems register, so ``app.py`` need not
know each of them (and they need not import the app)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codexrelay.relay.services import Services

# Run once, synchronously, after state is loaded and before the first request.
STARTUP_HOOKS: list[Callable[[Services], None]] = []
# Run about once a minute (expiry sweeps).
PERIODIC_HOOKS: list[Callable[[Services], None]] = []
# Awaited when the relay shuts down.
SHUTDOWN_HOOKS: list[Callable[[Services], Awaitable[None]]] = []
