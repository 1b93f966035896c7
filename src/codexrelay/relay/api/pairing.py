"""Pairing codes (phone), code claims and polls (agent), pair-request decisions (phone)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import CLOSE_REVOKED, ID_PATTERN
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.link import publish_agent
from codexrelay.relay.api.auditing import AuditContext, AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, Admin, ClientIpDep, ServicesDep
from codexrelay.relay.api.qr import qr_svg
from codexrelay.relay.api.trust import BearerAgent, after_append, append_entry
from codexrelay.relay.audit import agent_actor
from codexrelay.relay.push.notify import notify
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import PairRequestRecord, PairStatus
from codexrelay.relay.trust import membership, sudo
from codexrelay.relay.trust import pairing as trust_pairing
from codexrelay.relay.views import PairingOut, PairRequestOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["pairing"])


class CreatePairingBody(CamelModel):
    note: Annotated[str, Field(max_length=200)] = ""
    ttl_sec: Annotated[int, Field(ge=60, le=pairing.MAX_PAIRING_TTL_SEC)] | None = None


class CreatePairingOut(CamelModel):
    pairing: PairingOut
    code: str
    command: str
    qr_svg: str


class E2EClaim(CamelModel):
    """TRUST.md §4.2: ``b64u`` of the agent's key claim bytes and its HMAC under K_pair."""

    claim: Annotated[str, Field(min_length=1, max_length=11_000)]
    mac: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


class ClaimBody(CamelModel):
    code: Annotated[str, Field(min_length=1, max_length=32)]
    agent_id: Annotated[str, Field(pattern=ID_PATTERN)]
    label: Annotated[str, Field(min_length=1, max_length=120)]
    hostname: Annotated[str, Field(max_length=255)] = ""
    workspace_root_name: Annotated[str, Field(max_length=255)] = ""
    e2e: Annotated[E2EClaim | None, Field(alias="e2e")] = None


class PinBody(CamelModel):
    """A paired agent asks to pin its protected workspace (``codexrelay agent trust pin``)."""

    code: Annotated[str, Field(min_length=1, max_length=32)]
    e2e: Annotated[E2EClaim, Field(alias="e2e")]


class PairApproveBody(CamelModel):
    """In a protected workspace: the ``agent.add`` entry the approving phone signed, and
    the grant (``b64u`` bytes) with its MAC that pins the workspace at the agent."""

    log_entry: dict[str, Any] | None = None
    grant: Annotated[str, Field(min_length=1, max_length=11_000)] | None = None
    grant_mac: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")] | None = None


class ClaimOut(CamelModel):
    request_id: str
    poll_secret: str
    expires_at: datetime


class PollOut(CamelModel):
    status: PairStatus
    agent_token: str | None = None
    grant: str | None = None
    grant_mac: str | None = None


class PairRequestEnvelope(CamelModel):
    pair_request: PairRequestOut


class PairRequestsOut(CamelModel):
    pair_requests: list[PairRequestOut]


def _publish(services: Services, record: PairRequestRecord) -> None:
    services.events.publish(
        record.workspace_id,
        "pair-request",
        {"pairRequest": PairRequestOut.of(record).json_data()},
    )


def pair_command(code: str) -> str:
    """The exact command a person runs on the development server."""
    return f"codexrelay agent pair --pair-code {code}"


@router.post("/workspaces/{wid}/pairings", status_code=201, response_model=CreatePairingOut)
async def create_pairing(
    body: CreatePairingBody,
    access: Annotated[WorkspaceAccess, Admin],
    caller: ActiveCallerDep,
    services: ServicesDep,
    audit: AuditDep,
) -> CreatePairingOut:
    """An admin creates a one-time pairing code for this workspace (R06); in a protected
    workspace only in sudo mode (a passkey verification in the last five minutes)."""
    if not services.config.features.pairings:
        raise AppError(ErrorCode.FEATURE_DISABLED, "Pairing new agents is turned off.")
    sudo.require_in_protected(
        services.store, caller.session, access.workspace.id, services.now(), "pairing an agent"
    )
    record, code = pairing.create_pairing_code(
        services.store,
        workspace_id=access.workspace.id,
        created_by=access.user_id,
        note=body.note,
        ttl_sec=body.ttl_sec or services.config.pairing_code_ttl_sec,
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
    )
    await audit.record("pairing.created", workspace=access.workspace.id, pairingId=record.id)
    await services.store.commit()
    return CreatePairingOut(
        pairing=PairingOut.of(record),
        code=code,
        command=pair_command(code),
        qr_svg=qr_svg(pair_command(code)),
    )


