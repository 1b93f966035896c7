"""Tasks: submit, list, read (with in-memory details), cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from codexrelay.protocol import ID_PATTERN, UUID_PATTERN, TaskKind
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.config import MAX_PROMPT_BYTES_LIMIT
from codexrelay.relay.tasks import flow, lifecycle
from codexrelay.relay.trust.membership import refuse_unsigned
from codexrelay.relay.views import TaskDetailOut, TaskOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}/tasks", tags=["tasks"])


class TaskBody(CamelModel):
    agent_id: Annotated[str, Field(min_length=1, max_length=64)]
    type: TaskKind
    # The published maxLength is the relay's maxPromptBytes (see publish_limits); the prompt
    # is refused with 413 above that many UTF-8 bytes. This bound is only a backstop.
    prompt: Annotated[str, Field(max_length=MAX_PROMPT_BYTES_LIMIT)] | None = None
    cwd: Annotated[str, Field(max_length=lifecycle.MAX_CWD_CHARS)] | None = None
    write_access: bool = False
    # API.md: a resumeSessionId that is not a canonical UUID is 400 invalid-request, so the
    # schema states the pattern and the relay enforces it (with 400, not pydantic's 422).
    resume_session_id: (
        Annotated[str, Field(json_schema_extra={"pattern": UUID_PATTERN, "maxLength": 36})] | None
    ) = None
    action_id: Annotated[str, Field(max_length=64)] | None = None
    log_source_id: Annotated[str, Field(max_length=64)] | None = None
    # Wait this many seconds for an offline agent instead of a 409 agent-offline.
    queue_ttl_sec: (
        Annotated[int, Field(ge=lifecycle.QUEUE_TTL_MIN_SEC, le=lifecycle.QUEUE_TTL_MAX_SEC)] | None
    ) = None


def publish_limits(schema: dict[str, Any], max_prompt_bytes: int) -> None:
    """Make the published schema say the prompt cap this relay enforces: at most that many
    characters, and (``x-max-utf8-bytes``) that many bytes of UTF-8."""
    prompt = schema["components"]["schemas"]["TaskBody"]["properties"]["prompt"]
    for option in prompt.get("anyOf", [prompt]):
        if option.get("type") == "string":
            option["maxLength"] = max_prompt_bytes
            option["x-max-utf8-bytes"] = max_prompt_bytes


class TaskEnvelope(CamelModel):
    task: TaskOut


class TaskDetailEnvelope(CamelModel):
    task: TaskDetailOut


class TasksOut(CamelModel):
    tasks: list[TaskOut]
    # The id to pass as ``before`` for the next (older) page; null on the last page.
    next_before: str | None = None


# Tasks per page when the phone names no limit: more than maxTasksPerWorkspace's default,
# so a relay that keeps its default sees every task at once, as before pages existed.
DEFAULT_PAGE = 1000


@router.post("", status_code=201, response_model=TaskEnvelope)
async def submit_task(
    body: TaskBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> TaskEnvelope:
    """Member+ submit; write mode needs admin+ and both sides' flags (R09, R17)."""
    refuse_unsigned(services.store, access.workspace.id, "tasks")
    request = lifecycle.TaskRequest(**body.model_dump())
    task = await flow.submit(services, access, request, actor=audit.actor)
    return TaskEnvelope(task=TaskOut.of(task))


@router.get("", response_model=TasksOut)
async def list_tasks(
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    limit: Annotated[int | None, Query(ge=1, le=DEFAULT_PAGE)] = None,
    before: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=64)] = None,
) -> TasksOut:
    """Task metadata of this workspace, newest first, a page at a time: ``limit`` tasks
    (default 1000) older than the task ``before`` names; ``nextBefore`` continues."""
    tasks = services.store.tasks
    page = limit or DEFAULT_PAGE
    cursor = lifecycle.get_task(tasks, access.workspace.id, before) if before else None
    found = tasks.of_workspace(access.workspace.id, limit=page + 1, before=cursor)
    more = len(found) > page
    found = found[:page]
    return TasksOut(
        tasks=[TaskOut.of(t) for t in found], next_before=found[-1].id if more else None
    )


@router.get("/{task_id}", response_model=TaskDetailEnvelope)
async def get_task(
    task_id: str, access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> TaskDetailEnvelope:
    """Metadata plus the texts while the relay still holds them (R10, R11)."""
    task = lifecycle.get_task(services.store.tasks, access.workspace.id, task_id)
    details = services.details.get(task.id, services.now())
    if details is None:
        return TaskDetailEnvelope(task=TaskDetailOut.of(task, details_expired=True))
    return TaskDetailEnvelope(
        task=TaskDetailOut.of(task, details_expired=False, **details.fields())
    )


@router.post("/{task_id}/cancel", response_model=TaskEnvelope)
async def cancel_task(
    task_id: str,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> TaskEnvelope:
    """The creator or an admin+ cancels; the agent stops the process group."""
    task = lifecycle.get_task(services.store.tasks, access.workspace.id, task_id)
    refuse_unsigned(services.store, access.workspace.id, "cancelling")
    await flow.cancel(services, access, task, actor=audit.actor)
    return TaskEnvelope(task=TaskOut.of(task))
