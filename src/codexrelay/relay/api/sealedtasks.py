"""Sealed tasks of protected workspaces (TRUST.md §4.5, §4.7): submit an envelope, read a
task's envelopes, ask the agent to wrap a task's key to a device again, read an agent's
sealed session catalog.

The relay stores only metadata (the task shows ``sealed: true`` with its content fields
null) and keeps envelopes in memory with the task's details; it forwards them unread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from codexrelay.e2e import keys
from codexrelay.e2e.log import LogView
from codexrelay.e2e.statements import KeyRequestStatement, StatementError, check_recent
from codexrelay.e2e.statements import parse_statement as parse_stmt
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import ID_PATTERN, TaskKind
from codexrelay.protocol_sealed import MAX_ENVELOPE_CHARS, KeyRequest, SealedTask
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.services import Services
from codexrelay.relay.tasks import flow, lifecycle
from codexrelay.relay.trust import membership, sealing
from codexrelay.relay.views import TaskOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["trust"])
KEY_REQUEST_MAX_AGE_SEC = 600


class SealedTaskBody(CamelModel):
    """The visible type and write mode (the relay's first filter; the agent checks they
    equal the signed ones) and the phone's ``task.submit`` envelope as JSON text."""

    agent_id: Annotated[str, Field(pattern=ID_PATTERN)]
    type: TaskKind
    write_access: bool = False
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]
    queue_ttl_sec: (
        Annotated[int, Field(ge=lifecycle.QUEUE_TTL_MIN_SEC, le=lifecycle.QUEUE_TTL_MAX_SEC)] | None
    ) = None


class SealedTaskOut(CamelModel):
    task: TaskOut


class EnvelopeOut(CamelModel):
    index: int
    envelope: str


class EnvelopesOut(CamelModel):
    """The phone's submission and the agent's envelopes after ``after``; ``expired`` once
    the relay no longer holds them (memory only, like every task text)."""

    submission: str | None
    envelopes: list[EnvelopeOut]
    expired: bool


class SealedCatalogOut(CamelModel):
    envelope: str | None


class KeyRequestBody(CamelModel):
    stmt: Annotated[str, Field(min_length=1, max_length=2_000)]
    sig: Annotated[str, Field(min_length=1, max_length=200)]


class ForwardedOut(CamelModel):
    forwarded: bool


def protected_view(services: Services, workspace_id: str) -> LogView:
    """The relay's verified view of a protected workspace's log (409 otherwise)."""
    view = membership.current_view(services.store, services.trust, workspace_id)
    if view is None:
        raise AppError(ErrorCode.NOT_PROTECTED, "This workspace is not protected.")
    return view


@router.post("/sealed-tasks", status_code=201, response_model=SealedTaskOut)
async def submit_sealed(
    body: SealedTaskBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> SealedTaskOut:
    """Record the task's metadata and send the envelope to the agent."""
    wid = access.workspace.id
    view = protected_view(services, wid)
    header = sealing.submission(
        view,
        workspace_id=wid,
        agent_id=body.agent_id,
        user_id=access.user_id,
        envelope=body.envelope,
    )
    if not sealing.role_allows(view, access.user_id, body.type, write_access=body.write_access):
        raise AppError(ErrorCode.FORBIDDEN, "The workspace policy refuses this task.")
    if services.store.tasks.get(header.task) is not None:
        raise AppError(ErrorCode.CONFLICT, "A task with this id was submitted before.")
    request = lifecycle.TaskRequest(
        agent_id=body.agent_id,
        type=body.type,
        write_access=body.write_access,
        task_id=header.task,
        sealed=SealedTask(envelope=body.envelope),
        role_checked=True,
        queue_ttl_sec=body.queue_ttl_sec,
    )
    task = await flow.submit(services, access, request, actor=audit.actor)
    return SealedTaskOut(task=TaskOut.of(task))


@router.get("/tasks/{task_id}/envelopes", response_model=EnvelopesOut)
async def list_envelopes(
    task_id: str,
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    after: Annotated[int, Query(ge=-1)] = -1,
) -> EnvelopesOut:
    """What a reader device opens: the submission and the agent's stream (from ``after``)."""
    task = lifecycle.get_task(services.store.tasks, access.workspace.id, task_id)
    if not task.sealed:
        raise AppError(ErrorCode.NOT_PROTECTED, "This task is not sealed.")
    details = services.details.get(task.id, services.now())
    if details is None:
        return EnvelopesOut(submission=None, envelopes=[], expired=True)
    found = [EnvelopeOut(index=i, envelope=e) for i, e in enumerate(details.envelopes) if i > after]
    submission = details.sealed.envelope if details.sealed is not None else None
    return EnvelopesOut(submission=submission, envelopes=found, expired=False)


@router.get("/agents/{agent_id}/sealed-catalog", response_model=SealedCatalogOut)
async def sealed_catalog(
    agent_id: str, access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> SealedCatalogOut:
    """The agent's latest sealed session catalog (memory only), for reader devices."""
    agent = pairing.find_agent(services.store, access.workspace.id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such agent.")
    return SealedCatalogOut(envelope=services.trust.catalogs.get(agent.key))


@router.post("/tasks/{task_id}/key-requests", status_code=202, response_model=ForwardedOut)
async def request_key(
    task_id: str,
    body: KeyRequestBody,
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
) -> ForwardedOut:
    """A device certified after the task asks the agent for its key (§4.7); the agent
    answers with a ``key.wrap`` envelope in the task's stream, or not at all."""
    wid = access.workspace.id
    view = protected_view(services, wid)
    task = lifecycle.get_task(services.store.tasks, wid, task_id)
    if not task.sealed:
        raise AppError(ErrorCode.NOT_PROTECTED, "This task is not sealed.")
    check_key_request(view, body, access.user_id, task_id, now=int(services.now().timestamp()))
    live = services.hub.get(task.agent_key)
    if live is None or not await live.send(KeyRequest(stmt=body.stmt, sig=body.sig)):
        raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
    return ForwardedOut(forwarded=True)


def check_key_request(
    view: LogView, body: KeyRequestBody, user_id: str, task_id: str, *, now: int
) -> None:
    try:
        signed = parse_stmt(body.stmt, KeyRequestStatement)
        check_recent(signed.value.issued_at, now=now, max_age=KEY_REQUEST_MAX_AGE_SEC)
        sig = b64u_decode(body.sig, max_bytes=64)
    except (StatementError, WireError) as exc:
        raise AppError(ErrorCode.INVALID_SIGNATURE, f"The key request is refused: {exc}.") from None
    stmt = signed.value
    if (stmt.ws, stmt.task) != (view.ws, task_id):
        raise AppError(ErrorCode.INVALID_SIGNATURE, "The key request names another task.")
    device = view.devices.get(stmt.device)
    if device is None or not device.active or device.user_id != user_id:
        raise AppError(ErrorCode.FORBIDDEN, "Ask with one of your own live devices.")
    verify_key = keys.load_verify_key(device.suite, device.sig_pub)
    if not keys.verify(verify_key, sig, tag("keyreq") + signed.raw):
        raise AppError(ErrorCode.INVALID_SIGNATURE, "The key request's signature does not verify.")
