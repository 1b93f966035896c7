"""Live conversations (API.md "Conversations"): threads, turns, steering, interrupts,
taking over terminal threads, approvals, and the models an agent's Codex offers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from codexrelay.e2e.log import LogView
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import SignedDecision, SignedStop, SignedTurn
from codexrelay.protocol_threads import Decision
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import Member, ServicesDep, Viewer
from codexrelay.relay.config import MAX_PROMPT_BYTES_LIMIT
from codexrelay.relay.conversations import flow, sync
from codexrelay.relay.conversations.threads import (
    approval_out,
    approval_request,
    find_thread,
    thread_approvals,
    thread_out,
)
from codexrelay.relay.services import Services
from codexrelay.relay.tasks.lifecycle import MAX_CWD_CHARS, check_cwd
from codexrelay.relay.trust import convsigned, membership
from codexrelay.relay.trust.membership import refuse_unsigned
from codexrelay.relay.views import ApprovalOut, ThreadOut, TurnOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["conversations"])

# A photo as a data URL; its size is checked against the request frame (413, not 422).
ImageUrl = Annotated[str, Field(pattern=r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+$")]
Images = Annotated[list[ImageUrl], Field(max_length=4)]
# The published maxLength of a prompt is this relay's maxPromptBytes (publish_limits).
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_BYTES_LIMIT)]
PROMPT_MODELS = ("ThreadBody", "TurnBody", "SteerBody")


class ThreadBody(CamelModel):
    agent_id: Annotated[str, Field(min_length=1, max_length=64)]
    prompt: Prompt
    cwd: Annotated[str, Field(max_length=MAX_CWD_CHARS)] | None = None
    write_access: bool = False
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    effort: Annotated[str, Field(pattern=r"^[a-z]{1,20}$")] | None = None
    images: Images | None = None
    signed: SignedTurn | None = None  # required in a protected workspace (TRUST.md §4.13)


class TurnBody(CamelModel):
    prompt: Prompt
    images: Images | None = None
    signed: SignedTurn | None = None


class SteerBody(CamelModel):
    prompt: Prompt
    signed: SignedTurn | None = None


class InterruptBody(CamelModel):
    signed: SignedStop | None = None


class ResumeBody(CamelModel):
    agent_id: Annotated[str, Field(min_length=1, max_length=64)]
    write_access: bool = False


class DecisionBody(CamelModel):
    decision: Decision
    signed: SignedDecision | None = None


class ThreadEnvelope(CamelModel):
    thread: ThreadOut


class StartedOut(CamelModel):
    thread: ThreadOut
    turn: TurnOut


class TurnEnvelope(CamelModel):
    turn: TurnOut


class ApprovalEnvelope(CamelModel):
    approval: ApprovalOut


class ThreadsOut(CamelModel):
    threads: list[ThreadOut]


class ThreadDetailOut(CamelModel):
    """The thread, its items changed after ``after`` (oldest change first), its newest
    approvals, and ``seq``: apply live ``item`` events above it (docs/API-ADDITIONS.md)."""

    thread: ThreadOut
    items: list[dict[str, Any]]
    approvals: list[ApprovalOut]
    seq: int


class ModelOut(CamelModel):
    id: str
    display_name: str
    description: str
    is_default: bool
    default_effort: str | None
    efforts: list[str]
    images: bool


class ModelsOut(CamelModel):
    models: list[ModelOut]


def publish_limits(schema: dict[str, Any], max_prompt_bytes: int) -> None:
    """The published prompt caps are this relay's maxPromptBytes (as for tasks)."""
    for name in PROMPT_MODELS:
        prompt = schema["components"]["schemas"][name]["properties"]["prompt"]
        prompt["maxLength"] = max_prompt_bytes
        prompt["x-max-utf8-bytes"] = max_prompt_bytes


def _now(services: Services) -> int:
    return int(services.now().timestamp())


def _view(services: Services, wid: str, signed: object, what: str) -> LogView | None:
    """The log view of a protected workspace (which takes only signed requests), or None:
    an unprotected workspace ignores ``signed`` and works as it always did."""
    view = membership.current_view(services.store, services.trust, wid)
    if view is not None and signed is None:
        refuse_unsigned(services.store, wid, what)
    return view


