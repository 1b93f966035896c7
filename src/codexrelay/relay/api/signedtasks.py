"""Signed tasks of protected workspaces (TRUST.md §4.5, §4.9, §4.13): submit, wait for a
second approver, approve, cancel with a device signature.

The relay checks each request against the log it holds (``codexrelay.relay.trust.signed``)
and forwards the signed bytes unchanged; the agent decides.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field

from codexrelay.e2e.log import LogView
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import SignedStop
from codexrelay.relay.access import policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditContext, AuditDep
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.services import Services
from codexrelay.relay.tasks import flow, lifecycle
from codexrelay.relay.trust import membership, signed
from codexrelay.relay.trust.state import PendingTask
from codexrelay.relay.views import TaskOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["trust"])

Signature = dict[str, Any]


class SignedTaskBody(CamelModel):
    """``stmt`` and ``body`` are ``b64u`` of the exact bytes the phone signed and hashed."""

    stmt: Annotated[str, Field(min_length=1, max_length=11_000)]
    body: Annotated[str, Field(min_length=1, max_length=352_000)]
    auth: Annotated[list[Signature], Field(min_length=1, max_length=1)]


class ApproveBody(CamelModel):
    auth: Signature


class SignedCancelBody(CamelModel):
    stmt: Annotated[str, Field(min_length=1, max_length=2_000)]
    sig: Annotated[str, Field(min_length=1, max_length=200)]


class PendingTaskOut(CamelModel):
    """A signed task waiting for more approvers: what the next approver checks and signs."""

    id: str
    workspace_id: str
    agent_id: str
    created_by: str
    stmt: str
    body: str
    signers: list[str]
    missing: int
    created_at: datetime
    expires_at: datetime


class SubmitOut(CamelModel):
    task: TaskOut | None = None
    pending_task: PendingTaskOut | None = None


class PendingTasksOut(CamelModel):
    pending_tasks: list[PendingTaskOut]


class TaskEnvelope(CamelModel):
    task: TaskOut


def pending_out(item: PendingTask) -> PendingTaskOut:
    """The view of a pending task (the statement and body the approver must sign)."""
    return PendingTaskOut(
        id=item.task_id,
        workspace_id=item.workspace_id,
        agent_id=item.agent_id,
        created_by=item.created_by,
        stmt=item.signed.stmt,
        body=item.signed.body,
        signers=item.signers,
        missing=item.missing,
        created_at=item.created_at,
        expires_at=item.expires_at,
    )


def _view(services: Services, workspace_id: str) -> LogView:
    view = membership.current_view(services.store, services.trust, workspace_id)
    if view is None:
        raise AppError(ErrorCode.NOT_PROTECTED, "This workspace is not protected.")
    return view


def _now(services: Services) -> int:
    return int(services.now().timestamp())


def _publish(services: Services, item: PendingTask, state: str) -> None:
    payload = {"pendingTask": pending_out(item).model_dump(mode="json", by_alias=True)}
    services.events.publish(item.workspace_id, "pending-task", {**payload, "state": state})


async def _run(
    services: Services, access: WorkspaceAccess, checked: signed.Checked, audit: AuditContext
) -> TaskOut:
    task = await flow.submit(services, access, checked.task_request(), actor=audit.actor)
    return TaskOut.of(task)


@router.post("/signed-tasks", status_code=201, response_model=SubmitOut)
async def submit_signed(
    body: SignedTaskBody,
    response: Response,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> SubmitOut:
    """201 with the task, or 202 with a pending task that needs more approvers."""
    wid = access.workspace.id
    view = _view(services, wid)
    if view.policy.content == "sealed":
        raise AppError(ErrorCode.E2E_REQUIRED, "This workspace's tasks must be sealed.")
    checked = signed.parse_task(view, wid, body.stmt, body.body, _now(services))
    task_id = checked.statement.task
    if services.store.tasks.get(task_id) is not None or task_id in services.trust.pending:
        raise AppError(ErrorCode.CONFLICT, "A task with this id was submitted before.")
    checked = signed.check_signatures(
        view, checked, body.auth, caller_id=access.user_id, now=_now(services)
    )
    if checked.verdict.allowed:
        return SubmitOut(task=await _run(services, access, checked, audit))
    item = PendingTask(
        task_id=task_id,
        workspace_id=wid,
        agent_id=checked.statement.agent,
        created_by=access.user_id,
        signed=checked.request,
        signers=checked.signers,
        missing=checked.verdict.missing,
        created_at=services.now(),
        expires_at=signed.expires(checked),
    )
    services.trust.pending[task_id] = item
    await audit.record("task.approval-requested", workspace=wid, taskId=task_id)
    _publish(services, item, "waiting")
    response.status_code = 202
    return SubmitOut(pending_task=pending_out(item))


@router.get("/signed-tasks/pending", response_model=PendingTasksOut)
async def list_pending(
    access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> PendingTasksOut:
    """Signed tasks of this workspace waiting for a second approver."""
    services.trust.sweep(services.now())
    found = [p for p in services.trust.pending.values() if p.workspace_id == access.workspace.id]
    return PendingTasksOut(pending_tasks=[pending_out(p) for p in found])


@router.post("/signed-tasks/{task_id}/approve", response_model=SubmitOut)
async def approve_pending(
    task_id: str,
    body: ApproveBody,
    response: Response,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> SubmitOut:
    """Add one approver's signature over the same statement; 201 once the policy is met."""
    services.trust.sweep(services.now())
    item = services.trust.pending.get(task_id)
    if item is None or item.workspace_id != access.workspace.id:
        raise AppError(ErrorCode.NOT_FOUND, "No such task waiting for approval.")
    view = _view(services, access.workspace.id)
    checked = signed.parse_task(
        view, access.workspace.id, item.signed.stmt, item.signed.body, _now(services)
    )
    auth = [*item.signed.auth, body.auth]
    checked = signed.check_signatures(
        view, checked, auth, caller_id=item.created_by, now=_now(services)
    )
    if checked.signers[-1] != access.user_id:
        raise AppError(ErrorCode.FORBIDDEN, "Approve with your own passkey.")
    if checked.signers[-1] in checked.signers[:-1]:
        raise AppError(ErrorCode.CONFLICT, "You approved this task already.")
    await audit.record("task.approved", workspace=access.workspace.id, taskId=task_id)
    item.signed, item.signers = checked.request, checked.signers
    item.missing = checked.verdict.missing
    if not checked.verdict.allowed:
        _publish(services, item, "waiting")
        return SubmitOut(pending_task=pending_out(item))
    creator = WorkspaceAccess(workspace=access.workspace, role=access.role, user_id=item.created_by)
    task = await _run(services, creator, checked, audit)  # on a refusal it stays pending
    del services.trust.pending[task_id]
    _publish(services, item, "approved")
    response.status_code = 201
    return SubmitOut(task=task)


@router.post("/tasks/{task_id}/signed-cancel", response_model=TaskEnvelope)
async def cancel_signed(
    task_id: str,
    body: SignedCancelBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> TaskEnvelope:
    """Cancel with a device-key signature; the agent checks it against its log."""
    view = _view(services, access.workspace.id)
    task = lifecycle.get_task(services.store.tasks, access.workspace.id, task_id)
    _, user_id = signed.check_cancel(
        view,
        body.stmt,
        body.sig,
        workspace_id=access.workspace.id,
        task_id=task_id,
        now=_now(services),
    )
    if user_id != access.user_id:
        raise AppError(ErrorCode.FORBIDDEN, "Cancel with one of your own devices.")
    policy.enforce(policy.can_cancel_task(access.role, is_creator=task.created_by == user_id))
    stop = SignedStop(stmt=body.stmt, sig=body.sig)
    await flow.cancel(services, access, task, actor=audit.actor, signed=stop)
    return TaskEnvelope(task=TaskOut.of(task))
