"""Sealed conversations of protected workspaces whose policy says ``content: sealed``
(TRUST.md §4.7, §4.8, §4.13): start a thread, send a turn or a steer, answer an approval,
all as envelopes the relay cannot open; read a thread's sealed stream; ask the agent to wrap
a thread's key to a device again.

The relay records ids, states and counters (a thread's folder and preview stay empty) and
keeps the envelopes in memory only, like task envelopes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from codexrelay.e2e.envelope import Header
from codexrelay.e2e.log import LogView
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol_sealed import MAX_ENVELOPE_CHARS, KeyRequest
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.conversations import ApprovalEnvelope, StartedOut, TurnEnvelope
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.api.sealedtasks import (
    EnvelopeOut,
    ForwardedOut,
    KeyRequestBody,
    check_key_request,
    protected_view,
)
from codexrelay.relay.conversations import sealedflow
from codexrelay.relay.conversations.threads import approval_out, find_thread, thread_out
from codexrelay.relay.services import Services
from codexrelay.relay.trust import sealing
from codexrelay.relay.views import TurnOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["conversations"])
Envelope = Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]


class SealedThreadBody(CamelModel):
    """The agent, the visible write mode (the relay's first filter; the agent checks it
    equals the signed one) and the phone's ``task.submit`` envelope."""

    agent_id: Annotated[str, Field(min_length=1, max_length=64)]
    write_access: bool = False
    envelope: Envelope


class SealedTurnBody(CamelModel):
    mode: Literal["start", "steer"]
    write_access: bool = False
    envelope: Envelope


class SealedDecisionBody(CamelModel):
    envelope: Envelope


class ThreadEnvelopesOut(CamelModel):
    """The agent's envelopes for the thread after ``after``; ``expired`` when the relay let
    earlier ones go (memory only)."""

    envelopes: list[EnvelopeOut]
    expired: bool


def sealed_view(services: Services, wid: str) -> LogView:
    """The log view of a workspace whose content is sealed (409 otherwise)."""
    view = protected_view(services, wid)
    if view.policy.content != "sealed":
        raise AppError(ErrorCode.NOT_PROTECTED, "This workspace's content is not sealed.")
    return view


def _checked(
    services: Services, access: WorkspaceAccess, agent_id: str, envelope: str, *, kind: str
) -> Header:
    view = sealed_view(services, access.workspace.id)
    return sealing.submission(
        view,
        workspace_id=access.workspace.id,
        agent_id=agent_id,
        user_id=access.user_id,
        envelope=envelope,
        kind="task.submit" if kind == "turn" else "approval.decision",
    )


@router.post("/sealed-threads", status_code=201, response_model=StartedOut)
async def start_sealed(
    body: SealedThreadBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> StartedOut:
    """A sealed thread start: the prompt, folder and model travel inside the envelope."""
    _checked(services, access, body.agent_id, body.envelope, kind="turn")
    view = sealed_view(services, access.workspace.id)
    if not sealing.role_allows(view, access.user_id, "codex_exec", write_access=body.write_access):
        raise AppError(ErrorCode.FORBIDDEN, "The workspace policy refuses this conversation.")
    thread, turn = await sealedflow.start(
        services,
        access,
        agent_id=body.agent_id,
        write_access=body.write_access,
        envelope=body.envelope,
        actor=audit.actor,
    )
    return StartedOut(thread=thread_out(services, thread), turn=TurnOut.of(turn))


@router.post("/threads/{thread_id}/sealed-turns", status_code=201, response_model=TurnEnvelope)
async def sealed_turn(
    thread_id: str,
    body: SealedTurnBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
) -> TurnEnvelope:
    """A sealed follow-up turn (``mode: start``) or steer; 409 as for plain ones."""
    thread = find_thread(services.store, access.workspace.id, thread_id)
    _checked(services, access, thread.agent_id, body.envelope, kind="turn")
    turn = await sealedflow.turn(
        services,
        access,
        thread,
        mode=body.mode,
        write_access=body.write_access,
        envelope=body.envelope,
    )
    return TurnEnvelope(turn=TurnOut.of(turn))


@router.post("/threads/{thread_id}/approvals/{approval_id}/sealed", response_model=ApprovalEnvelope)
async def sealed_decision(
    thread_id: str,
    approval_id: str,
    body: SealedDecisionBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> ApprovalEnvelope:
    """A sealed approval answer (the decision and its signature inside)."""
    thread = find_thread(services.store, access.workspace.id, thread_id)
    header = _checked(services, access, thread.agent_id, body.envelope, kind="decision")
    if header.task != approval_id:
        raise AppError(ErrorCode.INVALID_REQUEST, "The envelope answers another approval.")
    approval = await sealedflow.decide(
        services, access, thread, approval_id, body.envelope, audit.actor
    )
    return ApprovalEnvelope(approval=approval_out(services, approval))


@router.get("/threads/{thread_id}/envelopes", response_model=ThreadEnvelopesOut)
async def thread_envelopes(
    thread_id: str,
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    after: Annotated[int, Query(ge=-1)] = -1,
) -> ThreadEnvelopesOut:
    """What a reader device opens: the agent's stream for the thread, from ``after``."""
    thread = find_thread(services.store, access.workspace.id, thread_id)
    found, expired = services.conversations.envelopes.after(thread.key, after)
    return ThreadEnvelopesOut(
        envelopes=[EnvelopeOut(index=i, envelope=e) for i, e in found], expired=expired
    )


@router.post("/threads/{thread_id}/key-requests", status_code=202, response_model=ForwardedOut)
async def thread_key_request(
    thread_id: str,
    body: KeyRequestBody,
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
) -> ForwardedOut:
    """A device certified after the thread began asks the agent for its key; the agent
    answers with a ``key.wrap`` envelope in the thread's stream, or not at all."""
    wid = access.workspace.id
    view = protected_view(services, wid)
    thread = find_thread(services.store, wid, thread_id)
    now = int(services.now().timestamp())
    check_key_request(view, body, access.user_id, thread.id, now=now)
    live = services.hub.get(thread.agent_key)
    if live is None or not await live.send(KeyRequest(stmt=body.stmt, sig=body.sig)):
        raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
    return ForwardedOut(forwarded=True)
