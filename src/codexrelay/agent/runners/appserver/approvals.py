"""The rules for approvals Codex asks the phone for, kept free of I/O so they test alone.

Codex waits forever for an answer (codex-app-server.md section 6.4), so the agent gives every
approval a deadline (``conversations.approvalTimeoutSec``) and declines it when nobody
answered. The decisions offered are the four of API.md, never the ones that write Codex's
own rules (``acceptWithExecpolicyAmendment`` persists an allow rule in CODEX_HOME): accept,
decline and cancel always, ``acceptForSession`` only where the config allows it. A decision
is passed to Codex exactly as received, and only if it is among the offered ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from codexrelay.agent.config import ConversationSettings
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.e2e.statements import digest
from codexrelay.e2e.wire import b64u
from codexrelay.protocol_base import RefusalReason
from codexrelay.protocol_threads import Approval, ApprovalKind, ApprovalStatus, Decision

COMMAND_METHOD = "item/commandExecution/requestApproval"
FILE_CHANGE_METHOD = "item/fileChange/requestApproval"
APPROVAL_METHODS: dict[str, ApprovalKind] = {
    COMMAND_METHOD: "command",
    FILE_CHANGE_METHOD: "fileChange",
}
STATUS_OF: dict[Decision, ApprovalStatus] = {
    "accept": "accepted",
    "acceptForSession": "acceptedForSession",
    "decline": "declined",
    "cancel": "cancelled",
}


def offered_decisions(settings: ConversationSettings, *, write: bool) -> list[Decision]:
    """What the phone may answer; ``acceptForSession`` as ``acceptForSession`` allows."""
    allowed = settings.accept_for_session == "always" or (
        settings.accept_for_session == "readOnly" and not write
    )
    return (
        ["accept", "acceptForSession", "decline", "cancel"]
        if allowed
        else [
            "accept",
            "decline",
            "cancel",
        ]
    )


def check_decision(approval: Approval, decision: str) -> Decision:
    """Guard clauses for a person's answer; the checked decision, or a refusal."""
    if approval.status != "pending":
        raise TaskRefusedError(
            RefusalReason.APPROVAL_RESOLVED, f"this approval is already {approval.status}"
        )
    if decision not in approval.available_decisions:
        raise TaskRefusedError(
            RefusalReason.DECISION_NOT_OFFERED,
            f"{decision!r} is not among this approval's decisions",
        )
    return next(d for d in approval.available_decisions if d == decision)


def resolve(
    approval: Approval,
    status: ApprovalStatus,
    *,
    now: datetime,
    decision: Decision | None = None,
    decided_by: str | None = None,
) -> Approval:
    """The approval in its final state."""
    return approval.model_copy(
        update={"status": status, "decision": decision, "decided_by": decided_by, "decided_at": now}
    )


@dataclass
class PendingRequest:
    """Where the app-server's request for one approval lives (it moves when replayed)."""

    connection: int
    request_id: int | str


def new_approval(
    approval_id: str,
    *,
    kind: ApprovalKind,
    params: dict[str, Any],
    item: dict[str, Any] | None,
    offered: list[Decision],
    now: datetime,
    timeout_sec: int,
) -> dict[str, Any]:
    """The fields of a fresh approval (texts not yet redacted) from the request's params.

    A file-change request carries no paths or diff (section 6.2): they come from the
    ``fileChange`` item it points at, which the agent cached from ``item/started``.
    """
    fields: dict[str, Any] = {
        "id": approval_id,
        "thread_id": str(params.get("threadId")),
        "turn_id": str(params.get("turnId") or "unknown")[:200],
        "item_id": str(params.get("itemId") or "unknown")[:200],
        "kind": kind,
        "reason": params.get("reason") if isinstance(params.get("reason"), str) else None,
        "available_decisions": offered,
        "status": "pending",
        "requested_at": now,
        "expires_at": now + timedelta(seconds=timeout_sec),
    }
    if kind == "command":
        fields["command"] = str(params.get("command") or "")
        fields["cwd"] = str(params.get("cwd") or "")
    else:
        fields["changes"] = list((item or {}).get("changes") or [])
    return fields


REQUEST_DIFF_BUDGET = 400_000  # characters of diff kept inside the request bytes


def request_bytes(approval: Approval, agent_id: str) -> bytes:
    """The exact question as bytes (``ApprovalRequest``, TRUST.md §4.8): a signed decision
    commits to ``H(bytes)``, so the relay can neither reword nor swap the question. Diffs
    beyond the budget are replaced by their hash (the phone says "diff truncated")."""
    changes = None
    if approval.changes is not None:
        budget = REQUEST_DIFF_BUDGET
        changes = []
        for change in approval.changes:
            entry = {"path": change.path, "kind": change.kind}
            if len(change.diff) <= budget:
                entry["diff"], budget = change.diff, budget - len(change.diff)
            else:
                entry["diffHash"] = digest(change.diff.encode("utf-8"))
            changes.append(entry)
    body = {
        "v": 1,
        "kind": "approval.req",
        "agent": agent_id,
        "thread": approval.thread_id,
        "turn": approval.turn_id,
        "requestId": approval.id,
        "type": approval.kind,
        "command": approval.command,
        "cwd": approval.cwd,
        "changes": changes,
        "reason": approval.reason,
        "decisions": list(approval.available_decisions),
        "expiresAt": int(approval.expires_at.timestamp()),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def with_request(approval: Approval, agent_id: str) -> Approval:
    """The approval carrying its exact request bytes (``request``, b64u)."""
    return approval.model_copy(update={"request": b64u(request_bytes(approval, agent_id))})
