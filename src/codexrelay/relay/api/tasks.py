"""Tasks: submit, list, read (with in-memory details), cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field

from codexrelay.protocol import TaskKind
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.audit.context import AuditDep
from codexrelay.relay.storage.records import TaskStatus
from codexrelay.relay.tasks import flow, lifecycle
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}/tasks", tags=["tasks"])


class TaskBody(CamelModel):
    agent_id: Annotated[str, Field(min_length=1, max_length=64)]
    type: TaskKind
    # The prompt cap (maxPromptBytes) is checked with a clear 413; this bound is a backstop.
    prompt: Annotated[str, Field(max_length=1 << 20)] | None = None
    cwd: Annotated[str, Field(max_length=4096)] | None = None
    write_access: bool = False
    resume_session_id: Annotated[str, Field(max_length=64)] | None = None
    action_id: Annotated[str, Field(max_length=64)] | None = None
    log_source_id: Annotated[str, Field(max_length=64)] | None = None


class TaskOut(CamelModel):
    id: str
    workspace_id: str
    agent_id: str
    type: TaskKind
    status: TaskStatus
    created_by: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    write_access: bool
    resume_session_id: str | None
    action_id: str | None
    log_source_id: str | None
    cwd: str | None
    exit_code: int | None
    codex_session_id: str | None
    reason: str | None
    redactions: int
    cancel_requested: bool


class ProgressOut(CamelModel):
    seq: int
    kind: Literal["message", "reasoning", "command", "file_change", "web_search", "error", "output"]
    text: str = ""
    command: str | None = None
    exit_code: int | None = None
    status: str | None = None
    changes: list[dict[str, str]] = Field(default_factory=list)


class TaskDetailOut(TaskOut):
    prompt: str | None = None
    output_tail: str | None = None
    final_message: str | None = None
    diff_text: str | None = None
    diff_truncated: bool = False
    error: str | None = None
    progress: list[ProgressOut] = Field(default_factory=list)
    details_expired: bool


class TaskEnvelope(CamelModel):
    task: TaskOut


class TaskDetailEnvelope(CamelModel):
    task: TaskDetailOut


class TasksOut(CamelModel):
    tasks: list[TaskOut]


def _out(task: Any) -> TaskOut:
    return TaskOut.model_validate(flow.task_view(task))


@router.post("", status_code=201, response_model=TaskEnvelope)
async def submit_task(
    body: TaskBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> TaskEnvelope:
    """Member+ submit; write mode needs admin+ and both sides' flags (R09, R17)."""
    request = lifecycle.TaskRequest(**body.model_dump())
    task = await flow.submit(services, access, request, actor=audit.actor)
    return TaskEnvelope(task=_out(task))


@router.get("", response_model=TasksOut)
async def list_tasks(access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep) -> TasksOut:
    """Task metadata of this workspace, newest first."""
    found = lifecycle.workspace_tasks(services.state, access.workspace.id)
    return TasksOut(tasks=[_out(t) for t in found])


@router.get("/{task_id}", response_model=TaskDetailEnvelope)
async def get_task(
    task_id: str, access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> TaskDetailEnvelope:
    """Metadata plus the texts while the relay still holds them (R10, R11)."""
    task = lifecycle.get_task(services.state, access.workspace.id, task_id)
    details = services.details.get(task.id, services.now())
    data: dict[str, Any] = flow.task_view(task)
    if details is None:
        data["detailsExpired"] = True
    else:
        data.update(details.view())
        data["detailsExpired"] = False
    return TaskDetailEnvelope(task=TaskDetailOut.model_validate(data))


@router.post("/{task_id}/cancel", response_model=TaskEnvelope)
async def cancel_task(
    task_id: str,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> TaskEnvelope:
    """The creator or an admin+ cancels; the agent stops the process group."""
    task = lifecycle.get_task(services.state, access.workspace.id, task_id)
    await flow.cancel(services, access, task, actor=audit.actor)
    return TaskEnvelope(task=_out(task))
