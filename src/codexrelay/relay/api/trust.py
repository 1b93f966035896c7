"""The membership log of a protected workspace (TRUST.md §4.1, §4.11) and sudo mode.

Phones read and extend the log; agents read it with their token. The relay checks each
entry as a first filter and stores it, but cannot write one itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from codexrelay.e2e.logentries import MAX_ENTRY_BYTES
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import CLOSE_REVOKED
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.access.passkeys import RelyingParty
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.link import publish_agent
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, Owner, ServicesDep, Viewer
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord, Role
from codexrelay.relay.trust import membership, sudo
from codexrelay.relay.views import LogEntryOut, LogHeadOut, View
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["trust"])
PAGE = 500


class LogOut(CamelModel):
    protected: bool
    entries: list[LogEntryOut]
    head: LogHeadOut | None


class PostEntryBody(CamelModel):
    """``{"entry": b64u(signed bytes), "sigs": [{credentialId, assertion}]}`` (TRUST.md §5)."""

    entry: Annotated[str, Field(min_length=1, max_length=(MAX_ENTRY_BYTES * 4 + 2) // 3)]
    sigs: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=4)]


class AppendedOut(CamelModel):
    entry: LogEntryOut
    head: LogHeadOut


class GenesisDraftOut(View):
    """What a genesis must say for this relay to store it (the phone fills in the rest)."""

    ws: str
    name: str
    rp_id: str
    origins: list[str]
    owner: dict[str, Any]


class SudoOptionsOut(View):
    challenge_id: str
    public_key: dict[str, Any]


class SudoVerifyBody(CamelModel):
    challenge_id: Annotated[str, Field(min_length=1, max_length=64)]
    credential: dict[str, Any]


class SudoOut(CamelModel):
    sudo_until: datetime | None


def _log_out(services: Services, workspace_id: str, start: int) -> LogOut:
    entries, head = membership.log_page(services.store, workspace_id, start, PAGE)
    return LogOut(
        protected=head is not None,
        entries=[LogEntryOut.of(e) for e in entries],
        head=None if head is None else LogHeadOut.of(head),
    )


@router.get("/workspaces/{wid}/e2e/log", response_model=LogOut)
async def read_log(
    access: Annotated[WorkspaceAccess, Viewer],
    services: ServicesDep,
    start: Annotated[int, Query(alias="from", ge=0)] = 0,
) -> LogOut:
    """The workspace's membership log from ``from`` on (500 entries a page)."""
    return _log_out(services, access.workspace.id, start)


async def bearer_agent(request: Request, services: ServicesDep) -> AgentRecord:
    """The agent whose token is the Bearer credential (checked before any body is read)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise AppError(ErrorCode.UNAUTHENTICATED, "Send the agent token as a Bearer token.")
    return pairing.authenticate_agent(
        services.store, token.strip(), secret=services.token_secret, now=services.now()
    )


BearerAgent = Annotated[AgentRecord, Depends(bearer_agent)]


@router.get("/agent/e2e/log", response_model=LogOut)
async def agent_read_log(
    agent: BearerAgent,
    services: ServicesDep,
    start: Annotated[int, Query(alias="from", ge=0)] = 0,
) -> LogOut:
    """The same log, for the agent holding a token of this workspace."""
    return _log_out(services, agent.workspace_id, start)


@router.post("/agent/e2e/log", status_code=201, response_model=AppendedOut)
async def agent_append_log(
    body: PostEntryBody, agent: BearerAgent, services: ServicesDep
) -> AppendedOut:
    """An agent's own key rotation (``agent.rotate``, signed by its current key, TRUST.md
    §4.10); no other entry is taken from an agent."""
    wid = agent.workspace_id
    if not membership.is_protected(services.store, wid):
        raise AppError(ErrorCode.NOT_PROTECTED, "This workspace is not protected.")
    if membership.entry_op(body.model_dump()) != ("agent.rotate", agent.agent_id):
        raise AppError(ErrorCode.FORBIDDEN, "An agent may only rotate its own keys.")
    signer = membership.Signer(user_id=f"agent:{agent.agent_id}", role=Role.VIEWER, passkeys={})
    rp = RelyingParty.from_config(services.config)
    appended = membership.append_entry(
        services.store,
        services.trust,
        workspace_id=wid,
        posted=body.model_dump(),
        signer=signer,
        rp_id=rp.rp_id,
        origin=rp.origin,
        now=services.now(),
    )
    await services.store.commit()
    await after_append(services, wid, appended.record.op, appended.body)
    record = appended.record
    return AppendedOut(entry=LogEntryOut.of(record), head=LogHeadOut.of(record))


@router.post("/workspaces/{wid}/e2e/log", status_code=201, response_model=AppendedOut)
async def append_log(
    body: PostEntryBody,
    access: Annotated[WorkspaceAccess, Viewer],
    caller: ActiveCallerDep,
    services: ServicesDep,
    audit: AuditDep,
) -> AppendedOut:
    """Store a signed entry (a genesis first); 409 ``stale-log-head`` if the log moved."""
    appended = await append_entry(services, access, caller.user.id, body.model_dump())
    wid = access.workspace.id
    record = appended.record
    await audit.record("log.appended", workspace=wid, op=record.op, seq=record.seq)
    await services.store.commit()
    await after_append(services, wid, record.op, appended.body)
    return AppendedOut(entry=LogEntryOut.of(record), head=LogHeadOut.of(record))


async def append_entry(
    services: Services, access: WorkspaceAccess, user_id: str, posted: Any
) -> membership.Appended:
    """Check and store one entry, then mirror it in the relay's own tables."""
    rp = RelyingParty.from_config(services.config)
    signer = membership.Signer(
        user_id=user_id,
        role=access.role,
        passkeys=membership.relay_passkeys(services.store, user_id),
    )
    appended = membership.append_entry(
        services.store,
        services.trust,
        workspace_id=access.workspace.id,
        posted=posted,
        signer=signer,
        rp_id=rp.rp_id,
        origin=rp.origin,
        now=services.now(),
    )
    if appended.body is not None:
        op = appended.record.op
        membership.mirror(services.store, access.workspace.id, op, appended.body, services.now())
        if op == "agent.revoke" and (
            agent := pairing.find_agent(services.store, access.workspace.id, appended.body.agent_id)
        ):
            pairing.revoke_agent(
                services.store,
                workspace_id=agent.workspace_id,
                agent_id=agent.agent_id,
                now=services.now(),
            )
    return appended


