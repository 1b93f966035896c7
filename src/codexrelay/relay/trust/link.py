"""What a protected agent reports over its socket: its trust state, sealed envelopes."""

from __future__ import annotations

import logging

from codexrelay.protocol import TrustStatus
from codexrelay.protocol_sealed import SealedCatalog, SealedEnvelope, SealedThreadEnvelope
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.agents.link import publish_agent
from codexrelay.relay.conversations.threads import key_of
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord
from codexrelay.relay.trust import sealing

log = logging.getLogger("codexrelay.trust")


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


async def on_envelope(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: SealedEnvelope
) -> None:
    """One envelope of a sealed task's stream: kept in memory with the task's details and
    handed to the workspace's phones as is (the relay cannot open it)."""
    task = services.store.tasks.get(message.task_id)
    if task is None and services.store.threads.get(key_of(agent.key, message.task_id)):
        # a key wrapped again for a reader of a sealed thread (the key request's answer)
        thread_envelope = SealedThreadEnvelope(thread_id=message.task_id, envelope=message.envelope)
        await on_thread_envelope(services, agent, _live, thread_envelope)
        return
    if task is None or task.agent_key != agent.key or not task.sealed:
        log.warning("agent %s sent an envelope for a task that is not its own", agent.key)
        return
    header = sealing.agent_header(
        message.envelope, workspace_id=task.workspace_id, agent_id=agent.agent_id, task_id=task.id
    )
    if header is None:
        log.warning("agent %s sent an envelope that does not fit task %s", agent.key, task.id)
        return
    index = services.details.add_envelope(task.id, message.envelope)
    if index is None:
        return
    payload = {"taskId": task.id, "index": index, "envelope": message.envelope}
    services.events.publish(task.workspace_id, "envelope", payload)


async def on_catalog(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: SealedCatalog
) -> None:
    """The agent's sealed session catalog: the latest one is kept in memory for phones."""
    if not sealing.is_catalog(message.envelope, agent.workspace_id, agent.agent_id):
        log.warning("agent %s sent a catalog envelope that is not its own", agent.key)
        return
    services.trust.catalogs[agent.key] = message.envelope
    payload = {"agentId": agent.agent_id, "envelope": message.envelope}
    services.events.publish(agent.workspace_id, "catalog", payload)


async def on_thread_envelope(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: SealedThreadEnvelope
) -> None:
    """One envelope of a sealed thread's stream: kept in memory and handed to the
    workspace's phones as is (the relay sees the thread, the counters and the size)."""
    thread = services.store.threads.get(key_of(agent.key, message.thread_id))
    if thread is None:
        log.warning("agent %s sent an envelope for a thread the relay does not know", agent.key)
        return
    header = sealing.thread_header(
        message.envelope,
        workspace_id=thread.workspace_id,
        agent_id=agent.agent_id,
        thread_id=thread.id,
    )
    if header is None:
        log.warning("agent %s sent an envelope that does not fit thread %s", agent.key, thread.id)
        return
    index = services.conversations.envelopes.add(thread.key, message.envelope)
    payload = {"threadId": thread.id, "index": index, "envelope": message.envelope}
    services.events.publish(thread.workspace_id, "envelope", payload)