@router.post("/agent/pair", status_code=202, response_model=ClaimOut)
async def claim_code(
    body: ClaimBody, services: ServicesDep, address: ClientIpDep, audit: AuditDep
) -> ClaimOut:
    """An agent claims a code; an admin must then approve the request (R06, R20)."""
    services.pair_limiter.hit(address)
    if not services.config.features.pairings:
        raise AppError(ErrorCode.FEATURE_DISABLED, "Pairing new agents is turned off.")
    e2e = None
    if body.e2e is not None:
        trust_pairing.check_claim(
            trust_pairing.read_claim(body.e2e.claim),
            agent_id=body.agent_id,
            label=body.label,
            hostname=body.hostname,
            workspace_root_name=body.workspace_root_name,
        )
        e2e = (body.e2e.claim, body.e2e.mac)
    request, poll_secret = pairing.claim_pairing_code(
        services.store,
        code=body.code,
        agent_id=body.agent_id,
        label=body.label,
        hostname=body.hostname,
        workspace_root_name=body.workspace_root_name,
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
        e2e=e2e,
    )
    await audit.record(
        "pairing.claimed",
        workspace=request.workspace_id,
        pairingId=request.pairing_id,
        requestId=request.id,
        agentId=request.agent_id,
    )
    await services.store.commit()
    _publish(services, request)
    notify(services, "pair-request", request.workspace_id, request.id)  # admins+ decide
    return ClaimOut(request_id=request.id, poll_secret=poll_secret, expires_at=request.expires_at)


@router.get("/agent/pair/{request_id}", response_model=PollOut, response_model_exclude_none=True)
async def poll_request(
    request_id: str, request: Request, services: ServicesDep, audit: AuditDep
) -> PollOut:
    """The agent waits for the decision; the token is handed over once, on approval."""
    scheme, _, poll_secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not poll_secret:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Send the poll secret as a Bearer token.")
    result = pairing.poll_pair_request(
        services.store,
        request_id=request_id,
        poll_secret=poll_secret.strip(),
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
        token_ttl_sec=services.config.agent_token_ttl_sec,
    )
    if result.agent is not None:
        actor, wid = agent_actor(result.agent), result.agent.workspace_id
        if result.replaced is not None:
            old = result.replaced
            target = {"agentKey": old.key, "agentId": old.agent_id, "reason": "replaced"}
            await audit.record("agent.revoked", workspace=wid, actor=actor, **target)
        await audit.record("agent.token-issued", workspace=wid, actor=actor, requestId=request_id)
        await services.store.commit()
        if result.replaced is not None:
            await services.hub.disconnect(result.replaced.key, CLOSE_REVOKED, "replaced")
            publish_agent(services, result.replaced)
        publish_agent(services, result.agent)
    return PollOut(
        status=result.status,
        agent_token=result.agent_token,
        grant=result.grant,
        grant_mac=result.grant_mac,
    )


@router.post("/agent/pin", status_code=202, response_model=ClaimOut)
async def claim_pin(
    agent: BearerAgent,
    body: PinBody,
    services: ServicesDep,
    address: ClientIpDep,
    audit: AuditDep,
) -> ClaimOut:
    """A paired agent (its token) claims a code to pin its protected workspace: a pair
    request of kind ``pin`` that an admin approves with an ``agent.add`` entry and a grant.
    The agent polls it like a pairing and gets the grant, never a new token."""
    services.pair_limiter.hit(address)
    claim = trust_pairing.read_claim(body.e2e.claim)
    trust_pairing.check_claim(
        claim,
        agent_id=agent.agent_id,
        label=claim.label,
        hostname=claim.hostname,
        workspace_root_name=claim.workspace_root_name,
    )
    pin, poll_secret = pairing.claim_pairing_code(
        services.store,
        code=body.code,
        agent_id=agent.agent_id,
        label=claim.label,
        hostname=claim.hostname,
        workspace_root_name=claim.workspace_root_name,
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
        e2e=(body.e2e.claim, body.e2e.mac),
        pin_for=agent,
    )
    wid = pin.workspace_id
    await audit.record(
        "pairing.pin-claimed", workspace=wid, requestId=pin.id, agentId=agent.agent_id
    )
    await services.store.commit()
    _publish(services, pin)
    return ClaimOut(request_id=pin.id, poll_secret=poll_secret, expires_at=pin.expires_at)


