"""Agents of a workspace: list, revoke, their Codex session catalogs, and the agent socket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import CLOSE_REVOKED
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.link import agent_out, publish_agent
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import Admin, ServicesDep, Viewer
from codexrelay.relay.views import AgentOut, CodexSessionOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["agents"])


class AgentsOut(CamelModel):
    agents: list[AgentOut]


class SessionsOut(CamelModel):
    sessions: list[CodexSessionOut]
    updated_at: datetime | None
    agent_online: bool


@router.get("/workspaces/{wid}/agents", response_model=AgentsOut)
async def list_agents(
    access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> AgentsOut:
    """Agents of this workspace (R04); revoked ones stay listed with ``revokedAt``."""
    agents = pairing.workspace_agents(services.store, access.workspace.id)
    return AgentsOut(agents=[agent_out(services, a) for a in agents])


@router.delete("/workspaces/{wid}/agents/{agent_id}", status_code=204)
async def revoke_agent(
    agent_id: str,
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
) -> Response:
    """R07, I1: the token dies and the socket closes at once with a stop code."""
    agent = pairing.revoke_agent(
        services.store, workspace_id=access.workspace.id, agent_id=agent_id, now=services.now()
    )
    await audit.record(
        "agent.revoked",
        workspace=agent.workspace_id,
        agentKey=agent.key,
        agentId=agent.agent_id,
        reason="revoked",
    )
    await services.store.commit()
    await services.hub.disconnect(agent.key, CLOSE_REVOKED, "agent revoked")
    services.catalogs.pop(agent.key, None)
    publish_agent(services, agent)
    return Response(status_code=204)


@router.get("/workspaces/{wid}/agents/{agent_id}/sessions", response_model=SessionsOut)
async def list_sessions(
    agent_id: str, access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> SessionsOut:
    """The agent's Codex sessions as it last sent them (memory only, R12)."""
    agent = pairing.find_agent(services.store, access.workspace.id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such agent.")
    catalog = services.catalogs.get(agent.key)
    sessions: list[Any] = catalog.sessions if catalog else []
    return SessionsOut(
        sessions=[CodexSessionOut.of(s) for s in sessions],
        updated_at=catalog.received_at if catalog else None,
        agent_online=services.hub.is_online(agent.key),
    )
