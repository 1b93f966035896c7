"""Task records for the audit trail: metadata only, never prompt or output text (B2, R10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from codexrelay.relay.audit.actors import RELAY, Actor
from codexrelay.relay.audit.log import Scalar
from codexrelay.relay.storage.records import TaskRecord

if TYPE_CHECKING:
    from codexrelay.relay.services import Services


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


async def task_created(services: Services, task: TaskRecord, actor: Actor) -> None:
    """A task was accepted for dispatch; durable before the submitter is answered."""
    await services.audit.record(
        "task.created",
        now=services.now(),
        workspace=task.workspace_id,
        actor=actor,
        target=task_target(task),
    )


async def task_cancel_requested(services: Services, task: TaskRecord, actor: Actor) -> None:
    """Someone asked to stop a task."""
    await services.audit.record(
        "task.cancel-requested",
        now=services.now(),
        workspace=task.workspace_id,
        actor=actor,
        target=task_target(task),
    )


def task_finished(services: Services, task: TaskRecord, actor: Actor = RELAY) -> None:
    """A task reached a terminal status (reported by its agent, or settled by the relay)."""
    target = task_target(task)
    target["reason"] = task.reason
    target["exitCode"] = task.exit_code
    services.audit.append(
        "task.finished",
        now=services.now(),
        workspace=task.workspace_id,
        actor=actor,
        target=target,
    )
