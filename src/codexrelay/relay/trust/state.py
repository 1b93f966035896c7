"""What the relay keeps in memory for protected workspaces: verified log views and tasks
that wait for more approvers (two-person rule, B6). Nothing here is persisted: a pending
task holds its prompt, which never reaches the disk (R10)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from codexrelay.e2e.log import LogView
from codexrelay.protocol import LogAck, SignedTask


@dataclass
class PendingTask:
    """A signed task that needs more approvers before the relay sends it."""

    task_id: str
    workspace_id: str
    agent_id: str
    created_by: str
    signed: SignedTask
    signers: list[str]
    missing: int
    created_at: datetime
    expires_at: datetime


@dataclass
class TrustState:
    """One relay process's verified views (by workspace) and pending tasks (by task id)."""

    views: dict[str, LogView] = field(default_factory=dict)
    pending: dict[str, PendingTask] = field(default_factory=dict)
    # log pushes waiting for the agent's signed acknowledgement: push id -> (agent key, answer)
    pushes: dict[str, tuple[str, asyncio.Future[LogAck]]] = field(default_factory=dict)
    # Each sealed agent's latest session catalog envelope, by agent key (R12: memory only).
    catalogs: dict[str, str] = field(default_factory=dict)

    def sweep(self, now: datetime) -> list[PendingTask]:
        """Drop pending tasks whose statement expired; returns them."""
        gone = [p for p in self.pending.values() if p.expires_at <= now]
        for item in gone:
            del self.pending[item.task_id]
        return gone