def _refuse_plain(services: Services, wid: str) -> None:
    """Where the log's policy seals content, input goes sealed (docs/API-ADDITIONS.md):
    the relay never carries a prompt or a decision in the clear (a downgrade)."""
    view = membership.current_view(services.store, services.trust, wid)
    if view is not None and view.policy.content == "sealed":
        raise AppError(ErrorCode.E2E_REQUIRED, "This workspace's conversations must be sealed.")


def _check_turn(
    services: Services,
    access: WorkspaceAccess,
    signed: SignedTurn | None,
    plain: convsigned.Plain,
    what: str,
) -> None:
    view = _view(services, access.workspace.id, signed, what)
    if view is not None and signed is not None:
        now = _now(services)
        convsigned.check_turn(
            view, access.workspace.id, signed, plain, caller=access.user_id, now=now
        )


def _input(services: Services, prompt: str, images: list[str] | None = None) -> flow.Input:
    given = flow.Input(prompt=prompt, images=images)
    flow.check_input(services, given)
    return given


@router.get("/threads", response_model=ThreadsOut)
async def list_threads(
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    agent_id: Annotated[str | None, Query(alias="agentId")] = None,
) -> ThreadsOut:
    """The workspace's threads (of one agent), most recently active first."""
    if agent_id is not None:
        agent = pairing.find_agent(services.store, access.workspace.id, agent_id)
        if agent is not None:
            await sync.refresh_list(services, agent)
    threads = services.store.threads.of_workspace(access.workspace.id)
    shown = [t for t in threads if agent_id is None or t.agent_id == agent_id]
    return ThreadsOut(threads=[thread_out(services, t) for t in shown])


