"""The relay's tamper-evident audit trail (B2, O4): a hash-chained, Ed25519-signed,
append-only record of every security event, with signed exports (docs/AUDIT.md).

The format and the offline verifier live in ``codexrelay.auditverify``; this package
writes (``log``), keeps the key (``keys``), reads and exports (``reading``), and hooks the
relay's requests in (``codexrelay.relay.api.auditing``).
"""

from __future__ import annotations

from codexrelay.auditverify import INSTANCE
from codexrelay.relay.audit.actors import ANONYMOUS, RELAY, Actor, agent_actor, ref, session_actor
from codexrelay.relay.audit.events import (
    approval_decided,
    task_cancel_requested,
    task_created,
    task_finished,
    thread_started,
    thread_taken_over,
    turn_interrupted,
)
from codexrelay.relay.audit.trail import AuditTrail

__all__ = [
    "ANONYMOUS",
    "INSTANCE",
    "RELAY",
    "Actor",
    "AuditTrail",
    "agent_actor",
    "approval_decided",
    "ref",
    "session_actor",
    "task_cancel_requested",
    "task_created",
    "task_finished",
    "thread_started",
    "thread_taken_over",
    "turn_interrupted",
]
