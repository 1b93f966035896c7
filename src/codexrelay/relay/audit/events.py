"""Task records for the audit trail: metadata only, never prompt or output text (B2, R10)."""

from __future__ import annotations

from datetime import datetime

from codexrelay.relay.audit.actors import RELAY, Actor
from codexrelay.relay.audit.log import Scalar
from codexrelay.relay.audit.trail import AuditTrail
from codexrelay.relay.storage.records import ApprovalRecord, TaskRecord, ThreadRecord


def task_target(task: TaskRecord) -> dict[str, Scalar]:
    """Ids, kind, flags and status; the prompt, cwd and every text stay out."""
    return {
        "taskId": task.id,
        "agentId": task.agent_id,
        "type": task.type,
        "actionId": task.action_id,
        "logSourceId": task.log_source_id,
        "writeAccess": task.write_access,
        "resume": task.resume_session_id is not None,
        "status": task.status,
    }


async def task_created(trail: AuditTrail, task: TaskRecord, actor: Actor, *, now: datetime) -> None:
    """A task was accepted for dispatch; durable before the submitter is answered."""
    await trail.record(
        "task.created",
        now=now,
        workspace=task.workspace_id,
        actor=actor,
        target=task_target(task),
    )


async def task_cancel_requested(
    trail: AuditTrail, task: TaskRecord, actor: Actor, *, now: datetime
) -> None:
    """Someone asked to stop a task."""
    await trail.record(
        "task.cancel-requested",
        now=now,
        workspace=task.workspace_id,
        actor=actor,
        target=task_target(task),
    )


def task_finished(
    trail: AuditTrail, task: TaskRecord, actor: Actor = RELAY, *, now: datetime
) -> None:
    """A task reached a terminal status (reported by its agent, or settled by the relay)."""
    target = task_target(task)
    target["reason"] = task.reason
    target["exitCode"] = task.exit_code
    trail.append(
        "task.finished",
        now=now,
        workspace=task.workspace_id,
        actor=actor,
        target=target,
    )


# ---- live conversations: who started, took over, stopped and answered (never content) ----


def thread_target(thread: ThreadRecord) -> dict[str, Scalar]:
    """Ids, source and write mode; the cwd, preview and every item stay out."""
    return {
        "threadId": thread.id,
        "agentId": thread.agent_id,
        "source": thread.source,
        "writeAccess": thread.write_access,
    }


async def thread_started(
    trail: AuditTrail, thread: ThreadRecord, actor: Actor, *, now: datetime
) -> None:
    """A phone started a thread."""
    await trail.record(
        "thread.started", now=now, workspace=thread.workspace_id, actor=actor,
        target=thread_target(thread),
    )  # fmt: skip


async def thread_taken_over(
    trail: AuditTrail, thread: ThreadRecord, actor: Actor, *, now: datetime
) -> None:
    """A phone took over a terminal or exec thread."""
    await trail.record(
        "thread.resumed", now=now, workspace=thread.workspace_id, actor=actor,
        target=thread_target(thread),
    )  # fmt: skip


async def turn_interrupted(
    trail: AuditTrail, thread: ThreadRecord, turn_id: str, actor: Actor, *, now: datetime
) -> None:
    """Someone stopped a running turn."""
    target = thread_target(thread) | {"turnId": turn_id}
    await trail.record(
        "thread.interrupted", now=now, workspace=thread.workspace_id, actor=actor, target=target
    )


async def approval_decided(
    trail: AuditTrail, approval: ApprovalRecord, decision: str, actor: Actor, *, now: datetime
) -> None:
    """Someone answered Codex's request to run a command or write files."""
    target: dict[str, Scalar] = {
        "threadId": approval.thread_id,
        "approvalId": approval.id,
        "kind": approval.kind,
        "decision": decision,
        "status": approval.status,
    }
    await trail.record(
        "approval.decided", now=now, workspace=approval.workspace_id, actor=actor, target=target
    )