@router.get("/workspaces/{wid}/pair-requests", response_model=PairRequestsOut)
async def list_pair_requests(
    access: Annotated[WorkspaceAccess, Admin], services: ServicesDep
) -> PairRequestsOut:
    """Pair requests of this workspace only (R04). Listed once durable: with several
    instances the approval may reach another one, which must find the request."""
    pairing.expire_pair_requests(services.store, services.now())
    await services.store.commit()
    found = pairing.workspace_pair_requests(services.store, access.workspace.id)
    return PairRequestsOut(pair_requests=[PairRequestOut.of(r) for r in found])


async def _protect_approval(
    services: Services, access: WorkspaceAccess, request_id: str, body: PairApproveBody | None
) -> Any:
    """In a protected workspace an approval carries the signed ``agent.add`` and the MAC'd
    grant (TRUST.md §4.2 step 4): both are checked and stored before the decision."""
    wid = access.workspace.id
    given = body is not None and body.log_entry is not None
    if not membership.is_protected(services.store, wid):
        if given:
            raise AppError(ErrorCode.NOT_PROTECTED, "This workspace is not protected.")
        return None
    record = services.store.pair_requests.get(request_id)
    if record is None or record.workspace_id != wid:
        raise AppError(ErrorCode.NOT_FOUND, "No such pair request.")
    if body is None or body.log_entry is None or not body.grant or not body.grant_mac:
        raise AppError(
            ErrorCode.SIGNATURE_REQUIRED,
            "This workspace is protected: approve with a signed agent.add entry and a grant.",
        )
    if record.status != "pending":
        raise AppError(ErrorCode.CONFLICT, f"This pair request is already {record.status}.")
    trust_pairing.read_grant(body.grant, record)
    trust_pairing.check_agent_add(trust_pairing.peek_agent_add(body.log_entry), record)
    appended = await append_entry(services, access, access.user_id, body.log_entry)
    record.grant, record.grant_mac = body.grant, body.grant_mac
    services.store.pair_requests.save(record)
    return appended


async def _decide(
    services: Services,
    access: WorkspaceAccess,
    request_id: str,
    *,
    approve: bool,
    audit: AuditContext,
    body: PairApproveBody | None = None,
) -> PairRequestEnvelope:
    appended = await _protect_approval(services, access, request_id, body) if approve else None
    record = pairing.decide_pair_request(
        services.store,
        workspace_id=access.workspace.id,
        request_id=request_id,
        approve=approve,
        decided_by=access.user_id,
        now=services.now(),
    )
    event = "pair-request.approved" if approve else "pair-request.rejected"
    wid = access.workspace.id
    await audit.record(event, workspace=wid, requestId=record.id, agentId=record.agent_id)
    if appended is not None:
        await audit.record("log.appended", workspace=wid, op="agent.add", seq=appended.record.seq)
    await services.store.commit()
    if appended is not None:
        await after_append(services, wid, "agent.add", appended.body)
    _publish(services, record)
    return PairRequestEnvelope(pair_request=PairRequestOut.of(record))


@router.post(
    "/workspaces/{wid}/pair-requests/{request_id}/approve", response_model=PairRequestEnvelope
)
async def approve_request(
    request_id: str,
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
    body: PairApproveBody | None = None,
) -> PairRequestEnvelope:
    """An admin of the target workspace approves (R06); in a protected workspace with the
    signed ``agent.add`` entry and the grant."""
    return await _decide(services, access, request_id, approve=True, audit=audit, body=body)


@router.post(
    "/workspaces/{wid}/pair-requests/{request_id}/reject", response_model=PairRequestEnvelope
)
async def reject_request(
    request_id: str,
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
) -> PairRequestEnvelope:
    """An admin of the target workspace rejects."""
    return await _decide(services, access, request_id, approve=False, audit=audit)
