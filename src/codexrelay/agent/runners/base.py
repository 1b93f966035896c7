"""The interface every task runner implements, so a second Codex runner (app-server) fits
beside ``codex exec`` without touching the executor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from codexrelay.protocol import FinishStatus, ProgressEvent, RefusalReason, TaskSpec


class Emit(Protocol):
    """Send one progress event towards the relay (redaction and caps happen upstream).

    A Codex runner names the Codex session as soon as it knows it, so a task that never
    finishes normally (relay restart, lost agent) can still be continued from the phone.
    """

    async def __call__(self, event: ProgressEvent, *, codex_session_id: str | None = None) -> None:
        """Queue ``event`` for the relay."""


class TaskRefusedError(Exception):
    """The agent will not run this task, for a stable ``reason``."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TaskOutcome:
    """How a task ended, with the texts the phone will see (capped by the runner)."""

    status: FinishStatus
    exit_code: int | None = None
    final_message: str | None = None
    output_tail: str = ""
    diff_text: str | None = None
    diff_truncated: bool = False
    error: str | None = None
    codex_session_id: str | None = None


class Runner(Protocol):
    """Runs one kind of task to completion; must honour ``cancelled`` promptly."""

    async def run(self, spec: TaskSpec, *, emit: Emit, cancelled: asyncio.Event) -> TaskOutcome:
        """Run ``spec`` (already validated by the executor) and report how it ended."""