async def after_append(services: Services, workspace_id: str, op: str, body: Any) -> None:
    """Tell phones; a revoked agent loses its socket at once."""
    head = services.store.log_entries.head(workspace_id)
    if head is not None:
        payload = {"entry": LogEntryOut.of(head).json_data()}
        services.events.publish(workspace_id, "log", payload)
    if op == "agent.revoke" and body is not None:
        for agent in services.store.agents.named(workspace_id, body.agent_id):
            await services.hub.disconnect(agent.key, CLOSE_REVOKED, "revoked in the log")
            publish_agent(services, agent)


@router.get("/workspaces/{wid}/e2e/genesis-draft", response_model=GenesisDraftOut)
async def genesis_draft(
    access: Annotated[WorkspaceAccess, Owner], caller: ActiveCallerDep, services: ServicesDep
) -> GenesisDraftOut:
    """The fields a genesis for this workspace must carry. The phone adds devices, policy
    and time, and checks the passkey keys by verifying its own signature with them."""
    rp = RelyingParty.from_config(services.config)
    passkeys = membership.relay_passkeys(services.store, caller.user.id)
    owner = {
        "userId": caller.user.id,
        "name": caller.user.name,
        "passkeys": [{"credId": c, "cose": k} for c, k in passkeys.items()],
    }
    return GenesisDraftOut.of(
        access.workspace,
        ws=access.workspace.id,
        rp_id=rp.rp_id,
        origins=[rp.origin],
        owner=owner,
    )


@router.post("/auth/sudo/options", response_model=SudoOptionsOut)
async def sudo_options(caller: ActiveCallerDep, services: ServicesDep) -> SudoOptionsOut:
    """Start a sudo ceremony: a user-verified assertion with one of the caller's passkeys."""
    options = sudo.start(
        services.store,
        services.passkey_challenges,
        rp=RelyingParty.from_config(services.config),
        session=caller.session,
        now=services.now(),
        ttl_sec=services.config.passkey_challenge_ttl_sec,
        rand=services.rand,
    )
    return SudoOptionsOut.of(options)


@router.post("/auth/sudo/verify", response_model=SudoOut)
async def sudo_verify(
    body: SudoVerifyBody, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> SudoOut:
    """Finish it: sensitive changes are allowed on this session for five minutes."""
    until = sudo.finish(
        services.store,
        services.passkey_challenges,
        rp=RelyingParty.from_config(services.config),
        session=caller.session,
        challenge_id=body.challenge_id,
        credential=body.credential,
        now=services.now(),
    )
    await audit.record("auth.sudo", userId=caller.user.id)
    await services.store.commit()
    return SudoOut(sudo_until=until)


@router.get("/auth/sudo", response_model=SudoOut)
async def sudo_state(caller: ActiveCallerDep) -> SudoOut:
    """Until when this session may make sensitive changes (null: confirm first)."""
    return SudoOut(sudo_until=sudo.sudo_until(caller.session))
