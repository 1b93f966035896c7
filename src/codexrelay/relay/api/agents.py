"""Agents of a workspace: list, revoke, their Codex session catalogs, and the agent socket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response, WebSocket
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import CLOSE_REVOKED, SessionPreview
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.link import agent_view, publish_agent, serve_agent
from codexrelay.relay.api.deps import Admin, ServicesDep, Viewer
from codexrelay.relay.audit.context import AuditDep
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["agents"])


class CatalogItemOut(CamelModel):
    id: str
    label: str


class AgentOut(CamelModel):
    agent_id: str
    label: str
    hostname: str
    online: bool
    last_seen_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    features: dict[str, bool]
    actions: list[CatalogItemOut]
    log_sources: list[CatalogItemOut]
    workspace_root_name: str
    version: str


class AgentsOut(CamelModel):
    agents: list[AgentOut]


class SessionOut(CamelModel):
    session_id: str
    title: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    cwd: str
    preview: Annotated[list[SessionPreview], Field(default_factory=list)]


class SessionsOut(CamelModel):
    sessions: list[SessionOut]
    updated_at: datetime | None
    agent_online: bool


@router.get("/workspaces/{wid}/agents", response_model=AgentsOut)
async def list_agents(
    access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> AgentsOut:
    """Agents of this workspace (R04); revoked ones stay listed with ``revokedAt``."""
    agents = pairing.workspace_agents(services.state, access.workspace.id)
    return AgentsOut(agents=[AgentOut.model_validate(agent_view(services, a)) for a in agents])


@router.delete("/workspaces/{wid}/agents/{agent_id}", status_code=204)
async def revoke_agent(
    agent_id: str,
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
) -> Response:
    """R07, I1: the token dies and the socket closes at once with a stop code."""
    agent = pairing.revoke_agent(
        services.state, workspace_id=access.workspace.id, agent_id=agent_id, now=services.now()
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
    agent = pairing.find_agent(services.state, access.workspace.id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such agent.")
    catalog = services.catalogs.get(agent.key)
    sessions: list[Any] = catalog.sessions if catalog else []
    return SessionsOut(
        sessions=[SessionOut.model_validate(s.model_dump()) for s in sessions],
        updated_at=catalog.received_at if catalog else None,
        agent_online=services.hub.is_online(agent.key),
    )


@router.websocket("/agent/connect")
async def agent_socket(websocket: WebSocket) -> None:
    """The agent's one WebSocket (ARCHITECTURE.md, Agent protocol)."""
    await serve_agent(websocket, websocket.app.state.services)
