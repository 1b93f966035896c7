"""What a protected agent reports over its socket about its own trust state."""

from __future__ import annotations

from codexrelay.protocol import TrustStatus
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.agents.link import publish_agent
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord


async def on_trust_status(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: TrustStatus
) -> None:
    """Keep the agent's pinned workspace, log head and audit head for the phones to show
    (so a person can note the heads off the host and compare the safety number)."""
    trust = message.trust.model_dump(mode="json", by_alias=True)
    if trust["workspaceId"] != agent.workspace_id or agent.trust == trust:
        return
    agent.trust = trust
    services.store.agents.save(agent)
    services.store.touch()
    publish_agent(services, agent)