@router.post("/threads", status_code=201, response_model=StartedOut)
async def start_thread(
    body: ThreadBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> StartedOut:
    """Member+ start a read-only thread; write mode as for tasks (R09, R17)."""
    _refuse_plain(services, access.workspace.id)
    plain = convsigned.Plain(
        body.agent_id,
        "new",
        None,
        body.prompt,
        body.images,
        body.cwd,
        body.model,
        body.effort,
        body.write_access,
    )
    _check_turn(services, access, body.signed, plain, "starting a conversation")
    if body.signed is not None and check_cwd(body.cwd) != body.cwd:
        raise AppError(ErrorCode.INVALID_CWD, "Sign the folder in its plain form.")
    request = flow.StartRequest(
        agent_id=body.agent_id,
        input=_input(services, body.prompt, body.images),
        cwd=body.cwd,
        write_access=body.write_access,
        model=body.model,
        effort=body.effort,
        signed=body.signed,
    )
    thread, turn = await flow.start(services, access, request, actor=audit.actor)
    return StartedOut(thread=thread_out(services, thread), turn=TurnOut.of(turn))


@router.get("/threads/{thread_id}", response_model=ThreadDetailOut)
async def get_thread(
    thread_id: str,
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    after: Annotated[int, Query(ge=0)] = 0,
) -> ThreadDetailOut:
    """A late reader's snapshot: read from the agent unless the relay holds all of it."""
    thread = find_thread(services.store, access.workspace.id, thread_id)
    content = await sync.ensure_synced(services, thread)
    return ThreadDetailOut(
        thread=thread_out(services, thread),
        items=content.page(after),
        approvals=thread_approvals(services, thread),
        seq=content.seq,
    )


@router.post("/threads/{thread_id}/resume", response_model=ThreadEnvelope)
async def resume_thread(
    thread_id: str,
    body: ResumeBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> ThreadEnvelope:
    """Take over a terminal or exec thread the agent lists."""
    thread = await flow.resume(
        services,
        access,
        body.agent_id,
        thread_id,
        write_access=body.write_access,
        actor=audit.actor,
    )
    return ThreadEnvelope(thread=thread_out(services, thread))


@router.post("/threads/{thread_id}/turns", status_code=201, response_model=TurnEnvelope)
async def send_turn(
    thread_id: str,
    body: TurnBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
) -> TurnEnvelope:
    """A follow-up turn; 409 ``turn-running`` while one runs."""
    _refuse_plain(services, access.workspace.id)
    given = _input(services, body.prompt, body.images)
    thread = find_thread(services.store, access.workspace.id, thread_id)
    plain = convsigned.Plain(thread.agent_id, "start", thread.id, body.prompt, body.images)
    _check_turn(services, access, body.signed, plain, "a turn")
    turn = await flow.send_turn(services, access, thread, given, signed=body.signed)
    return TurnEnvelope(turn=TurnOut.of(turn))


@router.post("/threads/{thread_id}/steer", response_model=TurnEnvelope)
async def steer_turn(
    thread_id: str,
    body: SteerBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
) -> TurnEnvelope:
    """More input for the running turn; 409 ``no-running-turn`` without one."""
    _refuse_plain(services, access.workspace.id)
    given = _input(services, body.prompt)
    thread = find_thread(services.store, access.workspace.id, thread_id)
    plain = convsigned.Plain(thread.agent_id, "steer", thread.id, body.prompt)
    _check_turn(services, access, body.signed, plain, "steering")
    turn = await flow.steer(services, access, thread, given, signed=body.signed)
    return TurnEnvelope(turn=TurnOut.of(turn))


@router.post("/threads/{thread_id}/interrupt", response_model=TurnEnvelope)
async def interrupt_turn(
    thread_id: str,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
    body: InterruptBody | None = None,
) -> TurnEnvelope:
    """The turn's starter or an admin stops it; pending approvals never run. In a protected
    workspace the phone's device signs it (TRUST.md §4.13)."""
    thread = find_thread(services.store, access.workspace.id, thread_id)
    signed = None if body is None else body.signed
    view = _view(services, access.workspace.id, signed, "an interrupt")
    if view is not None and signed is not None:
        user = convsigned.check_interrupt(
            view,
            access.workspace.id,
            signed,
            agent_id=thread.agent_id,
            thread_id=thread.id,
            now=_now(services),
        )
        if user != access.user_id:
            raise AppError(ErrorCode.FORBIDDEN, "Interrupt with one of your own devices.")
    turn = await flow.interrupt(services, access, thread, actor=audit.actor, signed=signed)
    return TurnEnvelope(turn=TurnOut.of(turn))


@router.post("/threads/{thread_id}/approvals/{approval_id}", response_model=ApprovalEnvelope)
async def answer_approval(
    thread_id: str,
    approval_id: str,
    body: DecisionBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
    audit: AuditDep,
) -> ApprovalEnvelope:
    """The first valid answer wins: 409 ``approval-resolved`` after it, 422
    ``decision-not-offered`` for an answer the approval does not offer."""
    _refuse_plain(services, access.workspace.id)
    thread = find_thread(services.store, access.workspace.id, thread_id)
    view = _view(services, access.workspace.id, body.signed, "an approval answer")
    if view is not None and body.signed is not None:
        convsigned.check_decision(
            view,
            access.workspace.id,
            body.signed,
            agent_id=thread.agent_id,
            thread_id=thread.id,
            approval_id=approval_id,
            decision=body.decision,
            request=approval_request(services, thread, approval_id),
            caller=access.user_id,
            now=_now(services),
        )
    approval = await flow.decide(
        services, access, thread, approval_id, body.decision, audit.actor, signed=body.signed
    )
    return ApprovalEnvelope(approval=approval_out(services, approval))


@router.get("/agents/{agent_id}/models", response_model=ModelsOut)
async def list_models(
    agent_id: str, access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> ModelsOut:
    """The models and reasoning efforts the agent's Codex offers (empty while offline)."""
    agent = pairing.find_agent(services.store, access.workspace.id, agent_id)
    if agent is None or not agent.features.get("conversations"):
        return ModelsOut(models=[])
    models = await sync.models(services, agent)
    return ModelsOut(models=[ModelOut.model_validate(m.model_dump()) for m in models])
